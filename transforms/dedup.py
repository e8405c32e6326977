"""Exact dedup: a unit's id is a hash of its exact text, and each distinct text is kept once.

Occurrences are split into hash buckets of unit ids (see :class:`~hyperscene.schemas.unit_bucket.UnitBucket`)
and each bucket is deduplicated on one worker.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from typing import Iterable, Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa

from hyperscene.schemas.unit_bucket import UnitBucket
from hyperscene.transforms.progress import Progress
from hyperscene.transforms.spill import SpilledRows, as_table, is_local, scratch_name, spill_tables

# About 5,000 distinct units of English prose per bucket (about 47 input bytes a unit): big enough
# that Beam's per-element cost vanishes, small enough that a bucket's vectors take a few MB.
BUCKET_INPUT_BYTES = 256 * 1024
MAX_BUCKETS = 1 << 16
# Rows of one document's slice worth spilling to a scratch file (a long document's; shorter ones
# travel as values: a file per document would cost more than it saves).
SPILL_MIN_ROWS = 10_000


def unit_id(text: str) -> str:
    """128-bit BLAKE2b of the UTF-8 text, hex: the same text gets the same id on any machine."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def bucket_count(input_bytes: int) -> int:
    """Buckets for a corpus of this many input bytes. A function of the input only, so the same
    corpus is bucketed the same way, and embedded in the same batches, on any runner."""
    return int(min(MAX_BUCKETS, max(1, input_bytes // BUCKET_INPUT_BYTES)))


def bucket_of(unit_ids: list[str], n_buckets: int) -> np.ndarray:
    return np.array([int(u[:12], 16) % n_buckets for u in unit_ids], dtype=np.int64)


def split_by_bucket(occurrences: pa.Table, n_buckets: int, spill_to: str | None = None) -> Iterator[tuple[int, pa.Table | SpilledRows]]:
    """One document's occurrences (with ``text``) -> (bucket, its occurrences, with ``unit_id``).

    With ``spill_to`` (a scratch folder; ignored unless on the local disk), a table of
    ``SPILL_MIN_ROWS`` rows or more (a slice of a long document) goes to a file there, one record
    batch per bucket, and references travel through the shuffle instead (see ``transforms/spill.py``).
    """
    ids = [unit_id(t) for t in occurrences.column("text").to_pylist()]
    occurrences = occurrences.append_column("unit_id", pa.array(ids, pa.string()))
    buckets = bucket_of(ids, n_buckets)
    order = np.argsort(buckets, kind="stable")
    present, starts = np.unique(buckets[order], return_index=True)
    parts = [(int(b), occurrences.take(order[start:end])) for b, start, end in zip(present, starts, [*starts[1:], len(order)])]
    if occurrences.num_rows >= SPILL_MIN_ROWS and is_local(spill_to):
        doc_id, first = occurrences.column("doc_id")[0].as_py(), occurrences.column("position")[0].as_py()
        name = f"slice-{scratch_name(doc_id)}-p{first:012d}.arrow"
        references = spill_tables([t for _, t in parts], os.path.join(spill_to, name))
        parts = [(b, reference) for (b, _), reference in zip(parts, references)]
    yield from parts


def dedup_bucket(bucket: int, parts: Iterable[pa.Table | SpilledRows]) -> UnitBucket:
    """All occurrences of one bucket -> its distinct units (sorted by id) and the occurrences without text."""
    occurrences = pa.concat_tables([as_table(p) for p in parts])
    ids = occurrences.column("unit_id").to_pylist()
    counts = Counter(ids)
    text_of = dict(zip(ids, occurrences.column("text").to_pylist()))
    order = sorted(counts)
    units = pa.table(
        {
            "unit_id": pa.array(order, pa.string()),
            "text": pa.array([text_of[u] for u in order], pa.string()),
            "occurrence_count": pa.array([counts[u] for u in order], pa.int64()),
        }
    )
    return UnitBucket(bucket, units, occurrences.drop_columns(["text"]))


class _DedupDoFn(beam.DoFn):
    def setup(self):
        self._progress = Progress("exact dedup", "occurrences")

    def process(self, item):
        bucket, parts = item
        parts = list(parts)
        with self._progress.timed(sum(p.num_rows for p in parts)):
            result = dedup_bucket(bucket, parts)
        yield result


class ExactDedup(beam.PTransform):
    """Per-document occurrence tables (``doc_id, position, text, separator``) -> UnitBuckets.

    ``spill_to``: a scratch folder; on the local disk, long documents' rows cross the shuffle as
    references to files there (``split_by_bucket``). Elsewhere it is ignored.
    """

    def __init__(self, n_buckets: int, spill_to: str | None = None):
        super().__init__()
        self._n_buckets = n_buckets
        self._spill_to = spill_to

    def expand(self, occurrences):
        return (
            occurrences
            | "Bucket" >> beam.FlatMap(split_by_bucket, n_buckets=self._n_buckets, spill_to=self._spill_to)
            | "Group" >> beam.GroupByKey()
            | "Dedup" >> beam.ParDo(_DedupDoFn())
        )
