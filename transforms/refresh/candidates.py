"""Which stored units a refresh embeds again, so that its near-duplicate decisions are made on
vectors embedded from text, never on the store's quantized ones.

A fresh unit ``a`` can merge into a stored canonical unit ``b`` of its hyperword only if
cos(a, b) >= t, that is, if the angle between them is at most arccos(t). The store holds ``b``
decoded as ``b'``, at most ``e_b`` radians from ``b`` (vector_codec.error_angles). Angles obey the
triangle inequality, so such a ``b`` has angle(a, b') <= arccos(t) + e_b. Every stored unit that
passes this test is a candidate (:func:`candidates_of`); the others cannot be near-duplicates of
``a``. The candidates' texts are read from the units table and embedded with the store's model,
and match.py decides among them as compress would: no pair is missed for the quantization, and
no merge rests on a decoded vector.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hyperscene.schemas import TABLES
from hyperscene.schemas.unit_bucket import UnitBucket
from hyperscene.transforms.near_dup import CLUSTER_COLUMNS
from hyperscene.transforms.outputs import SplitOutputs
from hyperscene.transforms.progress import Progress

# Radians added to each bound for the float32 rounding of the cosines compared (under 1e-5 for
# unit vectors of a few hundred dimensions).
ROUNDING = 1e-4


def candidate_pairs(fresh_vectors: np.ndarray, stored_vectors: np.ndarray, stored_angles: np.ndarray,
                    threshold: float) -> np.ndarray:
    """(fresh, stored) booleans: could stored (decoded) vector j, given its error bound in radians,
    lie within ``threshold`` cosine of fresh vector i."""
    limit = np.cos(np.minimum(np.arccos(np.float64(threshold)) + stored_angles.astype(np.float64) + ROUNDING, np.pi))
    scores = np.ascontiguousarray(fresh_vectors, np.float32) @ np.ascontiguousarray(stored_vectors, np.float32).T
    return scores >= limit[None, :]


def candidates_of(fresh_vectors: np.ndarray, stored_vectors: np.ndarray, stored_angles: np.ndarray,
                  threshold: float) -> np.ndarray:
    """Positions of the stored vectors that are candidates for some fresh vector (:func:`candidate_pairs`)."""
    if not len(fresh_vectors) or not len(stored_vectors):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(candidate_pairs(fresh_vectors, stored_vectors, stored_angles, threshold).any(axis=0))


class _CandidatesDoFn(beam.DoFn):
    def __init__(self, threshold: float, quantizer):
        self._threshold, self._quantizer = threshold, quantizer

    def setup(self):
        self._progress = Progress("near-duplicate candidates", "fresh units")

    def process(self, item):
        from hyperscene.transforms.store.vector_codec import decode, error_angles

        _, joined = item
        fresh = list(joined["fresh"])
        stored = [t for t in joined["stored"] if t.num_rows]
        if not fresh or not stored:
            return
        units = pa.concat_tables([u for u, _ in fresh])
        vectors = np.concatenate([v.load() for _, v in fresh])
        stored = pa.concat_tables(stored)
        decoded, angles = decode(stored, self._quantizer), error_angles(stored)
        fresh_hw, stored_hw = units.column("hyperword").to_numpy(), stored.column("hyperword").to_numpy()
        chosen = []
        with self._progress.timed(units.num_rows):
            for hw in np.unique(fresh_hw):
                old = np.flatnonzero(stored_hw == hw)
                chosen.append(old[candidates_of(vectors[fresh_hw == hw], decoded[old], angles[old], self._threshold)])
        rows = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
        if len(rows):
            yield stored.select(["unit_id"]).take(pa.array(rows))
        yield beam.pvalue.TaggedOutput("stats", ("_candidates_embedded", len(rows)))


def wanted_rows(item, wanted: list[pa.Table]):
    """(bucket, stored units rows) -> the same with only the rows of ``wanted`` units."""
    bucket, units = item
    if not wanted:
        return
    ids = pa.concat_tables(wanted).column("unit_id")
    units = units.select(CLUSTER_COLUMNS)
    units = units.filter(pc.is_in(units.column("unit_id"), value_set=ids))
    if units.num_rows:
        yield bucket, units


def candidate_bucket(item) -> UnitBucket:
    """(bucket, wanted stored units rows) -> a UnitBucket of them ready to embed (no occurrences:
    they only stand for comparison)."""
    bucket, parts = item
    units = pa.concat_tables(list(parts))
    # a unit a refresh rewrote has a row in each of its files: any one holds its text
    _, first = np.unique(units.column("unit_id").to_numpy(), return_index=True)
    units = units.take(pa.array(first)).sort_by("unit_id")
    occurrences = TABLES["occurrences"].empty_table().select(["doc_id", "position", "separator", "unit_id"])
    return UnitBucket(bucket, units, occurrences)


class StoredCandidates(beam.PTransform):
    """{"fresh": (group, (units, vectors)), "stored": (group, stored vectors rows)}, and the stored
    units rows by bucket -> {"buckets": UnitBuckets of the stored units to embed again, "stats"}."""

    def __init__(self, threshold: float, quantizer, units_by_bucket):
        super().__init__()
        self._threshold, self._quantizer, self._units = threshold, quantizer, units_by_bucket

    def expand(self, joined):
        found = (
            joined
            | "Join" >> beam.CoGroupByKey()
            | "Bound" >> SplitOutputs(_CandidatesDoFn(self._threshold, self._quantizer), tags=("stats",), main="ids")
        )
        buckets = (
            self._units
            | "Wanted" >> beam.FlatMap(wanted_rows, wanted=beam.pvalue.AsList(found.ids))
            | "ByBucket" >> beam.GroupByKey()
            | "Texts" >> beam.Map(candidate_bucket)
        )
        return {"buckets": buckets, "stats": found.stats}
