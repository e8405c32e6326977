"""Measure near-duplicate thresholds on STS-B's human-scored sentence pairs.

    python benchmarks/near_dup_threshold.py                       # English, bundled MiniLM
    python benchmarks/near_dup_threshold.py --lang ru --model PATH
    python benchmarks/near_dup_threshold.py --embedder static      # model2vec distilled from MiniLM

For each cosine threshold it prints how many pairs the model puts at or above it, and of those the
share rated "mostly equivalent" or better (score >= 4 of 5) by people: the precision of a merge. The
default threshold is the lowest one with precision >= 0.85. Also prints the Spearman correlation
between cosine and the human score (STS quality of the model).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

STSB = Path(__file__).resolve().parent.parent.parent / "shared" / "corpora" / "stsb"
THRESHOLDS = [0.80, 0.85, 0.88, 0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.98]


def load_pairs(lang: str, splits: list[str]) -> tuple[list[str], list[str], np.ndarray]:
    a, b, scores = [], [], []
    for split in splits:
        with open(STSB / f"stsb-{lang}-{split}.csv", newline="", encoding="utf-8") as f:
            for row in csv.reader(f):
                a.append(row[0])
                b.append(row[1])
                scores.append(float(row[2]))
    return a, b, np.array(scores)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lang", default="en", choices=["en", "ru"])
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--embedder", default="torch", choices=["torch", "static"])
    ap.add_argument("--splits", default="dev,test", help="STS-B splits to use (default: dev,test)")
    ap.add_argument("--min-score", type=float, default=4.0, help="human score that counts as a duplicate")
    ap.add_argument("--precision", type=float, default=0.85, help="precision the chosen threshold must reach")
    args = ap.parse_args()

    from scipy.stats import spearmanr

    from hyperscene.transforms.models import load_embedder, resolve_model, static_model

    folder = resolve_model(args.model)[0]
    if args.embedder == "static":
        folder = static_model(folder)
    model = load_embedder(folder, args.embedder)
    a, b, scores = load_pairs(args.lang, args.splits.split(","))
    ea = model.encode(a, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    eb = model.encode(b, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    cosine = (ea * eb).sum(axis=1)
    positive = scores >= args.min_score

    rows, chosen = [], None
    for t in THRESHOLDS:
        predicted = cosine >= t
        hits = int((predicted & positive).sum())
        precision = hits / predicted.sum() if predicted.sum() else float("nan")
        rows.append({"threshold": t, "pairs_merged": int(predicted.sum()), "precision": round(precision, 3),
                     "recall": round(hits / positive.sum(), 3)})
        if chosen is None and precision >= args.precision:
            chosen = t
    print(f"{args.embedder} embedder; STS-B {args.lang} ({args.splits}): {len(scores)} pairs, {int(positive.sum())} with score >= {args.min_score}")
    print(f"Spearman(cosine, human score) = {spearmanr(cosine, scores).statistic:.4f}")
    print(f"{'threshold':>9} {'merged':>7} {'precision':>9} {'recall':>7}")
    for r in rows:
        print(f"{r['threshold']:>9.2f} {r['pairs_merged']:>7} {r['precision']:>9.3f} {r['recall']:>7.3f}")
    print(json.dumps({"lowest_threshold_with_precision": chosen, "precision_target": args.precision}))


if __name__ == "__main__":
    main()
