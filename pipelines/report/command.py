"""``hyperscene report``: its options, their checks before anything is written, and the run that
reads a store version and writes the page."""

from __future__ import annotations

import argparse
import sys

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from hyperscene.pipelines.cliutil import human
from hyperscene.pipelines.report.reading import DEFAULT_GROUPS, DEFAULT_MAX_POINTS, DEFAULT_TREES, gather
from hyperscene.pipelines.report.page import render_html
from hyperscene.transforms.errors import Errors, InvalidOption
from hyperscene.transforms.store.reader import StoreVersion


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hyperscene report",
        description="Write one self-contained HTML page about a store version (no network fetches: plots are inline "
                    "SVG, hover text needs no JavaScript): its summary, cluster sizes, near-duplicate similarities "
                    "with the threshold, tokens per record and compression by level, a 2-D map of the hyperwords, the "
                    "largest near-duplicate groups and a few documents' scene trees.")
    p.add_argument("store", help="store directory")
    p.add_argument("--out", required=True, help="HTML file to write: new, or replaced with --overwrite; never inside the store")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--version", type=int, help="store version (default: the latest)")
    p.add_argument("--max-points", type=int, default=DEFAULT_MAX_POINTS, metavar="N",
                   help=f"hyperwords drawn on the map, the largest first (default: {DEFAULT_MAX_POINTS}; the page says "
                        "how many were left out)")
    p.add_argument("--groups", type=int, default=DEFAULT_GROUPS, metavar="N",
                   help=f"near-duplicate groups listed, the largest first (default: {DEFAULT_GROUPS})")
    p.add_argument("--trees", type=int, default=DEFAULT_TREES, metavar="N",
                   help=f"scene trees drawn, of the documents with the most units (default: {DEFAULT_TREES})")
    p.add_argument("--doc", action="append", metavar="ID", help="draw this document's scene tree instead (repeatable)")
    return p


def _check(args) -> None:
    for name, value in (("--max-points", args.max_points), ("--groups", args.groups), ("--trees", args.trees)):
        if value < 0:
            raise InvalidOption(Errors.E293.format(option=name, value=value))
    if FileSystems.get_scheme(args.out) is None:
        import os

        if os.path.isdir(args.out):
            raise InvalidOption(Errors.E294.format(out=args.out, example=f"{args.out.rstrip('/')}/report.html"))
        parent = os.path.dirname(os.path.abspath(args.out))
        if not os.path.isdir(parent):
            raise InvalidOption(Errors.E295.format(out=args.out, parent=parent))
        store, out = os.path.realpath(args.store), os.path.realpath(args.out)
        if os.path.commonpath([store, out]) == store:
            raise InvalidOption(Errors.E296.format(out=args.out, store=args.store))
    if FileSystems.exists(args.out) and not args.overwrite:
        raise InvalidOption(Errors.E297.format(out=args.out))


def report(store_path: str, out: str, version: int | None = None, max_points: int = DEFAULT_MAX_POINTS,
           groups: int = DEFAULT_GROUPS, trees: int = DEFAULT_TREES, doc_ids: list[str] | None = None) -> dict:
    store = StoreVersion(store_path, version)
    if doc_ids:
        from hyperscene.transforms.store.documents import check_documents

        check_documents(store, doc_ids)
    data = gather(store, max_points, groups, trees, doc_ids)
    page = render_html(data, store).encode("utf-8")
    with FileSystems.create(out, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(page)
    return {"out": out, "bytes": len(page), "version": store.version, "points": len(data["map"]["points"]),
            "groups": len(data["groups"]["top"]), "trees": len(data["trees"])}


def run(argv: list[str]) -> dict:
    args = build_parser().parse_args(argv)
    _check(args)
    result = report(args.store, args.out, args.version, args.max_points, args.groups, args.trees, args.doc)
    print(f"wrote {result['out']} ({human(result['bytes'])} bytes): store version {result['version']}, "
          f"{result['points']:,} hyperwords on the map, {result['groups']:,} near-duplicate groups, {result['trees']:,} scene trees")
    sys.stdout.flush()
    return result
