import pickle
from hashlib import blake2b

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from hyperscene.schemas.unit_bucket import UnitBucket
from hyperscene.transforms.codebook import NearestCentroid, SmallestIds, assign, default_codebook_size, train_codebook
from hyperscene.transforms.dedup import BUCKET_INPUT_BYTES, ExactDedup, bucket_count, dedup_bucket, split_by_bucket
from hyperscene.transforms.unit_ids import bucket_of, unit_hex, unit_id, upgrade_ids
from hyperscene.transforms.embed import VectorValues, spill_vectors
from hyperscene.transforms.spill import NO_SPILL, SpillPolicy
from hyperscene.transforms.near_dup import clusters_of, group_near_duplicates, summarise_cluster


def test_unit_id_is_a_stable_content_hash():
    assert unit_id("Hello.") == unit_id("Hello.") != unit_id("Hello. ")
    assert unit_id("") == 0xCAE66941D9EFBD40 - (1 << 63)  # the first 8 bytes of blake2b-128 of nothing
    assert unit_hex(unit_id("")) == "cae66941d9efbd40"


def test_unit_ids_sort_and_bucket_as_format_4_hex_ids_did():
    """Format 4 wrote 32 hex digits and bucketed by the first 12: the int64 ids keep both orders, so a
    store refreshed across the change keeps its units' buckets and tie-breaks."""
    texts = [f"unit {i}" for i in range(500)] + [""]
    hex_ids = [blake2b(t.encode(), digest_size=16).hexdigest() for t in texts]
    ids = [unit_id(t) for t in texts]
    assert sorted(range(len(texts)), key=lambda i: hex_ids[i]) == sorted(range(len(texts)), key=lambda i: ids[i])
    assert bucket_of(ids, 7).tolist() == [int(h[:12], 16) % 7 for h in hex_ids]
    old = pa.table({"unit_id": hex_ids, "canonical_unit_id": hex_ids, "score": [1.0] * len(texts)})
    assert upgrade_ids(old).to_pydict() == {"unit_id": ids, "canonical_unit_id": ids, "score": [1.0] * len(texts)}


def test_two_texts_with_one_id_stop_with_e442():
    from hyperscene.transforms.dedup import check_texts
    from hyperscene.transforms.errors import StoreError

    check_texts([1, 1, 2], ["a", "a", "b"], {1: "a", 2: "b"})
    with pytest.raises(StoreError, match=r"^\[E442\]"):
        check_texts([1, 1], ["a", "b"], {1: "a"})


def _occurrences(doc_id, texts):
    return pa.table({"doc_id": [doc_id] * len(texts), "position": list(range(len(texts))), "text": texts, "separator": [" "] * len(texts)})


@pytest.mark.parametrize("spill", [False, True], ids=["values", "long document spilled"])
def test_exact_dedup_counts_each_text_once_across_buckets(spill, tmp_path):
    """Whether a document's rows travel as values or, for a long one, as references to a scratch
    file (its 4 rows count as long here), the buckets are the same."""
    docs = [_occurrences("d", ["a", "b", "a", "a"]), _occurrences("e", ["b", "c"])]
    with TestPipeline() as p:
        buckets = p | beam.Create(docs) | ExactDedup(n_buckets=3, spill=SpillPolicy.for_scratch(str(tmp_path), slice_rows=3) if spill else NO_SPILL)
        units = buckets | "Units" >> beam.FlatMap(lambda b: zip(b.units["text"].to_pylist(), b.units["occurrence_count"].to_pylist()))
        assert_that(units, equal_to([("a", 3), ("b", 2), ("c", 1)]), label="units")
        occurrences = buckets | "Occ" >> beam.FlatMap(
            lambda b: zip(b.occurrences["doc_id"].to_pylist(), b.occurrences["position"].to_pylist(), b.occurrences["unit_id"].to_pylist(),
                          [b.bucket] * b.occurrences.num_rows, ["text" in b.occurrences.column_names] * b.occurrences.num_rows))
        expected = [(d, i, unit_id(t), int(bucket_of([unit_id(t)], 3)[0]), False)
                    for d, texts in (("d", "abaa"), ("e", "bc")) for i, t in enumerate(texts)]
        assert_that(occurrences, equal_to(expected), label="occurrences")
    assert [f.name for f in tmp_path.iterdir()] == ([f"slice-{blake2b(b'd', digest_size=8).hexdigest()}-p{0:012d}.arrow"] if spill else [])


def test_buckets_are_sorted_by_unit_id_and_scale_with_input():
    bucket = dedup_bucket(0, [part for _, part in split_by_bucket(_occurrences("d", ["x", "y", "z", "x"]), 1)])
    assert bucket.units["unit_id"].to_pylist() == sorted(unit_id(t) for t in "xyz")
    assert bucket_count(0) == 1 and bucket_count(10 * BUCKET_INPUT_BYTES) == 10


