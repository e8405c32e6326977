"""Near-duplicate groups within each hyperword cluster, and the cluster's own summary.

Rule (deterministic, order-independent): members are ranked by occurrence count (descending), then
unit id. Walking that ranking, a unit whose cosine to an already chosen canonical unit is at or above
the threshold, and whose text passes the word-level check of :mod:`near_dup_verify` against it,
merges into the most similar such canonical; otherwise it becomes a canonical itself. Provenance's
``method`` says which check let it merge (``cosine+same-words``, ``cosine+function-words``, or
``cosine`` with ``--near-dup-check none``).
So every merged unit is within the threshold of its canonical (no chaining), and the canonical of a
group is its most frequent text.
"""

from __future__ import annotations

from typing import Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hyperscene.schemas import PROVENANCE
from hyperscene.schemas.unit_bucket import UnitBucket
from hyperscene.transforms.embed import for_row_access, vector_rows
from hyperscene.transforms.faiss_loader import load_faiss
from hyperscene.transforms.near_dup_verify import verify
from hyperscene.transforms.outputs import SplitOutputs
from hyperscene.transforms.progress import Progress

METHOD = "cosine"
# What a cosine candidate must also pass to merge: "words", the word-level check of
# near_dup_verify (order, numbers, negation, entities); "none", the cosine alone.
CHECKS = ("words", "none")
DEFAULT_CHECK = "words"
# Per known model and embedder, chosen by benchmarks/near_dup_threshold.py on STS-B dev+test: the
# lowest threshold of its grid at which at least 85% of the pairs the cosine alone puts above it
# are rated "mostly equivalent" (4 of 5) or better by people. e5's cosines crowd towards 1, so it
# reaches that only at 0.98 (precision 0.929 en / 0.887 ru with torch, 0.938 / 0.945 static; 0.96
# gives 0.715 / 0.688). The word check then decides among those candidates.
DEFAULT_THRESHOLDS = {
    "minilm": {"torch": 0.92, "openvino": 0.92, "static": 0.95},
    "e5-small": {"torch": 0.98, "openvino": 0.98, "static": 0.98},
}
DEFAULT_THRESHOLD = DEFAULT_THRESHOLDS["minilm"]["torch"]


def default_threshold(model: str, embedder: str) -> float:
    """The measured threshold of a known model (by short name or alias); any other model gets
    MiniLM's, the only one measured for a model nobody has run here."""
    from hyperscene.transforms.model_catalog import known_model

    known = known_model(model)
    table = DEFAULT_THRESHOLDS[known.name if known else "minilm"]
    return table.get(embedder, table["torch"])


def group_near_duplicates(
    unit_ids: list[str], vectors: np.ndarray, counts: list[int], threshold: float,
    texts: list[str] | None = None, lang: str = "en", check: str = "words",
) -> tuple[list[tuple[int, int, float, str]], int]:
    """(member index, canonical index, cosine, method) for every merged member, in ranking order,
    and the number of units that had a canonical candidate at or above the threshold.

    With ``check="words"`` a candidate merges only if :func:`near_dup_verify.verify` accepts the
    two texts: the most similar accepted canonical wins; a unit none accepts becomes canonical.
    """
    faiss = load_faiss()

    n = len(unit_ids)
    if n < 2:
        return [], 0
    if check not in CHECKS:
        raise ValueError(f"check must be one of {CHECKS}, not {check!r}")
    order = sorted(range(n), key=lambda i: (-counts[i], unit_ids[i]))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    # range_search keeps scores strictly above the radius.
    lims, scores, neighbours = index.range_search(vectors, float(np.nextafter(np.float32(threshold), np.float32(-1))))

    canonical = np.zeros(n, dtype=bool)
    merges, with_candidates = [], 0
    for i in order:
        lo, hi = lims[i], lims[i + 1]
        candidates = sorted(((float(s), int(j)) for j, s in zip(neighbours[lo:hi], scores[lo:hi]) if j != i and canonical[j]),
                            key=lambda c: (-c[0], rank[c[1]]))
        if candidates:
            with_candidates += 1
        for score, j in candidates:
            reason = verify(texts[i], texts[j], lang) if check == "words" else None
            if check == "none" or reason is not None:
                merges.append((i, j, score, METHOD if check == "none" else f"{METHOD}+{reason}"))
                break
        else:
            canonical[i] = True
    return merges, with_candidates


