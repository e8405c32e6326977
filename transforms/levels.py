"""The levels above the units: scenes per document, one codebook per level, every unit's semantic id.

Flow: assigned UnitBuckets are split into per-document parts (occurrence rows, token counts and
vectors) and gathered by document; each document's scene tree is built by
:func:`hyperscene.transforms.scenes.build_scene_tree`; the scene centroids of each level train that
level's FAISS codebook (a global step, like the hyperwords'); then every scene gets its code and its
children's codes, and every occurrence its semantic id: the codes of the scenes holding it, from
the document's root down to level 1, then its hyperword.

Vectors cross the gather rounded to float16: half the bytes through a distributed runner's shuffle
(a local one gets references to the spilled files instead, see ``embed.VectorRows``, rounded the
same way so every runner builds the same scenes), and scene cuts compare sums of many vectors, far
above float16's rounding. Everything after the gather is float32.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hyperscene.schemas import SCENES
from hyperscene.schemas.unit_bucket import UnitBucket
from hyperscene.transforms.codebook import assign, default_codebook_size, train_codebook
from hyperscene.transforms.embed import for_row_access, take_rows, vector_rows
from hyperscene.transforms.progress import Progress, stage_timer
from hyperscene.transforms.scenes import Scene, SceneConfig, build_scene_tree

OCCURRENCE_COLUMNS = ["doc_id", "position", "unit_id", "separator", "hyperword"]
LEVEL_SAMPLE = 200_000  # scenes per level the k-means is trained on at most


def scene_id(doc_id: str, level: int, index: int) -> str:
    return f"{doc_id}#{level}.{index}"


@dataclass(frozen=True)
class DocumentScenes:
    doc_id: str
    occurrences: pa.Table  # OCCURRENCE_COLUMNS, sorted by position (0, 1, ... n-1)
    scenes: list[Scene]  # sorted by (level, index); the last is the root

    def by_level(self) -> dict[int, list[Scene]]:
        levels: dict[int, list[Scene]] = {}
        for s in self.scenes:
            levels.setdefault(s.level, []).append(s)
        return levels


def document_parts(bucket: UnitBucket) -> Iterator[tuple[str, tuple[pa.Table, np.ndarray, np.ndarray]]]:
    """A bucket's occurrences split by document: (doc_id, (rows, token counts, vectors)); the vectors
    rounded to float16, as values or as a reference to their spilled file (``embed.vector_rows``)."""
    bucket = for_row_access(bucket)
    occurrences = bucket.occurrences.select(OCCURRENCE_COLUMNS)
    row = pc.index_in(occurrences.column("unit_id"), value_set=bucket.units.column("unit_id")).to_numpy()
    tokens = bucket.units.column("token_count").to_numpy()[row]
    docs = pc.dictionary_encode(occurrences.column("doc_id")).combine_chunks()
    order = np.argsort(docs.indices.to_numpy(), kind="stable")
    codes = docs.indices.to_numpy()[order]
    present, starts = np.unique(codes, return_index=True)
    for code, start, end in zip(present, starts, [*starts[1:], len(order)]):
        rows = order[start:end]
        yield docs.dictionary[code].as_py(), (occurrences.take(rows), tokens[rows], vector_rows(bucket, row[rows], "float16"))


def gather_document(doc_id: str, parts, cfg: SceneConfig) -> DocumentScenes:
    """One document's parts, from every bucket, into its occurrences in order and its scene tree."""
    parts = list(parts)
    occurrences = pa.concat_tables([p[0] for p in parts])
    order = np.argsort(occurrences.column("position").to_numpy(), kind="stable")
    tokens = np.concatenate([p[1] for p in parts])[order]
    vectors = np.concatenate([take_rows(p[2]) for p in parts])[order]
    return DocumentScenes(doc_id, occurrences.take(order), build_scene_tree(vectors, tokens, cfg))


