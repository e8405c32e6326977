"""Read documents: text files (one document each), JSONL and Parquet (one per record).

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
import logging
import lzma
import os
import posixpath
import re
import stat
import warnings
import zlib
from dataclasses import dataclass
from typing import Iterator

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from hyperscene.transforms.errors import EmptyInput, InputNotFound, InvalidOption
from hyperscene.transforms.progress import Progress
from hyperscene.transforms.spill import is_local, scratch_name, written_atomically

logger = logging.getLogger("hyperscene")

COMPRESSION_SUFFIXES = (".gz", ".zst", ".zstd", ".bz2")
# A document this long (in input bytes) crosses the read's shuffle as a scratch file (ReadDocuments).
SPILL_TEXT_BYTES = 16 * 2**20
FORMAT_BY_EXTENSION = {
    ".txt": "text",
    ".text": "text",
    ".md": "text",
    ".markdown": "text",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}
FORMATS = ("auto", "text", "jsonl", "parquet")
_GLOB = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class InputFile:
    path: str  # as FileSystems sees it
    source: str  # relative to the input root given by the user
    format: str  # text | jsonl | parquet
    size: int = 0  # bytes on disk (compressed, if the file is)
    # Why the file cannot be read as a document (its name is not UTF-8): it becomes a dead letter
    # with this reason instead. A file that is no regular file is found when it is opened.
    problem: str | None = None


def strip_compression(name: str) -> str:
    for suffix in COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def detect_format(name: str) -> str | None:
    return FORMAT_BY_EXTENSION.get(posixpath.splitext(strip_compression(name).lower())[1])


def _comparable(path: str) -> str:
    """Local paths made absolute, so "store" and "/home/u/store" compare equal; URLs as they are."""
    return path if "://" in path else os.path.abspath(path)


def _relative(path: str, root: str) -> str:
    root = root.rstrip("/")
    return path[len(root) + 1 :] if root and path.startswith(root + "/") else posixpath.basename(path)


def discover(patterns: list[str], input_format: str = "auto", exclude: tuple[str, ...] = ()) -> list[InputFile]:
    """Expand files, directories (recursively) and glob patterns into input files, sorted.

    In directories and globs, hidden files and folders and files of unknown extension are skipped
    (and counted in the log); a file named explicitly is read even with an unknown extension, as
    text. Files under an ``exclude`` folder (the store being written) are never read. A path that
    exists is taken literally even if it holds glob characters.
    """
    found: dict[str, InputFile] = {}
    skipped = 0
    excluded = [_comparable(e).rstrip("/") + "/" for e in exclude]
    for pattern in patterns:
        pattern = pattern.rstrip("/") or "/"
        if _GLOB.search(pattern) and not _exists(pattern):
            root = pattern[: _GLOB.search(pattern).start()].rsplit("/", 1)[0]
            paths, explicit = match_sizes(pattern), False
        else:
            root, paths, explicit = pattern, match_sizes(glob_escape(pattern) + "/**"), False
            if not paths and os.path.isdir(pattern):
                raise EmptyInput(f"directory {pattern!r} holds no files")
            if not paths:  # not a directory: a single file
                root, paths, explicit = posixpath.dirname(pattern), match_sizes(glob_escape(pattern)), True
        if not paths:
            raise InputNotFound(f"no input matches {pattern!r}: check the path, or quote the glob")
        stores = _store_roots(paths)
        if root.rstrip("/") in stores:
            raise InvalidOption(f"{pattern!r} is a hyperscene store, not a corpus: its Parquet tables would be read as "
                                f"documents. Give the corpus it was made from, or restore that with: hyperscene decompress "
                                f"{pattern} --out DIR")
        for store in stores:
            logger.warning("[W004] skipping %s inside the input: it is a hyperscene store (its tables are no corpus)", store)
        for path, size in paths.items():
            if any(path.startswith(store + "/") for store in stores):
                continue
            name = posixpath.basename(path)
            fmt = input_format if input_format != "auto" else detect_format(name)
            hidden = any(part.startswith(".") for part in _relative(path, root).split("/"))
            if any(_comparable(path).startswith(e) for e in excluded) or (not explicit and (hidden or fmt is None)):
                skipped += 1
                continue
            if path not in found:
                found[path] = _input_file(path, _relative(path, root), fmt or "text", size)
    if skipped:
        logger.info("skipped %d hidden or unrecognised files (set --input-format to read them)", skipped)
    check_distinct_sources(list(found.values()))
    if not found:
        raise EmptyInput(
            f"no readable input files in {', '.join(patterns)}: expected .txt, .md, .jsonl or "
            ".parquet files (optionally .gz or .zst); set --input-format to read other names"
        )
    return sorted(found.values(), key=lambda f: f.source)


_STORE_MANIFEST = re.compile(r"^(.*)/v\d{6}/manifest\.json$")


def _store_roots(paths) -> list[str]:
    """Folders among these paths that are hyperscene stores: they hold a published version's manifest."""
    return sorted({m.group(1) for p in paths if (m := _STORE_MANIFEST.match(p.replace("\\", "/")))})


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


