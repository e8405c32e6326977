"""What a refresh would re-embed if the store kept its vectors as product-quantization (PQ) codes.

    python benchmarks/vector_candidates.py STORE [--codes 32 64 128] [--sample 50000]

A refresh compares each fresh unit (its exact vector) with the stored canonical units of its
hyperword. With PQ codes in the store, the stored side would be approximate, so an exact decision
needs the candidates (approximate cosine at least the threshold less a margin) embedded again
from their text. For every stored unit taken as if it were fresh, against the other units of its
hyperword, this prints the approximate cosine's error and, per margin, the candidate pairs per unit
(the re-embedding cost) and the share of the true pairs (exact cosine at or above the threshold)
among them (what an exact decision would still find). The store's own vectors stand for the exact
ones (int8 moves a cosine by under 0.006: README, "Vectors"). The PQ codebook is trained on a
random sample of the vectors (seed 0); decoded vectors are normalised to unit length.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MARGINS = (0.02, 0.04, 0.06, 0.08, 0.1)


def main(argv: list[str] | None = None) -> int:
    import faiss
    import numpy as np

    from hyperscene.transforms.near_dup import default_threshold
    from hyperscene.transforms.store.reader import StoreVersion
    from hyperscene.transforms.store.vector_codec import decode

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("store")
    p.add_argument("--codes", type=int, nargs="+", default=[32, 64, 128], help="PQ code sizes in bytes (8-bit subquantizers)")
    p.add_argument("--sample", type=int, default=50_000, help="vectors the PQ codebook is trained on")
    args = p.parse_args(argv)

    sv = StoreVersion(args.store)
    cfg = sv.manifest["config"]
    threshold = cfg.get("near_dup_threshold") or default_threshold(cfg.get("model", "minilm"), cfg.get("embedder", "torch"))
    table = sv.read("vectors")
    exact, hyperwords = decode(table), table.column("hyperword").to_numpy()
    n, dim = exact.shape
    print(f"{args.store}: {n:,} units, {dim} dimensions, threshold {threshold}")
    train = exact[np.random.default_rng(0).choice(n, min(n, args.sample), replace=False)]
    groups = [np.flatnonzero(hyperwords == h) for h in np.unique(hyperwords)]
    for size in args.codes:
        if dim % size:
            print(f"PQ {size} B: {dim} dimensions do not split into {size} parts")
            continue
        pq = faiss.ProductQuantizer(dim, size, 8)
        pq.train(np.ascontiguousarray(train))
        approx = pq.decode(pq.compute_codes(np.ascontiguousarray(exact)))
        approx /= np.maximum(np.linalg.norm(approx, axis=1, keepdims=True), 1e-12)
        errors, true_pairs = [], 0
        found = {m: [0, 0] for m in MARGINS}  # candidates, true pairs among them
        for rows in groups:
            if len(rows) < 2:
                continue
            e = exact[rows] @ exact[rows].T
            a = exact[rows] @ approx[rows].T
            np.fill_diagonal(e, -1)
            np.fill_diagonal(a, -1)
            errors.append((a - e)[e >= threshold - 0.15])
            true = e >= threshold
            true_pairs += int(true.sum())
            for m in MARGINS:
                candidate = a >= threshold - m
                found[m][0] += int(candidate.sum())
                found[m][1] += int((candidate & true).sum())
        err = np.concatenate(errors)
        print(f"PQ {size} B a vector: cosine error near the threshold: mean {err.mean():+.4f}, std {err.std():.4f}, "
              f"largest {np.abs(err).max():.4f}")
        for m, (candidates, hits) in found.items():
            print(f"  margin {m}: {candidates / n:.2f} candidates a unit, {hits / max(true_pairs, 1):.4f} of {true_pairs:,} true pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
