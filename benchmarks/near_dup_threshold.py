"""Measure near-duplicate thresholds on STS-B's human-scored sentence pairs.

    python benchmarks/near_dup_threshold.py                       # English, bundled MiniLM
    python benchmarks/near_dup_threshold.py --lang ru --model PATH
    python benchmarks/near_dup_threshold.py --embedder static      # model2vec distilled from MiniLM
    python benchmarks/near_dup_threshold.py --embedder openvino    # MiniLM exported to OpenVINO
    python benchmarks/near_dup_threshold.py --embedder openvino-int8  # ... with 8-bit weights (measured only)
    python benchmarks/near_dup_threshold.py --device cuda --speed-against ""  # MiniLM in float16 on a GPU
    python benchmarks/near_dup_threshold.py --model e5-small --lang ru --speed-against torch-float32,static

For each cosine threshold it prints how many pairs the model puts at or above it, and of those the
share rated "mostly equivalent" or better (score >= 4 of 5) by people: the precision of a merge. The
default threshold is the lowest one with precision >= 0.85. Next to it, the merge rule itself: the
pairs at or above the threshold that also pass the word check (transforms/near_dup_verify.py), with
their precision and recall. Also prints the Spearman correlation
between cosine and the human score (STS quality of the model), and the embedding speed in units/s
on the same sentences (all of both sides of the pairs), measured in the same run for the `torch`
embedder too (and any named with --speed-against; alternating, best of --repeats each), so they
compare under the same load. `torch` runs in the precision --precision picks (auto: bfloat16 on a
CPU with it in hardware); `torch-float32` is the same model in float32, for comparison. Each
embedder gets its own default batch (64 for torch and openvino on a CPU, 4,096 for static) unless
--batch-size is given.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

STSB = Path(__file__).resolve().parent.parent.parent / "shared" / "corpora" / "stsb"
EMBEDDERS = ("torch", "torch-float32", "static", "openvino", "openvino-int8")
THRESHOLDS = [0.80, 0.85, 0.88, 0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.98]


def load_pairs(lang: str, splits: list[str], folder: Path = STSB) -> tuple[list[str], list[str], np.ndarray]:
    a, b, scores = [], [], []
    for split in splits:
        with open(folder / f"stsb-{lang}-{split}.csv", newline="", encoding="utf-8") as f:
            for row in csv.reader(f):
                a.append(row[0])
                b.append(row[1])
                scores.append(float(row[2]))
    return a, b, np.array(scores)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lang", default="en", choices=["en", "ru"])
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--embedder", default="torch", choices=EMBEDDERS)
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (torch and static embedders)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the device's and embedder's (64 on a CPU, 512 on a GPU, 4096 static)")
    ap.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                    help="the torch embedder's (default: auto)")
    ap.add_argument("--stsb", type=Path, default=STSB, help="folder of the STS-B csv files (default: ../shared/corpora/stsb)")
    ap.add_argument("--repeats", type=int, default=2, help="timed passes per embedder; the best counts (default: 2)")
    ap.add_argument("--speed-against", default="torch",
                    help="embedders whose speed is measured in the same run, comma-separated (default: torch)")
    ap.add_argument("--splits", default="dev,test", help="STS-B splits to use (default: dev,test)")
    ap.add_argument("--min-score", type=float, default=4.0, help="human score that counts as a duplicate")
    ap.add_argument("--min-precision", type=float, default=0.85, help="precision the chosen threshold must reach")
    args = ap.parse_args()

    from scipy.stats import spearmanr

    from hyperscene.transforms.model_catalog import resolve_model
    from hyperscene.transforms.models import (
        default_batch_size, folder_for_embedder, load_embedder, load_openvino, openvino_model, torch_dtype)
    from hyperscene.transforms.near_dup_verify import verify

    base = resolve_model(args.model)[0]

    def load(embedder):
        if embedder == "openvino-int8":
            return load_openvino(openvino_model(base, weights="int8"))
        if embedder == "torch-float32":
            return load_embedder(base, "torch", args.device, precision="float32")
        return load_embedder(folder_for_embedder(base, embedder), embedder, args.device, precision=args.precision)

    def batch_size(embedder):
        return args.batch_size or default_batch_size(args.device, embedder)

    a, b, scores = load_pairs(args.lang, args.splits.split(","), args.stsb)
    texts = a + b
    models = {name: load(name) for name in dict.fromkeys([args.embedder, *filter(None, args.speed_against.split(","))])}
    speed = {name: 0.0 for name in models}
    vectors, encoded = None, {}
    for name, m in models.items():  # warm-up: the first calls of a model are slow
        m.encode(texts[:256], batch_size=batch_size(name))
    for _ in range(args.repeats):
        for name, m in models.items():
            start = time.perf_counter()
            e = m.encode(texts, batch_size=batch_size(name), normalize_embeddings=True, convert_to_numpy=True)
            speed[name] = max(speed[name], len(texts) / (time.perf_counter() - start))
            encoded[name] = e.astype("float32")
            if name == args.embedder:
                vectors = e.astype("float32")
    ea, eb = vectors[: len(a)], vectors[len(a) :]
    cosine = (ea * eb).sum(axis=1)
    positive = scores >= args.min_score
    checked = np.array([verify(x, y, args.lang) is not None for x, y in zip(a, b)])

    def precision_recall(predicted):
        hits = int((predicted & positive).sum())
        return (round(hits / predicted.sum(), 3) if predicted.sum() else float("nan")), round(hits / positive.sum(), 3)

    rows, chosen = [], None
    for t in THRESHOLDS:
        predicted = cosine >= t
        precision, recall = precision_recall(predicted)
        rule_precision, rule_recall = precision_recall(predicted & checked)
        rows.append({"threshold": t, "pairs_merged": int(predicted.sum()), "precision": precision, "recall": recall,
                     "rule_merged": int((predicted & checked).sum()), "rule_precision": rule_precision, "rule_recall": rule_recall})
        if chosen is None and precision >= args.min_precision:
            chosen = t
    dtype = torch_dtype(args.device, args.embedder, args.precision) if args.embedder == "torch" else "float32"
    print(f"{args.model}, {args.embedder} embedder ({dtype}); STS-B {args.lang} ({args.splits}): {len(scores)} pairs, "
          f"{int(positive.sum())} with score >= {args.min_score}, {int(checked.sum())} pass the word check")
    spearman = spearmanr(cosine, scores).statistic
    print(f"Spearman(cosine, human score) = {spearman:.4f}")
    print("embedding speed, same run: " + ", ".join(f"{name} {v:,.0f} units/s" for name, v in speed.items())
          + (f" ({speed[args.embedder] / speed['torch']:.2f}x torch)" if args.embedder != "torch" and "torch" in speed else ""))
    agreement = {}
    for name, e in encoded.items():
        if name in ("torch", "openvino", "openvino-int8") and "torch-float32" in encoded:  # the same weights: vectors against float32 torch
            agreement[name] = float((e * encoded["torch-float32"]).sum(axis=1).min())
    if agreement:
        print("minimum cosine to torch-float32, same sentences: " + ", ".join(f"{n} {c:.5f}" for n, c in agreement.items()))
    print(f"{'':>9} {'cosine alone':>25}   {'cosine + word check (the merge rule)':>36}")
    print(f"{'threshold':>9} {'merged':>7} {'precision':>9} {'recall':>7}   {'merged':>7} {'precision':>9} {'recall':>7}")
    for r in rows:
        print(f"{r['threshold']:>9.2f} {r['pairs_merged']:>7} {r['precision']:>9.3f} {r['recall']:>7.3f}   "
              f"{r['rule_merged']:>7} {r['rule_precision']:>9.3f} {r['rule_recall']:>7.3f}")
    print(json.dumps({"model": args.model, "embedder": args.embedder, "precision": dtype, "device": args.device,
                      "lang": args.lang, "spearman": round(float(spearman), 4),
                      "units_per_s": {name: round(v) for name, v in speed.items()},
                      "min_cosine_to_torch_float32": {n: round(c, 6) for n, c in agreement.items()},
                      "lowest_threshold_with_precision": chosen, "precision_target": args.min_precision,
                      "rule_at_threshold": {str(r["threshold"]): [r["rule_merged"], r["rule_precision"], r["rule_recall"]] for r in rows}}))


if __name__ == "__main__":
    main()
