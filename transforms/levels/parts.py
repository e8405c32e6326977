"""A bucket's occurrences split by document, and gathered again per group of short documents, per
document or per window.

A :class:`DocumentPart` is one bucket's rows of a group of short documents, of one document, or of
one window of a long one, sorted by (doc_id, position), with their token counts and vectors: what
the gathers shuffle.
Its rows are a :class:`~hyperscene.transforms.spill.Rows` handle (values, or a long document's rows
in a scratch file, as the run's spill policy decides), and its vectors are either values or rows of
the bucket's spilled vector file. Vectors cross the gather rounded to float16 either way, so every
runner builds the same scenes (see ``transforms/levels``).
"""

from __future__ import annotations

import os
import zlib
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
    """One bucket's occurrences of a group of short documents, of one document, or of one window of it.

    ``rows`` hold the assigned occurrence columns and ``token_count``, sorted by (doc_id, position),
    and ``vector_row`` (their row in ``vector_file``) when the vectors are in the bucket's spilled
    file; otherwise ``vectors`` holds them, float16, one per row in order.
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


GROUPED_BELOW = 1_000  # documents of fewer units are gathered in groups (see bucket_parts)
BUCKETS_PER_GROUP = 8


def group_count(n_buckets: int) -> int:
    """Groups of short documents for a run of ``n_buckets`` buckets: one per ``BUCKETS_PER_GROUP``.

    Every bucket sends a part to every group, so parts number buckets x groups: with a group per
    bucket, a corpus of a million short records (about 1,000 buckets) would move a million parts
    of a few rows each, as many as it has documents. Eight buckets' worth of short documents (about
    2 MB of text) is a group's memory."""
    return max(1, -(-n_buckets // BUCKETS_PER_GROUP))


def document_lengths(bucket: UnitBucket, at_least: int) -> Iterator[tuple[str, int]]:
    """(doc_id, length as this bucket shows it: its last position here + 1) of the documents with a
    unit at position ``at_least - 1`` or beyond in this bucket. The maximum over buckets is the
    length of every document of ``at_least`` units or more, and no shorter document appears, so the
    lengths of a corpus of short documents cost nothing to gather."""
    occurrences = bucket.occurrences.select(["doc_id", "position"])
    occurrences = occurrences.filter(pc.greater_equal(occurrences.column("position"), max(at_least - 1, 0)))
    if occurrences.num_rows:
        last = occurrences.group_by("doc_id").aggregate([("position", "max")])
        for doc_id, position in zip(last.column("doc_id").to_pylist(), last.column("position_max").to_pylist()):
            yield doc_id, position + 1


def sort_ranks(doc_ids: list[str]) -> np.ndarray:
    """Each id's place in sorted order: parts and gathers sort rows by (doc_id, position) with it."""
    rank = np.empty(len(doc_ids), np.int64)
    rank[np.argsort(np.array(doc_ids, dtype=object), kind="stable")] = np.arange(len(doc_ids))
    return rank


def group_of(doc_id: str, groups: int) -> int:
    """The group of a short document: a hash of its id, the same on every runner and in every run."""
    return zlib.crc32(doc_id.encode("utf-8")) % groups


def bucket_parts(bucket: UnitBucket, spill: SpillPolicy, lengths: dict | None = None, size: int = WINDOW_UNITS,
                 groups: int = 0) -> Iterator[tuple[int | tuple[str, int, int], DocumentPart]]:
    """A bucket's occurrences as :class:`DocumentPart` handles, keyed for their gather.

    ``lengths`` (doc_id -> units) names the documents gathered alone: (doc_id, 0, 1), or one part
    per window, (doc_id, window, windows), for those of ``2 * size`` units or more. With ``groups``,
    every other document is gathered with others: one part per group (an int below ``groups``,
    :func:`group_of`) holds the bucket's rows of all its documents, so a corpus of millions of short
    documents moves as many parts as it has buckets and groups, not documents. Without ``groups``,
    every document is gathered alone.

    A part's rows are sorted by (doc_id, position). Where the run's policy spills and the bucket's
    vectors are in a local file, parts of ``spill.part_rows`` rows or more go to one scratch file
    per bucket; smaller ones are not worth a file read each.
    """
    bucket = for_row_access(bucket)
    lengths = lengths or {}
    vector_file = bucket.vector_file if bucket.vectors is None else None
    # one chunk: a bucket of many short documents arrives as thousands of chunks, and a take from
    # those costs about 2 ms a document against 0.02 ms from one chunk
    occurrences = bucket.occurrences.select(ASSIGNED_OCCURRENCE_COLUMNS).combine_chunks()
    row = pc.index_in(occurrences.column("unit_id"), value_set=bucket.units.column("unit_id")).to_numpy()
    tokens = bucket.units.column("token_count").to_numpy()[row]
    docs = pc.dictionary_encode(occurrences.column("doc_id")).combine_chunks()
    names = docs.dictionary.to_pylist()
    rank = sort_ranks(names)
    # each document's part: its group, or a part of its own after the groups
    part_of = np.array([group_of(d, groups) if groups and d not in lengths else groups + r for d, r in zip(names, rank)],
                       np.int64)
    indices = docs.indices.to_numpy()
    positions = occurrences.column("position").to_numpy()
    order = np.lexsort((positions, rank[indices], part_of[indices]))
    codes = part_of[indices][order]
    present, starts = np.unique(codes, return_index=True)
    keyed, tables = [], []
    for code, start, end in zip(present, starts, [*starts[1:], len(order)]):
        rows = order[start:end]
        table = occurrences.take(rows).append_column("token_count", pa.array(tokens[rows], pa.int64()))
        if bucket.vectors is None:
            table, vectors = table.append_column("vector_row", pa.array(row[rows], pa.int64())), None
        else:
            vectors = bucket.vectors[row[rows]].astype(np.float16)
        keyed.append((int(code) if code < groups else names[indices[rows[0]]], vectors))
        tables.append(table)
    long = [i for i, t in enumerate(tables) if vector_file is not None and t.num_rows >= spill.part_rows]
    name = os.path.splitext(os.path.basename(vector_file or ""))[0]  # unique per bucket, also in a refresh
    held = dict(zip(long, spill.hold([tables[i] for i in long], f"parts-{name}.arrow", 1, PART_KEYS))) if long else {}
    for i, ((key, vectors), table) in enumerate(zip(keyed, tables)):
        rows = held.get(i) or TableRows(table, key_of(table, 0, PART_KEYS), key_of(table, table.num_rows - 1, PART_KEYS))
        part = DocumentPart(rows, vector_file, vectors)
        if isinstance(key, int):
            yield key, part
        else:
            yield from _by_window(key, part, lengths.get(key), size)


def _by_window(doc_id: str, part: DocumentPart, n: int | None, size: int):
    """One document's part keyed (doc_id, 0, 1), or split by window if it has ``2 * size`` units or more."""
    if n is None or n < 2 * size:
        yield (doc_id, 0, 1), part
        return
    count = len(windows(n, size))
    positions = part.rows.load(["position"]).column("position").to_numpy()
    window = window_of(positions, n, size)
    present, starts = np.unique(window, return_index=True)  # rows are sorted by position: each window's are a span
    for w, start, stop in zip(present, starts, [*starts[1:], len(window)]):
        yield (doc_id, int(w), count), part.window(int(start), int(stop), positions)


def gather_rows(parts) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """Parts of one document (or of one window of it, or of one group of documents), from every
    bucket: (occurrences, token counts, float32 vectors), sorted by (doc_id, position)."""
    loaded = [p.load() for p in parts]
    occurrences = pa.concat_tables([p[0] for p in loaded])
    docs = pc.dictionary_encode(occurrences.column("doc_id")).combine_chunks()
    rank = sort_ranks(docs.dictionary.to_pylist())
    order = np.lexsort((occurrences.column("position").to_numpy(), rank[docs.indices.to_numpy()]))
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
