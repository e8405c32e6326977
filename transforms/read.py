"""Read documents: text files (one document each), JSONL and Parquet (one per record), from the
input files :mod:`~hyperscene.transforms.inputs` found.

Every path goes through Beam's FileSystems, so local paths, ``gs://`` and ``s3://`` all work, and
``.gz``/``.zst``/``.bz2`` text inputs are decompressed by extension, strictly (a truncated or corrupt
stream fails instead of giving a shorter text). A record that cannot be read as a document is not
dropped: it becomes a dead-letter row with its source, position, reason and raw bytes (an unreadable
file's bytes as stored).

Decoding policy: input must be UTF-8. It is decoded strictly, so ``text.encode("utf-8")`` gives the
original bytes back exactly (a byte-order mark is kept as U+FEFF); anything else is dead-lettered.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import lzma
import os
import zlib
from collections import defaultdict
from typing import Iterator

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from hyperscene.transforms.dedup import bucket_count
from hyperscene.transforms.inputs import InputFile, not_regular, strip_compression
from hyperscene.transforms.outputs import SplitOutputs
from hyperscene.transforms.progress import Progress
from hyperscene.transforms.spill import NO_SPILL, SpillPolicy, document_text


def _document(doc_id: str, f: InputFile, record: int | None, text: str, raw: bytes, metadata: str | None = None) -> dict:
    return {
        "doc_id": doc_id,
        "source": f.source,
        "path": f.path,
        "format": f.format,
        "record": record,
        "text": text,
        "bytes": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "metadata": metadata,
    }


def dead_letter(source: str, record: int | None, reason: str, raw: bytes | None) -> dict:
    return {"source": source, "record": record, "reason": reason, "raw": raw}


def _zstd_decompressor():
    import zstandard

    return zstandard.ZstdDecompressor(max_window_size=2**31).decompressobj()  # Beam's window limit


# Beam's compression types (chosen by suffix, as FileSystems.open does) and a fresh decompressor for each.
_DECOMPRESSORS = {
    CompressionTypes.GZIP: lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
    CompressionTypes.DEFLATE: zlib.decompressobj,
    CompressionTypes.BZIP2: bz2.BZ2Decompressor,
    CompressionTypes.LZMA: lzma.LZMADecompressor,
    CompressionTypes.ZSTD: _zstd_decompressor,
}


def decompress_strictly(path: str, raw: bytes) -> bytes:
    """A file's bytes decompressed by its suffix, failing on a stream that stops early.

    Beam's own reader returns whatever a truncated .gz, .bz2, .zst or .xz held before the cut (or
    nothing), so a cut file would become a shorter document without a word. Concatenated streams
    (gzip members, bzip2 or zstd frames) are read one after another, as Beam reads them.
    """
    new = _DECOMPRESSORS.get(CompressionTypes.detect_compression_type(path))
    if new is None:
        return raw
    pieces, rest = [], raw
    while rest:
        d = new()
        pieces.append(d.decompress(rest))
        if not d.eof:
            raise ValueError("compressed stream ends before its end marker (truncated file?)")
        rest = d.unused_data
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _decode(raw: bytes) -> tuple[str | None, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as e:
        return None, f"invalid UTF-8 at byte {e.start}"


def read_text_file(f: InputFile, raw: bytes) -> Iterator[tuple[str, dict]]:
    text, error = _decode(raw)
    if error:
        yield "dead_letters", dead_letter(f.source, None, error, raw)
    else:
        yield "documents", _document(strip_compression(f.source), f, None, text, raw)


def _record(f: InputFile, index: int, obj, text_field: str, id_field: str | None, raw: bytes | None):
    """One JSONL or Parquet record -> a document, keeping its other fields as JSON metadata."""
    if not isinstance(obj, dict) or text_field not in obj:
        return "dead_letters", dead_letter(f.source, index, f"no {text_field!r} field", raw)
    text = obj[text_field]
    if not isinstance(text, str):
        kind = "null" if text is None else type(text).__name__
        return "dead_letters", dead_letter(f.source, index, f"{text_field!r} is {kind}, not text", raw)
    doc_id = obj.get(id_field) if id_field else None
    doc_id = str(doc_id) if doc_id is not None else f"{f.source}:{index}"
    metadata = {k: v for k, v in obj.items() if k != text_field}
    try:
        encoded = text.encode("utf-8")
        doc_id.encode("utf-8")
        metadata_json = json.dumps(metadata, ensure_ascii=False, default=str) if metadata else None
        if metadata_json:
            metadata_json.encode("utf-8")
    except UnicodeEncodeError as e:  # JSON "\ud800" escapes decode to lone surrogates
        return "dead_letters", dead_letter(f.source, index, f"lone surrogate at character {e.start}: not UTF-8 encodable", raw)
    return "documents", _document(doc_id, f, index, text, encoded, metadata_json)


def read_jsonl(f: InputFile, raw: bytes, text_field: str, id_field: str | None):
    """One document per line; lines are numbered from 1, blank lines are not records."""
    for line_no, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        text, error = _decode(line)
        if error:
            yield "dead_letters", dead_letter(f.source, line_no, error, line)
            continue
        if line_no == 1:
            text = text.removeprefix("\ufeff")
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            yield "dead_letters", dead_letter(f.source, line_no, f"malformed JSON: {e.msg}", line)
            continue
        yield _record(f, line_no, obj, text_field, id_field, line)


def read_parquet(f: InputFile, raw: bytes, text_field: str, id_field: str | None):
    """One document per row, numbered from 0. A file without the text column is one dead letter
    holding the whole file; a row's dead letter has no raw bytes (a row has none of its own)."""
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(raw))
    if text_field not in table.column_names:
        columns = ", ".join(table.column_names)
        yield "dead_letters", dead_letter(f.source, None, f"no {text_field!r} column (has: {columns})", raw)
        return
    for row, obj in enumerate(table.to_pylist()):
        yield _record(f, row, obj, text_field, id_field, None)


