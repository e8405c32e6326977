"""The cost of a refresh with a little new data, against compressing everything again.

    python benchmarks/refresh_cost.py --tokens 1M --new 0.01,0.1 -- --embedder static
    python benchmarks/refresh_cost.py --tokens 1M --new 0.01,0.1            # MiniLM (torch)

A token slice of the corpus (whole files in name order, as compress_slice.py takes it) is cut into
documents of about ``--doc-kb`` KB at paragraph breaks, so that 1% of the data is a few documents.
Then: one full compress of all documents (timed); and for each fraction F, a compress of the
documents less the last F of them by bytes (in an order set by a hash of their names), followed by a
refresh with all documents (timed). Each run is its own process; its wall time and peak resident
memory are measured from outside. The refreshed store is checked byte for byte against the input.
Arguments after ``--`` go to both compress and refresh (compress only for model options).

With ``--grow`` the store is compressed once, from the whole slice, and each fraction of new data is
cut from the corpus files after the slice and refreshed into a copy of it: one compress instead of
one per fraction, against a full compress of the slice without the new data. ``--base-store`` reuses
a store compressed from this work folder's ``all/`` (an earlier run's, with ``--keep``), and
``--base-seconds`` is that compress's time, as the earlier run printed it.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from compress_slice import DEFAULT_CORPUS, make_slice, parse_tokens  # noqa: E402

PARAGRAPH = re.compile(rb"\r?\n\r?\n")
HYPERSCENE = [sys.executable, "-m", "hyperscene.pipelines.cli"]
COMPRESS_ONLY = ("--embedder", "--model", "--seed", "--codebook-size", "--levels", "--near-dup-threshold", "--lang")


def split_documents(source: Path, dest: Path, doc_bytes: int) -> list[Path]:
    """Every file of ``source`` cut at paragraph breaks into documents of about ``doc_bytes``."""
    written = []
    for f in sorted(source.rglob("*.txt")):
        text = f.read_bytes()
        start, part = 0, 0
        while start < len(text):
            found = PARAGRAPH.search(text, start + doc_bytes)
            end = found.end() if found else len(text)
            out = dest / f"{f.stem}.{part:03d}.txt"
            out.write_bytes(text[start:end])
            written.append(out)
            start, part = end, part + 1
    return written


def timed(args: list[str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS MiB, stderr tail) of one hyperscene run in its own process."""
    start = time.perf_counter()
    proc = subprocess.Popen(HYPERSCENE + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"hyperscene {' '.join(args[:1])} failed ({proc.returncode}):\n{err[-3000:]}")
    return wall, usage.ru_maxrss // 1024, err


def take_bytes(docs: list[Path], limit: float) -> tuple[list[Path], int]:
    """Documents from the front of ``docs`` until their bytes reach ``limit``."""
    taken, size = [], 0
    for d in docs:
        if size >= limit:
            break
        taken.append(d)
        size += d.stat().st_size
    return taken, size


