"""The hyperword codebook: FAISS spherical k-means on a sample of unit embeddings.

Training is a global step: the sample (the units with the smallest ids, which is a uniform and
order-independent choice since ids are hashes) goes to one worker, and the centroids reach every
worker as a side input for assignment.
"""

from __future__ import annotations

import math

import apache_beam as beam
import numpy as np

from hyperscene.transforms.progress import Progress, stage_timer

# FAISS warns below 39 points per centroid and subsamples above max_points_per_centroid.
POINTS_PER_CENTROID = 256
DEFAULT_SAMPLE = 200_000
KMEANS_ITERATIONS = 20


def default_codebook_size(n_units: int) -> int:
    """About 2 * sqrt(n) hyperwords for n distinct units: ~630 for 100k units, ~2,000 for 1M."""
    if n_units <= 0:
        return 0
    return int(min(n_units, max(1, round(2 * math.sqrt(n_units)))))


def train_codebook(vectors: np.ndarray, k: int, seed: int, iterations: int = KMEANS_ITERATIONS) -> np.ndarray:
    """Unit-length centroids, shape (k', d) with k' = min(k, len(vectors)).

    Rows of ``vectors`` must come in a fixed order (sorted by unit id) for a reproducible result.
    """
    import faiss

    n, d = vectors.shape
    k = min(k, n)
    if k == 0:
        return np.zeros((0, d), dtype=np.float32)
    if k == n:
        return np.ascontiguousarray(vectors, dtype=np.float32)
    kmeans = faiss.Kmeans(
        d,
        k,
        niter=iterations,
        seed=seed,
        spherical=True,
        min_points_per_centroid=1,
        max_points_per_centroid=POINTS_PER_CENTROID,
        verbose=False,
    )
    kmeans.train(np.ascontiguousarray(vectors, dtype=np.float32))
    centroids = kmeans.centroids.astype(np.float32)
    return centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)


def assign(vectors: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid by cosine for each row: (hyperword ids, scores)."""
    import faiss

    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    _, ids = index.search(vectors, 1)
    ids = ids[:, 0].astype(np.int32)
    # FAISS's batched GEMM rounds differently with batch shape; a row-wise dot product does not.
    scores = np.einsum("ij,ij->i", vectors, centroids[ids]).astype(np.float32)
    return ids, scores


def _train_from_sample(sample: list[tuple[str, np.ndarray]], n_units: int, size: int | None, seed: int, dim: int):
    k = size or default_codebook_size(n_units)
    if not sample:
        return np.zeros((0, dim), dtype=np.float32)
    with stage_timer("train codebook", len(sample)):
        vectors = np.stack([v for _, v in sorted(sample, key=lambda s: s[0])])
        return train_codebook(vectors, k, seed)


class _AssignDoFn(beam.DoFn):
    def setup(self):
        self._progress = Progress("assign", "distinct units")

    def process(self, batch: list[dict], centroids: np.ndarray):
        with self._progress.timed(len(batch)):
            ids, scores = assign(np.stack([u["vector"] for u in batch]), centroids)
            out = [{**u, "hyperword": int(hw), "hyperword_score": float(s)} for u, hw, s in zip(batch, ids, scores)]
        yield from out


class TrainCodebook(beam.PTransform):
    """Embedded units -> a singleton PCollection holding the centroid matrix."""

    def __init__(self, size: int | None, seed: int, dimension: int, sample_size: int = DEFAULT_SAMPLE):
        super().__init__()
        self._size, self._seed, self._dim, self._sample = size, seed, dimension, sample_size

    def expand(self, units):
        n_units = units | "CountUnits" >> beam.combiners.Count.Globally()
        sample = (
            units
            | "IdVector" >> beam.Map(lambda u: (u["unit_id"], u["vector"]))
            | "Sample" >> beam.combiners.Top.Smallest(self._sample, key=lambda s: s[0])
        )
        return sample | "Train" >> beam.Map(
            _train_from_sample,
            n_units=beam.pvalue.AsSingleton(n_units),
            size=self._size,
            seed=self._seed,
            dim=self._dim,
        )


class AssignHyperwords(beam.PTransform):
    """Embedded units -> the same with ``hyperword`` and ``hyperword_score``."""

    def __init__(self, centroids, batch_size: int = 4096):
        super().__init__()
        self._centroids = centroids
        self._batch_size = batch_size

    def expand(self, units):
        return (
            units
            | "Batch" >> beam.BatchElements(min_batch_size=self._batch_size, max_batch_size=self._batch_size)
            | "Assign" >> beam.ParDo(_AssignDoFn(), centroids=beam.pvalue.AsSingleton(self._centroids))
        )
