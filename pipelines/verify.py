"""``hyperscene verify``: check one version of a store against its manifest, and its documents
against the sha256 of their original bytes.

1. Every data file the manifest lists must exist, with the size, sha256 and row count recorded
   there. A file whose bytes changed is named, and read in full to say whether it still reads as
   Parquet at all.
2. Every document is rebuilt from occurrences and units exactly as decompress rebuilds it
   (:func:`hyperscene.pipelines.decompress.assemble_documents`) and must match its sha256. When a
   file of the documents, occurrences or units table is missing or does not read as Parquet, the
   document check is skipped, with a line saying why.
3. A file in the version's folder that the manifest does not list is a warning, not a failure.

Each problem is one line on standard output (``error``, ``warning`` or ``skipped``, then the file
relative to the store, then what is wrong); a clean run prints one summary line. The exit status
is 0 when nothing is wrong (warnings allowed), 1 otherwise. Files are read through Beam's
FileSystems, so ``gs://`` and ``s3://`` stores work where their extras are installed.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import sys
from typing import Callable

from hyperscene.transforms.store.documents import OCCURRENCE_COLUMNS, UNIT_COLUMNS, assemble_documents, matches_sha256
from hyperscene.transforms.errors import Errors, StoreDamaged, VerificationFailed
from hyperscene.transforms.progress import Progress
from hyperscene.transforms.store.layers import keep_live, live_ids
from hyperscene.transforms.store.layout import MANIFEST, read_bytes, version_files
from hyperscene.transforms.store.reader import StoreVersion, as_today, entry_name, entry_problem

logger = logging.getLogger("hyperscene")

# The tables documents are rebuilt from, and the columns read of each (None: all).
DOCUMENT_TABLES = {"documents": None, "occurrences": OCCURRENCE_COLUMNS, "units": UNIT_COLUMNS}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hyperscene verify",
        description="Check a store version: every data file against the size, sha256 and row count in its manifest, "
                    "every document (rebuilt as decompress rebuilds it) against the sha256 of its original bytes, and "
                    "the version's folder for files the manifest does not list (a warning). One line per problem; "
                    "exit status 0 when clean, 1 when anything is wrong.",
    )
    p.add_argument("store", help="store directory")
    p.add_argument("--version", type=int, help="store version (default: the latest)")
    return p


def _one_line(e: Exception, limit: int = 160) -> str:
    text = " ".join(str(e).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class Report:
    """Problems found, each written as one line as soon as it is found."""

    def __init__(self, emit: Callable[[str], None]):
        self.emit = emit
        self.problems: list[dict] = []

    def add(self, severity: str, file: str | None, message: str, document: str | None = None) -> None:
        """One problem: of ``file`` (relative to the store; several joined by commas), or of ``document``
        (``file`` then the documents file holding its row), or with neither of the documents as a whole."""
        self.problems.append({"severity": severity, "file": file, "document": document, "message": message})
        where = f"document {document!r}" if document is not None else file or "documents"
        self.emit(f"{severity:<7} {where}: {message}")

    def count(self, severity: str, documents: bool | None = None) -> int:
        return sum(1 for p in self.problems if p["severity"] == severity
                   and (documents is None or (p["document"] is not None) == documents))


def _open_version(store_path: str, version: int | None) -> StoreVersion:
    try:
        return StoreVersion(store_path, version)
    except StoreDamaged as e:  # the version's index itself is damaged: none of its files can be checked
        raise VerificationFailed(Errors.E504.format(file=e.file, store=store_path, problem=e.problem)) from None


def _manifest_entries(store: StoreVersion, prefix: str, report: Report) -> list[dict]:
    """The manifest's file entries that have every field a check needs; the others are reported."""
    files = store.manifest.get("files")
    if not isinstance(files, list):
        raise VerificationFailed(Errors.E504.format(file=f"{prefix}/{MANIFEST}", store=store.store, problem="lists no files"))
    entries = []
    for entry in files:
        problem = entry_problem(entry, store.version)
        if problem is None:
            entries.append(entry)
        else:
            report.add("error", f"{prefix}/{MANIFEST}", f"{problem} (not read)")
    return sorted(entries, key=lambda e: e["path"])


