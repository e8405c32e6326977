"""Statistics of whole tables for a refreshed version: per hyperword (its row in the hyperwords
table), per scene code, and the counts its manifest records (units, documents, fresh and known units)."""

from __future__ import annotations

from typing import Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hyperscene.schemas.unit_bucket import UnitBucket
from hyperscene.transforms.near_dup_verify import not_latin
from hyperscene.transforms.spill import as_rows


class HyperwordStats(beam.CombineFn):
    """Per hyperword over units rows: (units, occurrences, (best score, its unit id, its text)),
    ties to the smallest id, as in near_dup.summarise_cluster."""

    def create_accumulator(self):
        return (0, 0, None)

    def add_input(self, acc, row):
        unit_id, text, count, score = row
        return self.merge_accumulators([acc, (1, count, (score, unit_id, text))])

    def merge_accumulators(self, accumulators):
        units = occurrences = 0
        best = None
        for n, occ, candidate in accumulators:
            units += n
            occurrences += occ
            if candidate is not None and (best is None or (-candidate[0], candidate[1]) < (-best[0], best[1])):
                best = candidate
        return units, occurrences, best

    def extract_output(self, acc):
        return acc


def hyperword_members(units: pa.Table) -> Iterator[tuple[int, tuple]]:
    for hw, unit_id, text, count, score in zip(*(units.column(c).to_pylist() for c in
                                                 ("hyperword", "unit_id", "text", "occurrence_count", "hyperword_score"))):
        yield hw, (unit_id, text, count, score)


def hyperword_rows(centroids: np.ndarray, stats: dict) -> Iterator[dict]:
    for hw, centroid in enumerate(centroids):
        units, occurrences, best = stats.get(hw, (0, 0, None))
        score, unit_id, text = best if best else (None, None, None)
        yield {"hyperword": hw, "centroid": centroid.tolist(), "unit_count": units, "occurrence_count": occurrences,
               "representative_unit_id": unit_id, "representative_text": text, "representative_score": score}


def unit_stats(units: pa.Table, scripts: bool = True) -> Iterator[tuple[str, int]]:
    """The counts of units rows; with ``scripts``, how many units in use are not in Latin script
    (for W002, as compress counts them: reading every text's script is most of this function's time)."""
    counts = units.column("occurrence_count").to_numpy()
    yield "units", int(counts.sum())
    yield "distinct_units", int((counts > 0).sum())
    yield "unused_units", int((counts == 0).sum())
    yield "tokens", int((counts * units.column("token_count").to_numpy()).sum())
    yield "words", int((counts * units.column("word_count").to_numpy()).sum())
    if scripts:
        texts = units.column("text").to_pylist()
        yield "non_latin_units", sum(not_latin(t) for t, n in zip(texts, counts) if n > 0)


def document_stats(rows: pa.Table) -> Iterator[tuple[str, int]]:
    live = pc.invert(rows.column("deleted"))
    yield "documents", int(pc.sum(live.cast(pa.int64())).as_py() or 0)
    yield "deleted_documents", rows.num_rows - int(pc.sum(live.cast(pa.int64())).as_py() or 0)
    yield "input_bytes", int(pc.sum(rows.column("bytes").filter(live)).as_py() or 0)


def scene_members(scenes) -> Iterator[tuple[tuple[int, int], tuple[float, str]]]:
    scenes = as_rows(scenes).load(["level", "code", "code_score", "scene_id"])
    for level, code, score, sid in zip(*(scenes.column(c).to_pylist() for c in ("level", "code", "code_score", "scene_id"))):
        yield (level, code), (score, sid)


def fresh_unit_rows(bucket: UnitBucket) -> pa.Table:
    return bucket.units.select(["unit_id", "text", "occurrence_count", "token_count", "word_count", "hyperword", "hyperword_score"])


def fresh_stats(bucket: UnitBucket) -> Iterator[tuple[str, float]]:
    scores = bucket.units.column("hyperword_score").to_numpy()
    yield "_fresh_distance_total", float(np.sum(1.0 - scores, dtype=np.float64))
    yield "_fresh_units", len(scores)
    yield "fresh_units", len(scores)


def known_stats(bucket: UnitBucket) -> Iterator[tuple[str, int]]:
    yield "known_units", len(bucket)
