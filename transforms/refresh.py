"""Refresh: new and changed documents become a new store version, against the frozen codebooks.

The plan is made before any pipeline runs, from the documents' sha256 (:func:`plan_refresh`): new
ids, changed content (a new revision), unchanged, and missing ids (deleted with ``--delete-missing``,
kept otherwise). Only the documents to process are segmented. Their occurrences are bucketed by
unit id as in compress and joined, bucket by bucket, with the latest version's units, the units of
the occurrences that leave (old revisions, deleted documents) and the near-duplicate members
(:func:`merge_bucket`). That splits each bucket into the stored units with their new counts, the
*fresh* units (never seen: only they are embedded and assigned to the frozen hyperwords), and the
*known* units of the new documents (their vectors are read from the ``vectors`` table).

Near-duplicates of a fresh unit are looked for among the stored canonical units of its hyperword
and the other fresh units (:func:`match_fresh_units`): stored canonicals stay canonical and stored
merges stay as they are, so every earlier decision is kept and ids do not move.

Every table of the new version is complete: the earlier rows that still hold, plus the new ones.
A version folder is self-contained, so old versions can be removed without breaking later ones.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from hyperscene.schemas import PROVENANCE, TABLES
from hyperscene.schemas.unit_bucket import UnitBucket
from hyperscene.transforms.codebook import assign
from hyperscene.transforms.dedup import bucket_of, dedup_bucket
from hyperscene.transforms.embed import take_rows
from hyperscene.transforms.near_dup import METHOD
from hyperscene.transforms.near_dup_verify import main_script, verify
from hyperscene.transforms.progress import Progress
from hyperscene.transforms.spill import as_table
from hyperscene.transforms.store.reader import read_vectors

# Rows per element when a stored table is read back into the pipeline.
READ_BATCH_ROWS = 65_536


@dataclass(frozen=True)
class RefreshPlan:
    """What a refresh changes, decided from ids and sha256 alone."""

    process: frozenset[str]  # documents to segment and store: new ids, changed content, deleted ones back
    revisions: dict[str, int]  # the revision each processed document gets
    removed: frozenset[str]  # documents whose stored occurrences and scenes leave (changed or deleted)
    deleted: frozenset[str]  # documents marked deleted by this refresh
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    missing: int = 0  # absent from the input; deleted only with --delete-missing
    new_dead_letters: int = 0

    @property
    def empty(self) -> bool:
        return not self.process and not self.deleted and not self.new_dead_letters

    def as_dict(self) -> dict:
        return {"new_documents": self.new, "changed_documents": self.changed, "unchanged_documents": self.unchanged,
                "missing_documents": self.missing, "deleted_documents": len(self.deleted),
                "new_dead_letters": self.new_dead_letters}


def plan_refresh(stored: Iterable[dict], incoming: Iterable[tuple[str, str]], delete_missing: bool,
                 stored_dead_letters: Iterable[tuple] = (), incoming_dead_letters: Iterable[tuple] = ()) -> RefreshPlan:
    """``stored``: documents rows (doc_id, sha256, revision, deleted); ``incoming``: (doc_id, sha256)
    of the input, one per id; dead letters as (source, record, reason) keys."""
    stored = {d["doc_id"]: d for d in stored}
    incoming = dict(incoming)
    process, revisions, removed = set(), {}, set()
    new = changed = unchanged = 0
    for doc_id, sha in incoming.items():
        old = stored.get(doc_id)
        if old is None:
            new += 1
            process.add(doc_id)
            revisions[doc_id] = 1
        elif old["deleted"] or old["sha256"] != sha:
            changed += 1
            process.add(doc_id)
            revisions[doc_id] = old["revision"] + 1
            removed.add(doc_id)  # a deleted document has nothing stored left: removing it is a no-op
        else:
            unchanged += 1
    missing = {doc_id for doc_id, d in stored.items() if doc_id not in incoming and not d["deleted"]}
    deleted = missing if delete_missing else set()
    known_dead = set(stored_dead_letters)
    new_dead = len({tuple(k) for k in incoming_dead_letters} - known_dead)
    return RefreshPlan(frozenset(process), revisions, frozenset(removed | deleted), frozenset(deleted),
                       new=new, changed=changed, unchanged=unchanged, missing=len(missing), new_dead_letters=new_dead)


def update_documents(rows: pa.Table, plan: RefreshPlan) -> pa.Table:
    """Stored documents rows for the new version: processed ones leave (their new revision is
    written from the input), deleted ones are flagged."""
    ids = rows.column("doc_id")
    keep = pc.invert(pc.is_in(ids, value_set=pa.array(sorted(plan.process), pa.string())))
    rows = rows.filter(keep)
    if plan.deleted:
        deleted = pc.or_(rows.column("deleted"), pc.is_in(rows.column("doc_id"), value_set=pa.array(sorted(plan.deleted), pa.string())))
        rows = rows.set_column(rows.schema.get_field_index("deleted"), "deleted", deleted)
    return rows


def drop_documents(rows: pa.Table, doc_ids: frozenset[str]) -> pa.Table:
    """Rows (occurrences, scenes) of documents other than ``doc_ids``."""
    if not doc_ids or rows.num_rows == 0:
        return rows
    return rows.filter(pc.invert(pc.is_in(rows.column("doc_id"), value_set=pa.array(sorted(doc_ids), pa.string()))))


# ---------------------------------------------------------------------------------------------
# The per-bucket join


@dataclass(frozen=True)
class MergedBucket:
    stored_units: pa.Table | None  # the stored units of the bucket with their new occurrence counts
    fresh: UnitBucket | None  # never-seen units of the new documents, with their occurrences
    known: UnitBucket | None  # stored units the new documents use, with those occurrences
    member_units: int  # stored near-duplicate members still used in the new version
    member_occurrences: int  # occurrences of stored near-duplicate members in the new version
    stored_distance: float  # sum of 1 - hyperword_score over the stored units (for drift)
    stored_count: int


def merge_bucket(bucket: int, new_parts: list, stored: list[pa.Table], removed: list[pa.Array],
                 members: list[pa.Array]) -> MergedBucket:
    """One bucket of the join: the new documents' occurrences (``doc_id, position, text, separator,
    unit_id``; tables, or spilled rows of a long document's), the stored units rows, the unit ids of
    occurrences that leave, and the stored near-duplicate members' ids."""
    stored_units = pa.concat_tables(stored) if stored else TABLES["units"].empty_table()
    stored_ids = stored_units.column("unit_id")
    counts = stored_units.column("occurrence_count").to_numpy().copy()
    position = {u: i for i, u in enumerate(stored_ids.to_pylist())}
    for unit, n in Counter(u for ids in removed for u in ids.to_pylist()).items():
        if unit in position:
            counts[position[unit]] -= n

    fresh = known = None
    if new_parts:
        incoming = dedup_bucket(bucket, new_parts)
        in_store = pc.is_in(incoming.units.column("unit_id"), value_set=stored_ids).to_numpy(zero_copy_only=False)
        new_counts = incoming.units.column("occurrence_count").to_numpy()
        for unit, n in zip(incoming.units.column("unit_id").filter(pa.array(in_store)).to_pylist(), new_counts[in_store]):
            counts[position[unit]] += n
        occurrence_known = pc.is_in(incoming.occurrences.column("unit_id"), value_set=stored_ids)
        if not in_store.all():
            fresh = UnitBucket(bucket, incoming.units.filter(pa.array(~in_store)),
                               incoming.occurrences.filter(pc.invert(occurrence_known)))
        if in_store.any():
            known_ids = incoming.units.column("unit_id").filter(pa.array(in_store))
            rows = pc.index_in(known_ids, value_set=stored_ids)
            units = stored_units.take(rows).select(["unit_id", "text", "token_count", "word_count", "hyperword", "hyperword_score"])
            units = units.append_column("occurrence_count", pa.array(new_counts[in_store], pa.int64()))
            occurrences = incoming.occurrences.filter(occurrence_known)
            at = pc.index_in(occurrences.column("unit_id"), value_set=stored_ids)
            occurrences = occurrences.append_column("hyperword", pc.take(stored_units.column("hyperword"), at))
            known = UnitBucket(bucket, units, occurrences)

    if stored_units.num_rows:
        stored_units = stored_units.set_column(stored_units.schema.get_field_index("occurrence_count"),
                                               "occurrence_count", pa.array(counts, pa.int64()))
    member_ids = pa.array([u for ids in members for u in ids.to_pylist()], pa.string())
    is_member = pc.is_in(stored_ids, value_set=member_ids).to_numpy(zero_copy_only=False)
    scores = stored_units.column("hyperword_score").to_numpy()
    return MergedBucket(
        stored_units if stored_units.num_rows else None, fresh, known,
        member_units=int((counts[is_member] > 0).sum()), member_occurrences=int(counts[is_member].sum()),
        stored_distance=float(np.sum(1.0 - scores, dtype=np.float64)), stored_count=len(scores),
    )


