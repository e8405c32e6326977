"""Rows named instead of copied: Arrow tables spilled to scratch files on the local disk.

The local runner holds every PCollection that crosses a stage boundary in memory, and a second
consumer of one gets a copy. A document of hundreds of MB has millions of occurrence rows; carried
as values they would sit in several such buffers at once. So where a long document's rows cross a
shuffle (exact dedup, the gathers by window, the store writer), the stage writes them to an Arrow
IPC file under the run's scratch folder and sends a :class:`SpilledRows` reference instead, as
``embed.VectorRows`` does for vectors. The stage using the rows reads just their record batch.
(Its text crosses the read's shuffle as a plain file the same way: ``read.spill_text``.)

Only for the local disk: a distributed runner's shuffle spills to disk by itself, and every worker
reading every other worker's scratch files from object storage would not scale. Scratch files are
removed with the rest of ``STORE/_work`` when the run ends.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import pyarrow as pa


@dataclass(frozen=True)
class SpilledRows:
    """Rows ``[offset, offset + length)`` of record batch ``batch`` in the IPC file ``path``.

    ``first_key`` and ``last_key`` are the values of the sort columns ``spill_tables`` was given, in
    the first and the last row: the store writer orders parts by them without reading the rows.
    """

    path: str
    batch: int
    offset: int
    length: int
    first_key: tuple = ()
    last_key: tuple = ()

    @property
    def num_rows(self) -> int:
        return self.length

    def load(self, columns: Sequence[str] | None = None) -> pa.Table:
        with pa.OSFile(self.path) as f:
            batch = pa.ipc.open_file(f).get_batch(self.batch)
        table = pa.Table.from_batches([batch.slice(self.offset, self.length)])
        return table.select(list(columns)) if columns else table

    def rows(self, start: int, stop: int, first_key: tuple = (), last_key: tuple = ()) -> "SpilledRows":
        """Rows ``[start, stop)`` of these rows, as a reference of their own."""
        if not 0 <= start <= stop <= self.length:
            raise ValueError(f"rows [{start}, {stop}) are not within the {self.length} rows of {self.path}")
        return SpilledRows(self.path, self.batch, self.offset + start, stop - start, first_key, last_key)


def as_table(part, columns: Sequence[str] | None = None) -> pa.Table:
    """An Arrow table, or the rows a :class:`SpilledRows` names, as a table."""
    if isinstance(part, SpilledRows):
        return part.load(columns)
    return part.select(list(columns)) if columns else part


def key_of(table: pa.Table, row: int, keys: Sequence[str]) -> tuple:
    return tuple(table.column(k)[row].as_py() for k in keys)


def spill_tables(tables: Sequence[pa.Table], path: str, keys: Sequence[str] = ()) -> list[SpilledRows]:
    """Write ``tables`` (one schema) to the IPC file ``path``, one record batch each, and return a
    reference to each one's rows. Tables must not be empty: a record batch of no rows names nothing.
    """
    tables = list(tables)
    if not tables:
        return []
    if any(t.num_rows == 0 for t in tables):
        raise ValueError(f"an empty table cannot be spilled to {path}: leave it out")
    schema = tables[0].schema
    with written_atomically(path) as tmp, pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for table in tables:
            writer.write_batch(table.cast(schema).combine_chunks().to_batches()[0])
    return [SpilledRows(path, i, 0, t.num_rows, key_of(t, 0, keys), key_of(t, t.num_rows - 1, keys)) for i, t in enumerate(tables)]


@contextmanager
def written_atomically(path: str) -> Iterator[str]:
    """A temporary name beside ``path`` to write; renamed onto ``path`` when the block ends, removed
    if it fails. A retried bundle writes the same bytes under the same name and never leaves a torn
    file behind."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def scratch_name(text: str) -> str:
    """A short, stable file name part for text of any characters (a document id)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def is_local(path: str | None) -> bool:
    """Whether ``path`` is on this machine's disk (no scheme), where spilling pays."""
    if path is None:
        return False
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.io.localfilesystem import LocalFileSystem

    return isinstance(FileSystems.get_filesystem(path), LocalFileSystem)
