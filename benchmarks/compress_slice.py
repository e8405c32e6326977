"""Compress a token-sized slice of a corpus, decompress it, check every byte, and print the figures.

    python benchmarks/compress_slice.py --tokens 1M                      # first 1M tokens of en-gutenberg
    python benchmarks/compress_slice.py --corpus ../shared/corpora/ru-classics --lang ru --tokens all --distil
    python benchmarks/compress_slice.py --tokens 1M --also ../shared/corpora/ru-classics --lang xx   # English and Russian

The slice is whole files in name order until the token count (bundled MiniLM tokenizer) is reached.
Prints per-stage seconds (time inside each stage's own work, summed over workers), items/s and peak
memory; the total wall time and peak resident memory of compress; and the embedding floor: the time
to embed the same distinct units with the same embedder and the embed stage's own function outside
Beam, all in one call, in the same run, with the ratio total/floor. With --distil, also what the
distilled text export keeps and drops (benchmarks/distilled_share.py).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO.parent / "shared" / "corpora" / "en-gutenberg"


def parse_tokens(s: str) -> int | None:
    if s == "all":
        return None
    scale = {"k": 1_000, "K": 1_000, "M": 1_000_000, "m": 1_000_000}
    return int(float(s[:-1]) * scale[s[-1]]) if s[-1] in scale else int(s)


def make_slice(corpus: Path, tokens: int | None, dest: Path) -> tuple[int, int]:
    from hyperscene.transforms.model_catalog import resolve_model
    from hyperscene.transforms.tokens import count_tokens, load_tokenizer

    tokenizer = load_tokenizer(resolve_model("bundled")[0])
    total, n = 0, 0
    for f in sorted(p for p in corpus.rglob("*") if p.suffix in (".txt", ".md")):
        if tokens is not None and total >= tokens:
            break
        text = f.read_text(encoding="utf-8")
        total += sum(count_tokens(tokenizer, [text[i : i + 100_000] for i in range(0, len(text), 100_000)]))
        target = dest / f.relative_to(corpus)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)
        n += 1
    return n, total


def embedding_floor(store: Path, manifest: dict) -> tuple[float, int]:
    """Seconds to embed the store's distinct units with the same embedder, outside Beam: the embed
    stage's own function on all of them in one call (in token order over the whole slice, where the
    stage orders each bucket's)."""
    from hyperscene.transforms.vectorize import embed_texts
    from hyperscene.transforms.model_catalog import resolve_model
    from hyperscene.transforms.models import folder_for_embedder, load_embedder
    from hyperscene.transforms.store.reader import StoreVersion

    cfg = manifest["config"]
    texts = StoreVersion(str(store)).read("units", ["text"])["text"].to_pylist()
    folder = folder_for_embedder(resolve_model(cfg["model"])[0], cfg["embedder"], cfg["cache_dir"])
    model = load_embedder(folder, cfg["embedder"], cfg["device"], precision=cfg.get("precision", "auto"))
    embed_texts(model, texts[:256], cfg["batch_size"])  # warm-up, as a worker's first batch is
    start = time.perf_counter()
    embed_texts(model, texts, cfg["batch_size"])
    return time.perf_counter() - start, len(texts)


def level_counts(counts: dict, summary: dict) -> list[dict]:
    """Per level: scenes (units at level 0), mean tokens per scene, codebook size."""
    rows = [{"level": 0, "scenes": summary["units"], "mean_tokens": summary["tokens_per_hyperword"],
             "codebook_size": summary["codebook_size"]}]
    level = 1
    while f"level_{level}_scenes" in counts:
        n = counts[f"level_{level}_scenes"]
        rows.append({"level": level, "scenes": n, "mean_tokens": round(counts[f"level_{level}_tokens"] / n, 1),
                     "codebook_size": counts.get(f"level_{level}_codebook_size", 0)})
        level += 1
    return rows


