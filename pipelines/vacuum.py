"""``hyperscene vacuum``: delete the versions before the last N and every file no kept version uses.

Versions share files (a refresh lists the vector files of the versions before it), so a version's
folder may hold files that later versions still use: those stay. Runs under the writer's lock and in
an order that a kill at any moment cannot hurt a kept version (see transforms/store/vacuum.py).
Readers take no lock: do not vacuum away a version that someone is reading.
"""

from __future__ import annotations

import argparse
import json
import logging

from hyperscene.pipelines import job
from hyperscene.transforms.errors import Errors, InvalidOption
from hyperscene.transforms.progress import Progress
from hyperscene.transforms.store.vacuum import VacuumPlan, apply_vacuum, plan_vacuum

logger = logging.getLogger("hyperscene")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hyperscene vacuum",
        description="Delete the versions of a store before the last N, and every file under its version folders that no "
                    "kept version uses (files later versions share stay; leftovers of interrupted runs go). Kept "
                    "versions are never touched, even if the vacuum is killed.",
    )
    p.add_argument("store", help="a store written by hyperscene compress")
    p.add_argument("--keep", type=int, required=True, metavar="N", help="how many of the latest versions to keep (1 or more)")
    p.add_argument("--dry-run", action="store_true", help="say what would be deleted, and delete nothing")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def run(argv: list[str]) -> dict:
    args = build_parser().parse_args(argv)
    if args.keep < 1:
        raise InvalidOption(Errors.E298.format(value=args.keep))
    with job.locked(args.store, "vacuum"):
        plan = plan_vacuum(args.store, args.keep)
        if not args.dry_run:
            apply_vacuum(args.store, plan, Progress("vacuum", "files"))
            logger.info("vacuum of %s: %d version(s) removed, %d file(s) deleted", args.store, len(plan.dropped), len(plan.files))
    return {**_as_dict(plan), "store": args.store, "dry_run": args.dry_run, "json": args.json}


def _as_dict(plan: VacuumPlan) -> dict:
    return {"kept": list(plan.kept), "removed": list(plan.dropped), "files": len(plan.files), "freed_bytes": plan.freed_bytes}


def print_result(result: dict) -> None:
    if result.pop("json"):
        print(json.dumps(result, indent=2))
        return
    would = "would remove" if result["dry_run"] else "removed"
    removed = ", ".join(map(str, result["removed"])) or "none"
    print(f"{result['store']}: {would} version(s) {removed} and {result['files']:,} file(s), {result['freed_bytes']:,} bytes; "
          f"kept version(s) {', '.join(map(str, result['kept']))}")
