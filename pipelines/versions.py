"""``hyperscene log``: the versions of a store, oldest first.

A version exists once its manifest is published; a version folder without one is what a run that
did not finish left behind, and every reader ignores it, so it is listed as such.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from hyperscene.pipelines.cliutil import human
from hyperscene.transforms.errors import Errors, StoreError
from hyperscene.transforms.store.layout import MANIFEST, published_versions, version_dir, version_files

_FOLDER = re.compile(r"v(\d{6})$")
UNPUBLISHED = "unpublished (ignored)"
REMOVED = "removed (no manifest; holds files that later versions share)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hyperscene log",
        description="List a store's versions, oldest first: version, when it was published, documents, units, input "
                    "bytes, store bytes (every file the version consists of), written bytes (those it wrote itself; the others "
                    "it shares with earlier versions) and store format. A version folder without a manifest (left by a run that did "
                    "not finish) is listed as unpublished: no reader uses it.",
    )
    p.add_argument("store", help="store directory")
    p.add_argument("--json", action="store_true", help="print the versions as JSON")
    return p


def version_folders(store: str) -> set[int]:
    """Numbers of every vNNNNNN folder of the store, published or not (an empty folder only on a local disk)."""
    found = {int(m.group(1)) for name in version_files(store) if (m := _FOLDER.match(name.split("/", 1)[0]))}
    if FileSystems.get_scheme(store) is None and os.path.isdir(store):  # object stores have no empty folders
        found |= {int(m.group(1)) for name in os.listdir(store) if (m := _FOLDER.match(name)) and os.path.isdir(os.path.join(store, name))}
    return found


def _manifest(store: str, version: int) -> dict | None:
    try:
        with FileSystems.open(FileSystems.join(version_dir(store, version), MANIFEST),
                              compression_type=CompressionTypes.UNCOMPRESSED) as f:
            manifest = json.loads(f.read())
        return manifest if isinstance(manifest, dict) else None
    except Exception:
        return None


def _kind(manifest: dict) -> str:
    if "compact" in manifest:
        return f"compact of v{manifest['compact'].get('from_version')}"
    if "retrain" in manifest:
        return f"retrain of v{manifest['retrain'].get('from_version')}"
    if "refresh" in manifest:
        r = manifest["refresh"]
        return (f"refresh of v{r.get('from_version')}: +{r.get('new_documents', 0)} ~{r.get('changed_documents', 0)} "
                f"-{r.get('deleted_documents', 0)}")
    return "compress"


def list_versions(store: str) -> list[dict]:
    """One dict per version folder, ascending: ``version`` and ``status`` (``published``;
    ``unpublished``: a run that did not finish; ``removed``: an older folder without a manifest, as
    vacuum leaves one whose files later versions share; ``unreadable``: a manifest that is not JSON),
    and for a published version
    ``created_at``, ``documents``, ``units``, ``input_bytes``, ``store_bytes``, ``format_version``."""
    published = set(published_versions(store))
    rows = []
    for version in sorted(version_folders(store) | published):
        if version not in published:
            rows.append({"version": version, "status": "removed" if published and version < max(published) else "unpublished"})
            continue
        m = _manifest(store, version)
        if m is None:
            rows.append({"version": version, "status": "unreadable"})
            continue
        counts = m.get("counts") or {}
        rows.append({
            "version": version, "status": "published", "created_at": m.get("created_at"),
            "documents": counts.get("documents"), "units": counts.get("units"),
            "input_bytes": counts.get("input_bytes"), "store_bytes": counts.get("store_bytes"),
            "written_bytes": counts.get("written_bytes", counts.get("store_bytes")),
            "format_version": m.get("format_version"), "made_by": _kind(m),
        })
    return rows


def render(rows: list[dict]) -> str:
    header = ("version", "created_at", "documents", "units", "input bytes", "store bytes", "written bytes", "format", "made by")

    def number(n) -> str:
        return "?" if n is None else human(n)

    lines = []
    for r in rows:
        if r["status"] == "published":
            lines.append((str(r["version"]), r["created_at"] or "?", number(r["documents"]), number(r["units"]),
                          number(r["input_bytes"]), number(r["store_bytes"]), number(r["written_bytes"]), number(r["format_version"]),
                          r.get("made_by") or "?"))
        else:
            lines.append((str(r["version"]), {"unpublished": UNPUBLISHED, "removed": REMOVED}.get(
                r["status"], "manifest unreadable (check it with: hyperscene verify)")))
    table = [header, *lines]
    widths = [max(len(row[i]) for row in table if len(row) == len(header) or i == 0) for i in range(len(header))]
    out = []
    for row in table:
        if len(row) == len(header):
            cells = [row[0].rjust(widths[0]), row[1].ljust(widths[1]), *(c.rjust(w) for c, w in zip(row[2:-1], widths[2:-1])), row[-1]]
        else:
            cells = [row[0].rjust(widths[0]), row[1]]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def run(argv: list[str]) -> list[dict]:
    args = build_parser().parse_args(argv)
    rows = list_versions(args.store)
    if not rows:
        raise StoreError(Errors.E402.format(store=args.store))
    if args.json:
        print(json.dumps({"store": args.store, "versions": rows}, indent=2))
    else:
        print(render(rows))
    sys.stdout.flush()
    return rows
