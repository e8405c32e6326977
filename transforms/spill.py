"""Rows named instead of copied: what crosses the local runner's stage boundaries as scratch files.

The local runner holds every PCollection that crosses a stage boundary in memory, and a second
consumer of one gets a copy. A document of hundreds of MB has millions of occurrence rows; carried
as values they would sit in several such buffers at once. So where a long document's rows cross a
shuffle (exact dedup, the gathers by document and by window, the store writer), they go to an Arrow
IPC file under the run's scratch folder and a :class:`SpilledRows` reference travels instead, as
``embed.VectorRows`` does for vectors; a long document's text crosses the read's shuffle as a plain
file the same way (:meth:`SpillPolicy.hold_text`).

Stages never decide this themselves. The pipeline makes one :class:`SpillPolicy` for the run and
gives it to every stage that regroups rows; a stage hands its tables to the policy and passes on
what comes back, a :class:`Rows` handle either way: :class:`TableRows` (values) or
:class:`SpilledRows` (a reference), both read with ``.load()``. The pure functions the stages wrap
only ever see tables.

Only for the local disk: a distributed runner's shuffle spills to disk by itself, and every worker
reading every other worker's scratch files from object storage would not scale, so the policy of a
run whose scratch is elsewhere never spills. Scratch files are removed with the rest of
``STORE/_work`` when the run ends.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence, Union

import pyarrow as pa


@dataclass(frozen=True)
class SpilledRows:
    """Rows ``[offset, offset + length)`` of record batch ``batch`` in the IPC file ``path``.

    ``first_key`` and ``last_key`` are the values of the sort columns the rows were spilled with, in
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


@dataclass(frozen=True)
class TableRows:
    """Rows carried as values: the same handle as :class:`SpilledRows`, for rows not worth a file.
    ``first_key`` and ``last_key`` as there, or empty where the rows are not sorted."""

    table: pa.Table
    first_key: tuple = ()
    last_key: tuple = ()

    @property
    def num_rows(self) -> int:
        return self.table.num_rows

    def load(self, columns: Sequence[str] | None = None) -> pa.Table:
        return self.table.select(list(columns)) if columns else self.table

    def rows(self, start: int, stop: int, first_key: tuple = (), last_key: tuple = ()) -> "TableRows":
        if not 0 <= start <= stop <= self.num_rows:
            raise ValueError(f"rows [{start}, {stop}) are not within {self.num_rows} rows")
        return TableRows(self.table.slice(start, stop - start), first_key, last_key)


Rows = Union[TableRows, SpilledRows]


def as_rows(part: "pa.Table | Rows") -> Rows:
    """A stage's output for the store writer as a :class:`Rows` handle: a table is wrapped, a handle kept."""
    return TableRows(part) if isinstance(part, pa.Table) else part


def key_of(table: pa.Table, row: int, keys: Sequence[str]) -> tuple:
    return tuple(table.column(k)[row].as_py() for k in keys)


@dataclass(frozen=True)
class SpillPolicy:
    """Which rows of a run cross its stage boundaries as scratch files, and where: made once by the
    pipeline (:meth:`for_scratch`), asked by the stages. ``folder`` None spills nothing.

    The thresholds say when a file pays: below them, one more file read per element costs more than
    carrying the rows. Texts of ``text_bytes`` or more (a long document's); one document's slice of
    occurrences of ``slice_rows`` rows or more, split by bucket for exact dedup; one bucket's rows of
    one document of ``part_rows`` or more, gathered by document or window for scenes (a long
    document's parts are small per bucket, so this one is lower). A long document's windows always
    go to files: each is already thousands of rows.
    """

    folder: str | None = None
    text_bytes: int = 16 * 2**20
    slice_rows: int = 10_000
    part_rows: int = 256

    @classmethod
    def for_scratch(cls, folder: str | None, **thresholds) -> "SpillPolicy":
        """The policy of a run whose scratch folder is ``folder``: it spills only on the local disk."""
        return cls(folder if is_local(folder) else None, **thresholds)

    def hold_text(self, doc: dict) -> dict:
        """A read document, its text moved to a file if it is long (read it with :func:`document_text`)."""
        if self.folder is None or doc["bytes"] < self.text_bytes:
            return doc
        return spill_text(doc, self.folder)

    def hold(self, tables: Sequence[pa.Table], name: str, min_rows: int, keys: Sequence[str] = ()) -> list[Rows]:
        """A handle for each of ``tables`` (one schema, none empty): all spilled to the file ``name``
        in the scratch folder if they hold ``min_rows`` rows together, else values. ``keys`` are the
        sort columns the tables are sorted by, if any (see :class:`SpilledRows`)."""
        tables = list(tables)
        if self.folder is None or sum(t.num_rows for t in tables) < min_rows:
            return [TableRows(t, *((key_of(t, 0, keys), key_of(t, t.num_rows - 1, keys)) if keys and t.num_rows else ()))
                    for t in tables]
        return spill_tables(tables, os.path.join(self.folder, name), keys)


NO_SPILL = SpillPolicy()


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


def spill_text(doc: dict, folder: str) -> dict:
    """The document with its text in a file under ``folder`` (local) and only the path kept."""
    path = os.path.join(folder, f"text-{scratch_name(doc['path'] + chr(0) + str(doc['record']))}.txt")
    with written_atomically(path) as tmp, open(tmp, "wb") as f:
        f.write(doc["text"].encode("utf-8"))
    return {**doc, "text": None, "text_file": path}


def document_text(doc: dict) -> str:
    """A document's text, from its record or from the file :func:`spill_text` wrote."""
    if doc.get("text_file") is None:
        return doc["text"]
    with open(doc["text_file"], "rb") as f:
        return f.read().decode("utf-8")


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
