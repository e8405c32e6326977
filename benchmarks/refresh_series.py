"""Successive small refreshes of one store: how its bytes and each refresh's time grow.

    python benchmarks/refresh_series.py --tokens 1M --refreshes 10 --new 0.01 -- --embedder static

A token slice of the corpus (as compress_slice.py takes it) is cut into documents of about
``--doc-kb`` KB (as refresh_cost.py cuts it). The documents less the last ``refreshes * new`` of them
by bytes are compressed; then each refresh adds the next ``new`` share of the slice's bytes and
refreshes the store with everything so far. After each run: its wall time and peak memory (from
outside, its own process), the bytes of every file under the store (all versions together), and the
new version's store bytes and written bytes (manifest). At the end every version is verified and
the latest decompressed and compared byte for byte with the input. Arguments after ``--`` go to
compress (and to refresh, where it takes them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compress_slice import DEFAULT_CORPUS, make_slice, parse_tokens  # noqa: E402
from refresh_cost import COMPRESS_ONLY, split_documents, take_bytes, timed  # noqa: E402


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--tokens", default="1M", help="slice size: 1M, 500k, all (default: 1M)")
    ap.add_argument("--doc-kb", type=int, default=16, help="document size to cut the slice into (default: 16 KB)")
    ap.add_argument("--refreshes", type=int, default=10)
    ap.add_argument("--new", type=float, default=0.01, help="share of the slice's bytes each refresh adds (default: 0.01)")
    ap.add_argument("--keep", type=Path, help="keep the work folder here")
    ap.add_argument("extra", nargs="*", help="after --: options for compress (and refresh, where it takes them)")
    args = ap.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="hyperscene-series-"))
    shutil.rmtree(work, ignore_errors=True)
    (work / "slice").mkdir(parents=True)
    (work / "docs").mkdir()
    files, tokens = make_slice(args.corpus, parse_tokens(args.tokens), work / "slice")
    docs = split_documents(work / "slice", work / "docs", args.doc_kb * 1024)
    total = sum(d.stat().st_size for d in docs)
    # the documents that arrive later: the last ones by name, so each refresh adds a few whole documents
    later, later_bytes = take_bytes(list(reversed(docs)), args.refreshes * args.new * total)
    arriving = set(later)
    first = [d for d in docs if d not in arriving]
    later.reverse()
    refresh_extra = [a for i, a in enumerate(args.extra) if a not in COMPRESS_ONLY and (i == 0 or args.extra[i - 1] not in COMPRESS_ONLY)]

    corpus = work / "corpus"
    corpus.mkdir()
    for d in first:
        os.link(d, corpus / d.name)
    store = work / "store"
    seconds, peak, err = timed(["compress", str(corpus), "--out", str(store), *args.extra])
    (work / "compress.log").write_text(err)  # each run's log, with its stage timings
    rows = [{"run": "compress", "documents": len(first), "input_bytes": sum(d.stat().st_size for d in first),
             "seconds": round(seconds, 1), "peak_mib": peak, "store_bytes_on_disk": tree_bytes(store)}]
    print(json.dumps(rows[-1]), flush=True)
    step = args.new * total
    pending = list(later)
    for i in range(1, args.refreshes + 1):
        batch, _ = take_bytes(pending, step)
        pending = pending[len(batch):]
        for d in batch:
            os.link(d, corpus / d.name)
        seconds, peak, err = timed(["refresh", str(store), str(corpus), *refresh_extra])
        (work / f"refresh-{i}.log").write_text(err)
        manifest = json.loads(sorted(store.glob("v*/manifest.json"))[-1].read_text())
        on_disk = tree_bytes(store)
        rows.append({"run": f"refresh {i}", "documents": len(list(corpus.iterdir())), "new_documents": len(batch),
                     "new_bytes": sum(d.stat().st_size for d in batch), "seconds": round(seconds, 1), "peak_mib": peak,
                     "store_bytes_on_disk": on_disk, "added_share": round(on_disk / rows[-1]["store_bytes_on_disk"] - 1, 4),
                     "version_store_bytes": manifest["counts"]["store_bytes"],
                     "version_written_bytes": manifest["counts"].get("written_bytes", manifest["counts"]["store_bytes"]),
                     "fresh_units": manifest["counts"].get("fresh_units"), "known_units": manifest["counts"].get("known_units"),
                     "candidates_embedded": manifest["refresh"].get("candidates_embedded")})
        print(json.dumps(rows[-1]), flush=True)

    versions = sorted(int(p.parent.name[1:]) for p in store.glob("v*/manifest.json"))
    for version in versions:  # a version that does not verify stops the benchmark with verify's output
        timed(["verify", str(store), "--version", str(version)])
    restored = work / "restored"
    timed(["decompress", str(store), "--out", str(restored)])
    exact = all((restored / d.name).read_bytes() == d.read_bytes() for d in corpus.iterdir())
    first_refresh, last_refresh = rows[1], rows[-1]
    print(json.dumps({
        "slice_files": files, "slice_tokens": tokens, "documents": len(docs), "slice_bytes": total,
        "refreshes": args.refreshes, "new_share_each": args.new, "options": args.extra,
        "compress_seconds": rows[0]["seconds"],
        "first_refresh_seconds": first_refresh["seconds"], "last_refresh_seconds": last_refresh["seconds"],
        "last_over_first_refresh": round(last_refresh["seconds"] / first_refresh["seconds"], 3),
        "first_refresh_over_compress": round(first_refresh["seconds"] / rows[0]["seconds"], 3),
        "store_bytes_after_compress": rows[0]["store_bytes_on_disk"], "store_bytes_after_last": last_refresh["store_bytes_on_disk"],
        "growth_per_refresh": round((last_refresh["store_bytes_on_disk"] / rows[0]["store_bytes_on_disk"]) ** (1 / args.refreshes) - 1, 4),
        "versions_verified": len(versions), "latest_round_trip": exact,
        "rows": rows,
    }, indent=2))


if __name__ == "__main__":
    main()