def level_centroids(doc: DocumentScenes) -> Iterator[tuple[int, tuple[list[str], np.ndarray]]]:
    """(level, (sample keys, centroids)) of one document's scenes, one element per level."""
    for level, scenes in doc.by_level().items():
        # Hashes of scene ids order the sample: uniform over documents, independent of arrival order.
        keys = [hashlib.blake2b(scene_id(doc.doc_id, level, s.index).encode(), digest_size=8).hexdigest() for s in scenes]
        yield level, (keys, np.stack([s.centroid for s in scenes]).astype(np.float32))


def train_level(level: int, parts, sizes: tuple[int, ...] = (), seed: int = 0, sample: int = LEVEL_SAMPLE) -> tuple[int, np.ndarray]:
    """(level, its codebook): FAISS k-means on up to ``sample`` of the level's scene centroids."""
    parts = list(parts)
    keys = np.concatenate([np.asarray(k, dtype="U16") for k, _ in parts])
    centroids = np.concatenate([c for _, c in parts])
    order = np.argsort(keys, kind="stable")[:sample]
    size = sizes[level - 1] if level <= len(sizes) else default_codebook_size(len(keys))
    with stage_timer("train level codebooks", len(order)):
        return level, train_codebook(centroids[order], size, seed + level)


def encode_document(doc: DocumentScenes, codebooks: dict[int, np.ndarray]):
    """Codes for every scene and semantic ids for every occurrence of one document.

    Returns (scenes table, occurrences table with ``semantic_id``, [(level, code, scene_id, score)]).
    """
    n = doc.occurrences.num_rows
    hyperwords = doc.occurrences.column("hyperword").to_numpy()
    codes: dict[int, np.ndarray] = {0: hyperwords}
    scores: dict[int, np.ndarray] = {}
    by_level = doc.by_level()
    for level, scenes in by_level.items():
        ids, score = assign(np.stack([s.centroid for s in scenes]), codebooks[level])
        codes[level], scores[level] = ids, score

    rows, members = [], []
    for s in doc.scenes:
        sid = scene_id(doc.doc_id, s.level, s.index)
        code = int(codes[s.level][s.index])
        rows.append({
            "scene_id": sid, "doc_id": doc.doc_id, "level": s.level, "index": s.index,
            "parent_scene_id": None if s.parent is None else scene_id(doc.doc_id, s.level + 1, s.parent),
            "first_position": s.first, "last_position": s.last, "child_count": s.child_count,
            "token_count": s.token_count, "code": code, "code_score": float(scores[s.level][s.index]),
            "gist": list(s.gist), "child_codes": codes[s.level - 1][list(s.children)].tolist(),
        })
        members.append((s.level, code, sid, float(scores[s.level][s.index])))
    # Centroids go in as one numpy block: a Python float per value would cost seconds per book.
    centroids = np.stack([s.centroid for s in doc.scenes]).astype(np.float32)
    centroid_column = pa.ListArray.from_arrays(
        pa.array(np.arange(0, centroids.size + 1, centroids.shape[1], dtype=np.int32)), pa.array(centroids.ravel()))
    table = pa.Table.from_pylist(rows, schema=SCENES.remove(SCENES.get_field_index("centroid")))
    table = table.add_column(SCENES.get_field_index("centroid"), SCENES.field("centroid"), centroid_column)

    # Semantic id: for each level from the root down, the code of the scene holding each position.
    columns = []
    for level in sorted(by_level, reverse=True):
        firsts = np.asarray([s.first for s in by_level[level]])
        columns.append(codes[level][np.searchsorted(firsts, np.arange(n), side="right") - 1])
    columns.append(hyperwords)
    matrix = np.stack(columns, axis=1).astype(np.int32)
    semantic = pa.ListArray.from_arrays(pa.array(np.arange(0, matrix.size + 1, matrix.shape[1], dtype=np.int32)),
                                        pa.array(matrix.ravel()))
    occurrences = doc.occurrences.append_column("semantic_id", semantic)
    return table, occurrences, members


class CodeStats(beam.CombineFn):
    """Per code: (scene count, best score, most central scene id); ties go to the smallest id, so
    the result does not depend on the order scenes arrive in."""

    def create_accumulator(self):
        return (0, None, None)

    def add_input(self, acc, member):
        score, sid = member
        return self.merge_accumulators([acc, (1, score, sid)])

    def merge_accumulators(self, accumulators):
        count, best, best_id = 0, None, None
        for n, score, sid in accumulators:
            count += n
            if score is not None and (best is None or score > best or (score == best and sid < best_id)):
                best, best_id = score, sid
        return count, best, best_id

    def extract_output(self, acc):
        return acc


