"""The logic of ``hyperscene export``, apart from reading the store: which unit occurrences the
distilled text keeps, hyperword token strings and their vocabulary, chat pairs, the export orders,
the raw-text mix, the held-out split, and sharded output files.

Plain Python on rows; :mod:`hyperscene.pipelines.export` reads the store and drives it.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from hyperscene.transforms.errors import Errors, InvalidOption

DEDUP_SCOPES = ("corpus", "document")
ORDERS = ("document", "level", "novelty")
# A record's ``kind`` (text and hyperwords): the distilled text, the document's code sequence, or
# (--mix) the document's exact text.
KIND_DISTILLED, KIND_HYPERWORDS, KIND_RAW = "distilled", "hyperwords", "raw"
FILE_FORMATS = ("parquet", "jsonl")
SPLITS = ("train", "test")
DATA_DIR = "data"
SUMMARY = "export.json"
VOCABULARY = "vocab.jsonl"
CENTROIDS = "centroids.npy"
_TOKEN = re.compile(r"<hw_(\d+)_(\d+)>$")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 2**10, "m": 1e6, "mb": 1e6, "mib": 2**20,
               "g": 1e9, "gb": 1e9, "gib": 2**30, "t": 1e12, "tb": 1e12, "tib": 2**40}
MIN_SHARD_BYTES = 1024


# --- dedup -------------------------------------------------------------------------------------


class Deduper:
    """Decides, occurrence by occurrence in reading order, which to keep in the distilled text.

    Every unit belongs to one group: its canonical unit in the provenance table (near-duplicates),
    or itself when it is not there. Exact duplicates share a unit id, so they share a group too.
    The first occurrence of a group is kept, with its own text (nothing is replaced by the
    canonical text); every later one is dropped. With scope ``document`` what has been seen is
    forgotten at each new document, so only repeats within one document are dropped.

    ``min_tokens``: occurrences of units with fewer tokens are always kept and never mark their
    group as seen (short units such as "Yes." repeat legitimately).
    """

    def __init__(self, canonical_of: dict[str, str], scope: str = "corpus", min_tokens: int = 0):
        if scope not in DEDUP_SCOPES:
            raise InvalidOption(Errors.E280.format(scopes=", ".join(DEDUP_SCOPES), value=scope))
        if min_tokens < 0:
            raise InvalidOption(Errors.E281.format(value=min_tokens))
        self._canonical_of, self._scope, self._min_tokens = canonical_of, scope, min_tokens
        self._seen: set[str] = set()

    def keep(self, unit_ids: Sequence[str], token_counts: Sequence[int] | None = None) -> list[bool]:
        """One document's occurrences in position order -> keep (True) or drop, for each."""
        if self._scope == "document":
            self._seen = set()
        kept = []
        for i, unit_id in enumerate(unit_ids):
            if token_counts is not None and token_counts[i] < self._min_tokens:
                kept.append(True)
                continue
            group = self._canonical_of.get(unit_id, unit_id)
            kept.append(group not in self._seen)
            self._seen.add(group)
        return kept


def distil(prefix: str, pieces: Sequence[str], keep: Sequence[bool]) -> str:
    """A document's distilled text: its prefix, then each kept piece (a unit's text and the separator
    after it). A dropped unit takes its separator with it, so the whitespace around what is left is
    that of the kept units."""
    return prefix + "".join(p for p, k in zip(pieces, keep) if k)


# --- hyperword tokens --------------------------------------------------------------------------


def hw_token(level: int, code: int) -> str:
    """The token string of a code of a level: ``<hw_LEVEL_CODE>``."""
    return f"<hw_{level}_{code}>"


def parse_token(token: str) -> tuple[int, int]:
    """``<hw_L_C>`` -> (L, C); ValueError for anything else."""
    m = _TOKEN.match(token)
    if not m:
        raise ValueError(f"{token!r} is not a hyperword token (<hw_LEVEL_CODE>)")
    return int(m.group(1)), int(m.group(2))


