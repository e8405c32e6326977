"""``hyperscene export``: write training files from a store version.

- ``--format text``: distilled pretraining text, one record per document: the document with every
  exact or near-duplicate unit occurrence dropped after the first occurrence of its group (see
  :class:`hyperscene.transforms.export.Deduper`).
- ``--format hyperwords``: per document its sequence of codes at one level, as vocabulary ids and
  as ``<hw_L_ID>`` token strings, plus ``vocab.jsonl`` and ``centroids.npy`` (row = vocabulary id),
  which :mod:`hyperscene.pipelines.hf_tokenizer` adds to a Hugging Face tokenizer and model.
- ``--format pairs``: chat-format records (``messages``: a user turn and an assistant turn) that
  teach expansion (a scene's codes or gist -> its exact text) and compression (text -> codes) at
  one scene level, with a held-out split by document.

Output folder: ``data/<split>-NNNNN.parquet|jsonl`` shards written as documents stream through,
then ``export.json`` (what was exported, counts, files) last: a folder without it is an export that
did not finish. Documents are read in doc_id order, occurrences in position order; documents that
a later store version marks deleted are skipped. Every document whose text is written is first
rebuilt and checked against its sha256.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, replace
from typing import Iterator

from apache_beam.io.filesystems import FileSystems

from hyperscene.pipelines.decompress import gist_text

from hyperscene.transforms.store.documents import OCCURRENCE_COLUMNS, assemble_documents, matches_sha256, read_table
from hyperscene.transforms import export as ex
from hyperscene.transforms.errors import InvalidOption, VerificationFailed
from hyperscene.transforms.progress import Progress
from hyperscene.transforms.read import glob_escape, match_paths
from hyperscene.transforms.store.reader import StoreVersion

logger = logging.getLogger("hyperscene")

FORMATS = ("text", "hyperwords", "pairs")
DEFAULT_SHARD_SIZE = "256MB"
DEFAULT_TEST_FRACTION = {"text": 0.0, "hyperwords": 0.0, "pairs": 0.05}
DEFAULT_MAX_SCENE_TOKENS = 4096
# Documents handed to assemble_documents at once: bounds the Python lists made from the tables.
BATCH_DOCUMENTS = 256
_OWN_FILE = re.compile(rf"({re.escape(ex.SUMMARY)}|{re.escape(ex.VOCABULARY)}|{re.escape(ex.CENTROIDS)}"
                       rf"|{ex.DATA_DIR}/({'|'.join(ex.SPLITS)})-\d{{5}}\.({'|'.join(ex.FILE_FORMATS)}))$")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hyperscene export",
        description="Write training files from a store: distilled text (--format text), hyperword code sequences with "
                    "their vocabulary and centroids (--format hyperwords), or chat pairs teaching expansion and "
                    "compression (--format pairs). Shards go to OUT/data/<split>-NNNNN.parquet|jsonl and load with "
                    "datasets.load_dataset('parquet' or 'json', data_files=...); OUT/export.json, written last, "
                    "records what was exported.",
    )
    p.add_argument("store", help="store directory")
    p.add_argument("--format", choices=FORMATS, default="text", help="what to write (default: text)")
    p.add_argument("--out", required=True, help="output directory: new or empty (see --overwrite)")
    p.add_argument("--version", type=int, help="store version (default: the latest)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a previous export in --out: deletes its files (data/ shards, export.json, vocab.jsonl, "
                        "centroids.npy); refused when --out holds any other file")
    p.add_argument("--file-format", choices=ex.FILE_FORMATS,
                   help="shard files: parquet (default for text and hyperwords) or jsonl (default for pairs)")
    p.add_argument("--shard-size", default=DEFAULT_SHARD_SIZE, metavar="SIZE",
                   help=f"close a shard once its records reach this size, counted as their JSON lines "
                        f"(e.g. 64MB, 1GB; default {DEFAULT_SHARD_SIZE}); a larger record gets a shard of its own")
    p.add_argument("--test-fraction", type=float, metavar="F",
                   help="hold out this fraction of documents as the test split, chosen by a hash of the doc_id so a "
                        "document's split never depends on the others; when that picks none of two or more documents, "
                        "one is held out (default: 0.05 for pairs, 0 for text and hyperwords)")
    p.add_argument("--tokenizer", help="count tokens in and out with this Hugging Face tokenizer (name in the local cache, "
                   "or folder) instead of the store's own counts (the embedding model's tokenizer)")
    g = p.add_argument_group("text")
    g.add_argument("--dedup-scope", choices=ex.DEDUP_SCOPES, default="corpus",
                   help="corpus (default): a unit occurrence is dropped when an exact or near duplicate of it came "
                        "earlier anywhere (documents in doc_id order, units in position order); document: only "
                        "when it came earlier in the same document")
    g.add_argument("--min-dedup-tokens", type=int, default=0, metavar="N",
                   help="never drop units shorter than N tokens, so short repeats such as 'Yes.' stay (default: 0, "
                        "every duplicate is dropped)")
    g = p.add_argument_group("hyperwords and pairs")
    g.add_argument("--level", type=int, metavar="L",
                   help="hyperwords: 0 = the units' hyperwords (default), L >= 1 = the codes of the level-L scenes; "
                        "pairs: the scene level (default: 1). A document with fewer levels than L contributes its "
                        "root scene, whose token names its own level")
    g.add_argument("--tasks", default="expand,compress",
                   help="pairs: comma-separated expand and/or compress (default: both)")
    g.add_argument("--expand-from", choices=ex.EXPAND_FROM, default="codes",
                   help="pairs: what an expansion prompt gives: the scene's codes (its own, then its children's), "
                        "its gist (its most central units), or both as two pairs (default: codes)")
    g.add_argument("--max-scene-tokens", type=int, default=DEFAULT_MAX_SCENE_TOKENS, metavar="N",
                   help=f"pairs: skip scenes longer than N tokens (default: {DEFAULT_MAX_SCENE_TOKENS}; 0: no limit)")
    return p


# --- output folder ---------------------------------------------------------------------------


def prepare_out(out: str, overwrite: bool) -> None:
    """Refuse a non-empty --out, unless ``overwrite`` and every file there is one export writes,
    which are then deleted."""
    if FileSystems.get_scheme(out) is None and os.path.isfile(out):
        raise InvalidOption(f"--out {out!r} is a file: give a directory")
    root = out.replace("\\", "/").rstrip("/")
    existing = match_paths(glob_escape(root) + "/**")
    if not existing:
        return
    if not overwrite:
        raise InvalidOption(f"--out {out!r} is not empty: choose a new or empty directory, or add --overwrite to replace "
                            f"the export that is there")
    relative = [p.replace("\\", "/")[len(root) + 1:] for p in existing]
    foreign = sorted(r for r in relative if not _OWN_FILE.match(r))
    if foreign:
        raise InvalidOption(f"--overwrite only replaces a previous export's files, and {out!r} also holds {foreign[0]!r}: "
                            f"choose another directory")
    FileSystems.delete(existing)


# --- reading ---------------------------------------------------------------------------------


def live_documents(store: StoreVersion):
    """The documents table in doc_id order, without rows a later format marks ``deleted``."""
    import pyarrow.compute as pc

    documents = store.read("documents")
    if "deleted" in documents.column_names:
        documents = documents.filter(pc.invert(pc.fill_null(documents["deleted"], False)))
    return documents.sort_by("doc_id")


def document_batches(store: StoreVersion, documents, columns: list[str]) -> Iterator[tuple[object, object]]:
    """(documents rows, their occurrences) in batches of :data:`BATCH_DOCUMENTS`, in doc_id order;
    occurrences sorted by (doc_id, position), with ``columns``."""
    import pyarrow.compute as pc

    occurrences = store.read("occurrences", columns).sort_by([("doc_id", "ascending"), ("position", "ascending")])
    span: dict[str, tuple[int, int]] = {}
    if occurrences.num_rows:
        runs = pc.run_end_encode(occurrences["doc_id"].combine_chunks().cast("string"))
        ends = runs.run_ends.to_pylist()
        for doc_id, start, end in zip(runs.values.to_pylist(), [0, *ends[:-1]], ends):
            span[doc_id] = (start, end)
    for first in range(0, documents.num_rows, BATCH_DOCUMENTS):
        batch = documents.slice(first, BATCH_DOCUMENTS)
        spans = [span[d] for d in batch["doc_id"].to_pylist() if d in span]
        if spans:
            start, end = spans[0][0], spans[-1][1]
            yield batch, occurrences.slice(start, end - start)
        else:
            yield batch, occurrences.slice(0, 0)


@dataclass
class UnitTables:
    text_of: dict[str, str]
    tokens_of: dict[str, int]
    counted_with: str


def read_units(store: StoreVersion, tokenizer_name: str | None, need_text: bool = True) -> UnitTables:
    """Unit texts and token counts: the store's own (the embedding model's tokenizer, no special
    tokens), or each distinct unit counted once with ``tokenizer_name``."""
    units = store.read("units", ["unit_id", "text", "token_count"] if need_text or tokenizer_name else ["unit_id", "token_count"])
    ids = units["unit_id"].to_pylist()
    texts = units["text"].to_pylist() if "text" in units.column_names else []
    if tokenizer_name:
        from hyperscene.transforms.tokens import count_tokens_by_name

        counts = count_tokens_by_name(tokenizer_name, texts)
        label = f"tokenizer {tokenizer_name}"
    else:
        counts = units["token_count"].to_pylist()
        label = f"the store's counts: {store.manifest['model']['name']} tokenizer, no special tokens"
    return UnitTables(dict(zip(ids, texts)) if need_text else {}, dict(zip(ids, counts)), label)


def _verified_documents(store: StoreVersion, documents, units: UnitTables, mismatches: list[str],
                        progress: Progress) -> Iterator[tuple[dict, list[str], list[str]]]:
    """(document row, pieces, unit ids) of every document whose rebuilt text matches its sha256; the
    ids of the others go to ``mismatches``."""
    for batch, occurrences in document_batches(store, documents, OCCURRENCE_COLUMNS):
        for doc, pieces, unit_ids in assemble_documents(batch, occurrences, units.text_of):
            progress.add()
            if None in pieces:
                raise VerificationFailed(f"document {doc['doc_id']!r} uses unit {unit_ids[pieces.index(None)]} that the units "
                                         f"table of {store.path} lacks: the store is damaged (check it with: hyperscene "
                                         f"verify {store.store})")
            if not matches_sha256(doc, doc["prefix"] + "".join(pieces)):
                mismatches.append(doc["doc_id"])
                continue
            yield doc, pieces, unit_ids


def _scene_rows(store: StoreVersion, columns: list[str]) -> dict[str, list[dict]]:
    """doc_id -> its scenes (``columns``), sorted by (level, index)."""
    by_doc: dict[str, list[dict]] = {}
    for r in store.read("scenes", columns).to_pylist():
        by_doc.setdefault(r["doc_id"], []).append(r)
    for rows in by_doc.values():
        rows.sort(key=lambda r: (r["level"], r["index"]))
    return by_doc


def _at_level(scenes: list[dict], level: int) -> list[dict]:
    """A document's scenes of ``level``, or its root when it has fewer levels (decompress's rule)."""
    depth = max((s["level"] for s in scenes), default=0)
    return [s for s in scenes if s["level"] == min(level, depth)]


def _deepest(store: StoreVersion) -> int:
    import pyarrow.compute as pc

    if not store.files("scenes"):
        return 0
    return pc.max(store.read("scenes", ["level"])["level"]).as_py() or 0


def _check_level(store: StoreVersion, level: int, lowest: int) -> None:
    deepest = _deepest(store)
    if level < lowest:
        raise InvalidOption(f"--level must be {lowest} or more, not {level}"
                            + (" (level 0 pairs would be single units and their hyperwords: export them with "
                               "--format hyperwords --level 0)" if lowest == 1 else ""))
    if level > deepest:
        raise InvalidOption(f"--level {level} is out of range: this store has levels 0 to {deepest}"
                            + ("" if deepest else " (no scenes: compress again with this hyperscene for scene levels)"))


# --- the three formats -----------------------------------------------------------------------


@dataclass
class Options:
    store: str
    out: str
    fmt: str = "text"
    version: int | None = None
    overwrite: bool = False
    file_format: str | None = None
    shard_size: str = DEFAULT_SHARD_SIZE
    test_fraction: float | None = None
    tokenizer: str | None = None
    dedup_scope: str = "corpus"
    min_dedup_tokens: int = 0
    level: int | None = None
    tasks: str = "expand,compress"
    expand_from: str = "codes"
    max_scene_tokens: int = DEFAULT_MAX_SCENE_TOKENS


class Writers:
    """One :class:`ShardWriter` per split, opened on the first record of that split."""

    def __init__(self, out: str, file_format: str, schema, shard_bytes: int, held_out: set[str]):
        self._args = (out, file_format, schema, shard_bytes)
        self._held_out = held_out
        self._writers: dict[str, ex.ShardWriter] = {}
        self.rows = {split: 0 for split in ex.SPLITS}

    def add(self, doc_id: str, record: dict) -> None:
        split = "test" if doc_id in self._held_out else "train"
        if split not in self._writers:
            out, file_format, schema, shard_bytes = self._args
            self._writers[split] = ex.ShardWriter(out, split, file_format, schema, shard_bytes)
        self._writers[split].add(record)
        self.rows[split] += 1

    def close(self) -> list[dict]:
        return [f for split in ex.SPLITS if split in self._writers for f in self._writers[split].close()]


# Built with pyarrow passed in, which is imported where it is used.
SCHEMAS = {
    "text": lambda pa: pa.schema([("text", pa.string()), ("doc_id", pa.string()), ("units_in", pa.int64()),
                                  ("units_out", pa.int64()), ("tokens_in", pa.int64()), ("tokens_out", pa.int64())]),
    "hyperwords": lambda pa: pa.schema([("text", pa.string()), ("ids", pa.list_(pa.int32())), ("doc_id", pa.string()),
                                        ("level", pa.int32()), ("tokens_in", pa.int64())]),
    "pairs": lambda pa: pa.schema([("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
                                   ("task", pa.string()), ("doc_id", pa.string()), ("scene_id", pa.string()),
                                   ("level", pa.int32())]),
}


def export_text(store: StoreVersion, opts: Options, documents, writers: Writers, progress: Progress,
                mismatches: list[str]) -> dict:
    units = read_units(store, opts.tokenizer)
    provenance = store.read("provenance", ["unit_id", "canonical_unit_id"])
    deduper = ex.Deduper(dict(zip(provenance["unit_id"].to_pylist(), provenance["canonical_unit_id"].to_pylist())),
                         opts.dedup_scope, opts.min_dedup_tokens)
    totals = {"tokens_in": 0, "tokens_out": 0, "units_in": 0, "units_out": 0}
    for doc, pieces, unit_ids in _verified_documents(store, documents, units, mismatches, progress):
        tokens = [units.tokens_of[u] for u in unit_ids]
        keep = deduper.keep(unit_ids, tokens)
        record = {"text": ex.distil(doc["prefix"], pieces, keep), "doc_id": doc["doc_id"],
                  "units_in": len(unit_ids), "units_out": sum(keep),
                  "tokens_in": sum(tokens), "tokens_out": sum(t for t, k in zip(tokens, keep) if k)}
        writers.add(doc["doc_id"], record)
        for key in totals:
            totals[key] += record[key]
    return {**totals, "counted_with": units.counted_with}


def _codebook_rows(store: StoreVersion, level: int) -> tuple[list[dict], dict[int, list[float]]]:
    """A level's codebook as rows (``code``, ``representative_id``, ``representative_text``) and
    code -> centroid. Level 0: the hyperwords; above: the scene codebooks, represented by the gist
    of their representative scene."""
    if level == 0:
        t = store.read("hyperwords", ["hyperword", "centroid", "representative_unit_id", "representative_text"]).to_pylist()
        rows = [{"code": r["hyperword"], "representative_id": r["representative_unit_id"],
                 "representative_text": r["representative_text"]} for r in t]
        return rows, {r["hyperword"]: r["centroid"] for r in t}
    t = read_table(store, "codebooks", ["level", "code", "centroid", "representative_scene_id"], {"level": [level]}).to_pylist()
    gists = _scene_gists(store, [r["representative_scene_id"] for r in t if r["representative_scene_id"]])
    rows = [{"code": r["code"], "representative_id": r["representative_scene_id"],
             "representative_text": gists.get(r["representative_scene_id"])} for r in t]
    return rows, {r["code"]: r["centroid"] for r in t}


def _scene_gists(store: StoreVersion, scene_ids: list[str]) -> dict[str, str]:
    """scene_id -> its gist text (:func:`gist_text` of its gist units)."""
    if not scene_ids:
        return {}
    scenes = read_table(store, "scenes", ["scene_id", "doc_id", "gist"], {"scene_id": scene_ids}).to_pylist()
    wanted = {(s["doc_id"], p) for s in scenes for p in s["gist"]}
    occurrences = read_table(store, "occurrences", ["doc_id", "position", "unit_id"],
                             {"doc_id": sorted({d for d, _ in wanted})}).to_pylist()
    unit_at = {(o["doc_id"], o["position"]): o["unit_id"] for o in occurrences if (o["doc_id"], o["position"]) in wanted}
    units = read_table(store, "units", ["unit_id", "text"], {"unit_id": sorted(set(unit_at.values()))})
    text_of = dict(zip(units["unit_id"].to_pylist(), units["text"].to_pylist()))
    return {s["scene_id"]: gist_text([text_of[unit_at[(s["doc_id"], p)]] for p in s["gist"]]) for s in scenes}


def _build_vocabulary(store: StoreVersion, level: int, scenes_by_doc: dict[str, list[dict]]):
    """(Vocabulary, centroid matrix in vocabulary id order) for ``level``, with the roots of shallower
    documents' levels added."""
    import numpy as np

    rows, centroids = _codebook_rows(store, level)
    extra = {(s["level"], s["code"]) for scenes in scenes_by_doc.values() for s in _at_level(scenes, level)
             if s["level"] != level} if level else set()
    extra_rows, extra_centroids = {}, {}
    for lower in sorted({lv for lv, _ in extra}):
        lower_rows, lower_centroids = _codebook_rows(store, lower)
        for r in lower_rows:
            if (lower, r["code"]) in extra:
                extra_rows[(lower, r["code"])] = r
                extra_centroids[(lower, r["code"])] = lower_centroids[r["code"]]
    vocab = ex.Vocabulary.build(level, rows, extra, extra_rows)
    matrix = np.array([centroids[r["code"]] if r["level"] == level else extra_centroids[(r["level"], r["code"])]
                       for r in vocab.rows], dtype=np.float32)
    return vocab, matrix