def _not_regular(mode: int) -> str | None:
    """Why a file of this mode is not read (a FIFO would block forever, /dev/zero never ends), or None."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return f"not a regular file ({kind}): only regular files are read"


def _input_file(path: str, source: str, fmt: str, size: int) -> InputFile:
    """An input file, with the reason it cannot be read when its name is not UTF-8 (the name's bytes,
    shown escaped as its source, stay in the reason)."""
    try:
        source.encode("utf-8")
    except UnicodeEncodeError:  # POSIX names are bytes; Python keeps undecodable ones as surrogates
        raw_name = os.fsencode(source)
        problem = f"file name is not UTF-8 (its bytes: {raw_name!r}): rename the file to read it"
        return InputFile(path, raw_name.decode("utf-8", "backslashreplace"), fmt, size, problem)
    return InputFile(path, source, fmt, size)


def records_file(source: str) -> str:
    """Where decompress writes the records (JSONL lines or Parquet rows) of one source file: x.jsonl
    stays x.jsonl; x.jsonl.gz, x.parquet become x.jsonl.gz.jsonl, x.parquet.jsonl."""
    return source if source.endswith(".jsonl") else source + ".jsonl"


def restore_target(fmt: str, source: str, path: str | None = None) -> tuple[str, str]:
    """(path decompress writes, what owns that path) for an input file: a text file's document is
    written at its id, a records file's documents into one JSONL file of its source. ``path``: the
    file's own path, to tell apart two files of one source (from two input roots)."""
    if fmt == "text":
        doc_id = strip_compression(source)
        return doc_id, f"document {doc_id!r}"
    return records_file(source), f"the records of {path or source!r}"


def restore_collision(targets) -> str | None:
    """(path, owner) pairs -> why two owners would be restored to one path, or one path would have to
    be a file and a folder at once; None when every owner has a path of its own."""
    owner_of: dict[str, str] = {}
    for path, owner in targets:
        first = owner_of.setdefault(path, owner)
        if first != owner:
            return f"{first} and {owner} would both be restored to {path!r}"
    for path, owner in owner_of.items():
        folder = posixpath.dirname(path)
        while folder:
            if folder in owner_of:
                return f"{owner_of[folder]} is restored to the file {folder!r}, which {owner} needs as a folder ({path!r})"
            folder = posixpath.dirname(folder)
    return None


def check_distinct_sources(files: list[InputFile], stored=(), hint: str = "") -> None:
    """Refuse inputs whose documents decompress could not give back apart (two roots holding
    ``sub/data.jsonl``; ``x.parquet`` beside ``x.parquet.jsonl``; ``a.txt`` beside ``a.txt/b.txt``):
    their records would be written into one file, interleaved, or over each other. ``stored``:
    (format, source) of the documents a store keeps beside them (a file of a stored source is that
    source again). Two text files with one id are not refused: the second is a dead letter, its
    bytes kept."""
    def check(targets):
        collision = restore_collision(targets)
        if collision:
            raise InvalidOption(f"{collision}: decompress could not give them back apart. Sources are paths relative "
                                f"to each input root, so two roots must not hold the same relative paths: give their "
                                f"common parent folder instead, or rename one of the files{hint}")

    readable = [f for f in files if f.problem is None]
    check([restore_target(f.format, f.source, f.path) for f in readable])
    if stored:
        check([restore_target(fmt, source) for fmt, source in stored] + [restore_target(f.format, f.source) for f in readable])