def _parse(data: bytes, table: str, full: bool):
    """(rows, for the tables documents are rebuilt from the columns read, else None) of one Parquet
    file. ``full``: decode every page of every column, to tell whether a changed file still reads."""
    import pyarrow.parquet as pq

    from hyperscene.schemas import TABLES

    if full:
        part = pq.read_table(io.BytesIO(data))
        rows = part.num_rows
    elif table in DOCUMENT_TABLES:
        part = pq.read_table(io.BytesIO(data), columns=DOCUMENT_TABLES[table])
        rows = part.num_rows
    else:
        return pq.ParquetFile(io.BytesIO(data)).metadata.num_rows, None
    if table not in DOCUMENT_TABLES:
        return rows, None
    columns = DOCUMENT_TABLES[table] or TABLES[table].names
    return rows, as_today(table, part.select(columns))


def verify_store(store_path: str, version: int | None = None, emit: Callable[[str], None] | None = None) -> dict:
    """Check one version (default: the latest); every problem goes to ``emit`` as one line (default:
    standard output). Returns the counts and the problems; raises nothing for a damaged store (see
    :func:`run`), StoreError when there is no such version."""
    if emit is None:
        def emit(line: str) -> None:
            print(line, flush=True)

    report = Report(emit)
    store = _open_version(store_path, version)
    prefix = f"v{store.version:06d}"
    entries = _manifest_entries(store, prefix, report)
    if store.manifest.get("version") != store.version:
        report.add("error", f"{prefix}/{MANIFEST}", f"says it is version {store.manifest.get('version')!r}, "
                   f"but its folder is version {store.version}")

    present = version_files(store_path)  # the version's own folder, and those of the earlier versions it shares files of

    # 1. Data files against the manifest.
    parts: dict[str, list[tuple[str, object]]] = {t: [] for t in DOCUMENT_TABLES}
    unusable: dict[str, list[str]] = {t: [] for t in DOCUMENT_TABLES}
    checked_files = checked_bytes = 0
    progress = Progress("verify files", "bytes")
    for entry in entries:
        name, table = entry_name(entry, store.version), entry["table"]
        if name not in present:
            report.add("error", name, "missing: the manifest lists it, the version's folder does not hold it"
                       if name.startswith(prefix + "/") else "missing: the manifest lists it as a file of an earlier version, whose folder does not hold it")
            unusable.get(table, []).append(name)
            continue
        try:
            data = read_bytes(store.file_path(entry))
        except Exception as e:
            report.add("error", name, f"cannot be read ({_one_line(e)})")
            unusable.get(table, []).append(name)
            continue
        checked_files += 1
        checked_bytes += len(data)
        progress.add(len(data))
        wrong = []
        if len(data) != entry["bytes"]:
            wrong.append(f"{len(data):,} bytes, the manifest says {entry['bytes']:,}")
        else:
            digest = hashlib.sha256(data).hexdigest()
            if digest != entry["sha256"]:
                wrong.append(f"sha256 {digest[:16]}… differs from the manifest's {entry['sha256'][:16]}…")
        try:
            rows, columns = _parse(data, table, full=bool(wrong))
        except Exception as e:
            wrong.append(f"{'no longer reads' if wrong else 'does not read'} as Parquet ({_one_line(e)})")
            unusable.get(table, []).append(name)
        else:
            changed = bool(wrong)
            if rows != entry["rows"]:
                wrong.append(f"holds {rows:,} rows, the manifest says {entry['rows']:,}")
            if changed:
                wrong.append("it still reads as Parquet")
            if columns is not None:
                if table == "occurrences":  # the rows of live revisions only, once the documents are read
                    columns = (columns, store.documents_range(entry))
                parts[table].append((name, columns))
        if wrong:
            report.add("error", name, "; ".join(wrong))
        del data

    # 2. Files the manifest does not list.
    listed = {entry_name(e, store.version) for e in entries} | {f"{prefix}/{MANIFEST}"}
    for name in sorted(n for n in set(present) - listed if n.startswith(prefix + "/")):
        report.add("warning", name, "in the version's folder but not in its manifest (not part of the version)")

    # 3. Documents against their sha256.
    documents = _check_documents(store, prefix, parts, unusable, report)

    errors = report.count("error")
    result = {
        "store": store_path, "version": store.version, "files": checked_files, "bytes": checked_bytes,
        "documents": documents["checked"], "documents_verified": documents["verified"],
        "documents_skipped": documents["skipped"], "errors": errors, "warnings": report.count("warning"),
        "problems": report.problems,
    }
    return result