def export_hyperwords(store: StoreVersion, opts: Options, documents, writers: Writers, progress: Progress,
                      mismatches: list[str]) -> dict:
    level = opts.level
    units = read_units(store, opts.tokenizer, need_text=False)
    scenes_by_doc = _scene_rows(store, ["doc_id", "level", "index", "code"]) if level else {}
    vocab, matrix = _build_vocabulary(store, level, scenes_by_doc)
    columns = ["doc_id", "position", "unit_id"] + (["hyperword"] if level == 0 else [])
    totals = {"tokens_in": 0, "tokens_out": 0}
    for batch, occurrences in document_batches(store, documents, columns):
        occ = occurrences.to_pydict()
        i = 0
        for doc_id in batch["doc_id"].to_pylist():
            progress.add()
            while i < len(occ["doc_id"]) and occ["doc_id"][i] < doc_id:  # rows of no listed document
                i += 1
            start = i
            while i < len(occ["doc_id"]) and occ["doc_id"][i] == doc_id:
                i += 1
            if level == 0:
                codes = [(0, h) for h in occ["hyperword"][start:i]]
            else:
                codes = [(s["level"], s["code"]) for s in _at_level(scenes_by_doc.get(doc_id, []), level)]
            ids = vocab.encode(codes)
            tokens_in = sum(units.tokens_of[u] for u in occ["unit_id"][start:i])
            writers.add(doc_id, {"text": ex.code_string(codes), "ids": ids, "doc_id": doc_id, "level": level,
                                 "tokens_in": tokens_in})
            totals["tokens_in"] += tokens_in
            totals["tokens_out"] += len(ids)
    ex.write_vocabulary(opts.out, vocab)
    ex.write_npy(FileSystems.join(opts.out, ex.CENTROIDS), matrix)
    return {**totals, "counted_with": units.counted_with, "vocabulary": len(vocab), "dimension": int(matrix.shape[1]) if matrix.size else 0}


