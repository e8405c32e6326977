"""What a refresh embeds again for its near-duplicate decisions, per vector encoding.

    python benchmarks/vector_candidates.py STORE [--encodings pq int8] [--sample 65536] [--pq-dimensions-per-byte 4]
        [--iterations 10]

A refresh compares each fresh unit (its embedded vector) with the stored canonical units of its
hyperword. The stored side is decoded from the store's encoding, so the refresh embeds again, from
their text, the stored units whose decoded vector lies within the threshold's angle plus their
stored error bound (transforms/refresh/candidates.py), and decides on those. This takes every unit
of STORE as if it were fresh, against the other units of its hyperword, codes the others in each
encoding as compress would (pq's quantizer trained on the units with the smallest ids), and prints
the candidates a unit (what a refresh would embed again, at most) and the pairs at or above the
threshold that the bound would miss (0 by construction: a check of the code). The store's own
vectors stand for the embedded ones; give a store compressed with ``--vectors float16`` for exact
figures (int8 moves a cosine by under 0.006: README, "Vectors").
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import pyarrow as pa

    from hyperscene.transforms.near_dup import default_threshold
    from hyperscene.transforms.refresh.candidates import candidate_pairs
    from hyperscene.transforms.store.reader import StoreVersion
    from hyperscene.transforms.store.vector_codec import (PQ_DIMENSIONS_PER_BYTE, PQ_ITERATIONS, PQ_SAMPLE, decode, error_angles,
                                                          train_quantizer, vector_table)

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("store")
    p.add_argument("--encodings", nargs="+", default=["pq", "int8"], choices=["pq", "int8", "float16"])
    p.add_argument("--sample", type=int, default=PQ_SAMPLE, help="units the pq quantizer is trained on (compress's default)")
    p.add_argument("--pq-dimensions-per-byte", type=int, nargs="+", default=[PQ_DIMENSIONS_PER_BYTE],
                   help="pq code sizes to try, as dimensions a byte stands for (compress's: 4)")
    p.add_argument("--iterations", type=int, default=PQ_ITERATIONS, help="k-means iterations of the pq quantizer (compress's: 10)")
    args = p.parse_args(argv)

    sv = StoreVersion(args.store)
    cfg = sv.manifest["config"]
    threshold = cfg.get("near_dup_threshold") or default_threshold(cfg.get("model", "minilm"), cfg.get("embedder", "torch"))
    table = sv.read("vectors").sort_by("unit_id")
    exact, hyperwords = decode(table, sv.quantizer()), table.column("hyperword").to_numpy()
    n, dim = exact.shape
    print(f"{args.store}: {n:,} units, {dim} dimensions, threshold {threshold}, stored as {cfg.get('vectors', 'float16')}")
    groups = [np.flatnonzero(hyperwords == h) for h in np.unique(hyperwords)]
    runs = [(e, w) for e in args.encodings for w in (args.pq_dimensions_per_byte if e == "pq" else [None])]
    for encoding, per_byte in runs:
        started = time.time()
        quantizer = train_quantizer(exact[: args.sample], cfg.get("seed", 0), per_byte, args.iterations) if encoding == "pq" else None
        coded = vector_table(table.column("unit_id"), table.column("hyperword"), exact, encoding, quantizer)
        decoded, angles = decode(coded, quantizer), error_angles(coded)
        candidates = true_pairs = missed = 0
        for rows in groups:
            if len(rows) < 2:
                continue
            found = candidate_pairs(exact[rows], decoded[rows], angles[rows], threshold)
            true = exact[rows] @ exact[rows].T >= threshold
            np.fill_diagonal(found, False)
            np.fill_diagonal(true, False)
            candidates += int(found.sum())
            true_pairs += int(true.sum())
            missed += int((true & ~found).sum())
        per_vector = pa.table({"c": coded.column(2)}).nbytes / n
        name = f"pq, {dim // per_byte} B" if encoding == "pq" else encoding
        print(f"  {name}: {per_vector:.0f} bytes a vector in memory, mean error angle {angles.mean():.4f} rad; "
              f"{candidates / n:.2f} candidates a unit; {true_pairs:,} pairs at or above the threshold, {missed} missed "
              f"({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