def _check_documents(store: StoreVersion, prefix: str, parts: dict, unusable: dict, report: Report) -> dict:
    import pyarrow as pa
    import pyarrow.compute as pc

    blocked = [name for t in DOCUMENT_TABLES for name in unusable[t]]
    unlisted = [t for t in DOCUMENT_TABLES if not parts[t] and not unusable[t]]
    if blocked or unlisted:
        why = (f"{', '.join(blocked)} {'is' if len(blocked) == 1 else 'are'} missing or unreadable" if blocked
               else f"the manifest lists no file of the {', '.join(unlisted)} table")
        report.add("skipped", None, f"not checked against their sha256: {why}")
        return {"checked": 0, "verified": 0, "skipped": True}

    documents = pa.concat_tables([t for _, t in parts["documents"]])
    if store.layered("occurrences"):  # its files are shared: keep each one's rows of live revisions (layers.py)
        revisions = {d: v for d, v, gone in zip(documents["doc_id"].to_pylist(), documents["added_in_version"].to_pylist(),
                                                documents["deleted"].to_pylist()) if not gone}
        parts["occurrences"] = [(name, keep_live(t, live_ids(revisions, *span))) for name, (t, span) in parts["occurrences"]]
    else:
        parts["occurrences"] = [(name, t) for name, (t, _) in parts["occurrences"]]
    occurrences = pa.concat_tables([t for _, t in parts["occurrences"]])
    units = pa.concat_tables([t for _, t in parts["units"]])
    doc_file = {d: name for name, t in parts["documents"] for d in t["doc_id"].to_pylist()}
    occ_files: dict[str, list[str]] = {}
    for name, t in parts["occurrences"]:
        for d in pc.unique(t["doc_id"]).to_pylist():
            occ_files.setdefault(d, []).append(name)
        orphans = pc.unique(t.filter(pc.invert(pc.is_in(t["doc_id"], value_set=documents["doc_id"])))["doc_id"]).to_pylist()
        if orphans:
            report.add("error", name, f"holds occurrences of {len(orphans):,} document id(s) the documents table lacks, "
                                      f"e.g. {sorted(orphans)[0]!r}")
    text_of = dict(zip(units["unit_id"].to_pylist(), units["text"].to_pylist()))
    del units
    unit_files = [name for name, _ in parts["units"]]
    unit_file: dict[str, str] | None = None

    def files_of(unit_ids: list[str]) -> str:
        nonlocal unit_file
        if len(unit_files) == 1:
            found = unit_files
        else:
            if unit_file is None:  # built on the first mismatch only
                unit_file = {u: name for name, t in parts["units"] for u in t["unit_id"].to_pylist()}
            found = sorted({unit_file[u] for u in unit_ids if u in unit_file})
        return " and ".join([*occ_files.get(doc_id, []), *found]) or "no occurrences"

    checked = verified = 0
    progress = Progress("verify documents", "documents")
    for doc, pieces, unit_ids in assemble_documents(documents, occurrences, text_of):
        doc_id = doc["doc_id"]
        checked += 1
        progress.add()
        if None in pieces:
            missing = unit_ids[pieces.index(None)]
            report.add("error", doc_file[doc_id], f"uses unit {missing} (position {pieces.index(None)}), which the units "
                       f"table lacks", document=doc_id)
        elif not matches_sha256(doc, doc["prefix"] + "".join(pieces)):
            report.add("error", doc_file[doc_id], f"its text rebuilt from {files_of(unit_ids)} does not match the sha256 "
                       f"in {doc_file[doc_id]}", document=doc_id)
        else:
            verified += 1
    return {"checked": checked, "verified": verified, "skipped": False}


def summary_line(result: dict) -> str:
    files = f"{result['files']:,} files ({result['bytes']:,} bytes)"
    if result["documents_skipped"]:
        docs = "documents not checked"
    else:
        docs = f"{result['documents_verified']:,} of {result['documents']:,} documents match their sha256"
    warnings = f"; {result['warnings']:,} warning(s)" if result["warnings"] else ""
    return f"{result['store']} version {result['version']}: {files} checked against the manifest, {docs}{warnings}"


def run(argv: list[str]) -> dict:
    args = build_parser().parse_args(argv)
    result = verify_store(args.store, args.version)
    if result["errors"]:
        file_errors = sum(1 for p in result["problems"] if p["severity"] == "error" and p["document"] is None)
        doc_errors = result["errors"] - file_errors
        found = []
        if file_errors:
            found.append(f"{file_errors:,} file problem{'s' if file_errors != 1 else ''}")
        if result["documents_skipped"]:
            found.append("documents not checked")
        else:
            found.append(f"{doc_errors:,} of {result['documents']:,} documents do not rebuild to their sha256")
        raise VerificationFailed(Errors.E505.format(store=result["store"], version=result["version"], found=", ".join(found)))
    print(f"ok      {summary_line(result)}")
    sys.stdout.flush()
    return result
