"""The per-bucket join of a refresh. Only the documents to process are segmented. Their occurrences
are bucketed by unit id as in compress and joined, bucket by bucket, with the latest version's units,
the units of the occurrences that leave (old revisions, deleted documents) and the near-duplicate
members (:func:`merge_bucket`). That splits each bucket into the stored units with their new counts,
the *fresh* units (never seen: only they are embedded and assigned to the frozen hyperwords), and the
*known* units of the new documents (embedded again from their text for the new documents' scenes)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hyperscene.schemas import TABLES
from hyperscene.schemas.unit_bucket import UnitBucket
from hyperscene.transforms.dedup import check_texts, dedup_bucket
from hyperscene.transforms.near_dup_verify import not_latin
from hyperscene.transforms.outputs import SplitOutputs
from hyperscene.transforms.progress import Progress
from hyperscene.transforms.store.layers import latest_units


@dataclass(frozen=True)
class MergedBucket:
    stored_units: pa.Table | None  # the stored units of the bucket with their new occurrence counts
    changed_units: pa.Table | None  # of those, the ones whose count changed: the rows the new version writes
    fresh: UnitBucket | None  # never-seen units of the new documents, with their occurrences
    known: UnitBucket | None  # stored units the new documents use, with those occurrences
    member_units: int  # stored near-duplicate members still used in the new version
    member_occurrences: int  # occurrences of stored near-duplicate members in the new version
    stored_distance: float  # sum of 1 - hyperword_score over the stored units (for drift)
    stored_count: int
    non_latin_change: int  # stored units not in Latin script that came into use, less those that fell out of it


def merge_bucket(bucket: int, new_parts: list, stored: list[pa.Table], removed: list[pa.Array],
                 members: list[pa.Array]) -> MergedBucket:
    """One bucket of the join: the new documents' occurrences (``doc_id, position, text, separator,
    unit_id`` tables), the stored units rows, the unit ids of occurrences that leave, and the stored
    near-duplicate members' ids. Units rows from files of several versions (tagged) count with each
    unit's newest row (store/layers.py)."""
    stored_units = latest_units(stored) if stored else TABLES["units"].empty_table()
    stored_ids = stored_units.column("unit_id")
    before = stored_units.column("occurrence_count").to_numpy()
    counts = before.copy()
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
            check_texts(known_ids.to_pylist(), incoming.units.column("text").filter(pa.array(in_store)).to_pylist(),
                        dict(zip(known_ids.to_pylist(), units.column("text").to_pylist())))
            units = units.append_column("occurrence_count", pa.array(new_counts[in_store], pa.int64()))
            occurrences = incoming.occurrences.filter(occurrence_known)
            at = pc.index_in(occurrences.column("unit_id"), value_set=stored_ids)
            occurrences = occurrences.append_column("hyperword", pc.take(stored_units.column("hyperword"), at))
            known = UnitBucket(bucket, units, occurrences)

    if stored_units.num_rows:
        stored_units = stored_units.set_column(stored_units.schema.get_field_index("occurrence_count"),
                                               "occurrence_count", pa.array(counts, pa.int64()))
    member_ids = pa.array([u for ids in members for u in ids.to_pylist()], pa.int64())
    is_member = pc.is_in(stored_ids, value_set=member_ids).to_numpy(zero_copy_only=False)
    scores = stored_units.column("hyperword_score").to_numpy()
    changed = stored_units.filter(pa.array(counts != before)) if stored_units.num_rows else stored_units
    flipped = np.flatnonzero((before > 0) != (counts > 0))
    texts = stored_units.column("text").take(pa.array(flipped, pa.int64())).to_pylist() if len(flipped) else []
    non_latin_change = sum((1 if counts[i] > 0 else -1) for i, t in zip(flipped, texts) if not_latin(t))
    return MergedBucket(
        stored_units if stored_units.num_rows else None, changed if changed.num_rows else None, fresh, known,
        member_units=int((counts[is_member] > 0).sum()), member_occurrences=int(counts[is_member].sum()),
        stored_distance=float(np.sum(1.0 - scores, dtype=np.float64)), stored_count=len(scores),
        non_latin_change=non_latin_change,
    )


class _MergeDoFn(beam.DoFn):
    def __init__(self, script_changes: bool):
        self._script_changes = script_changes

    def setup(self):
        self._progress = Progress("merge with store", "buckets")

    def process(self, item):
        bucket, joined = item
        with self._progress.timed(1):
            merged = merge_bucket(bucket, [rows.load() for rows in joined["new"]], list(joined["stored"]),
                                  [t.column("unit_id") for t in joined["removed"]],
                                  [t.column("unit_id") for t in joined["members"]])
        if merged.stored_units is not None:
            yield merged.stored_units
        if merged.changed_units is not None:
            yield beam.pvalue.TaggedOutput("changed", merged.changed_units)
        if merged.fresh is not None:
            yield beam.pvalue.TaggedOutput("fresh", merged.fresh)
        if merged.known is not None:
            yield beam.pvalue.TaggedOutput("known", merged.known)
        yield beam.pvalue.TaggedOutput("stats", ("near_duplicate_occurrences", merged.member_occurrences))
        yield beam.pvalue.TaggedOutput("stats", ("_stored_distance_total", merged.stored_distance))
        yield beam.pvalue.TaggedOutput("stats", ("_stored_units", merged.stored_count))
        if self._script_changes:
            yield beam.pvalue.TaggedOutput("stats", ("non_latin_units", merged.non_latin_change))


class MergeWithStore(beam.PTransform):
    """{"new": (bucket, occurrences), "stored": (bucket, units), "removed": (bucket, unit ids),
    "members": (bucket, unit ids)} -> stored units rows (main), those whose count changed
    (``changed``), ``fresh`` and ``known`` UnitBuckets, ``stats``. With ``script_changes``, the
    stats hold the change in the stored units not in Latin script that are in use (the count is the
    stored one plus the changes, not a reading of every stored text)."""

    def __init__(self, script_changes: bool = False):
        super().__init__()
        self._script_changes = script_changes

    def expand(self, joined):
        return (
            joined
            | "Join" >> beam.CoGroupByKey()
            | "Merge" >> SplitOutputs(_MergeDoFn(self._script_changes), tags=("changed", "fresh", "known", "stats"), main="units")
        )