def export_pairs(store: StoreVersion, opts: Options, documents, writers: Writers, progress: Progress,
                 mismatches: list[str]) -> dict:
    level, tasks = opts.level, ex.parse_tasks(opts.tasks)
    units = read_units(store, opts.tokenizer)
    scenes_by_doc = _scene_rows(store, ["scene_id", "doc_id", "level", "index", "first_position", "last_position",
                                        "code", "gist", "child_codes"])
    totals = {"tokens_in": 0, "tokens_out": 0, "scenes": 0, "skipped_scenes": 0}
    for doc, pieces, unit_ids in _verified_documents(store, documents, units, mismatches, progress):
        tokens = [units.tokens_of[u] for u in unit_ids]
        totals["tokens_in"] += sum(tokens)
        for s in _at_level(scenes_by_doc.get(doc["doc_id"], []), level):
            first, last = s["first_position"], s["last_position"]
            scene_tokens = sum(tokens[first : last + 1])
            if opts.max_scene_tokens and scene_tokens > opts.max_scene_tokens:
                totals["skipped_scenes"] += 1
                continue
            # The whitespace after the scene's last unit separates it from the next scene: not part of it.
            last_text = units.text_of[unit_ids[last]]
            text = "".join(pieces[first:last]) + last_text
            codes = ex.scene_codes(s["level"], s["code"], s["child_codes"])
            gist = gist_text([units.text_of[unit_ids[p]] for p in s["gist"]])
            gist_tokens = sum(tokens[p] for p in s["gist"])
            totals["scenes"] += 1
            for task, messages in ex.pair_messages(s["level"], ex.code_string(codes), text, gist, tasks, opts.expand_from):
                writers.add(doc["doc_id"], {"messages": messages, "task": task, "doc_id": doc["doc_id"],
                                            "scene_id": s["scene_id"], "level": s["level"]})
                totals["tokens_out"] += scene_tokens + (gist_tokens if task == "expand_gist" else len(codes))
    return {**totals, "counted_with": units.counted_with}


