"""Near-duplicates of a refresh's fresh units, looked for among the stored canonical units of their
hyperword and the other fresh units (:func:`match_fresh_units`): stored canonicals stay canonical
and stored merges stay as they are, so every earlier decision is kept and ids do not move."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hyperscene.schemas import PROVENANCE, TABLES
from hyperscene.transforms.faiss_loader import load_faiss
from hyperscene.transforms.near_dup import METHOD
from hyperscene.transforms.near_dup_verify import verify
from hyperscene.transforms.outputs import SplitOutputs
from hyperscene.transforms.progress import Progress


def match_fresh_units(hyperword: int, canonical_ids: list[str], canonical_vectors: np.ndarray,
                      fresh: pa.Table, fresh_vectors: np.ndarray, threshold: float,
                      lang: str = "en", check: str = "none", canonical_texts: list[str] | None = None) -> list[dict]:
    """Provenance rows for the fresh units of one hyperword (``fresh``: unit_id, occurrence_count,
    and text for ``check="words"``).

    The rule of :mod:`~hyperscene.transforms.near_dup`, with the stored canonical units ranked
    first and kept canonical: walking the fresh units by occurrence count then id, each merges
    into the most similar canonical (stored or fresh) at or above the threshold, or becomes one.
    With ``check="words"`` a merge must also pass the word check, against ``canonical_texts`` for
    the stored canonicals; without them a fresh unit merges only into a fresh canonical then.
    """
    faiss = load_faiss()

    ids = fresh.column("unit_id").to_pylist()
    counts = fresh.column("occurrence_count").to_pylist()
    texts = fresh.column("text").to_pylist() if check == "words" else None
    stored_texts = canonical_texts if check == "words" else None
    if not ids:
        return []
    n_old = len(canonical_ids)
    all_ids = list(canonical_ids) + ids
    vectors = np.ascontiguousarray(np.concatenate([canonical_vectors.reshape(n_old, -1) if n_old else
                                                   np.zeros((0, fresh_vectors.shape[1]), np.float32), fresh_vectors]),
                                   dtype=np.float32)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    radius = float(np.nextafter(np.float32(threshold), np.float32(-1)))  # range_search keeps scores > radius
    lims, scores, neighbours = index.range_search(np.ascontiguousarray(vectors[n_old:]), radius)
    canonical = np.zeros(len(all_ids), dtype=bool)
    canonical[:n_old] = True
    # Ties go to the stored canonical first, then to the earlier fresh one in the walk.
    rank = np.empty(len(all_ids), dtype=np.int64)
    order = sorted(range(len(ids)), key=lambda i: (-counts[i], ids[i]))
    rank[:n_old] = np.arange(n_old)
    rank[[n_old + i for i in order]] = n_old + np.arange(len(ids))
    rows = []
    for i in order:
        lo, hi = lims[i], lims[i + 1]
        best, best_score = -1, -2.0
        method = METHOD
        for j, s in zip(neighbours[lo:hi], scores[lo:hi]):
            if j != n_old + i and canonical[j] and (s > best_score or (s == best_score and rank[j] < rank[best])):
                if texts is None:
                    reason = None
                elif j >= n_old:
                    reason = verify(texts[i], texts[j - n_old], lang)
                else:
                    reason = None if stored_texts is None else verify(texts[i], stored_texts[j], lang)
                if texts is None or reason is not None:
                    best, best_score = int(j), float(s)
                    method = METHOD if texts is None else f"{METHOD}+{reason}"
        if best < 0:
            canonical[n_old + i] = True
        else:
            rows.append({"unit_id": ids[i], "canonical_unit_id": all_ids[best], "method": method,
                         "score": best_score, "hyperword": hyperword, "_occurrences": counts[i]})
    return rows


def stored_parts(table: pa.Table, n_groups: int):
    """Rows with a hyperword column, split by the group of their hyperword: (group, rows)."""
    groups = table.column("hyperword").to_numpy() % n_groups
    for g in np.unique(groups):
        yield int(g), table.filter(pa.array(groups == g))


class _MatchDoFn(beam.DoFn):
    def __init__(self, threshold: float, lang: str, check: str):
        self._threshold, self._lang, self._check = threshold, lang, check

    def setup(self):
        self._progress = Progress("near-duplicates", "fresh units")

    def process(self, item):
        _, joined = item
        fresh = list(joined["fresh"])
        if not fresh:
            return
        units, vectors = _by_hyperword_and_id(pa.concat_tables([u for u, _ in fresh]), np.concatenate([v.load() for _, v in fresh]))
        stored = list(joined["stored"])
        if stored:
            stored, stored_vectors = _by_hyperword_and_id(pa.concat_tables([u for u, _ in stored]),
                                                          np.concatenate([v.load() for _, v in stored]))
        else:
            stored, stored_vectors = TABLES["units"].empty_table(), np.zeros((0, vectors.shape[1]), np.float32)
        stored_hw = stored.column("hyperword").to_numpy()
        stored_ids = stored.column("unit_id").to_pylist()
        stored_texts = stored.column("text").to_pylist() if "text" in stored.column_names else None
        hws = units.column("hyperword").to_numpy()
        rows = []
        with self._progress.timed(units.num_rows):
            for hw in np.unique(hws):
                mine, old = np.flatnonzero(hws == hw), np.flatnonzero(stored_hw == hw)
                rows += match_fresh_units(int(hw), [stored_ids[i] for i in old], stored_vectors[old],
                                          units.take(pa.array(mine)), vectors[mine], self._threshold,
                                          self._lang, self._check,
                                          None if stored_texts is None else [stored_texts[i] for i in old])
        if rows:
            yield pa.Table.from_pylist([{k: v for k, v in r.items() if k != "_occurrences"} for r in rows], schema=PROVENANCE)
            yield beam.pvalue.TaggedOutput("stats", ("near_duplicate_occurrences", sum(r["_occurrences"] for r in rows)))


def _by_hyperword_and_id(table: pa.Table, vectors: np.ndarray) -> tuple[pa.Table, np.ndarray]:
    """Rows in (hyperword, unit id) order: the result must not depend on the order parts arrive in."""
    if table.num_rows == 0:
        return table, vectors.reshape(0, -1) if vectors.size == 0 else vectors
    order = pc.sort_indices(table, sort_keys=[("hyperword", "ascending"), ("unit_id", "ascending")]).to_numpy()
    return table.take(order), vectors[order]


class MatchFreshUnits(beam.PTransform):
    """{"fresh": (group, (units, vectors)) from near_dup.cluster_parts, "stored": the same of the
    stored canonical units that could match (candidates.py), embedded again} -> provenance tables
    (main) and ``stats``."""

    def __init__(self, threshold: float, lang: str = "en", check: str = "none"):
        super().__init__()
        self._threshold, self._lang, self._check = threshold, lang, check

    def expand(self, joined):
        return (
            joined
            | "Join" >> beam.CoGroupByKey()
            | "Match" >> SplitOutputs(_MatchDoFn(self._threshold, self._lang, self._check), tags=("stats",), main="provenance")
        )
