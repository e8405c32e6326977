"""Near-duplicate groups within each hyperword cluster, and the cluster's own summary.

Rule (deterministic, order-independent): members are ranked by occurrence count (descending), then
unit id. Walking that ranking, a unit whose cosine to an already chosen canonical unit is at or above
the threshold merges into the most similar such canonical; otherwise it becomes a canonical itself.
So every merged unit is within the threshold of its canonical (no chaining), and the canonical of a
group is its most frequent text.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np

from hyperscene.transforms.progress import Progress

METHOD = "cosine"
# Chosen on STS-B (benchmarks/near_dup_threshold.py): per embedder, the lowest threshold at which at
# least 85% of the pairs it puts above it are rated "mostly equivalent" (4 of 5) or better by people.
DEFAULT_THRESHOLDS = {"torch": 0.92, "static": 0.95}
DEFAULT_THRESHOLD = DEFAULT_THRESHOLDS["torch"]


def group_near_duplicates(
    unit_ids: list[str], vectors: np.ndarray, counts: list[int], threshold: float
) -> list[tuple[int, int, float]]:
    """(member index, canonical index, cosine) for every merged member, in ranking order."""
    import faiss

    n = len(unit_ids)
    if n < 2:
        return []
    order = sorted(range(n), key=lambda i: (-counts[i], unit_ids[i]))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    # range_search keeps scores strictly above the radius.
    lims, scores, neighbours = index.range_search(vectors, float(np.nextafter(np.float32(threshold), np.float32(-1))))

    canonical = np.zeros(n, dtype=bool)
    merges = []
    for i in order:
        lo, hi = lims[i], lims[i + 1]
        best, best_score = -1, -2.0
        for j, s in zip(neighbours[lo:hi], scores[lo:hi]):
            if j != i and canonical[j] and (s > best_score or (s == best_score and rank[j] < rank[best])):
                best, best_score = int(j), float(s)
        if best < 0:
            canonical[i] = True
        else:
            merges.append((i, best, best_score))
    return merges


def summarise_cluster(hyperword: int, units: list[dict], threshold: float):
    """Units of one cluster -> (provenance rows, hyperword statistics)."""
    units = sorted(units, key=lambda u: u["unit_id"])
    ids = [u["unit_id"] for u in units]
    merges = group_near_duplicates(ids, np.stack([u["vector"] for u in units]), [u["occurrence_count"] for u in units], threshold)
    provenance = [
        {"unit_id": ids[m], "canonical_unit_id": ids[c], "method": METHOD, "score": s, "hyperword": hyperword}
        for m, c, s in merges
    ]
    representative = min(units, key=lambda u: (-u["hyperword_score"], u["unit_id"]))
    stats = {
        "hyperword": hyperword,
        "unit_count": len(units),
        "occurrence_count": sum(u["occurrence_count"] for u in units),
        "representative_unit_id": representative["unit_id"],
        "representative_text": representative["text"],
        "representative_score": representative["hyperword_score"],
        "near_duplicate_occurrences": sum(units[m]["occurrence_count"] for m, _, _ in merges),
    }
    return provenance, stats


class _ClusterDoFn(beam.DoFn):
    def __init__(self, threshold: float):
        self._threshold = threshold

    def setup(self):
        self._progress = Progress("near-duplicates", "distinct units")

    def process(self, item):
        hyperword, units = item
        units = list(units)
        with self._progress.timed(len(units)):
            provenance, stats = summarise_cluster(hyperword, units, self._threshold)
        yield from provenance
        yield beam.pvalue.TaggedOutput("clusters", stats)


class NearDuplicates(beam.PTransform):
    """Assigned units -> provenance rows (main output) and per-hyperword statistics (``clusters``)."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD):
        super().__init__()
        self._threshold = threshold

    def expand(self, units):
        return (
            units
            | "ByHyperword" >> beam.Map(lambda u: (u["hyperword"], u))
            | "Cluster" >> beam.GroupByKey()
            | "Group" >> beam.ParDo(_ClusterDoFn(self._threshold)).with_outputs("clusters", main="provenance")
        )