def grow(args, fractions: list[float], work: Path, docs: list[Path], total: int, full_s: float, full_mb,
         refresh_extra: list[str]) -> list[dict]:
    """Each fraction of new data, cut from the corpus files after the slice, refreshed into a copy
    of the store compressed from the whole slice."""
    taken = {p.name for p in (work / "slice").rglob("*") if p.is_file()}
    after = work / "after"
    shutil.rmtree(after, ignore_errors=True)
    after.mkdir()
    pool_src = work / "after-src"
    shutil.rmtree(pool_src, ignore_errors=True)
    pool_src.mkdir()
    pooled, enough = 0, max(fractions) * total * 1.5
    for f in sorted(args.corpus.rglob("*.txt")):  # split_documents reads .txt files only
        if f.name not in taken:
            shutil.copyfile(f, pool_src / f.name)
            pooled += f.stat().st_size
            if pooled > enough:
                break
    pool = split_documents(pool_src, after, args.doc_kb * 1024)
    base_store = args.base_store or work / "store-full"
    rows = []
    for fraction in fractions:
        new, size = take_bytes(pool, fraction * total)
        grown = work / f"grown-{fraction}"
        shutil.rmtree(grown, ignore_errors=True)
        grown.mkdir()
        for d in docs + new:
            os.link(d, grown / d.name)
        store = work / f"store-grow-{fraction}"
        shutil.rmtree(store, ignore_errors=True)
        shutil.copytree(base_store, store)
        refresh_s, refresh_mb, _ = timed(["refresh", str(store), str(grown), *refresh_extra])
        manifest = json.loads((store / "v000002" / "manifest.json").read_text())  # the refresh's (a retrain would be v3)
        restored = work / f"restored-grow-{fraction}"
        shutil.rmtree(restored, ignore_errors=True)
        timed(["decompress", str(store), "--out", str(restored)])
        exact = all((restored / d.name).read_bytes() == d.read_bytes() for d in docs + new)
        rows.append({
            "new_fraction": fraction, "new_documents": len(new), "new_bytes": size,
            "fresh_units": manifest["counts"].get("fresh_units"), "known_units": manifest["counts"].get("known_units"),
            "refresh_s": round(refresh_s, 1), "full_compress_s": round(full_s, 1),
            "refresh_over_full": round(refresh_s / full_s, 3), "refresh_peak_mib": refresh_mb, "full_peak_mib": full_mb,
            "drift_ratio": manifest["refresh"]["drift"]["ratio"], "round_trip": exact,
        })
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--tokens", default="1M", help="slice size: 1M, 500k, all (default: 1M)")
    ap.add_argument("--doc-kb", type=int, default=16, help="document size to cut the slice into (default: 16 KB)")
    ap.add_argument("--new", default="0.01,0.1", help="fractions of new data, by bytes (default: 0.01,0.1)")
    ap.add_argument("--keep", type=Path, help="keep the work folder here")
    ap.add_argument("--grow", action="store_true", help="new data from beyond the slice, into copies of one store")
    ap.add_argument("--base-store", type=Path, help="with --grow: a store already compressed from KEEP/all")
    ap.add_argument("--base-seconds", type=float, help="with --base-store: the time its compress took")
    ap.add_argument("extra", nargs="*", help="after --: options for compress (and refresh, where it takes them)")
    args = ap.parse_args()
    if args.base_store and not (args.grow and args.base_seconds):
        ap.error("--base-store needs --grow and --base-seconds (the time its compress took, for the ratio)")
    fractions = [float(x) for x in args.new.split(",") if x]

    work = Path(args.keep or tempfile.mkdtemp(prefix="refresh-cost-"))
    work.mkdir(parents=True, exist_ok=True)
    sliced = work / "slice"
    if sliced.exists():
        shutil.rmtree(sliced)
    sliced.mkdir()
    n_files, tokens = make_slice(args.corpus, parse_tokens(args.tokens), sliced)
    full = work / "all"
    if full.exists():
        shutil.rmtree(full)
    full.mkdir()
    docs = split_documents(sliced, full, args.doc_kb * 1024)
    total = sum(d.stat().st_size for d in docs)
    print(f"slice: {n_files} files, {tokens:,} tokens, cut into {len(docs)} documents ({total:,} bytes)", flush=True)
    refresh_extra = [a for i, a in enumerate(args.extra)
                     if not a.startswith(COMPRESS_ONLY) and not (i and args.extra[i - 1] in COMPRESS_ONLY)]

    if args.base_store:
        full_s, full_mb = args.base_seconds, None
    else:
        shutil.rmtree(work / "store-full", ignore_errors=True)
        full_s, full_mb, _ = timed(["compress", str(full), "--out", str(work / "store-full"), *args.extra])
        print(f"full compress: {full_s:.1f} s, peak {full_mb:,} MiB", flush=True)

    if args.grow:
        rows = grow(args, fractions, work, docs, total, full_s, full_mb, refresh_extra)
    else:
        rows = left_out_and_refreshed(args, fractions, work, docs, full, total, full_s, full_mb, refresh_extra)
    print_table(rows)
    if not args.keep:
        shutil.rmtree(work)


def left_out_and_refreshed(args, fractions: list[float], work: Path, docs: list[Path], full: Path, total: int,
                           full_s: float, full_mb, refresh_extra: list[str]) -> list[dict]:
    """Each fraction's documents left out of a first compress, then refreshed back in: the refresh
    against a compress of the very same final corpus."""
    rows = []
    order = sorted(docs, key=lambda d: hashlib.sha256(d.name.encode()).hexdigest())
    for fraction in fractions:
        new, size = take_bytes(list(reversed(order)), fraction * total)
        base = work / f"base-{fraction}"
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir()
        for d in docs:
            if d not in new:
                os.link(d, base / d.name)
        store = work / f"store-{fraction}"
        shutil.rmtree(store, ignore_errors=True)
        base_s, _, _ = timed(["compress", str(base), "--out", str(store), *args.extra])
        refresh_s, refresh_mb, err = timed(["refresh", str(store), str(full), *refresh_extra])
        manifest = json.loads((store / "v000002" / "manifest.json").read_text())
        restored = work / f"restored-{fraction}"
        shutil.rmtree(restored, ignore_errors=True)
        timed(["decompress", str(store), "--out", str(restored)])
        exact = all((restored / d.name).read_bytes() == d.read_bytes() for d in docs)
        rows.append({
            "new_fraction": fraction, "new_documents": len(new), "new_bytes": size,
            "fresh_units": manifest["counts"].get("fresh_units"), "known_units": manifest["counts"].get("known_units"),
            "base_compress_s": round(base_s, 1), "refresh_s": round(refresh_s, 1), "full_compress_s": round(full_s, 1),
            "refresh_over_full": round(refresh_s / full_s, 3), "refresh_peak_mib": refresh_mb, "full_peak_mib": full_mb,
            "drift_ratio": manifest["refresh"]["drift"]["ratio"], "round_trip": exact,
        })
        print(json.dumps(rows[-1]), flush=True)
    return rows


def print_table(rows: list[dict]) -> None:
    print("\n| new data | new docs | fresh units | refresh | full compress | refresh / full | refresh peak | round trip |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['new_fraction']:.0%} ({r['new_bytes']:,} B) | {r['new_documents']} | {r['fresh_units']:,} | "
              f"{r['refresh_s']} s | {r['full_compress_s']} s | {r['refresh_over_full']} | {r['refresh_peak_mib']:,} MiB | "
              f"{'exact' if r['round_trip'] else 'MISMATCH'} |")


if __name__ == "__main__":
    main()
