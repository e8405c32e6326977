"""The hyperword codebook: FAISS spherical k-means on a sample of unit embeddings.

Training is a global step: the sample (the units with the smallest ids, which is a uniform and
order-independent choice since ids are hashes) goes to one worker, and the centroids reach every
worker as a side input for assignment.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace

import apache_beam as beam
import numpy as np

from hyperscene.schemas.unit_bucket import UnitBucket
from hyperscene.transforms.embed import for_row_access, load_vectors, vector_rows
from hyperscene.transforms.faiss_loader import load_faiss
from hyperscene.transforms.progress import Progress, stage_timer

logger = logging.getLogger("hyperscene")

# FAISS warns below 39 points per centroid and subsamples above max_points_per_centroid.
POINTS_PER_CENTROID = 256
DEFAULT_SAMPLE = 200_000
KMEANS_ITERATIONS = 20


def default_codebook_size(n_units: int) -> int:
    """About 2 * sqrt(n) hyperwords for n distinct units: ~630 for 100k units, ~2,000 for 1M."""
    if n_units <= 0:
        return 0
    return int(min(n_units, max(1, round(2 * math.sqrt(n_units)))))


def train_codebook(vectors: np.ndarray, k: int, seed: int, iterations: int = KMEANS_ITERATIONS,
                   init: np.ndarray | None = None) -> np.ndarray:
    """Unit-length centroids, shape (k', d) with k' = min(k, len(vectors)), rounded to float16 values:
    the store keeps codebooks in float16, so every code is assigned with the centroids it stores.

    Rows of ``vectors`` must come in a fixed order (sorted by unit id) for a reproducible result.
    ``init`` (a retrain's earlier codebook) starts k-means from those centroids instead of random
    points, so that code i stays near where it was and most ids keep their meaning. Codes beyond
    its rows start from the first sample rows; rows beyond k are dropped.
    """
    faiss = load_faiss()

    n, d = vectors.shape
    k = min(k, n)
    if k == 0:
        return np.zeros((0, d), dtype=np.float32)
    if k == n and init is None:
        return as_stored(vectors)
    if init is not None:
        init = np.concatenate([init[:k], vectors[: max(0, k - len(init))]]).astype(np.float32)
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
    kmeans.train(np.ascontiguousarray(vectors, dtype=np.float32), init_centroids=init)
    centroids = kmeans.centroids.astype(np.float32)
    return as_stored(centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12))


def as_stored(centroids: np.ndarray) -> np.ndarray:
    """float32 centroids holding float16 values: what reading them back from the store gives (codebooks
    and scene centroids are stored in float16, and codes are assigned with what is stored)."""
    return np.ascontiguousarray(centroids, dtype=np.float32).astype(np.float16).astype(np.float32)


# Two centroids closer than this in score for a row are compared again exactly: far above
# float32's error on a dot product of unit vectors of a few hundred dimensions (about 1e-6).
TIE = 1e-5
# candidates searched first: one to code a row, the next to see whether it is a near tie, and a
# few more so that a tie of three or four is settled without searching the row again
TIE_CANDIDATES = 4


class NearestCentroid:
    """Nearest centroid by cosine, the FAISS index built once: for many small batches against one
    codebook (the scenes of thousands of short documents). Called with vectors: (ids, scores).

    A row's code does not depend on the rows searched with it, as long as FAISS's float32 scores
    are within ``TIE / 2`` of the true ones. FAISS computes scores by one kernel for a few rows and
    by matrix products for many, which round differently: a near tie could go one way for a scene
    coded alone and the other in a group of short documents, or for a unit in one bucket and in
    another corpus's. Every centroid within ``TIE`` of the best is scored again exactly (float64
    products of float32 values, summed by ``math.fsum``), the lowest code winning an exact tie."""

    def __init__(self, centroids: np.ndarray):
        faiss = load_faiss()

        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self._index = faiss.IndexFlatIP(self.centroids.shape[1])
        self._index.add(self.centroids)

    def __call__(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not len(vectors):
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        k = min(TIE_CANDIDATES, len(self.centroids))
        scores, candidates = self._index.search(vectors, k)
        ids = candidates[:, 0].astype(np.int32)
        if k > 1:
            for row in np.flatnonzero(scores[:, 0] - scores[:, 1] < TIE):
                ids[row] = self._settle(vectors[row : row + 1], candidates[row], scores[row])
        # a row-wise dot product rounds the same whatever the batch
        scores = np.einsum("ij,ij->i", vectors, self.centroids[ids]).astype(np.float32)
        return ids, scores

    def _settle(self, vector: np.ndarray, candidates: np.ndarray, scores: np.ndarray) -> int:
        """A near tie: the code of the exactly best score among every centroid within ``TIE``."""
        row = vector[0].astype(np.float64)
        if not row.any():
            return 0  # every score is 0: the lowest code
        k = len(candidates)
        while scores[-1] >= scores[0] - TIE and k < len(self.centroids):  # more are within TIE: search wider
            k = min(2 * k, len(self.centroids))
            found, taken = self._index.search(vector, k)
            scores, candidates = found[0], taken[0]
        near = np.sort(candidates[scores >= scores[0] - TIE])
        # float64 sums are off by about 1e-14 (by position in a BLAS call): exact sums settle the rest
        close = self.centroids[near].astype(np.float64) @ row
        near = near[close >= close.max() - 1e-12]
        if len(near) == 1:
            return int(near[0])
        exact = [math.fsum(self.centroids[c].astype(np.float64) * row) for c in near]
        return int(near[int(np.argmax(exact))])  # the first of equal maxima: the lowest code

    def each_alone(self, batches: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """What calling with each of ``batches`` gives, in one search: for the scenes of thousands
        of short documents, one or two rows each, a call apiece costs about ten times the search."""
        if not batches:
            return []
        ends = np.cumsum([len(b) for b in batches])
        ids, scores = self(np.concatenate(batches))
        return [(ids[end - len(b) : end], scores[end - len(b) : end]) for b, end in zip(batches, ends)]


def assign(vectors: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid by cosine for each row: (hyperword ids, scores)."""
    return NearestCentroid(centroids)(vectors)


class SmallestIds(beam.CombineFn):
    """The ``k`` units with the smallest ids across all buckets: (ids, vectors), sorted by id.

    Ids are hashes, so this is a uniform sample, and it does not depend on the order buckets arrive in.
    The codebook's sample and the quantizer's are taken so; their time is the stage "sample units".
    Until the end the accumulator holds ids and handles to their vectors (rows of a spilled file, or
    the values when they are not on the local disk): choosing the k smallest moves ids only, and each
    chosen vector is read once, in ``extract_output``.
    """

    def __init__(self, k: int):
        self._k = k

    def create_accumulator(self):
        return []  # (ids, vector handle) parts, each sorted by id; compacted to k rows when they hold k/4 more

    def add_input(self, acc, bucket: UnitBucket):
        with stage_timer("sample units", len(bucket)):
            ids = bucket.units.column("unit_id").to_numpy()[: self._k]
            held = sum(len(i) for i, _ in acc)
            if held >= self._k:  # only ids below the current k-th can enter
                ids = ids[: np.searchsorted(ids, max(i[-1] for i, _ in acc), side="right")]
            if len(ids):
                acc.append((ids, vector_rows(for_row_access(bucket), np.arange(len(ids)))))
            return self._compact(acc) if held + len(ids) > self._k + self._k // 4 else acc

    def merge_accumulators(self, accumulators):
        with stage_timer("sample units", 0):
            return self._compact([part for acc in accumulators for part in acc])

    def _compact(self, parts):
        """The parts narrowed to the k smallest ids; each part keeps its own rows, in order."""
        parts = [p for p in parts if len(p[0])]
        if sum(len(i) for i, _ in parts) <= self._k:
            return parts
        ids = np.concatenate([i for i, _ in parts])
        keep = np.zeros(len(ids), dtype=bool)
        keep[np.argsort(ids, kind="stable")[: self._k]] = True
        kept, start = [], 0
        for part_ids, handle in parts:
            rows = np.flatnonzero(keep[start : start + len(part_ids)])
            start += len(part_ids)
            if len(rows) == len(part_ids):
                kept.append((part_ids, handle))
            elif len(rows):
                kept.append((part_ids[rows], handle.take(rows)))
        return kept

    def extract_output(self, acc):
        with stage_timer("sample units", 0):
            parts = self._compact(acc)
            if not parts:
                return np.array([], dtype=np.int64), None
            ids = np.concatenate([i for i, _ in parts])
            order = np.argsort(ids, kind="stable")
            return ids[order], np.concatenate([handle.load() for _, handle in parts])[order]


def _train_from_sample(sample, n_units: int, size: int | None, seed: int, dim: int, init: np.ndarray | None = None):
    ids, vectors = sample
    k = size or default_codebook_size(n_units)
    if vectors is None:
        return np.zeros((0, dim), dtype=np.float32)
    # one task that prints nothing while it runs: say what it is doing (minutes on a large corpus)
    logger.info("train codebook: k-means of %s sampled units into %s hyperwords, %d iterations, one task",
                f"{len(ids):,}", f"{min(k, len(ids)):,}", KMEANS_ITERATIONS)
    with stage_timer("train codebook", len(ids)):
        return train_codebook(vectors, k, seed, init=init)


class _AssignDoFn(beam.DoFn):
    def setup(self):
        self._progress = Progress("assign", "distinct units")

    def process(self, bucket: UnitBucket, centroids: np.ndarray):
        with self._progress.timed(len(bucket)):
            ids, scores = assign(load_vectors(bucket), centroids)
            result = assign_bucket(bucket, ids, scores)
        yield result


def assign_bucket(bucket: UnitBucket, ids: np.ndarray, scores: np.ndarray) -> UnitBucket:
    """Hyperword columns on the units and, through ``unit_id``, on their occurrences."""
    import pyarrow as pa
    import pyarrow.compute as pc

    hyperwords = pa.array(ids, pa.int32())
    position = pc.index_in(bucket.occurrences.column("unit_id"), value_set=bucket.units.column("unit_id"))
    occurrences = bucket.occurrences.append_column("hyperword", pc.take(hyperwords, position))
    return replace(bucket.with_unit_columns(hyperword=hyperwords, hyperword_score=pa.array(scores, pa.float32())), occurrences=occurrences)


class TrainCodebook(beam.PTransform):
    """Embedded UnitBuckets -> a singleton PCollection holding the centroid matrix (see
    :func:`train_codebook` for ``init``)."""

    def __init__(self, size: int | None, seed: int, dimension: int, sample_size: int = DEFAULT_SAMPLE,
                 init: np.ndarray | None = None):
        super().__init__()
        self._size, self._seed, self._dim, self._sample, self._init = size, seed, dimension, sample_size, init

    def expand(self, buckets):
        n_units = buckets | "CountUnits" >> beam.Map(len) | "Sum" >> beam.CombineGlobally(sum)
        sample = buckets | "Sample" >> beam.CombineGlobally(SmallestIds(self._sample))
        return sample | "Train" >> beam.Map(
            _train_from_sample,
            n_units=beam.pvalue.AsSingleton(n_units),
            size=self._size,
            seed=self._seed,
            dim=self._dim,
            init=self._init,
        )


def _quantizer_from_sample(sample, seed: int, dim: int) -> np.ndarray:
    from hyperscene.transforms.store.vector_codec import train_quantizer

    ids, vectors = sample
    with stage_timer("train quantizer", len(ids)):
        return train_quantizer(vectors if vectors is not None else np.zeros((0, dim), np.float32), seed)


class TrainQuantizer(beam.PTransform):
    """Embedded UnitBuckets -> a singleton PCollection holding the pq centroids the vectors table is
    coded with (vector_codec.train_quantizer), trained on the units with the smallest ids."""

    def __init__(self, seed: int, dimension: int):
        super().__init__()
        self._seed, self._dim = seed, dimension

    def expand(self, buckets):
        from hyperscene.transforms.store.vector_codec import PQ_SAMPLE

        return (buckets | "Sample" >> beam.CombineGlobally(SmallestIds(PQ_SAMPLE))
                | "Train" >> beam.Map(_quantizer_from_sample, seed=self._seed, dim=self._dim))


class AssignHyperwords(beam.PTransform):
    """Embedded UnitBuckets -> the same with ``hyperword`` and ``hyperword_score`` on units and
    ``hyperword`` on occurrences."""

    def __init__(self, centroids):
        super().__init__()
        self._centroids = centroids

    def expand(self, buckets):
        return buckets | "Assign" >> beam.ParDo(_AssignDoFn(), centroids=beam.pvalue.AsSingleton(self._centroids))


def centroid_row(row: dict) -> dict:
    """The ``centroids`` row of a hyperwords row (level 0) or a codebooks row, which carries its
    centroid on the way (the tables themselves do not store it)."""
    if "level" in row:
        return {"level": row["level"], "code": row["code"], "centroid": row["centroid"]}
    return {"level": 0, "code": row["hyperword"], "centroid": row["centroid"]}


def hyperword_table_rows(centroids, clusters):
    """Every centroid becomes a ``hyperwords`` row, with its cluster's statistics (an empty cluster has none)."""
    stats = {c["hyperword"]: c for c in clusters}
    for hw, centroid in enumerate(centroids):
        row = stats.get(hw) or {"hyperword": hw, "unit_count": 0, "occurrence_count": 0}
        yield {**row, "centroid": centroid.tolist()}


def codebook_baseline(sections: dict, stats: dict) -> dict:
    """Manifest sections with the codebook's baseline filled in when this run trained it
    (``baseline_mean_distance`` None): the units' mean distance to their hyperwords, and how many
    units it is over; refresh measures drift against it."""
    codebook = sections.get("codebook")
    if codebook is not None and codebook.get("baseline_mean_distance") is None:
        units = stats.get("distinct_units", 0)
        codebook["baseline_mean_distance"] = round(stats.get("_hyperword_distance_total", 0.0) / units, 6) if units else None
        codebook["baseline_units"] = units
    return sections