# ---------------------------------------------------------------------------------------------
# Near-duplicates of fresh units


def match_fresh_units(hyperword: int, canonical_ids: list[str], canonical_vectors: np.ndarray,
                      fresh: pa.Table, fresh_vectors: np.ndarray, threshold: float,
                      lang: str = "en", check: str = "none") -> list[dict]:
    """Provenance rows for the fresh units of one hyperword (``fresh``: unit_id, occurrence_count,
    and text for ``check="words"``).

    The rule of :mod:`~hyperscene.transforms.near_dup`, with the stored canonical units ranked
    first and kept canonical: walking the fresh units by occurrence count then id, each merges
    into the most similar canonical (stored or fresh) at or above the threshold, or becomes one.
    With ``check="words"`` a merge must also pass the word check; stored canonicals travel here
    without their texts, so a fresh unit merges only into a fresh canonical then (never a wrong
    merge; a fresh unit whose text a stored one repeats exactly was caught by exact dedup).
    """
    import faiss

    ids = fresh.column("unit_id").to_pylist()
    counts = fresh.column("occurrence_count").to_pylist()
    texts = fresh.column("text").to_pylist() if check == "words" else None
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
                reason = None if texts is None else (verify(texts[i], texts[j - n_old], lang) if j >= n_old else None)
                if texts is None or reason is not None:
                    best, best_score = int(j), float(s)
                    method = METHOD if texts is None else f"{METHOD}+{reason}"
        if best < 0:
            canonical[n_old + i] = True
        else:
            rows.append({"unit_id": ids[i], "canonical_unit_id": all_ids[best], "method": method,
                         "score": best_score, "hyperword": hyperword, "_occurrences": counts[i]})
    return rows


