"""``hyperscene decompress``: rebuild documents from a store, each checked against its sha256, or
print the scenes of one level (their exact text, or their gists).

Text-file documents are written at their id (their path relative to the input root); documents
that came from JSONL or Parquet records are written as JSONL, one file per source, in record order:
each line holds the record's other fields as they were read, then the text field.

With ``--level``, ``--scene`` or ``--gist`` the output is scenes instead (see :func:`scene_records`):
a scene's exact text is its units with their separators, so a document's ``prefix`` followed by the
texts of all its scenes of one level, in order, is the document byte for byte; a scene's gist is the
text of its most central units, lossy and short.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import posixpath
import sys
from typing import Iterator

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from hyperscene.transforms.errors import Errors, InvalidOption, StoreDamaged, StoreError, VerificationFailed
from hyperscene.transforms.export import json_line
from hyperscene.transforms.progress import Progress
from hyperscene.transforms.inputs import glob_escape, match_paths, restore_collision, restore_target
from hyperscene.transforms.store.documents import (check_documents, document_pieces, gist_text, gist_texts, matches_sha256,
                                                  read_table, reassemble)
from hyperscene.transforms.store.reader import StoreVersion

logger = logging.getLogger("hyperscene")

# The scenes columns that decompress and inspect need (never the centroids).
SCENE_COLUMNS = ["scene_id", "doc_id", "level", "index", "parent_scene_id", "first_position", "last_position",
                 "child_count", "token_count", "code", "gist"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hyperscene decompress",
        description="Rebuild documents from a store, byte for byte; or print the scenes of one level: "
                    "their exact text, or with --gist their gists.",
    )
    p.add_argument("store", help="store directory")
    p.add_argument("--out", help="without --level/--scene/--gist: the directory to restore every document into (must be "
                   "empty or new); with them: a new file to write the scenes to. Default with --doc, --level, "
                   "--scene or --gist: standard output")
    p.add_argument("--doc", action="append", metavar="ID", help="only this document (repeatable)")
    p.add_argument("--version", type=int, help="store version (default: the latest)")
    g = p.add_argument_group("scenes")
    g.add_argument("--level", type=int, metavar="N",
                   help="print every level-N scene of the chosen documents, in document order (1 = scenes of "
                        "units, up to each document's root). A document with fewer levels than N contributes its "
                        "root. Without --gist each scene's exact text: a document's prefix (whitespace before its "
                        "first unit) followed by the texts of its scenes is the document byte for byte")
    g.add_argument("--scene", action="append", metavar="ID",
                   help="only this scene's subtree (repeatable; ids look like DOC_ID#LEVEL.INDEX, see "
                        "'hyperscene inspect STORE --doc DOC_ID'): its exact text; with --level N the "
                        "level-N scenes inside it")
    g.add_argument("--gist", action="store_true",
                   help="print gists instead of exact text: each scene's most central units, in document order, "
                        "joined by single spaces (line breaks inside a unit shown as spaces); lossy. Needs --level "
                        "or --scene (alone with --scene: that scene's own gist)")
    g.add_argument("--format", choices=("text", "jsonl"), default="text",
                   help="text (default): per scene a header line '=== ID | level L | units A-B | T tokens' then "
                        "its text (a line break added if it lacks one) or gist; jsonl: one JSON object per scene "
                        "with its fields and 'text' (exact) or 'gist', plus 'prefix' (the document's prefix on "
                        "the scene that starts at unit 0, else empty)")
    return p


# --- reading ---------------------------------------------------------------------------------


# --- scenes ----------------------------------------------------------------------------------


def _has_scenes(store: StoreVersion) -> None:
    if not store.files("scenes"):
        raise StoreError(Errors.E423.format(path=store.path, format=store.manifest.get("format_version")))


def _scenes_by_id(store: StoreVersion, scene_ids: list[str]) -> dict[str, dict]:
    rows = read_table(store, "scenes", SCENE_COLUMNS, {"scene_id": scene_ids}).to_pylist()
    found = {r["scene_id"]: r for r in rows}
    for sid in scene_ids:
        if sid not in found:
            raise StoreError(Errors.E422.format(scene=sid, path=store.path, store=store.store))
    return found


def select_scenes(store: StoreVersion, level: int | None = None, scene_ids: list[str] | None = None,
                  doc_ids: list[str] | None = None) -> list[dict]:
    """The scenes rows (:data:`SCENE_COLUMNS`, plus ``depth``: the levels of their document) to print.

    With ``level`` and no ``scene_ids``: every level-``level`` scene of each document (all, or
    ``doc_ids``), in doc_id then index order; a document with fewer levels gives its root. With
    ``scene_ids``: for each, the scene itself, or its level-``level`` descendants in index order.
    Raises StoreError for an unknown document or scene, InvalidOption for a level out of range.
    """
    _has_scenes(store)
    if scene_ids and doc_ids:
        raise InvalidOption(Errors.E250)
    if level is not None and level < 1:
        raise InvalidOption(Errors.E251.format(level=level))
    if scene_ids:
        targets = _scenes_by_id(store, scene_ids)
        docs = sorted({t["doc_id"] for t in targets.values()})
    elif doc_ids:
        check_documents(store, doc_ids)
        docs = sorted(set(doc_ids))
    else:
        docs = None
    if level is None and not scene_ids:
        raise InvalidOption(Errors.E252)
    rows = read_table(store, "scenes", SCENE_COLUMNS, {"doc_id": docs} if docs is not None else None).to_pylist()
    depth: dict[str, int] = {}
    for r in rows:
        depth[r["doc_id"]] = max(depth.get(r["doc_id"], 0), r["level"])
    for r in rows:
        r["depth"] = depth[r["doc_id"]]
    rows.sort(key=lambda r: (r["doc_id"], r["level"], r["index"]))

    if scene_ids:
        chosen = []
        for sid in dict.fromkeys(scene_ids):  # each once, in the order given
            target = targets[sid]
            if level is None or level == target["level"]:
                chosen.append(next(r for r in rows if r["scene_id"] == sid))
                continue
            if level > target["level"]:
                raise InvalidOption(Errors.E253.format(level=level, scene=sid, top=target["level"]))
            chosen += [r for r in rows if r["doc_id"] == target["doc_id"] and r["level"] == level
                       and target["first_position"] <= r["first_position"] and r["last_position"] <= target["last_position"]]
        return chosen

    # The range is the store's, so that any document can be asked for at any level that exists.
    if docs is None:
        deepest = max(depth.values(), default=0)
    else:
        import pyarrow.compute as pc

        deepest = pc.max(store.read("scenes", ["level"])["level"]).as_py() or 0
    if not deepest:
        raise InvalidOption(Errors.E254)
    if level > deepest:
        raise InvalidOption(Errors.E255.format(level=level, deepest=deepest))
    if not rows:
        raise InvalidOption(Errors.E256)
    return [r for r in rows if r["level"] == min(level, r["depth"])]


def _record(scene: dict, **content) -> dict:
    return {
        "scene_id": scene["scene_id"], "doc_id": scene["doc_id"], "level": scene["level"], "index": scene["index"],
        "parent_scene_id": scene["parent_scene_id"], "first_position": scene["first_position"],
        "last_position": scene["last_position"], "token_count": scene["token_count"], "depth": scene["depth"],
        **content,
    }


def scene_records(store: StoreVersion, scenes: list[dict], gist: bool = False, mismatches: list[str] | None = None,
                  whole_store: bool = False) -> Iterator[dict]:
    """For each chosen scene, in order, a record: its fields (as :func:`_record`) and either
    ``gist_positions`` and ``gist`` (see :func:`gist_text`) or ``prefix`` and ``text``: the exact
    text of its units and their separators, ``prefix`` being the document's prefix when the scene
    starts at unit 0 and "" otherwise.

    For exact text each document is rebuilt whole and checked against its sha256 first; a document
    that fails gives no records and its id is appended to ``mismatches``. ``whole_store``: the
    scenes come from every document, so tables are read whole rather than filtered by document.
    """
    if gist:
        texts = gist_texts(store, scenes, whole_store)
        for s in scenes:
            yield _record(s, gist_positions=list(s["gist"]), gist=gist_text([texts[(s["doc_id"], p)] for p in s["gist"]]))
        return

    by_doc: dict[str, list[dict]] = {}
    for s in scenes:
        by_doc.setdefault(s["doc_id"], []).append(s)

    def verified(doc: dict, pieces: list[str]) -> bool:
        if matches_sha256(doc, doc["prefix"] + "".join(pieces)):
            return True
        if mismatches is not None:
            mismatches.append(doc["doc_id"])
        return False

    def record(scene: dict, doc: dict, pieces: list[str]) -> dict:
        first, last = scene["first_position"], scene["last_position"]
        return _record(scene, prefix=doc["prefix"] if first == 0 else "", text="".join(pieces[first : last + 1]))

    if all(a["doc_id"] <= b["doc_id"] for a, b in zip(scenes, scenes[1:])):
        # Scenes in document order (--level): each document's records as soon as it is rebuilt.
        for doc, pieces in document_pieces(store, None if whole_store else list(by_doc)):
            if doc["doc_id"] in by_doc and verified(doc, pieces):
                yield from (record(s, doc, pieces) for s in by_doc[doc["doc_id"]])
        return
    documents = {doc["doc_id"]: (doc, pieces) for doc, pieces in document_pieces(store, list(by_doc)) if verified(doc, pieces)}
    for s in scenes:
        if s["doc_id"] in documents:
            yield record(s, *documents[s["doc_id"]])


def render_record(record: dict, fmt: str) -> str:
    """One scene for output: a JSON line, or a header line and its text or gist."""
    if fmt == "jsonl":
        return json_line(record)
    header = (f"=== {record['scene_id']} | level {record['level']} | units {record['first_position']}-"
              f"{record['last_position']} | {record['token_count']:,} tokens")
    if record["level"] == record["depth"] and record["parent_scene_id"] is None:
        header += f" | root ({record['depth']} level{'s' if record['depth'] != 1 else ''})"
    if "gist" in record:
        return f"{header} | gist of units {', '.join(map(str, record['gist_positions']))}\n{record['gist']}\n\n"
    text = record["text"]
    return f"{header}\n{text}" + ("" if text.endswith("\n") else "\n")


# --- documents -------------------------------------------------------------------------------


def _safe_relative(doc_id: str) -> bool:
    norm = posixpath.normpath(doc_id)
    return norm == doc_id and not norm.startswith(("/", "../")) and norm != ".."


def _target(doc: dict) -> tuple[str, str]:
    """(path under --out, what owns it) of a document: a text file at its id, a record in the JSONL
    file of its source (as :func:`~hyperscene.transforms.inputs.restore_target` says at read time)."""
    if doc["format"] == "text" and _safe_relative(doc["doc_id"]):
        return doc["doc_id"], f"document {doc['doc_id']!r}"
    return restore_target("records", doc["source"])


def _plan(store: StoreVersion, doc_ids: list[str] | None) -> None:
    """Refuse, before writing anything, a store whose documents would be written outside --out, two
    to one path, or to a path another needs as a folder."""
    documents = read_table(store, "documents", None, {"doc_id": doc_ids} if doc_ids else None).to_pylist()
    documents = [d for d in documents if not d.get("deleted")]
    for doc in documents:
        path, _ = _target(doc)
        if not _safe_relative(path):
            # A store's tables are data, not instructions: nothing it names may land outside --out.
            raise StoreDamaged(Errors.E412.format(doc=doc["doc_id"], store=store.store, source=doc["source"]))
    collision = restore_collision(_target(d) for d in documents)
    if collision:
        raise StoreError(Errors.E424.format(collision=collision, store=store.store))


def _check_out(out: str) -> None:
    if os.path.isfile(out):
        raise InvalidOption(Errors.E257.format(out=out))
    if match_paths(glob_escape(out.rstrip("/")) + "/**"):
        raise InvalidOption(Errors.E258.format(out=out))


def _write(path: str, data: bytes) -> None:
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)


def decompress(store_path: str, out: str | None, doc_ids: list[str] | None = None, version: int | None = None) -> dict:
    store = StoreVersion(store_path, version)
    if out is None and not doc_ids:
        raise InvalidOption(Errors.E259)
    if out is not None:
        _check_out(out)
        _plan(store, doc_ids)
    fields = store.manifest["config"]
    id_field, text_field = fields.get("id_field") or "id", fields.get("text_field") or "text"

    records: dict[str, list[tuple[int, bytes]]] = {}
    mismatches, written, total_bytes = [], 0, 0
    progress = Progress("decompress", "documents")
    for doc, text in reassemble(store, doc_ids):
        progress.add()
        if not matches_sha256(doc, text):
            mismatches.append(doc["doc_id"])
            continue
        data = text.encode("utf-8")
        total_bytes += len(data)
        written += 1
        if out is None:
            sys.stdout.buffer.write(data)
            continue
        name, _ = _target(doc)
        if doc["format"] == "text" and name == doc["doc_id"]:
            _write(FileSystems.join(out, name), data)
        else:
            fields = json.loads(doc["metadata"]) if doc["metadata"] else {id_field: doc["doc_id"]}
            line = json_line({**fields, text_field: text})
            records.setdefault(name, []).append((doc["record"] or 0, line.encode("utf-8")))
    for name, lines in sorted(records.items()):
        _write(FileSystems.join(out, name), b"".join(line for _, line in sorted(lines, key=lambda r: r[0])))
    _raise_mismatches(mismatches, store_path)
    return {"documents": written, "bytes": total_bytes, "version": store.version}


def _raise_mismatches(mismatches: list[str], store_path: str) -> None:
    if mismatches:
        shown = ", ".join(repr(m) for m in mismatches[:5]) + (" ..." if len(mismatches) > 5 else "")
        raise VerificationFailed(Errors.E501.format(count=len(mismatches), docs=shown, store=store_path))


def _check_out_file(out: str) -> None:
    if os.path.isdir(out):
        raise InvalidOption(Errors.E260.format(out=out))
    if FileSystems.exists(out):
        raise InvalidOption(Errors.E261.format(out=out))


def decompress_scenes(store_path: str, out: str | None, level: int | None = None, scene_ids: list[str] | None = None,
                      doc_ids: list[str] | None = None, gist: bool = False, fmt: str = "text",
                      version: int | None = None) -> dict:
    """Write the chosen scenes (:func:`select_scenes`) as :func:`render_record` gives them, to ``out``
    (a new file) or standard output. Exact texts come from documents verified by their sha256."""
    store = StoreVersion(store_path, version)
    if out is not None:
        _check_out_file(out)
    scenes = select_scenes(store, level, scene_ids, doc_ids)
    mismatches: list[str] = []
    count, total_bytes, documents = 0, 0, set()
    sink = FileSystems.create(out, compression_type=CompressionTypes.UNCOMPRESSED) if out is not None else sys.stdout.buffer
    try:
        for record in scene_records(store, scenes, gist, mismatches, whole_store=not (scene_ids or doc_ids)):
            data = render_record(record, fmt).encode("utf-8")
            sink.write(data)
            count += 1
            total_bytes += len(data)
            documents.add(record["doc_id"])
    finally:
        if out is not None:
            sink.close()
        else:
            sink.flush()
    _raise_mismatches(mismatches, store_path)
    return {"scenes": count, "documents": len(documents), "bytes": total_bytes, "version": store.version}


def run(argv: list[str]) -> dict:
    args = build_parser().parse_args(argv)
    if args.level is not None or args.scene or args.gist:
        if args.gist and args.level is None and not args.scene:
            raise InvalidOption(Errors.E262)
        result = decompress_scenes(args.store, args.out, args.level, args.scene, args.doc, args.gist, args.format, args.version)
        if args.out is not None:
            logger.info("wrote %s scene %s of %s documents from version %d to %s", f"{result['scenes']:,}",
                        "gists" if args.gist else "texts", f"{result['documents']:,}", result["version"], args.out)
        return result
    if args.format != "text":
        raise InvalidOption(Errors.E263)
    result = decompress(args.store, args.out, args.doc, args.version)
    if args.out is not None:
        logger.info("restored %s documents (%s bytes) from version %d into %s, all verified by sha256",
                    f"{result['documents']:,}", f"{result['bytes']:,}", result["version"], args.out)
    return result