def glob_escape(path: str) -> str:
    """A path that matches only itself under FileSystems.match, even if it holds * ? or [."""
    return re.sub(r"([*?\[])", r"[\1]", path)


def match_paths(pattern: str) -> list[str]:
    return list(match_sizes(pattern))


def match_sizes(pattern: str) -> dict[str, int]:
    """Matching paths and their sizes in bytes."""
    try:
        with warnings.catch_warnings():  # "[[]" escapes trip Python's nested-set warning
            warnings.simplefilter("ignore", FutureWarning)
            result = FileSystems.match([pattern])[0]
    except Exception:  # a missing root raises in some filesystems and returns nothing in others
        return {}
    return {m.path: m.size_in_bytes for m in result.metadata_list}


def _exists(path: str) -> bool:
    try:
        return FileSystems.exists(path)
    except Exception:
        return False


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


class _ReadDoFn(beam.DoFn):
    def __init__(self, text_field: str, id_field: str | None, spill_to: str | None = None):
        self._text_field = text_field
        self._id_field = id_field
        self._spill_to = spill_to

    def setup(self):
        self._progress = Progress("read", "files")

    def process(self, f: InputFile):
        with self._progress.timed(1):
            records = read_input_file(f, self._text_field, self._id_field)
        for tag, record in records:
            if tag != "documents":
                yield beam.pvalue.TaggedOutput(tag, record)
            elif self._spill_to is not None and record["bytes"] >= SPILL_TEXT_BYTES:
                yield spill_text(record, self._spill_to)
            else:
                yield record


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
        problem = _not_regular(os.fstat(fd).st_mode)
        if problem is not None:
            raise NotRegularFile(problem)
        return h.read()


def duplicate_id_reason(doc_id: str, kept_path: str) -> str:
    return f"duplicate document id {doc_id!r} (kept the one in {kept_path})"


def _first_of_each_id(item):
    """Two documents with one id would interleave in the store: keep the first, dead-letter the rest."""
    doc_id, docs = item
    docs = sorted(docs, key=lambda d: (d["path"], d["record"] if d["record"] is not None else -1))
    yield docs[0]
    for dup in docs[1:]:
        reason = duplicate_id_reason(doc_id, docs[0]["path"])
        yield beam.pvalue.TaggedOutput(
            "dead_letters", dead_letter(dup["source"], dup["record"], reason, document_text(dup).encode("utf-8"))
        )


class ReadDocuments(beam.PTransform):
    """Input files -> documents (main output) and dead letters (tag ``dead_letters``).

    With ``spill_to`` (a scratch folder on the local disk), the text of a document of
    ``SPILL_TEXT_BYTES`` or more goes to a file there and the record carries its path
    (``text_file``), so the shuffle that finds repeated ids does not hold it (``transforms/spill.py``
    says why); read it with :func:`document_text`.
    """

    def __init__(self, files: list[InputFile], text_field: str = "text", id_field: str | None = None,
                 spill_to: str | None = None):
        super().__init__()
        self._files = files
        self._fn = _ReadDoFn(text_field, id_field, spill_to if is_local(spill_to) else None)

    def expand(self, pbegin):
        read = (
            pbegin
            | "Files" >> beam.Create(self._files)
            | "Spread" >> beam.Reshuffle()
            | "Read" >> beam.ParDo(self._fn).with_outputs("dead_letters", main="documents")
        )
        unique = (
            read.documents
            | "ById" >> beam.Map(lambda d: (d["doc_id"], d))
            | "Group" >> beam.GroupByKey()
            | "FirstOfEachId" >> beam.FlatMap(_first_of_each_id).with_outputs("dead_letters", main="documents")
        )
        dead = (read.dead_letters, unique.dead_letters) | "DeadLetters" >> beam.Flatten()
        return {"documents": unique.documents, "dead_letters": dead}
