"""Exact dedup: a unit's id is a hash of its exact text, and each distinct text is kept once.

Occurrences are split into hash buckets of unit ids (see :class:`~hyperscene.schemas.unit_bucket.UnitBucket`)
and each bucket is deduplicated on one worker.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa

from hyperscene.schemas.unit_bucket import UnitBucket
from hyperscene.transforms.errors import Errors, StoreError
from hyperscene.transforms.progress import Progress
from hyperscene.transforms.spill import NO_SPILL, Rows, SpillPolicy, scratch_name
from hyperscene.transforms.unit_ids import bucket_of, unit_hex, unit_ids

# About 5,000 distinct units of English prose per bucket (about 47 input bytes a unit): big enough
# that Beam's per-element cost vanishes, small enough that a bucket's vectors take a few MB.
BUCKET_INPUT_BYTES = 256 * 1024
MAX_BUCKETS = 1 << 16


def bucket_count(input_bytes: int) -> int:
    """Buckets for a corpus of this many input bytes. A function of the input only, so the same
    corpus is bucketed the same way, and embedded in the same batches, on any runner."""
    return int(min(MAX_BUCKETS, max(1, input_bytes // BUCKET_INPUT_BYTES)))


def split_by_bucket(occurrences: pa.Table, n_buckets: int) -> list[tuple[int, pa.Table]]:
    """One document's occurrences (with ``text``) -> (bucket, its occurrences, with ``unit_id``)."""
    ids = unit_ids(occurrences.column("text").to_pylist())
    occurrences = occurrences.append_column("unit_id", pa.array(ids, pa.int64()))
    buckets = bucket_of(ids, n_buckets)
    order = np.argsort(buckets, kind="stable")
    present, starts = np.unique(buckets[order], return_index=True)
    return [(int(b), occurrences.take(order[start:end])) for b, start, end in zip(present, starts, [*starts[1:], len(order)])]


def bucket_slices(occurrences: pa.Table, n_buckets: int, spill: SpillPolicy) -> Iterator[tuple[int, Rows]]:
    """:func:`split_by_bucket`, each bucket's rows as a handle for the shuffle: a long document's
    slice goes to one scratch file, a record batch per bucket, if the run's policy says so."""
    parts = split_by_bucket(occurrences, n_buckets)
    if not parts:
        return
    doc_id, first = occurrences.column("doc_id")[0].as_py(), occurrences.column("position")[0].as_py()
    held = spill.hold([t for _, t in parts], f"slice-{scratch_name(doc_id)}-p{first:012d}.arrow", spill.slice_rows)
    yield from ((b, rows) for (b, _), rows in zip(parts, held))


def dedup_bucket(bucket: int, parts: Iterable[pa.Table]) -> UnitBucket:
    """All occurrences of one bucket -> its distinct units (sorted by id) and the occurrences without text."""
    # One chunk: concatenated from thousands of short documents' parts, the bucket would cross each
    # later shuffle as thousands of buffers (0.28 s to pickle one such bucket of 5,000 documents).
    occurrences = pa.concat_tables(parts).combine_chunks()
    ids = occurrences.column("unit_id").to_pylist()
    counts = Counter(ids)
    texts = occurrences.column("text").to_pylist()
    text_of = dict(zip(ids, texts))
    check_texts(ids, texts, text_of)
    order = sorted(counts)
    units = pa.table(
        {
            "unit_id": pa.array(order, pa.int64()),
            "text": pa.array([text_of[u] for u in order], pa.string()),
            "occurrence_count": pa.array([counts[u] for u in order], pa.int64()),
        }
    )
    return UnitBucket(bucket, units, occurrences.drop_columns(["text"]))


def check_texts(ids, texts, text_of: dict) -> None:
    """Stop (E442) where an id already holds another text: two texts, one id (unit_ids.py)."""
    for uid, text in zip(ids, texts):
        if text_of[uid] != text:
            raise StoreError(Errors.E442.format(id=unit_hex(uid), first=text_of[uid][:60], second=text[:60]))


class _DedupDoFn(beam.DoFn):
    def setup(self):
        self._progress = Progress("exact dedup", "occurrences")

    def process(self, item):
        bucket, parts = item
        parts = list(parts)
        with self._progress.timed(sum(p.num_rows for p in parts)):
            result = dedup_bucket(bucket, [p.load() for p in parts])
        yield result


class ExactDedup(beam.PTransform):
    """Per-document occurrence tables (``doc_id, position, text, separator``) -> UnitBuckets.

    ``spill``: the run's policy; long documents' rows may cross the shuffle as references to
    scratch files (:func:`bucket_slices`).
    """

    def __init__(self, n_buckets: int, spill: SpillPolicy = NO_SPILL):
        super().__init__()
        self._n_buckets = n_buckets
        self._spill = spill

    def expand(self, occurrences):
        return (
            occurrences
            | "Bucket" >> beam.FlatMap(bucket_slices, n_buckets=self._n_buckets, spill=self._spill)
            | "Group" >> beam.GroupByKey()
            | "Dedup" >> beam.ParDo(_DedupDoFn())
        )