@dataclass
class Vocabulary:
    """The tokens of one export: every code of the chosen level's codebook, with id = code, then the
    other (level, code) keys, with ids after those, in (level, code) order: the codes of lower levels
    that appear because a document has fewer levels than the chosen one (its root stands in) and,
    with --order level, every code of each coarser level's codebook. The ids depend only on the
    store and the options. ``count`` is filled while sequences are written."""

    level: int
    rows: list[dict] = field(default_factory=list)
    _id_of: dict[tuple[int, int], int] = field(default_factory=dict)

    @classmethod
    def build(cls, level: int, codebook: Sequence[dict], extra: Iterable[tuple[int, int]] = (),
              extra_rows: dict[tuple[int, int], dict] | None = None) -> "Vocabulary":
        """``codebook``: rows of the level's codebook (``code``, ``representative_id``,
        ``representative_text``), codes 0..K-1. ``extra``: (level, code) of other levels, with
        their rows in ``extra_rows``."""
        vocab = cls(level)
        codes = sorted(r["code"] for r in codebook)
        if codes != list(range(len(codes))):
            raise ValueError(f"level {level}'s codebook is not the codes 0..{len(codes) - 1}")
        for r in sorted(codebook, key=lambda r: r["code"]):
            vocab._add(level, r)
        for key in sorted(set(extra)):
            if key[0] != level:
                vocab._add(key[0], {**(extra_rows or {}).get(key, {}), "code": key[1]})
        return vocab

    def _add(self, level: int, row: dict) -> None:
        key = (level, int(row["code"]))
        self._id_of[key] = len(self.rows)
        self.rows.append({"token": hw_token(*key), "id": len(self.rows), "level": level, "code": key[1], "count": 0,
                          "representative_id": row.get("representative_id"),
                          "representative_text": row.get("representative_text")})

    def encode(self, level_codes: Sequence[tuple[int, int]]) -> list[int]:
        """(level, code) pairs -> vocabulary ids, counting each use."""
        ids = [self._id_of[key] for key in level_codes]
        for i in ids:
            self.rows[i]["count"] += 1
        return ids

    def __len__(self) -> int:
        return len(self.rows)

    def jsonl(self) -> bytes:
        return "".join(json_line(r) for r in self.rows).encode("utf-8")


def code_string(level_codes: Sequence[tuple[int, int]]) -> str:
    return " ".join(hw_token(level, code) for level, code in level_codes)


# --- chat pairs --------------------------------------------------------------------------------

EXPAND_FROM = ("codes", "gist", "both")
TASKS = ("expand", "compress", "transitions")
DEFAULT_TASKS = "expand,compress"
EXPAND_CODES_PROMPT = "Expand the hyperscene codes into the exact text.\n{codes}"
EXPAND_GIST_PROMPT = "Expand the gist into the exact text.\n{gist}"
COMPRESS_PROMPT = "Compress the text into hyperscene codes at level {level}.\n{text}"
# transitions: a scene's text -> the next scene's codes and gist, and back.
TRANSITION_NEXT_PROMPT = "Give the hyperscene codes and the gist of the scene that comes after this text.\n{text}"
TRANSITION_PREVIOUS_PROMPT = ("Write the exact text that comes before the scene with these hyperscene codes and "
                              "gist.\n{codes_and_gist}")
TRANSITION_TARGET = "{codes}\n{gist}"


def scene_codes(level: int, code: int, child_codes: Sequence[int]) -> list[tuple[int, int]]:
    """A scene's codes as (level, code): its own code, then its children's (hyperwords at level 1)."""
    return [(level, code), *((level - 1, c) for c in child_codes)]


def chat(user: str, assistant: str) -> list[dict]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def pair_messages(level: int, codes: str, text: str, gist: str | None, tasks: Sequence[str],
                  expand_from: str) -> list[tuple[str, list[dict]]]:
    """(task, messages) for one scene: expansion from its codes and/or gist to its text, and
    compression of its text to its codes, as chosen."""
    out = []
    if "expand" in tasks:
        if expand_from in ("codes", "both"):
            out.append(("expand_codes", chat(EXPAND_CODES_PROMPT.format(codes=codes), text)))
        if expand_from in ("gist", "both") and gist:
            out.append(("expand_gist", chat(EXPAND_GIST_PROMPT.format(gist=gist), text)))
    if "compress" in tasks:
        out.append(("compress", chat(COMPRESS_PROMPT.format(level=level, text=text), codes)))
    return out


def transition_messages(text: str, next_codes: str, next_gist: str | None) -> list[tuple[str, list[dict]]]:
    """(task, messages) for a scene and the scene after it at the same level of the same document:
    ``transition_next`` from the scene's exact text to the next scene's codes and gist (one line of
    codes, then the gist; the codes alone when it has no gist), and ``transition_previous`` back."""
    target = TRANSITION_TARGET.format(codes=next_codes, gist=next_gist) if next_gist else next_codes
    return [("transition_next", chat(TRANSITION_NEXT_PROMPT.format(text=text), target)),
            ("transition_previous", chat(TRANSITION_PREVIOUS_PROMPT.format(codes_and_gist=target), text))]


def parse_tasks(value: str) -> tuple[str, ...]:
    tasks = tuple(dict.fromkeys(t.strip() for t in value.split(",") if t.strip()))
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        raise InvalidOption(Errors.E282.format(tasks=", ".join(TASKS), value=value))
    return tasks


# --- orders -----------------------------------------------------------------------------------