EXPORTERS = {"text": export_text, "hyperwords": export_hyperwords, "pairs": export_pairs}


def export(opts: Options) -> dict:
    """Write the export described by ``opts``; returns the summary that ``export.json`` holds."""
    if opts.fmt not in FORMATS:
        raise InvalidOption(f"--format must be one of {', '.join(FORMATS)}, not {opts.fmt!r}")
    if opts.fmt == "text" and opts.level is not None:
        raise InvalidOption("--level applies to --format hyperwords and pairs, not text")
    shard_bytes = ex.parse_size(opts.shard_size)
    fraction = DEFAULT_TEST_FRACTION[opts.fmt] if opts.test_fraction is None else opts.test_fraction
    file_format = opts.file_format or ("jsonl" if opts.fmt == "pairs" else "parquet")
    store = StoreVersion(opts.store, opts.version)
    documents = live_documents(store)
    held_out = ex.held_out_documents(documents["doc_id"].to_pylist(), fraction)
    # Option errors come before anything in --out is deleted or written.
    if opts.fmt != "text":
        lowest = 1 if opts.fmt == "pairs" else 0
        opts = replace(opts, level=lowest if opts.level is None else opts.level)
        _check_level(store, opts.level, lowest)
    if opts.fmt == "pairs":
        ex.parse_tasks(opts.tasks)
        if opts.max_scene_tokens < 0:
            raise InvalidOption(f"--max-scene-tokens must be 0 (no limit) or more, not {opts.max_scene_tokens}")
    prepare_out(opts.out, opts.overwrite)

    import pyarrow as pa

    started = time.monotonic()
    writers = Writers(opts.out, file_format, SCHEMAS[opts.fmt](pa), shard_bytes, held_out)
    progress = Progress("export", "documents")
    mismatches: list[str] = []
    counts = EXPORTERS[opts.fmt](store, opts, documents, writers, progress, mismatches)
    files = writers.close()
    if mismatches:
        shown = ", ".join(repr(m) for m in mismatches[:5]) + (" ..." if len(mismatches) > 5 else "")
        raise VerificationFailed(f"{len(mismatches)} document(s) did not match their stored sha256 and were not exported: "
                                 f"{shown}; the export in {opts.out} is incomplete (no {ex.SUMMARY}); the store is "
                                 f"damaged (check it with: hyperscene verify {opts.store})")
    summary = {
        "format": opts.fmt,
        "store": opts.store,
        "version": store.version,
        "level": opts.level,
        "file_format": file_format,
        "options": {"dedup_scope": opts.dedup_scope, "min_dedup_tokens": opts.min_dedup_tokens} if opts.fmt == "text" else
                   {"tasks": list(ex.parse_tasks(opts.tasks)), "expand_from": opts.expand_from,
                    "max_scene_tokens": opts.max_scene_tokens} if opts.fmt == "pairs" else {},
        "test_fraction": fraction,
        "documents": documents.num_rows,
        "rows": writers.rows,
        "counts": counts,
        "seconds": round(time.monotonic() - started, 3),
        "files": files,
    }
    ex.write_json(FileSystems.join(opts.out, ex.SUMMARY), summary)
    return summary