# ---------------------------------------------------------------------------------------------
# Statistics of whole tables


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


def unit_stats(units: pa.Table) -> Iterator[tuple[str, int]]:
    counts = units.column("occurrence_count").to_numpy()
    yield "units", int(counts.sum())
    yield "distinct_units", int((counts > 0).sum())
    yield "unused_units", int((counts == 0).sum())
    yield "tokens", int((counts * units.column("token_count").to_numpy()).sum())
    yield "words", int((counts * units.column("word_count").to_numpy()).sum())
    if "text" in units.column_names:  # for W002, as compress counts them
        texts = units.column("text").to_pylist()
        yield "non_latin_units", sum(main_script(t) not in ("latin", "") for t, n in zip(texts, counts) if n > 0)


def document_stats(rows: pa.Table) -> Iterator[tuple[str, int]]:
    live = pc.invert(rows.column("deleted"))
    yield "documents", int(pc.sum(live.cast(pa.int64())).as_py() or 0)
    yield "deleted_documents", rows.num_rows - int(pc.sum(live.cast(pa.int64())).as_py() or 0)
    yield "input_bytes", int(pc.sum(rows.column("bytes").filter(live)).as_py() or 0)


def scene_members(scenes) -> Iterator[tuple[tuple[int, int], tuple[float, str]]]:
    scenes = as_table(scenes, ["level", "code", "code_score", "scene_id"])
    for level, code, score, sid in zip(*(scenes.column(c).to_pylist() for c in ("level", "code", "code_score", "scene_id"))):
        yield (level, code), (score, sid)