# Documents travel from the reader to segmentation in batches, keyed by a shard of their id: each
# element crossing a step or a shuffle costs about as much as segmenting a short document does
# (README, "Runners, the pipeline's own cost, and many short documents").
BATCH_DOCUMENTS = 1_000
# A reader holds at most this many documents before it sends every shard's batch on (a shard's
# batch goes on as soon as it is full), so its memory stays bounded however many shards there are.
HELD_DOCUMENTS = 20_000
MAX_ID_SHARDS = 256


def id_shard(doc_id: str, shards: int) -> int:
    """The shard in which a document id's repeats are found: a function of the id alone."""
    return zlib.crc32(doc_id.encode("utf-8")) % shards


class _ReadDoFn(beam.DoFn):
    def __init__(self, text_field: str, id_field: str | None, spill: SpillPolicy, shards: int):
        self._text_field = text_field
        self._id_field = id_field
        self._spill = spill
        self._shards = shards

    def setup(self):
        self._progress = Progress("read", "files")

    def start_bundle(self):
        self._held: dict[int, list[dict]] = defaultdict(list)
        self._n_held = 0

    def process(self, f: InputFile):
        with self._progress.timed(1):
            records = read_input_file(f, self._text_field, self._id_field)
        for tag, record in records:
            if tag != "documents":
                yield beam.pvalue.TaggedOutput(tag, record)
                continue
            shard = id_shard(record["doc_id"], self._shards)
            held = self._held[shard]
            held.append(self._spill.hold_text(record))
            self._n_held += 1
            if len(held) >= BATCH_DOCUMENTS:
                self._n_held -= len(held)
                yield shard, self._held.pop(shard)
            elif self._n_held >= HELD_DOCUMENTS:
                yield from self._send_all()

    def finish_bundle(self):
        from apache_beam.transforms.window import GlobalWindow
        from apache_beam.utils.windowed_value import WindowedValue

        for batch in self._send_all():
            yield WindowedValue(batch, 0, [GlobalWindow()])

    def _send_all(self):
        held, self._held, self._n_held = self._held, defaultdict(list), 0
        yield from sorted(held.items())