def closing_lines(s: dict) -> str:
    c = s["counts"]
    files = len(s["files"])
    rows = ", ".join(f"{n:,} {split}" for split, n in s["rows"].items() if n) or "0"
    head = (f"exported {s['format']}" + (f" at level {s['level']}" if s["level"] is not None else "")
            + f" from version {s['version']}: {s['documents']:,} documents, {rows} records in {files} file{'s' if files != 1 else ''}")
    ratio = f" ({c['tokens_out'] / c['tokens_in']:.1%} of in)" if c["tokens_in"] else ""
    if s["format"] == "text":
        tail = (f"tokens in {c['tokens_in']:,}, tokens out {c['tokens_out']:,}{ratio}; units in {c['units_in']:,}, "
                f"out {c['units_out']:,} (counted with {c['counted_with']})")
    elif s["format"] == "hyperwords":
        tail = (f"tokens in {c['tokens_in']:,} (counted with {c['counted_with']}), hyperword tokens out "
                f"{c['tokens_out']:,}{ratio}; vocabulary {c['vocabulary']:,} tokens, centroids {c['vocabulary']:,} x {c['dimension']}")
    else:
        share = f", {c['tokens_out'] / c['tokens_in']:.1%} of in" if c["tokens_in"] else ""
        tail = (f"tokens in {c['tokens_in']:,}, tokens out {c['tokens_out']:,} (the pairs' texts, gists and codes, prompts "
                f"not counted{share}; counted with {c['counted_with']}); {c['scenes']:,} scenes"
                + (f", {c['skipped_scenes']:,} longer than --max-scene-tokens skipped" if c["skipped_scenes"] else ""))
    return head + "\n" + tail


def run(argv: list[str]) -> dict:
    args = build_parser().parse_args(argv)
    summary = export(Options(
        store=args.store, out=args.out, fmt=args.format, version=args.version, overwrite=args.overwrite,
        file_format=args.file_format, shard_size=args.shard_size, test_fraction=args.test_fraction,
        tokenizer=args.tokenizer, dedup_scope=args.dedup_scope, min_dedup_tokens=args.min_dedup_tokens,
        level=args.level, tasks=args.tasks, expand_from=args.expand_from, max_scene_tokens=args.max_scene_tokens,
    ))
    print(closing_lines(summary))
    sys.stdout.flush()
    return summary
