"""The latest stored version read back into a refresh's pipeline: its Parquet files in batches, rows
by unit bucket, the stored vectors fresh units are compared with, and fresh units assigned to the
frozen hyperwords."""

from __future__ import annotations

import io
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from hyperscene.schemas import TABLES
from hyperscene.schemas.unit_bucket import UnitBucket
from hyperscene.transforms.codebook import assign
from hyperscene.transforms.refresh.plan import drop_documents
from hyperscene.transforms.store.layers import keep_live, live_ids, tag_held
from hyperscene.transforms.store.reader import as_today
from hyperscene.transforms.unit_ids import bucket_of

# Rows per element when a stored table is read back into the pipeline.
READ_BATCH_ROWS = 65_536


def read_stored(file: tuple[str, tuple[int, int], int], table_name: str, columns: list[str] | None = None,
                keep_docs_not_in: frozenset[str] = frozenset(),
                only_docs_in: frozenset[str] | None = None, revisions: dict[str, int] | None = None,
                tag_held_units: bool = False) -> Iterator[pa.Table]:
    """A stored Parquet file of ``table_name`` (path, the versions whose document revisions it holds,
    the version whose folder holds it), in batches of READ_BATCH_ROWS rows in today's types; optionally without the rows of some
    documents, or with only those of some documents. With ``revisions`` (doc_id -> added_in_version
    of the live documents), only the rows of live revisions; with ``tag_held_units``, units rows
    tagged for :func:`~hyperscene.transforms.store.layers.latest_units` (see layers.py)."""
    path, (first, last), held = file
    live = live_ids(revisions, first, last) if revisions is not None else None
    read_columns = columns + ["doc_id"] if live is not None and columns and "doc_id" not in columns else columns
    for table in _batches(path, read_columns, table_name):
        if live is not None:
            table = keep_live(table, live).select(columns or table.column_names)
        if tag_held_units:
            table = tag_held(table, held)
        if only_docs_in is not None:
            table = table.filter(pc.is_in(table.column("doc_id"), value_set=pa.array(sorted(only_docs_in), pa.string())))
        else:
            table = drop_documents(table, keep_docs_not_in)
        if table.num_rows:
            yield table


def _batches(path: str, columns: list[str] | None, table_name: str) -> Iterator[pa.Table]:
    """A stored Parquet file in tables of READ_BATCH_ROWS rows, in today's types (reader.as_today)."""
    import pyarrow.parquet as pq

    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        data = f.read()
    for batch in pq.ParquetFile(io.BytesIO(data)).iter_batches(batch_size=READ_BATCH_ROWS, columns=columns):
        yield as_today(table_name, pa.Table.from_batches([batch]))


def by_bucket(table: pa.Table, n_buckets: int, column: str = "unit_id") -> Iterator[tuple[int, pa.Table]]:
    buckets = bucket_of(table.column(column).to_numpy(), n_buckets)
    for b in np.unique(buckets):
        yield int(b), table.filter(pa.array(buckets == b))


def stored_vectors_for(path: str, hyperwords: Iterable[int], members: Iterable[int]):
    """The rows of a stored vectors file that a refresh compares fresh units with: those of the
    stored canonical units of ``hyperwords`` (the near-duplicate ``members`` left out)."""
    touched = pa.array(sorted(set(hyperwords)), pa.int32())
    merged = pa.array(sorted(set(members)), pa.int64())
    for table in _batches(path, None, "vectors"):
        canonical = pc.and_(pc.is_in(table.column("hyperword"), value_set=touched),
                            pc.invert(pc.is_in(table.column("unit_id"), value_set=merged)))
        if pc.any(canonical).as_py():
            yield table.filter(canonical)


def assign_frozen(bucket: UnitBucket, centroids: np.ndarray) -> UnitBucket:
    """Fresh units onto the stored hyperwords (as codebook.AssignHyperwords does)."""
    from hyperscene.transforms.codebook import assign_bucket
    from hyperscene.transforms.embed import load_vectors

    ids, scores = assign(load_vectors(bucket), centroids)
    return assign_bucket(bucket, ids, scores)