def codebook_rows(level: int, centroids: np.ndarray, stats: dict | None = None) -> Iterator[dict]:
    """Every code of one level as a row, with its scene count and most central scene."""
    for code, centroid in enumerate(centroids):
        count, score, sid = (stats or {}).get((level, code), (0, None, None))
        yield {"level": level, "code": code, "centroid": centroid.tolist(), "scene_count": count,
               "representative_scene_id": sid, "representative_score": score}


class _SceneDoFn(beam.DoFn):
    def __init__(self, cfg: SceneConfig):
        self._cfg = cfg

    def setup(self):
        self._progress = Progress("scenes", "documents")

    def process(self, item):
        doc_id, parts = item
        with self._progress.timed(1):
            yield gather_document(doc_id, parts, self._cfg)


class _EncodeDoFn(beam.DoFn):
    def process(self, doc: DocumentScenes, codebooks: dict):
        with stage_timer("encode levels", doc.occurrences.num_rows):
            scenes, occurrences, members = encode_document(doc, codebooks)
        yield scenes
        yield beam.pvalue.TaggedOutput("occurrences", occurrences)
        for level, code, sid, score in members:
            yield beam.pvalue.TaggedOutput("members", ((level, code), (score, sid)))


class BuildLevels(beam.PTransform):
    """Assigned UnitBuckets -> ``scenes`` tables, ``occurrences`` tables (with ``semantic_id``),
    ``codebooks`` rows and ``levels`` (per-level statistics for the manifest).

    ``frozen`` (a PCollection of (level, centroids), as a refresh reads them from the store) replaces
    training: scenes are coded with those codebooks, and ``cfg.levels`` must not exceed their depth.
    """

    def __init__(self, cfg: SceneConfig, codebook_sizes: tuple[int, ...] = (), seed: int = 0, frozen=None):
        super().__init__()
        self._cfg, self._sizes, self._seed, self._frozen = cfg, tuple(codebook_sizes), seed, frozen

    def expand(self, buckets):
        docs = (
            buckets
            | "ByDocument" >> beam.FlatMap(document_parts)
            | "Gather" >> beam.GroupByKey()
            | "Scenes" >> beam.ParDo(_SceneDoFn(self._cfg))
        )
        codebooks = self._frozen if self._frozen is not None else (
            docs
            | "LevelCentroids" >> beam.FlatMap(level_centroids)
            | "ByLevel" >> beam.GroupByKey()
            | "Train" >> beam.MapTuple(train_level, sizes=self._sizes, seed=self._seed)
        )
        encoded = docs | "Encode" >> beam.ParDo(_EncodeDoFn(), beam.pvalue.AsDict(codebooks)).with_outputs(
            "occurrences", "members", main="scenes")
        stats = encoded.members | "CodeStats" >> beam.CombinePerKey(CodeStats())
        rows = codebooks | "Rows" >> beam.FlatMapTuple(codebook_rows, stats=beam.pvalue.AsDict(stats))
        levels = (
            (encoded.scenes | "LevelStats" >> beam.FlatMap(_level_stats),
             codebooks | "CodebookSizes" >> beam.MapTuple(lambda level, c: (f"level_{level}_codebook_size", len(c))))
            | "AllLevelStats" >> beam.Flatten()
        )
        return {"scenes": encoded.scenes, "occurrences": encoded.occurrences, "codebooks": rows, "levels": levels}


def _level_stats(scenes: pa.Table):
    """("level_<L>_scenes", scenes) and ("level_<L>_tokens", tokens) pairs of one document's scenes
    table, summed over documents into the manifest's counts."""
    levels = scenes.column("level").to_numpy()
    tokens = scenes.column("token_count").to_numpy()
    for level in np.unique(levels):
        yield f"level_{level}_scenes", int((levels == level).sum())
        yield f"level_{level}_tokens", int(tokens[levels == level].sum())