# ---------------------------------------------------------------------------------------------
# Reading the stored version back into a pipeline


def read_stored(path: str, columns: list[str] | None = None, keep_docs_not_in: frozenset[str] = frozenset(),
                only_docs_in: frozenset[str] | None = None) -> Iterator[pa.Table]:
    """A stored Parquet file, in batches of READ_BATCH_ROWS rows; optionally without the rows of
    some documents, or with only those of some documents."""
    import pyarrow.parquet as pq

    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        data = f.read()
    reader = pq.ParquetFile(io.BytesIO(data))
    for batch in reader.iter_batches(batch_size=READ_BATCH_ROWS, columns=columns):
        table = pa.Table.from_batches([batch])
        if only_docs_in is not None:
            table = table.filter(pc.is_in(table.column("doc_id"), value_set=pa.array(sorted(only_docs_in), pa.string())))
        else:
            table = drop_documents(table, keep_docs_not_in)
        if table.num_rows:
            yield table


def by_bucket(table: pa.Table, n_buckets: int, column: str = "unit_id") -> Iterator[tuple[int, pa.Table]]:
    buckets = bucket_of(table.column(column).to_pylist(), n_buckets)
    for b in np.unique(buckets):
        yield int(b), table.filter(pa.array(buckets == b))


class _MergeDoFn(beam.DoFn):
    def setup(self):
        self._progress = Progress("merge with store", "buckets")

    def process(self, item):
        bucket, joined = item
        with self._progress.timed(1):
            merged = merge_bucket(bucket, list(joined["new"]), list(joined["stored"]),
                                  [t.column("unit_id") for t in joined["removed"]],
                                  [t.column("unit_id") for t in joined["members"]])
        if merged.stored_units is not None:
            yield merged.stored_units
        if merged.fresh is not None:
            yield beam.pvalue.TaggedOutput("fresh", merged.fresh)
        if merged.known is not None:
            yield beam.pvalue.TaggedOutput("known", merged.known)
        yield beam.pvalue.TaggedOutput("stats", ("near_duplicate_occurrences", merged.member_occurrences))
        yield beam.pvalue.TaggedOutput("stats", ("_stored_distance_total", merged.stored_distance))
        yield beam.pvalue.TaggedOutput("stats", ("_stored_units", merged.stored_count))


class MergeWithStore(beam.PTransform):
    """{"new": (bucket, occurrences), "stored": (bucket, units), "removed": (bucket, unit ids),
    "members": (bucket, unit ids)} -> stored units rows (main), ``fresh`` and ``known`` UnitBuckets,
    ``stats``."""

    def expand(self, joined):
        return (
            joined
            | "Join" >> beam.CoGroupByKey()
            | "Merge" >> beam.ParDo(_MergeDoFn()).with_outputs("fresh", "known", "stats", main="units")
        )


def attach_vectors(item, dimension: int) -> Iterator[UnitBucket]:
    """(bucket, {"units": [known UnitBucket], "vectors": [vectors rows]}) -> the bucket with vectors."""
    _, joined = item
    vectors = [t for t in joined["vectors"]]
    table = pa.concat_tables(vectors) if vectors else TABLES["vectors"].empty_table()
    for bucket in joined["units"]:
        ids = bucket.units.column("unit_id")
        rows = pc.index_in(ids, value_set=table.column("unit_id"))
        if rows.null_count:
            missing = ids.filter(pc.is_null(rows)).to_pylist()
            raise ValueError(f"the store's vectors table lacks {len(missing)} stored unit(s), e.g. {missing[0]}: "
                             "the store is damaged (check it with hyperscene verify)")
        matrix = read_vectors(table.take(rows)) if len(ids) else np.zeros((0, dimension), np.float32)
        yield bucket.with_vectors(matrix)


