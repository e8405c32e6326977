"""A bucket's occurrences split by document, and gathered again per document or per window.

A :class:`DocumentPart` is one bucket's rows of one document (or of one window of it), sorted by
position, with their token counts and vectors: what the gathers by document and by window shuffle.
Its rows are a :class:`~hyperscene.transforms.spill.Rows` handle (values, or a long document's rows
in a scratch file, as the run's spill policy decides), and its vectors are either values or rows of
the bucket's spilled vector file. Vectors cross the gather rounded to float16 either way, so every
runner builds the same scenes (see ``transforms/levels``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hyperscene.schemas.unit_bucket import ASSIGNED_OCCURRENCE_COLUMNS, UnitBucket
from hyperscene.transforms.embed import VectorRows, for_row_access
from hyperscene.transforms.scenes import WINDOW_UNITS, window_of, windows
from hyperscene.transforms.spill import Rows, SpillPolicy, TableRows, key_of

PART_KEYS = ("doc_id", "position")


@dataclass(frozen=True)
class DocumentPart:
    """One bucket's occurrences of one document, or of one window of it.

    ``rows`` hold ``DOCUMENT_PART_COLUMNS``, sorted by position, and ``vector_row`` (their row in
    ``vector_file``) when the vectors are in the bucket's spilled file; otherwise ``vectors`` holds
    them, float16, one per row in order.
    """

    rows: Rows
    vector_file: str | None = None
    vectors: np.ndarray | None = None

    def load(self) -> tuple[pa.Table, np.ndarray, np.ndarray]:
        """(occurrences, token counts, float32 vectors), in position order."""
        table = self.rows.load()
        if self.vector_file is None:
            vectors = self.vectors.astype(np.float32)
        else:
            vectors = VectorRows(self.vector_file, table.column("vector_row").to_numpy(), "float16").load()
        return table.select(ASSIGNED_OCCURRENCE_COLUMNS), table.column("token_count").to_numpy(), vectors

    def window(self, start: int, stop: int, positions: np.ndarray) -> "DocumentPart":
        """Rows ``[start, stop)`` of this part, as a part of their own (``positions``: all its rows')."""
        doc_id = self.rows.first_key[0]
        rows = self.rows.rows(start, stop, (doc_id, int(positions[start])), (doc_id, int(positions[stop - 1])))
        return DocumentPart(rows, self.vector_file, None if self.vectors is None else self.vectors[start:stop])

    @property
    def length(self) -> int:
        """The document's length, as far as this part shows it (the maximum over its parts is the length)."""
        return int(self.rows.last_key[1]) + 1


def document_parts(bucket: UnitBucket) -> Iterator[tuple[str, pa.Table, np.ndarray | None]]:
    """A bucket's occurrences split by document: (doc_id, rows, vectors), the rows sorted by position
    with ``DOCUMENT_PART_COLUMNS``. The vectors are float16 values, or None where the bucket's vectors
    stay in their local file and the rows name theirs in it (``vector_row``); any others must be
    loaded (:func:`~hyperscene.transforms.embed.for_row_access`)."""
    # one chunk: a bucket of many short documents arrives as thousands of chunks, and a take from
    # those costs about 2 ms a document against 0.02 ms from one chunk
    occurrences = bucket.occurrences.select(ASSIGNED_OCCURRENCE_COLUMNS).combine_chunks()
    row = pc.index_in(occurrences.column("unit_id"), value_set=bucket.units.column("unit_id")).to_numpy()
    tokens = bucket.units.column("token_count").to_numpy()[row]
    docs = pc.dictionary_encode(occurrences.column("doc_id")).combine_chunks()
    positions = occurrences.column("position").to_numpy()
    order = np.lexsort((positions, docs.indices.to_numpy()))
    codes = docs.indices.to_numpy()[order]
    present, starts = np.unique(codes, return_index=True)
    for code, start, end in zip(present, starts, [*starts[1:], len(order)]):
        rows = order[start:end]
        table = occurrences.take(rows).append_column("token_count", pa.array(tokens[rows], pa.int64()))
        if bucket.vectors is None:
            yield docs.dictionary[code].as_py(), table.append_column("vector_row", pa.array(row[rows], pa.int64())), None
        else:
            yield docs.dictionary[code].as_py(), table, bucket.vectors[row[rows]].astype(np.float16)


def bucket_parts(bucket: UnitBucket, spill: SpillPolicy) -> Iterator[tuple[str, DocumentPart]]:
    """:func:`document_parts` as :class:`DocumentPart` handles. Where the run's policy spills and the
    bucket's vectors are in a local file, parts of ``spill.part_rows`` rows or more (a long
    document's) go to one scratch file per bucket; smaller ones are not worth a file read each."""
    bucket = for_row_access(bucket)
    vector_file = bucket.vector_file if bucket.vectors is None else None
    parts = list(document_parts(bucket))
    long = [i for i, (_, table, _) in enumerate(parts) if vector_file is not None and table.num_rows >= spill.part_rows]
    name = os.path.splitext(os.path.basename(vector_file or ""))[0]  # unique per bucket, also in a refresh
    held = dict(zip(long, spill.hold([parts[i][1] for i in long], f"parts-{name}.arrow", 1, PART_KEYS))) if long else {}
    for i, (doc_id, table, vectors) in enumerate(parts):
        rows = held.get(i) or TableRows(table, key_of(table, 0, PART_KEYS), key_of(table, table.num_rows - 1, PART_KEYS))
        yield doc_id, DocumentPart(rows, vector_file, vectors)


def window_parts(item, long_documents: dict, size: int = WINDOW_UNITS):
    """A part keyed by (doc_id, window, windows): split by window for a document in
    ``long_documents`` (doc_id -> units, those of ``2 * size`` units or more), else (doc_id, 0, 1)."""
    doc_id, part = item
    n = long_documents.get(doc_id)
    if n is None:
        yield (doc_id, 0, 1), part
        return
    count = len(windows(n, size))
    positions = part.rows.load(["position"]).column("position").to_numpy()
    window = window_of(positions, n, size)
    present, starts = np.unique(window, return_index=True)  # rows are sorted by position: each window's are a span
    for w, start, stop in zip(present, starts, [*starts[1:], len(window)]):
        yield (doc_id, int(w), count), part.window(int(start), int(stop), positions)


def gather_rows(parts) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """Parts of one document (or of one window of it), from every bucket: (occurrences, token
    counts, float32 vectors), in position order."""
    loaded = [p.load() for p in parts]
    occurrences = pa.concat_tables([p[0] for p in loaded])
    order = np.argsort(occurrences.column("position").to_numpy(), kind="stable")
    tokens = np.concatenate([p[1] for p in loaded])[order]
    vectors = np.concatenate([p[2] for p in loaded])[order]
    return occurrences.take(order), tokens, vectors


def gather_window(parts, first: int) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """One window's parts in position order, checked to hold consecutive units from ``first`` on."""
    occurrences, tokens, vectors = gather_rows(parts)
    positions = occurrences.column("position").to_numpy()
    if not np.array_equal(positions, np.arange(first, first + len(positions))):
        raise ValueError(f"the window from position {first} does not hold consecutive positions")
    return occurrences, tokens, vectors