def summarise_cluster(hyperword: int, units: pa.Table, vectors: np.ndarray, threshold: float,
                      lang: str = "en", check: str = "words"):
    """One cluster's units (``unit_id, text, occurrence_count, hyperword_score``, sorted by id) and
    their vectors -> (provenance rows, hyperword statistics)."""
    ids = units.column("unit_id").to_pylist()
    counts = units.column("occurrence_count").to_pylist()
    scores = units.column("hyperword_score").to_pylist()
    texts = units.column("text").to_pylist()
    merges, with_candidates = group_near_duplicates(ids, vectors, counts, threshold, texts, lang, check)
    provenance = [
        {"unit_id": ids[m], "canonical_unit_id": ids[c], "method": method, "score": s, "hyperword": hyperword}
        for m, c, s, method in merges
    ]
    representative = min(range(len(ids)), key=lambda i: (-scores[i], ids[i]))
    stats = {
        "hyperword": hyperword,
        "unit_count": len(ids),
        "occurrence_count": sum(counts),
        "representative_unit_id": ids[representative],
        "representative_text": texts[representative],
        "representative_score": scores[representative],
        "near_duplicate_occurrences": sum(counts[m] for m, _, _, _ in merges),
        "near_duplicate_candidates": with_candidates,
    }
    return provenance, stats


CLUSTER_COLUMNS = ["hyperword", "unit_id", "text", "occurrence_count", "hyperword_score"]


def cluster_parts(bucket: UnitBucket, n_groups: int):
    """A bucket's units, split by the group of their hyperword: (group, (units, vectors))."""
    bucket = for_row_access(bucket)
    units = bucket.units.select(CLUSTER_COLUMNS)
    groups = units.column("hyperword").to_numpy() % n_groups
    order = np.argsort(groups, kind="stable")
    present, starts = np.unique(groups[order], return_index=True)
    for g, start, end in zip(present, starts, [*starts[1:], len(order)]):
        rows = order[start:end]
        yield int(g), (units.take(rows), vector_rows(bucket, rows))


def clusters_of(parts) -> Iterator[tuple[int, pa.Table, np.ndarray]]:
    """Parts of one group -> (hyperword, its units sorted by id, their vectors), by hyperword."""
    parts = list(parts)
    units = pa.concat_tables([u for u, _ in parts])
    vectors = np.concatenate([v.load() for _, v in parts])
    order = pc.sort_indices(units, sort_keys=[("hyperword", "ascending"), ("unit_id", "ascending")]).to_numpy()
    units, vectors = units.take(order), vectors[order]
    hyperwords = units.column("hyperword").to_numpy()
    present, starts = np.unique(hyperwords, return_index=True)
    for hw, start, end in zip(present, starts, [*starts[1:], len(hyperwords)]):
        yield int(hw), units.slice(start, end - start), vectors[start:end]


class _ClusterDoFn(beam.DoFn):
    def __init__(self, threshold: float, lang: str, check: str):
        self._threshold, self._lang, self._check = threshold, lang, check

    def setup(self):
        self._progress = Progress("near-duplicates", "distinct units")

    def process(self, item):
        _, parts = item
        provenance, stats = [], []
        for hyperword, units, vectors in clusters_of(parts):
            with self._progress.timed(units.num_rows):
                rows, summary = summarise_cluster(hyperword, units, vectors, self._threshold, self._lang, self._check)
            provenance.extend(rows)
            stats.append(summary)
        if provenance:
            yield provenance_table(provenance)
        for summary in stats:
            yield beam.pvalue.TaggedOutput("clusters", summary)


def provenance_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=PROVENANCE)


class NearDuplicates(beam.PTransform):
    """Assigned UnitBuckets -> provenance tables (main output) and per-hyperword statistics
    (``clusters``). Clusters are gathered in ``n_groups`` groups of hyperwords, not one element each."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, n_groups: int = 1, lang: str = "en", check: str = DEFAULT_CHECK):
        super().__init__()
        self._threshold = threshold
        self._groups = n_groups
        self._lang, self._check = lang, check

    def expand(self, buckets):
        return (
            buckets
            | "ByGroup" >> beam.FlatMap(cluster_parts, n_groups=self._groups)
            | "Gather" >> beam.GroupByKey()
            | "Group" >> SplitOutputs(_ClusterDoFn(self._threshold, self._lang, self._check), tags=("clusters",), main="provenance")
        )