def check_order(order: str, fmt: str) -> None:
    """``order`` is one of :data:`ORDERS` and applies to ``fmt``: ``level`` needs levels, which the
    distilled text has not."""
    if order not in ORDERS:
        raise InvalidOption(Errors.E267.format(orders=", ".join(ORDERS), value=order))
    if order == "level" and fmt == "text":
        raise InvalidOption(Errors.E264)


def export_levels(deepest: int, finest: int, order: str) -> list[int]:
    """The levels an export walks, one pass each: with order ``level`` from the deepest (coarsest)
    down to ``finest``; otherwise ``finest`` alone."""
    return list(range(max(deepest, finest), finest - 1, -1)) if order == "level" else [finest]


def pass_scenes(scenes: Sequence[dict], level: int, finest: int) -> list[dict]:
    """A document's scenes (sorted by (level, index)) in the pass of ``level`` of an export whose
    finest level is ``finest``: the scenes of exactly that level; at the finest level a document
    with fewer levels gives its root instead (decompress's rule), so each document is in the finest
    pass and no scene is in two passes."""
    if level == finest:
        depth = max((s["level"] for s in scenes), default=0)
        level = min(level, depth)
    return [s for s in scenes if s["level"] == level]


def with_next(scenes: Sequence[dict]) -> list[tuple[dict, dict | None]]:
    """Each scene of one level of one document, with the scene after it (None for the last)."""
    return list(zip(scenes, [*scenes[1:], None]))


def scene_key(scene: dict) -> tuple:
    """What a scene means, for the novelty order: its level, its code and its children's codes (its
    semantic id within its level)."""
    return (scene["level"], scene["code"], tuple(scene["child_codes"]))


def first_seen(keys: Iterable) -> list[bool]:
    """For keys in reading order: True where a key comes for the first time."""
    seen: set = set()
    out = []
    for key in keys:
        out.append(key not in seen)
        seen.add(key)
    return out


def document_novelty(doc_index, keys, documents: int):
    """The novelty of each of ``documents`` documents (numbered in document order): the share of its
    unit occurrences whose key (a hyperword) comes first in this document, walking the documents in
    that order. Occurrences of a key a document brings are all new there, its own repeats included;
    a document whose every key came earlier has novelty 0, and so has one without occurrences.
    ``doc_index``: per occurrence, its document's number (-1 for none exported); ``keys``: its key.
    Returns float64 numbers in [0, 1]; equal ratios give equal floats, so ties are exact."""
    import numpy as np

    doc_index, keys = np.asarray(doc_index, dtype=np.int64), np.asarray(keys, dtype=np.int64)
    exported = doc_index >= 0
    doc_index, keys = doc_index[exported], keys[exported]
    by_key = np.lexsort((doc_index, keys))  # by key, then by document: each key's first document first
    sorted_keys, sorted_docs = keys[by_key], doc_index[by_key]
    starts = np.ones(len(sorted_keys), dtype=bool)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    first_doc = sorted_docs[starts][np.cumsum(starts) - 1]  # per occurrence: where its key came first
    new = np.bincount(sorted_docs[sorted_docs == first_doc], minlength=documents).astype(np.float64)
    total = np.bincount(doc_index, minlength=documents).astype(np.float64)
    return np.divide(new, total, out=np.zeros(documents), where=total > 0)


def novelty_order(doc_ids: Sequence[str], novelty: Sequence[float]) -> list[int]:
    """Indices of ``doc_ids`` by novelty, highest first, ties by doc_id."""
    return sorted(range(len(doc_ids)), key=lambda i: (-float(novelty[i]), doc_ids[i]))


# --- held-out split and mix --------------------------------------------------------------------

SPLIT_PERSON = b"hs-split"
MIX_PERSON = b"hs-mix"


def doc_fraction(doc_id: str, person: bytes = SPLIT_PERSON) -> float:
    """A stable number in [0, 1) for a document id: its split never depends on the other documents.
    Another ``person`` gives an independent number (the mix's, :data:`MIX_PERSON`)."""
    digest = hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8, person=person).digest()
    return int.from_bytes(digest, "big") / 2**64


def check_mix(ratio: float, fmt: str) -> None:
    """``ratio`` is in [0, 1) and, above 0, applies to ``fmt``: a pair's text is always exact text."""
    if not 0 <= ratio < 1:
        raise InvalidOption(Errors.E265.format(value=ratio))
    if ratio and fmt == "pairs":
        raise InvalidOption(Errors.E266)


def mixed_documents(doc_ids: Sequence[str], ratio: float) -> set[str]:
    """The documents written as their exact text (--mix): those whose :func:`doc_fraction` with
    :data:`MIX_PERSON` is below ``ratio``, so about that share, each chosen by its own id alone and
    independently of the held-out split."""
    if not 0 <= ratio < 1:
        raise InvalidOption(Errors.E265.format(value=ratio))
    return {d for d in doc_ids if doc_fraction(d, MIX_PERSON) < ratio} if ratio else set()