@pytest.mark.parametrize("spill", [False, True])
def test_codebook_sample_is_the_smallest_ids_whatever_the_bucket_order(spill, tmp_path):
    vectors = _unit_vectors(30, 4, 9)
    ids = sorted(unit_id(str(i)) for i in range(30))
    buckets = [UnitBucket(b, pa.table({"unit_id": ids[b::3]}), pa.table({}), vectors[b::3]) for b in range(3)]
    if spill:  # the accumulator then holds rows of the files, read once at the end
        buckets = [spill_vectors(b, str(tmp_path)) for b in buckets]
    combine = SmallestIds(7)
    results = []
    for order in ([0, 1, 2], [2, 0, 1]):
        acc = combine.create_accumulator()
        for b in order:
            acc = pickle.loads(pickle.dumps(combine.add_input(acc, buckets[b])))  # as a runner may carry it
        results.append(combine.extract_output(combine.merge_accumulators([acc, combine.create_accumulator()])))
    for sample_ids, sample_vectors in results:
        assert sample_ids.tolist() == ids[:7]
        np.testing.assert_array_equal(sample_vectors, vectors[:7])


def _unit_vectors(n, d, seed):
    v = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _near_ties(n, d, seed):
    """Rows each with two centroids of equal score in exact arithmetic (one the other's mirror
    image across the row), which float32 kernels may order either way, and unrelated centroids."""
    rng = np.random.default_rng(seed)
    rows, centroids = _unit_vectors(n, d, seed), []
    for x in rows:
        c = _unit_vectors(1, d, int(rng.integers(1 << 30)))[0]
        c = 0.7 * x + 0.3 * c
        c /= np.linalg.norm(c)
        centroids += [c, 2 * (x @ c) * x - c]
    return rows, np.concatenate([np.array(centroids, np.float32), _unit_vectors(200, d, seed + 1)])


def test_a_rows_code_does_not_depend_on_the_rows_searched_with_it():
    """Near ties are where FAISS's kernels for few and for many rows disagree: a scene coded alone
    and in a group, or a text encoded alone and in its bucket, must get one code."""
    rows, centroids = _near_ties(300, 256, 0)  # at 256 dimensions FAISS 1.15 splits about a third of them
    coder = NearestCentroid(centroids)
    together, _ = coder(np.concatenate([rows, _unit_vectors(700, 256, 5)]))
    alone = np.concatenate([coder(rows[i : i + 1])[0] for i in range(len(rows))])
    assert np.array_equal(together[: len(rows)], alone)
    exact = np.argmax(rows.astype(np.float64) @ centroids.astype(np.float64).T, axis=1)
    assert np.array_equal(alone, exact)


def test_many_small_batches_are_coded_as_each_alone():
    """The scenes of a group of short documents are searched together; each document's codes and
    scores must be what it gets alone."""
    rows, centroids = _near_ties(100, 256, 2)
    coder = NearestCentroid(centroids)
    sizes = [1, 2, 1, 0, 3, 30, 1, 19, 18, 1] * 40
    points = np.concatenate([rows, _unit_vectors(sum(sizes) - len(rows), 256, 1)])[np.random.default_rng(3).permutation(sum(sizes))]
    batches = np.split(points, np.cumsum(sizes)[:-1])
    together = coder.each_alone(batches)
    assert len(together) == len(batches) and coder.each_alone([]) == []
    for batch, (ids, scores) in zip(batches, together):
        alone_ids, alone_scores = coder(batch)
        assert np.array_equal(ids, alone_ids) and np.array_equal(scores, alone_scores)


def test_ties_of_many_centroids_small_codebooks_and_empty_input():
    rows = _unit_vectors(50, 256, 7)
    copies = np.repeat(_unit_vectors(1, 256, 8), 6, axis=0)  # six equal centroids, more than searched first
    centroids = np.concatenate([_unit_vectors(10, 256, 9), copies, _unit_vectors(10, 256, 10)])
    x = 0.9 * copies[0] + 0.1 * rows[0]
    batch = np.concatenate([rows, (x / np.linalg.norm(x))[None], np.zeros((1, 256), np.float32)])
    ids, _ = NearestCentroid(centroids)(batch)
    assert ids[-2] == 10 and ids[-1] == 0  # the lowest of the equal codes; a zero vector scores 0 everywhere
    assert np.array_equal(ids, np.concatenate([NearestCentroid(centroids)(batch[i : i + 1])[0] for i in range(len(batch))]))
    one = NearestCentroid(centroids[:1])
    assert one(rows)[0].tolist() == [0] * len(rows)
    ids, scores = one(np.zeros((0, 256), np.float32))
    assert ids.shape == (0,) and scores.shape == (0,)


def test_default_codebook_size_scales_with_corpus():
    assert default_codebook_size(0) == 0
    assert default_codebook_size(3) == 3
    assert default_codebook_size(10_000) == 200
    assert default_codebook_size(1_000_000) == 2_000


