"""The figures behind ``hyperscene report``, as plain numpy on columns read from a store.

Nothing here reads files or draws: each function takes arrays (or row lists) and returns numbers,
so every figure on the report page can be checked without a browser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def size_bins(sizes) -> list[dict]:
    """Counts of clusters by size in powers of two: 0 (empty), 1, 2-3, 4-7, ... up to the largest size.

    Cluster sizes span several orders of magnitude (a few huge clusters, many small ones), so equal
    bins would put nearly everything in the first bar.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.size == 0:
        return []
    bins = []
    empty = int((sizes == 0).sum())
    if empty:
        bins.append({"label": "0", "lo": 0, "hi": 0, "count": empty})
    top = int(sizes.max())
    lo = 1
    while lo <= top:
        hi = 2 * lo - 1
        bins.append({"label": str(lo) if lo == hi else f"{lo}–{hi}", "lo": lo, "hi": hi,
                     "count": int(((sizes >= lo) & (sizes <= hi)).sum())})
        lo *= 2
    return bins


def histogram(values, lo: float, hi: float, width: float) -> tuple[np.ndarray, np.ndarray]:
    """(edges, counts) of ``values`` in bins of ``width`` from ``lo`` to ``hi``; values outside fall
    into the first or last bin, so every value is counted once."""
    values = np.asarray(values, dtype=np.float64)
    n = max(1, int(math.ceil(round((hi - lo) / width, 9))))
    edges = lo + width * np.arange(n + 1)
    index = np.clip(np.floor((values - lo) / width).astype(np.int64), 0, n - 1) if values.size else np.zeros(0, np.int64)
    return edges, np.bincount(index, minlength=n)


def score_range(scores, threshold: float, width: float = 0.005) -> tuple[float, float]:
    """The x range of the similarity histogram: from a bin below the lower of the threshold and the
    lowest score, to 1.0 (cosine's top) or, where float rounding put scores above 1, the bin edge
    past the highest, so those are drawn where they are."""
    low = min([threshold, *([float(np.min(scores))] if len(scores) else [])])
    lo = math.floor(round(low / width, 9)) * width - width
    high = max([1.0, *([float(np.max(scores))] if len(scores) else [])])
    hi = 1.0 if high <= 1.0 else (math.floor(round(high / width, 9)) + 1) * width
    return max(lo, -1.0), hi


def spread(values) -> dict:
    """count, mean, min, p10, p25, median, p75, p90, max of ``values`` (zeros when empty)."""
    values = np.asarray(values, dtype=np.float64)
    keys = ("min", "p10", "p25", "median", "p75", "p90", "max")
    if values.size == 0:
        return {"count": 0, "mean": 0.0, **{k: 0.0 for k in keys}}
    q = np.percentile(values, [0, 10, 25, 50, 75, 90, 100])
    return {"count": int(values.size), "mean": float(values.mean()), **{k: float(v) for k, v in zip(keys, q)}}


def tokens_by_level(unit_tokens, unit_occurrences, scene_levels, scene_tokens) -> list[dict]:
    """Spread of tokens per record at each level: level 0 is every unit occurrence (each encoded as
    one hyperword, so a distinct unit counts as often as it occurs), level L >= 1 every scene of
    that level."""
    rows = [{"level": 0, **spread(np.repeat(np.asarray(unit_tokens, np.int64), np.asarray(unit_occurrences, np.int64)))}]
    levels, tokens = np.asarray(scene_levels), np.asarray(scene_tokens)
    for level in np.unique(levels):
        rows.append({"level": int(level), **spread(tokens[levels == level])})
    return rows


def compression_rows(levels: list[dict]) -> list[dict]:
    """Rows of ``inspect``'s level table with the compression each level's code stream gives:
    ``tokens_per_code`` (text tokens one code stands for, on average) and ``bits_per_token``
    (log2 of the level's codebook size, spread over those tokens: the size of the lossy code stream
    per token of text)."""
    out = []
    for r in levels:
        per_code = float(r["mean_tokens"])
        bits = math.log2(r["codebook_size"]) / per_code if r["codebook_size"] > 1 and per_code > 0 else 0.0
        out.append({**r, "tokens_per_code": per_code, "bits_per_token": bits})
    return out


def _one_blas_thread():
    """A context that limits BLAS to one thread, where threadpoolctl (a dependency of
    sentence-transformers' scikit-learn) is installed; otherwise it changes nothing."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


@dataclass
class Projection:
    coords: np.ndarray  # (n, 2)
    explained: tuple[float, float]  # share of the variance along each axis


def pca_2d(vectors) -> Projection:
    """Principal components 1 and 2 of ``vectors`` (rows): the top eigenvectors of their covariance.

    An eigendecomposition of the (dim x dim) scatter matrix rather than an SVD of the (rows x dim)
    data: the same axes for less work. BLAS runs on one thread here: on a busy machine OpenBLAS's
    threads wait on each other, and this small product took seconds instead of milliseconds.
    Each component's sign is fixed so that its largest-magnitude loading is positive, so the map
    does not mirror from one LAPACK build to another.
    """
    x = np.asarray(vectors, dtype=np.float64)
    if x.shape[0] == 0:
        return Projection(np.zeros((0, 2)), (0.0, 0.0))
    x = x - x.mean(axis=0)
    with _one_blas_thread():
        values, vectors_ = np.linalg.eigh(x.T @ x)  # ascending eigenvalues
    order = np.argsort(values)[::-1]
    values, vectors_ = np.clip(values[order], 0.0, None), vectors_[:, order]
    components = np.zeros((2, x.shape[1]))
    k = min(2, x.shape[1])
    components[:k] = vectors_[:, :k].T
    for i in range(k):
        if components[i, np.argmax(np.abs(components[i]))] < 0:
            components[i] = -components[i]
    total = float(values.sum())
    explained = tuple(float(values[i] / total) if i < k and total > 0 else 0.0 for i in range(2))
    return Projection(x @ components.T, explained)


def near_dup_groups(members: list[str], canonicals: list[str], scores, occurrences: dict[str, int],
                    top: int, samples: int = 3) -> list[dict]:
    """The ``top`` largest near-duplicate groups: members of each canonical unit (from the provenance
    table), largest first by member count, then by occurrences of the whole group, then canonical id.

    Each group keeps ``samples`` members spread over its score range (lowest, highest, and evenly
    between), so a page shows both what barely passed the threshold and what is nearly identical.
    """
    groups: dict[str, list[tuple[float, str]]] = {}
    for member, canonical, score in zip(members, canonicals, scores):
        groups.setdefault(canonical, []).append((float(score), member))
    ranked = []
    for canonical, items in groups.items():
        items.sort()
        occ = occurrences.get(canonical, 0) + sum(occurrences.get(m, 0) for _, m in items)
        ranked.append((-len(items), -occ, canonical, items))
    ranked.sort(key=lambda g: g[:3])
    out = []
    for neg_size, neg_occ, canonical, items in ranked[:top]:
        if len(items) <= samples:
            picked = items
        elif samples == 1:
            picked = items[:1]
        else:
            picked = [items[i] for i in sorted({round(j * (len(items) - 1) / (samples - 1)) for j in range(samples)})]
        out.append({"canonical_unit_id": canonical, "members": -neg_size, "occurrences": -neg_occ,
                    "min_score": items[0][0], "max_score": items[-1][0],
                    "samples": [{"unit_id": m, "score": s} for s, m in picked]})
    return out