def stored_vectors_of(path: str, unit_ids: Iterable[str] | None = None, hyperwords: Iterable[int] | None = None,
                      exclude: Iterable[str] = ()) -> Iterator[pa.Table]:
    """Rows of a stored vectors file: those of ``unit_ids``, or those of ``hyperwords`` but not of
    ``exclude`` (the near-duplicate members)."""
    for table in read_stored(path):
        mask = None
        if unit_ids is not None:
            mask = pc.is_in(table.column("unit_id"), value_set=pa.array(sorted(set(unit_ids)), pa.string()))
        if hyperwords is not None:
            mask = pc.is_in(table.column("hyperword"), value_set=pa.array(sorted(set(hyperwords)), pa.int32()))
            mask = pc.and_(mask, pc.invert(pc.is_in(table.column("unit_id"), value_set=pa.array(sorted(set(exclude)), pa.string()))))
        table = table.filter(mask) if mask is not None else table
        if table.num_rows:
            yield table


def assign_frozen(bucket: UnitBucket, centroids: np.ndarray) -> UnitBucket:
    """Fresh units onto the stored hyperwords (as codebook.AssignHyperwords does)."""
    from hyperscene.transforms.codebook import assign_bucket
    from hyperscene.transforms.embed import load_vectors

    ids, scores = assign(load_vectors(bucket), centroids)
    return assign_bucket(bucket, ids, scores)


def stored_parts(table: pa.Table, n_groups: int):
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
        units, vectors = _by_hyperword_and_id(pa.concat_tables([u for u, _ in fresh]), np.concatenate([take_rows(v) for _, v in fresh]))
        stored = list(joined["stored"])
        stored = pa.concat_tables(stored) if stored else TABLES["vectors"].empty_table()
        stored, stored_vectors = _by_hyperword_and_id(stored, read_vectors(stored))
        stored_hw = stored.column("hyperword").to_numpy()
        stored_ids = stored.column("unit_id").to_pylist()
        hws = units.column("hyperword").to_numpy()
        rows = []
        with self._progress.timed(units.num_rows):
            for hw in np.unique(hws):
                mine, old = np.flatnonzero(hws == hw), np.flatnonzero(stored_hw == hw)
                rows += match_fresh_units(int(hw), [stored_ids[i] for i in old], stored_vectors[old],
                                          units.take(pa.array(mine)), vectors[mine], self._threshold,
                                          self._lang, self._check)
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
    """{"fresh": (group, (units, vectors)) from near_dup.cluster_parts, "stored": (group, vectors rows)} -> provenance tables
    (main) and ``stats``."""

    def __init__(self, threshold: float, lang: str = "en", check: str = "none"):
        super().__init__()
        self._threshold, self._lang, self._check = threshold, lang, check

    def expand(self, joined):
        return (
            joined
            | "Join" >> beam.CoGroupByKey()
            | "Match" >> beam.ParDo(_MatchDoFn(self._threshold, self._lang, self._check)).with_outputs("stats", main="provenance")
        )


def fresh_unit_rows(bucket: UnitBucket) -> pa.Table:
    return bucket.units.select(["unit_id", "text", "occurrence_count", "token_count", "word_count", "hyperword", "hyperword_score"])


def fresh_stats(bucket: UnitBucket) -> Iterator[tuple[str, float]]:
    scores = bucket.units.column("hyperword_score").to_numpy()
    yield "_fresh_distance_total", float(np.sum(1.0 - scores, dtype=np.float64))
    yield "_fresh_units", len(scores)
    yield "fresh_units", len(scores)


def known_stats(bucket: UnitBucket) -> Iterator[tuple[str, int]]:
    yield "known_units", len(bucket)