STAGE_ORDER = ["read", "segment", "exact dedup", "count tokens", "embed", "train codebook", "assign", "near-duplicates",
               "scenes", "train level codebooks", "encode levels", "write"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--tokens", default="1M", help="slice size: 1M, 250k, all (default: 1M)")
    ap.add_argument("--lang", default="en")
    ap.add_argument("--also", type=Path, action="append", default=[], metavar="DIR",
                    help="add every .txt and .md file of DIR too (under its folder name), e.g. a corpus in another language")
    ap.add_argument("--keep", type=Path, help="keep the store here instead of a temporary folder")
    ap.add_argument("--no-floor", action="store_true", help="skip the embedding floor measurement")
    ap.add_argument("--distil", action="store_true", help="also report what the distilled text export keeps and drops")
    ap.add_argument("compress_args", nargs="*", help="extra arguments for hyperscene compress (after --)")
    args = ap.parse_args()

    from hyperscene.pipelines import compress, decompress
    from hyperscene.pipelines.cliutil import setup_logging
    from hyperscene.pipelines.inspect_store import summarise
    from hyperscene.transforms.store.reader import StoreVersion

    setup_logging()
    work = Path(tempfile.mkdtemp(prefix="hyperscene-bench-"))
    try:
        corpus = work / "corpus"
        files, tokens = make_slice(args.corpus, parse_tokens(args.tokens), corpus)
        for extra in args.also:
            more_files, more_tokens = make_slice(extra, None, corpus / extra.resolve().name)
            files, tokens = files + more_files, tokens + more_tokens
        store = args.keep or work / "store"
        start = time.monotonic()
        manifest = compress.run([str(corpus), "--out", str(store), "--lang", args.lang, *args.compress_args])
        wall = time.monotonic() - start
        # Compress runs in this process (the DirectRunner's workers too, unless --workers > 1), so
        # this peak covers it; the slice-making before it holds one book at a time.
        peak_mib = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024

        restored = work / "restored"
        start = time.monotonic()
        decompress.decompress(str(store), str(restored))
        decompress_wall = time.monotonic() - start
        originals = sorted(p.relative_to(corpus) for p in corpus.rglob("*") if p.is_file())
        mismatched = [str(p) for p in originals if not filecmp.cmp(corpus / p, restored / p, shallow=False)]

        summary = summarise(StoreVersion(str(store)))
        floor, n_floor = (None, 0) if args.no_floor else embedding_floor(store, manifest)
        stages = manifest["stages"]
        print(f"\n{'stage':<22}{'seconds':>9}{'items':>12}{'items/s':>10}{'peak MiB':>10}")
        for name in sorted(stages, key=lambda n: STAGE_ORDER.index(n) if n in STAGE_ORDER else 99):
            st = stages[name]
            print(f"{name:<22}{st['seconds']:>9.1f}{st['items']:>12,}{st['items_per_s'] or '-':>10}{st['peak_rss_mb']:>10,}")
        print(f"{'total (wall)':<22}{wall:>9.1f}{summary['units']:>12,}{round(summary['units'] / wall):>10}{round(peak_mib):>10,}")
        if floor:
            print(f"{'embedding floor':<22}{floor:>9.1f}{n_floor:>12,}{round(n_floor / floor):>10}")
            print(f"total / floor = {wall / floor:.2f}")
        report = {
            "corpus": args.corpus.name,
            "files": files,
            "slice_tokens": tokens,
            "embedder": manifest["model"]["embedder"],
            "units": summary["units"],
            "distinct_units": summary["distinct_units"],
            "near_duplicate_units": summary["near_duplicate_units"],
            "near_duplicate_occurrences": summary["near_duplicate_occurrences"],
            "hyperword_stream_length": summary["hyperword_stream_length"],
            "tokens_per_hyperword": summary["tokens_per_hyperword"],
            "codebook_size": summary["codebook_size"],
            "store_to_input": summary["store_to_input"],
            "compress_wall_s": round(wall, 1),
            "compress_peak_rss_mib": round(peak_mib),
            "embedding_floor_s": round(floor, 1) if floor else None,
            "total_over_floor": round(wall / floor, 2) if floor else None,
            "decompress_wall_s": round(decompress_wall, 1),
            "round_trip": f"{len(originals) - len(mismatched)}/{len(originals)} files byte-identical",
        }
        report["levels"] = level_counts(manifest["counts"], summary)
        report["model"] = {k: manifest["model"].get(k) for k in ("name", "embedder", "precision")}
        report["embed_units_per_s"] = stages.get("embed", {}).get("items_per_s")
        report["non_latin_units"] = manifest["counts"].get("non_latin_units")
        report["model_warnings"] = summary["model_warnings"]
        if args.distil:
            from distilled_share import breakdown

            report["distilled"] = breakdown(str(store), top=8)
        print(f"\n{'level':<7}{'scenes':>10}{'tokens/scene':>14}{'codebook':>10}")
        for row in report["levels"]:
            print(f"{row['level']:<7}{row['scenes']:>10,}{row['mean_tokens']:>14}{row['codebook_size']:>10,}")
        print(json.dumps(report, indent=2))
        return 1 if mismatched else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