def read_input_file(f: InputFile, text_field: str = "text", id_field: str | None = None) -> list[tuple[str, dict]]:
    """One input file -> ("documents", document) and ("dead_letters", dead letter) records."""
    stored = None
    try:
        stored = _read_regular(f.path)
        if f.problem is not None:
            return [("dead_letters", dead_letter(f.source, None, f.problem, stored))]
        raw = decompress_strictly(f.path, stored)  # .gz, .zst, .bz2, ... by suffix
        if f.format == "parquet":
            return list(read_parquet(f, raw, text_field, id_field))
        if f.format == "jsonl":
            return list(read_jsonl(f, raw, text_field, id_field))
        return list(read_text_file(f, raw))
    except NotRegularFile as e:
        return [("dead_letters", dead_letter(f.source, None, str(e), None))]
    except Exception as e:  # unreadable or corrupt: one dead letter for the whole file, as stored
        return [("dead_letters", dead_letter(f.source, None, f"unreadable: {e}", stored))]


class NotRegularFile(OSError):
    pass


def _read_regular(path: str) -> bytes:
    """A file's bytes; on the local disk only a regular file's, checked on the open file itself (a
    path that became a FIFO after discovery must not block the read)."""
    if "://" in path:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as h:
            return h.read()
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as h:
        problem = not_regular(os.fstat(fd).st_mode)
        if problem is not None:
            raise NotRegularFile(problem)
        return h.read()


def duplicate_id_reason(doc_id: str, kept_path: str) -> str:
    return f"duplicate document id {doc_id!r} (kept the one in {kept_path})"


def _input_order(doc: dict):
    return doc["path"], doc["record"] if doc["record"] is not None else -1


def first_of_each_id(item, batch_documents: int = BATCH_DOCUMENTS):
    """(shard, batches of documents) -> the shard's documents, one per id, in batches in id order.

    Two documents with one id would interleave in the store: the first by path and record is kept,
    the others are dead-lettered."""
    _, batches = item
    chosen: dict[str, dict] = {}
    repeated: dict[str, list[dict]] = {}
    for docs in batches:
        for doc in docs:
            doc_id = doc["doc_id"]
            if doc_id not in chosen:
                chosen[doc_id] = doc
            else:
                repeated.setdefault(doc_id, [chosen[doc_id]]).append(doc)
    for doc_id, docs in sorted(repeated.items()):
        first, *others = sorted(docs, key=_input_order)
        chosen[doc_id] = first
        for dup in others:
            reason = duplicate_id_reason(doc_id, first["path"])
            yield beam.pvalue.TaggedOutput(
                "dead_letters", dead_letter(dup["source"], dup["record"], reason, document_text(dup).encode("utf-8")))
    kept = [chosen[doc_id] for doc_id in sorted(chosen)]
    for start in range(0, len(kept), batch_documents):
        yield kept[start : start + batch_documents]


class ReadDocuments(beam.PTransform):
    """Input files -> batches of documents (main output: lists of document records, each id once)
    and dead letters (tag ``dead_letters``).

    ``spill`` (the run's :class:`~hyperscene.transforms.spill.SpillPolicy`) may move a long
    document's text to a scratch file, its record carrying the path (``text_file``), so the shuffle
    that finds repeated ids does not hold it; read it with :func:`spill.document_text`.
    """

    def __init__(self, files: list[InputFile], text_field: str = "text", id_field: str | None = None,
                 spill: SpillPolicy = NO_SPILL):
        super().__init__()
        self._files = files
        # as many shards as buckets, up to MAX_ID_SHARDS: a function of the input alone
        shards = min(MAX_ID_SHARDS, bucket_count(sum(f.size for f in files)))
        self._fn = _ReadDoFn(text_field, id_field, spill, shards)

    def expand(self, pbegin):
        read = (
            pbegin
            | "Files" >> beam.Create(self._files)
            | "Spread" >> beam.Reshuffle()
            | "Read" >> SplitOutputs(self._fn, tags=("dead_letters",), main="documents")
        )
        unique = (
            read.documents
            | "Group" >> beam.GroupByKey()
            | "FirstOfEachId" >> SplitOutputs(first_of_each_id, tags=("dead_letters",), main="documents")
        )
        dead = (read.dead_letters, unique.dead_letters) | "DeadLetters" >> beam.Flatten()
        return {"documents": unique.documents, "dead_letters": dead}
