"""Finding a corpus's input files, and where decompress will give each document back.

:func:`discover` expands the inputs (files, folders, globs; local or any Beam filesystem) into input
files (:class:`InputFile`) with their format and their source: the path relative to its input root,
which is what the store keeps and decompress restores to. Inputs whose documents could not be given
back apart are refused before any work (:func:`check_distinct_sources`); a hyperscene store given
as input is refused, one inside an input folder skipped.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import stat
import warnings
from dataclasses import dataclass

from apache_beam.io.filesystems import FileSystems

from hyperscene.transforms.errors import EmptyInput, Errors, InputNotFound, InvalidOption, Warnings

logger = logging.getLogger("hyperscene")

COMPRESSION_SUFFIXES = (".gz", ".zst", ".zstd", ".bz2")
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
                raise EmptyInput(Errors.E102.format(pattern=pattern))
            if not paths:  # not a directory: a single file
                root, paths, explicit = posixpath.dirname(pattern), match_sizes(glob_escape(pattern)), True
        if not paths:
            raise InputNotFound(Errors.E101.format(pattern=pattern))
        stores = _store_roots(paths)
        if root.rstrip("/") in stores:
            raise InvalidOption(Errors.E104.format(pattern=pattern))
        for store in stores:
            logger.warning(Warnings.W004.format(store=store))
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
        raise EmptyInput(Errors.E103.format(patterns=", ".join(patterns)))
    return sorted(found.values(), key=lambda f: f.source)


_STORE_MANIFEST = re.compile(r"^(.*)/v\d{6}/manifest\.json$")


def _store_roots(paths) -> list[str]:
    """Folders among these paths that are hyperscene stores: they hold a published version's manifest."""
    return sorted({m.group(1) for p in paths if (m := _STORE_MANIFEST.match(p.replace("\\", "/")))})


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


def not_regular(mode: int) -> str | None:
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
            raise InvalidOption(Errors.E105.format(collision=collision, hint=hint))

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
