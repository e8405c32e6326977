"""``hyperscene decompress``: rebuild documents from a store, each checked against its sha256.

Text-file documents are written at their id (their path relative to the input root); documents
that came from JSONL or Parquet records are written as JSONL, one file per source, in record order:
each line holds the record's other fields as they were read, then the text field.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import posixpath
import sys
from typing import Iterator

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from hyperscene.transforms.errors import InvalidOption, StoreError, VerificationFailed
from hyperscene.transforms.progress import Progress
from hyperscene.transforms.read import glob_escape, match_paths
from hyperscene.transforms.store import StoreVersion

logger = logging.getLogger("hyperscene")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hyperscene decompress", description="Rebuild documents from a store, byte for byte.")
    p.add_argument("store", help="store directory")
    p.add_argument("--out", help="directory to write into (must be empty or new); with --doc, default: standard output")
    p.add_argument("--doc", action="append", metavar="ID", help="only this document (repeatable)")
    p.add_argument("--version", type=int, help="store version (default: the latest)")
    return p


def reassemble(store: StoreVersion, doc_ids: list[str] | None = None) -> Iterator[tuple[dict, str]]:
    """(document row, text) for each document, in doc_id order. Texts are not yet verified."""
    import pyarrow.compute as pc

    documents = store.read("documents")
    occurrences = store.read("occurrences", ["doc_id", "position", "unit_id", "separator"])
    if doc_ids is not None:
        wanted = set(doc_ids)
        missing = wanted - set(documents["doc_id"].to_pylist())
        if missing:
            raise StoreError(f"no document {sorted(missing)[0]!r} in {store.path} (list ids with: hyperscene inspect {store.store} --docs)")
        documents = documents.filter(pc.is_in(documents["doc_id"], value_set=_array(wanted)))
        occurrences = occurrences.filter(pc.is_in(occurrences["doc_id"], value_set=_array(wanted)))
    units = store.read("units", ["unit_id", "text"])
    if doc_ids is not None:
        units = units.filter(pc.is_in(units["unit_id"], value_set=pc.unique(occurrences["unit_id"])))
    text_of = dict(zip(units["unit_id"].to_pylist(), units["text"].to_pylist()))
    occurrences = occurrences.sort_by([("doc_id", "ascending"), ("position", "ascending")])
    occ_docs = occurrences["doc_id"].to_pylist()
    occ_units = occurrences["unit_id"].to_pylist()
    occ_seps = occurrences["separator"].to_pylist()

    i = 0
    for doc in documents.sort_by("doc_id").to_pylist():
        parts = [doc["prefix"]]
        while i < len(occ_docs) and occ_docs[i] == doc["doc_id"]:
            parts.append(text_of[occ_units[i]])
            parts.append(occ_seps[i])
            i += 1
        yield doc, "".join(parts)


def _array(values):
    import pyarrow as pa

    return pa.array(sorted(values), type=pa.string())


def verify(doc: dict, text: str) -> bool:
    return hashlib.sha256(text.encode("utf-8")).hexdigest() == doc["sha256"]


def _safe_relative(doc_id: str) -> bool:
    norm = posixpath.normpath(doc_id)
    return norm == doc_id and not norm.startswith(("/", "../")) and norm != ".."


def _records_file(source: str) -> str:
    """One output per source: x.jsonl stays x.jsonl; x.jsonl.gz, x.parquet become x.jsonl.gz.jsonl, x.parquet.jsonl."""
    return source if source.endswith(".jsonl") else source + ".jsonl"


# JSON leaves these unescaped, but str.splitlines() and many JSONL readers break lines at them.
_LINE_BREAKS_JSON_KEEPS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _json_line(obj: dict) -> str:
    line = json.dumps(obj, ensure_ascii=False)
    for char, escaped in _LINE_BREAKS_JSON_KEEPS.items():
        line = line.replace(char, escaped)
    return line + "\n"


def _check_out(out: str) -> None:
    if os.path.isfile(out):
        raise InvalidOption(f"--out {out!r} is a file: give a directory to restore into")
    if match_paths(glob_escape(out.rstrip("/")) + "/**"):
        raise InvalidOption(f"output directory {out!r} is not empty: choose a new or empty directory")


def _write(path: str, data: bytes) -> None:
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)


def decompress(store_path: str, out: str | None, doc_ids: list[str] | None = None, version: int | None = None) -> dict:
    store = StoreVersion(store_path, version)
    if out is None and not doc_ids:
        raise InvalidOption("--out is required unless --doc picks documents to print")
    if out is not None:
        _check_out(out)
    fields = store.manifest["config"]
    id_field, text_field = fields.get("id_field") or "id", fields.get("text_field") or "text"

    records: dict[str, list[tuple[int, bytes]]] = {}
    mismatches, written, total_bytes = [], 0, 0
    progress = Progress("decompress", "documents")
    for doc, text in reassemble(store, doc_ids):
        progress.add()
        if not verify(doc, text):
            mismatches.append(doc["doc_id"])
            continue
        data = text.encode("utf-8")
        total_bytes += len(data)
        written += 1
        if out is None:
            sys.stdout.buffer.write(data)
        elif doc["format"] == "text" and _safe_relative(doc["doc_id"]):
            _write(FileSystems.join(out, doc["doc_id"]), data)
        else:
            fields = json.loads(doc["metadata"]) if doc["metadata"] else {id_field: doc["doc_id"]}
            line = _json_line({**fields, text_field: text})
            records.setdefault(_records_file(doc["source"]), []).append((doc["record"] or 0, line.encode("utf-8")))
    for name, lines in sorted(records.items()):
        _write(FileSystems.join(out, name), b"".join(line for _, line in sorted(lines, key=lambda r: r[0])))
    if mismatches:
        shown = ", ".join(repr(m) for m in mismatches[:5]) + (" ..." if len(mismatches) > 5 else "")
        raise VerificationFailed(
            f"{len(mismatches)} document(s) did not match their stored sha256 and were not written: {shown}; "
            f"the store is damaged (run hyperscene inspect {store_path})"
        )
    return {"documents": written, "bytes": total_bytes, "version": store.version}


def run(argv: list[str]) -> dict:
    args = build_parser().parse_args(argv)
    result = decompress(args.store, args.out, args.doc, args.version)
    if args.out is not None:
        logger.info("restored %s documents (%s bytes) from version %d into %s, all verified by sha256",
                    f"{result['documents']:,}", f"{result['bytes']:,}", result["version"], args.out)
    return result
