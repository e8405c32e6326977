"""``hyperscene compact``: the latest version rewritten from many files into as few as a compress
writes, as a new version that decompresses to the same bytes (see transforms/store/compact.py).

Refreshes share the files of earlier versions and add small ones of their own; after many, a table
is many files. Compacting and then ``hyperscene vacuum STORE --keep 1`` leaves one version in few files.
"""

from __future__ import annotations

import argparse
import logging
import time

import apache_beam as beam

from hyperscene.pipelines import cliutil, job
from hyperscene.transforms.store.compact import Rewrite, plan_compaction, rewrite_files
from hyperscene.transforms.store.layers import LAYERED_TABLES
from hyperscene.transforms.store.publish import ManifestInfo, PublishVersion
from hyperscene.transforms.store.reader import StoreVersion

logger = logging.getLogger("hyperscene")

# Counts the manifest computes from the files it lists, not carried over from the compacted version.
_FILE_COUNTS = ("store_bytes", "written_bytes", "vector_bytes")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hyperscene compact",
        description="Rewrite the latest version of a store, when its tables have come to be many files (one more set "
                    "of vector files per refresh), into as few files as a compress writes, as a new version with the "
                    "same rows. Nothing to rewrite: no new version. Old versions stay until hyperscene vacuum removes "
                    "them. Unrecognised --flags go to Apache Beam.",
    )
    p.add_argument("store", help="a store written by hyperscene compress")
    return p


def _rewrite(rewrite: Rewrite, store: str, version: int, path: str) -> list[dict]:
    stored = StoreVersion(store, version)
    return rewrite_files(rewrite, lambda entry: stored.read_file(rewrite.table, entry), path)


def run(argv: list[str]) -> dict:
    """Compact; returns the new version's manifest plus ``stages``, or ``{"version": the latest,
    "changed": False}`` when every table is already as few files as a compress writes."""
    started = time.time()
    args, beam_args = build_parser().parse_known_args(argv)
    cliutil.check_beam_args(beam_args)
    with job.locked(args.store, "compact"):
        stored = StoreVersion(args.store)
        stored.check_files()
        version = stored.version + 1
        layered = frozenset(t for t in LAYERED_TABLES if stored.layered(t))
        rewrites, kept = plan_compaction(stored.entries(), version, stored.manifest["config"].get("num_shards", 1), layered)
        merged = sum(len(r.entries) for r in rewrites)
        if not rewrites:
            logger.info("nothing to compact: version %d's %d files are as few as a compress writes", stored.version,
                        len(stored.entries()))
            return {"version": stored.version, "changed": False, "files": len(stored.entries())}
        logger.info("compacting version %d of %s: %d files of %s into %d", stored.version, args.store, merged,
                    ", ".join(sorted({r.table for r in rewrites})), sum(len(r.names) for r in rewrites))
        info = ManifestInfo(
            config={**stored.manifest["config"], "out": args.store}, model=stored.manifest["model"], started_at=started,
            version=version,
            sections={"codebook": stored.manifest.get("codebook", {}),
                      "compact": {"from_version": stored.version, "files_before": len(stored.entries()),
                                  "files_merged": merged, "files_written": sum(len(r.names) for r in rewrites)}},
        )
        counts = [(k, v) for k, v in stored.manifest["counts"].items() if k not in _FILE_COUNTS]

        def build(p, path, scratch):
            files = (
                p | "Rewrites" >> beam.Create(rewrites)
                | "Rewrite" >> beam.FlatMap(_rewrite, store=args.store, version=stored.version, path=path),
                p | "Kept" >> beam.Create([stored.shared(e) for e in kept]),
            ) | "Files" >> beam.Flatten()
            (files, p | "Counts" >> beam.Create(counts)) | "Publish" >> PublishVersion(path, info)

        needed = sum(e["bytes"] for r in rewrites for e in r.entries)
        manifest, stages = job.write_version(args.store, version, build, beam_args, needed)
    return {**manifest, "changed": True, "stages": stages}


def print_result(result: dict) -> None:
    if not result.get("changed"):
        print(f"nothing to compact: version {result['version']}'s {result['files']} files are as few as a compress writes")
        return
    c = result["compact"]
    print(f"version {result['version']} published: {c['files_merged']} files of version {c['from_version']} merged into "
          f"{c['files_written']}; {len(result['files'])} files in all (were {c['files_before']}); "
          f"remove the old versions' files with: hyperscene vacuum {result['config']['out']} --keep 1")
