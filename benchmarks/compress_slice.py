"""Compress a token-sized slice of a corpus, decompress it, check every byte, and print the figures.

    python benchmarks/compress_slice.py --tokens 1M                      # first 1M tokens of en-gutenberg
    python benchmarks/compress_slice.py --corpus ../shared/corpora/ru-classics --lang ru --tokens all

The slice is whole files in name order until the token count (bundled MiniLM tokenizer) is reached.
Compress runs in a child process so its wall time and peak resident memory are its own.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import resource
import shutil
import subprocess
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
    from hyperscene.transforms.embed import resolve_model
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--tokens", default="1M", help="slice size: 1M, 250k, all (default: 1M)")
    ap.add_argument("--lang", default="en")
    ap.add_argument("--keep", type=Path, help="keep the store here instead of a temporary folder")
    ap.add_argument("compress_args", nargs="*", help="extra arguments for hyperscene compress (after --)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hyperscene-bench-"))
    try:
        corpus = work / "corpus"
        files, tokens = make_slice(args.corpus, parse_tokens(args.tokens), corpus)
        store = args.keep or work / "store"
        cmd = [sys.executable, "-m", "hyperscene.pipelines.cli", "compress", str(corpus), "--out", str(store),
               "--lang", args.lang, *args.compress_args]
        start = time.monotonic()
        subprocess.run(cmd, check=True)
        wall = time.monotonic() - start
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

        restored = work / "restored"
        start = time.monotonic()
        subprocess.run([sys.executable, "-m", "hyperscene.pipelines.cli", "decompress", str(store), "--out", str(restored)], check=True)
        decompress_wall = time.monotonic() - start
        originals = sorted(p.relative_to(corpus) for p in corpus.rglob("*") if p.is_file())
        mismatched = [str(p) for p in originals if not filecmp.cmp(corpus / p, restored / p, shallow=False)]

        summary = json.loads(subprocess.run(
            [sys.executable, "-m", "hyperscene.pipelines.cli", "inspect", str(store), "--json"],
            check=True, capture_output=True, text=True).stdout)
        report = {
            "corpus": args.corpus.name,
            "files": files,
            "slice_tokens": tokens,
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
            "decompress_wall_s": round(decompress_wall, 1),
            "round_trip": f"{len(originals) - len(mismatched)}/{len(originals)} files byte-identical",
        }
        print(json.dumps(report, indent=2))
        return 1 if mismatched else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