# Drift is measured only when the codebook was trained on at least this many units per hyperword.
# k-means puts each centroid at the mean of the units it was fitted on, so those units sit closer to
# it than units it never saw, by about (u + 1) / (u - 1) with u units per hyperword: a refresh with no
# drift at all reads 3 at u = 2, 1.67 at u = 4, 1.22 at u = 10 and 1.04 at u = 50 (and with as many
# hyperwords as units, the baseline is 0 and the ratio anything). Below 10 the ratio says more about
# the codebook's size than about the new documents. With the default codebook
# size (about 2 * sqrt(n) hyperwords for n units, so u = sqrt(n) / 2) that is 400 distinct units.
MIN_UNITS_PER_HYPERWORD = 10


def drift_section(stats: dict, baseline: float | None, baseline_units: int | None = None) -> dict:
    """How far this refresh's fresh units sit from their hyperwords, against the baseline (the
    units the codebook was trained on) and against the units stored before this refresh.

    ``ratio`` is None when there were no fresh units, or when the baseline means nothing (none, or
    fewer than :data:`MIN_UNITS_PER_HYPERWORD` units per hyperword behind it): ``reason`` says why,
    and ``--retrain-if-drift`` does not fire on it. ``baseline_units`` is the number of units the
    baseline was measured over; without it, the units stored before this refresh stand in (as many,
    for a first refresh after compress or retrain; more after several refreshes).
    """
    fresh = stats.get("_fresh_units", 0)
    stored = stats.get("_stored_units", 0)
    fresh_mean = stats.get("_fresh_distance_total", 0.0) / fresh if fresh else None
    stored_mean = stats.get("_stored_distance_total", 0.0) / stored if stored else None
    hyperwords = stats.get("codebook_size", 0)
    units = stored if baseline_units is None else baseline_units
    per_hyperword = units / hyperwords if hyperwords else None
    ratio = reason = None
    if fresh_mean is None:
        reason = "no fresh units: nothing new was embedded"
    elif baseline is None or baseline <= 0:
        reason = f"the codebook has no baseline distance (baseline_mean_distance {baseline})"
    elif per_hyperword is None or per_hyperword < MIN_UNITS_PER_HYPERWORD:
        reason = (f"the codebook was trained on {units:,} units for {hyperwords:,} hyperwords "
                  f"({0 if per_hyperword is None else per_hyperword:.2f} per hyperword, under {MIN_UNITS_PER_HYPERWORD}): "
                  f"those units sit closer to it than any unseen one, so a ratio would measure the codebook's size, not drift")
    else:
        ratio = fresh_mean / baseline
    return {
        "fresh_units": fresh,
        "fresh_mean_distance": None if fresh_mean is None else round(fresh_mean, 6),
        "stored_mean_distance": None if stored_mean is None else round(stored_mean, 6),
        "baseline_mean_distance": baseline,
        "units_per_hyperword": None if per_hyperword is None else round(per_hyperword, 2),
        "ratio": None if ratio is None else round(ratio, 4),
        "reason": reason,
    }


def drift_warning(manifest: dict) -> str | None:
    """One coded line when a refresh embedded fresh units but could not measure their drift, else None
    (for refresh, after it publishes, and inspect)."""
    drift = (manifest.get("refresh") or {}).get("drift") or {}
    if drift.get("ratio") is not None or not drift.get("fresh_units"):
        return None
    return (f"[W003] drift not measured: {drift.get('reason') or 'no ratio recorded'}; --retrain-if-drift does not fire "
            f"on version {manifest.get('version')}; drift is measured from {MIN_UNITS_PER_HYPERWORD} units per hyperword "
            f"(400 distinct units at the default codebook size): run hyperscene retrain STORE once the store has grown")


def complete_sections(sections: dict, stats: dict) -> dict:
    """A refresh's manifest sections once its statistics are in: its drift against the codebook's baseline."""
    codebook = sections.get("codebook") or {}
    refresh = sections.get("refresh")
    if refresh is not None and refresh.get("drift") is None:
        refresh["drift"] = drift_section(stats, codebook.get("baseline_mean_distance"), codebook.get("baseline_units"))
    return sections
