"""FAISS's speed with the OpenBLAS kernels its wheel picks alone, and with those the project picks
(transforms/faiss_loader.py), on k-means and nearest-centroid search of the codebook's shape.

    python benchmarks/faiss_blas.py [--units 200000] [--centroids 2054] [--dim 384] [--iterations 5] [--runs 2]

Each setting runs in a fresh process (OpenBLAS reads OPENBLAS_CORETYPE once, when it loads), the two
alternating, ``--runs`` times each. The vectors are random unit vectors with a fixed seed: a matrix
product's time does not depend on the values. Prints each run's seconds, the medians and their ratio,
which kernel family OpenBLAS reported, and how far the two settings' results are apart (the share of
units assigned to another centroid, and the largest centroid difference after k-means), since other
kernels round differently.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

SETTINGS = {"OpenBLAS alone": "", "project's choice": None}  # "" = OpenBLAS detects; None = not set


def openblas_core() -> str:
    """The kernel family the OpenBLAS loaded with FAISS reports (``openblas_get_corename``)."""
    import ctypes

    with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
        libraries = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    for path in sorted(libraries):
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return lib.openblas_get_corename().decode()
        except (OSError, AttributeError):
            continue
    return "unknown (no OpenBLAS loaded)"


def child(args) -> None:
    """One timed run in this process; prints a JSON line and saves centroids and assignments."""
    import time

    import numpy as np

    from hyperscene.transforms.codebook import assign, train_codebook

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.units, args.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    start = time.perf_counter()
    centroids = train_codebook(vectors, args.centroids, seed=1, iterations=args.iterations)
    trained = time.perf_counter()
    ids, _ = assign(vectors, centroids)
    done = time.perf_counter()
    np.savez(args.save, centroids=centroids, ids=ids)
    print(json.dumps({"kmeans_s": trained - start, "assign_s": done - trained, "core": openblas_core(),
                      "coretype_variable": os.environ.get("OPENBLAS_CORETYPE")}))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=200_000, help="k-means sample and search queries (the codebook's default sample)")
    parser.add_argument("--centroids", type=int, default=2054, help="the whole reference corpus's codebook size")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--iterations", type=int, default=5, help="k-means iterations (the codebook trains 20)")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    results: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    with tempfile.TemporaryDirectory() as scratch:
        for run in range(args.runs):
            for name, value in SETTINGS.items():
                env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
                if value is not None:
                    env["OPENBLAS_CORETYPE"] = value
                save = os.path.join(scratch, f"{len(results[name])}-{name[0]}.npz")
                command = [sys.executable, __file__, "--child", "--save", save, "--units", str(args.units),
                           "--centroids", str(args.centroids), "--dim", str(args.dim), "--iterations", str(args.iterations)]
                out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
                result = json.loads(out.strip().splitlines()[-1]) | {"save": save}
                results[name].append(result)
                print(f"run {run + 1} {name:17s} kernels {result['core']:10s} k-means {result['kmeans_s']:6.2f} s"
                      f"  assign {result['assign_s']:5.2f} s", flush=True)

        import numpy as np

        alone, chosen = (np.load(results[name][0]["save"]) for name in SETTINGS)
        print(f"\n{args.units:,} unit vectors, {args.centroids:,} centroids, {args.dim} dimensions, "
              f"{args.iterations} k-means iterations; medians of {args.runs} runs:")
        for stage in ("kmeans_s", "assign_s"):
            a = statistics.median(r[stage] for r in results["OpenBLAS alone"])
            c = statistics.median(r[stage] for r in results["project's choice"])
            print(f"  {stage[:-2]:7s} OpenBLAS alone {a:7.2f} s   project's choice {c:7.2f} s   ratio {a / c:5.2f}")
        print(f"  units assigned to another centroid: {np.mean(alone['ids'] != chosen['ids']):.4%}; "
              f"largest centroid difference: {np.abs(alone['centroids'] - chosen['centroids']).max():.2e}")


if __name__ == "__main__":
    main()