def test_codebook_is_seeded_and_assigns_every_vector():
    centres = _unit_vectors(4, 16, 0)
    points = np.repeat(centres, 50, axis=0) + 0.05 * _unit_vectors(200, 16, 1)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    a = train_codebook(points, 4, seed=3)
    b = train_codebook(points, 4, seed=3)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-3)  # unit length, then rounded to float16
    assert np.array_equal(a, a.astype(np.float16).astype(np.float32))  # as the store keeps it
    ids, scores = assign(points, a)
    assert len(set(ids.tolist())) == 4
    assert all(len(set(ids[i * 50 : (i + 1) * 50].tolist())) == 1 for i in range(4))
    assert scores.min() > 0.9


def test_near_duplicates_merge_into_the_most_frequent_text():
    base = _unit_vectors(3, 8, 2)
    close = base[0] + 0.01 * _unit_vectors(1, 8, 3)[0]
    vectors = np.stack([base[0], close / np.linalg.norm(close), base[1], base[2]])
    merges, candidates = group_near_duplicates(["u0", "u1", "u2", "u3"], vectors, [1, 5, 1, 1], threshold=0.95, check="none")
    assert [(m, c) for m, c, _, _ in merges] == [(0, 1)] and candidates == 1  # u1 is more frequent, so it is canonical
    assert merges[0][2] >= 0.95 and merges[0][3] == "cosine"
    assert group_near_duplicates(["u0"], vectors[:1], [1], 0.9) == ([], 0)


def test_no_chaining_every_member_is_close_to_its_canonical():
    angles = [0.0, 0.3, 0.6]  # neighbours are close, the ends are not
    vectors = np.array([[np.cos(a), np.sin(a)] for a in angles], dtype=np.float32)
    merges, _ = group_near_duplicates(["a", "b", "c"], vectors, [3, 2, 1], threshold=0.95, check="none")
    assert [(m, c) for m, c, _, _ in merges] == [(1, 0)]


def test_a_candidate_merges_only_when_its_words_agree():
    """Embeddings blur order and numbers: at the same cosine, only the pair whose words agree merges,
    and provenance says which check let it."""
    texts = ["Flights from Boston to Denver.", "flights from Boston to Denver", "Flights from Denver to Boston.",
             "Flights from Boston to Denver at 5."]
    vectors = np.tile(_unit_vectors(1, 8, 9), (4, 1))  # all four at cosine 1
    merges, candidates = group_near_duplicates(["a", "b", "c", "d"], vectors, [4, 3, 2, 1], 0.95, texts, "en", "words")
    assert [(m, c, method) for m, c, _, method in merges] == [(1, 0, "cosine+same-words")]
    assert candidates == 3  # b, c and d each had a (the) canonical above the threshold
    merges, _ = group_near_duplicates(["a", "b", "c", "d"], vectors, [4, 3, 2, 1], 0.95, texts, "en", "none")
    assert [(m, c) for m, c, _, _ in merges] == [(1, 0), (2, 0), (3, 0)]


def test_cluster_summary_picks_the_most_central_representative():
    v = _unit_vectors(3, 4, 5)
    units = pa.table({"unit_id": ["a", "b", "c"], "text": ["A", "B", "C"], "occurrence_count": [1, 2, 1],
                      "hyperword_score": pa.array([0.9, 0.9, 0.5], pa.float32())})
    vectors = v[[1, 0, 2]]
    provenance, stats = summarise_cluster(7, units, vectors, threshold=0.999, check="none")
    assert provenance == []
    assert stats == {"hyperword": 7, "unit_count": 3, "occurrence_count": 4, "representative_unit_id": "a",
                     "representative_text": "A", "representative_score": pytest.approx(0.9), "near_duplicate_occurrences": 0,
                     "near_duplicate_candidates": 0}
    provenance, stats = summarise_cluster(7, units, vectors, threshold=-1.0, check="none")
    assert [(p["unit_id"], p["canonical_unit_id"]) for p in provenance] == [("a", "b"), ("c", "b")]
    assert stats["near_duplicate_occurrences"] == 2


def test_clusters_are_gathered_by_hyperword_from_any_bucket():
    v = _unit_vectors(4, 4, 6)
    parts = [
        (pa.table({"hyperword": pa.array([2, 5], pa.int32()), "unit_id": ["d", "a"]}), VectorValues(v[:2])),
        (pa.table({"hyperword": pa.array([5, 2], pa.int32()), "unit_id": ["b", "c"]}), VectorValues(v[2:])),
    ]
    clusters = [(hw, units["unit_id"].to_pylist(), vectors) for hw, units, vectors in clusters_of(parts)]
    assert [(hw, ids) for hw, ids, _ in clusters] == [(2, ["c", "d"]), (5, ["a", "b"])]
    np.testing.assert_array_equal(clusters[0][2], v[[3, 0]])