def held_out_documents(doc_ids: Sequence[str], fraction: float) -> set[str]:
    """The held-out documents: those whose :func:`doc_fraction` is below ``fraction``. When that picks
    none of two or more documents though ``fraction`` > 0, the one with the lowest number is held out,
    so a small export still has a test split."""
    if not 0 <= fraction < 1:
        raise InvalidOption(Errors.E283.format(value=fraction))
    if fraction == 0 or not doc_ids:
        return set()
    held = {d for d in doc_ids if doc_fraction(d) < fraction}
    if not held and len(doc_ids) >= 2:
        held = {min(doc_ids, key=lambda d: (doc_fraction(d), d))}
    return held


# --- output ------------------------------------------------------------------------------------


# JSON leaves these unescaped, but str.splitlines() and many JSONL readers break lines at them.
_LINE_BREAKS_JSON_KEEPS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def json_line(obj: dict) -> str:
    line = json.dumps(obj, ensure_ascii=False)
    for char, escaped in _LINE_BREAKS_JSON_KEEPS.items():
        line = line.replace(char, escaped)
    return line + "\n"


def parse_size(value: str) -> int:
    """``256MB``, ``1.5GiB``, ``500k``, ``100000`` -> bytes (decimal units; ``iB`` binary)."""
    m = _SIZE.match(value.strip())
    unit = m.group(2).lower() if m else None
    if not m or unit not in _SIZE_UNITS:
        raise InvalidOption(Errors.E284.format(value=value))
    size = int(float(m.group(1)) * _SIZE_UNITS[unit])
    if size < MIN_SHARD_BYTES:
        raise InvalidOption(Errors.E285.format(least=MIN_SHARD_BYTES, value=value))
    return size


def _write_bytes(path: str, data: bytes) -> None:
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)


class ShardWriter:
    """Records of one split -> ``DATA_DIR/<split>-NNNNN.<ext>`` files of at most about ``shard_bytes``
    each, written as they come: a shard is closed once its records' JSON form reaches the size, and
    a Parquet row group is written every ``row_group_bytes`` so memory stays bounded. A record larger
    than a shard gets a shard of its own."""

    def __init__(self, out: str, split: str, file_format: str, schema, shard_bytes: int,
                 row_group_bytes: int = 32 * 2**20):
        if file_format not in FILE_FORMATS:
            raise InvalidOption(Errors.E286.format(formats=", ".join(FILE_FORMATS), value=file_format))
        self._out, self._split, self._format, self._schema = out, split, file_format, schema
        self._shard_bytes, self._group_bytes = shard_bytes, min(row_group_bytes, shard_bytes)
        self._sink = self._writer = None
        self._rows: list[dict] = []
        self._rows_bytes = self._shard_size = 0
        self.files: list[dict] = []

    def add(self, record: dict) -> None:
        line = json_line(record).encode("utf-8")
        if self._sink is not None and self._shard_size + len(line) > self._shard_bytes:
            self._close_shard()
        if self._sink is None:
            self._open_shard()
        self._shard_size += len(line)
        self.files[-1]["rows"] += 1
        if self._format == "jsonl":
            self._sink.write(line)
            return
        self._rows.append(record)
        self._rows_bytes += len(line)
        if self._rows_bytes >= self._group_bytes:
            self._flush_rows()

    def close(self) -> list[dict]:
        """Close the last shard; the files written, each with ``path`` (relative to the output
        folder), ``split`` and ``rows``."""
        if self._sink is not None:
            self._close_shard()
        return self.files

    def _open_shard(self) -> None:
        relative = f"{DATA_DIR}/{self._split}-{len(self.files):05d}.{self._format}"
        self._sink = FileSystems.create(FileSystems.join(self._out, relative), compression_type=CompressionTypes.UNCOMPRESSED)
        if self._format == "parquet":
            import pyarrow.parquet as pq

            self._writer = pq.ParquetWriter(self._sink, self._schema, compression="zstd")
        self._shard_size = 0
        self.files.append({"path": relative, "split": self._split, "rows": 0})

    def _flush_rows(self) -> None:
        import pyarrow as pa

        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self._schema))
        self._rows, self._rows_bytes = [], 0

    def _close_shard(self) -> None:
        if self._writer is not None:
            self._flush_rows()
            self._writer.close()
            self._writer = None
        self._sink.close()
        self._sink = None


def write_npy(path: str, array) -> None:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    _write_bytes(path, buffer.getvalue())


def write_json(path: str, obj: dict) -> None:
    _write_bytes(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def write_vocabulary(out: str, vocab: Vocabulary) -> None:
    _write_bytes(FileSystems.join(out, VOCABULARY), vocab.jsonl())
