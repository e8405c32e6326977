import apache_beam as beam
import numpy as np
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from hyperscene.transforms.codebook import assign, default_codebook_size, train_codebook
from hyperscene.transforms.dedup import ExactDedup, unit_id
from hyperscene.transforms.near_dup import group_near_duplicates, summarise_cluster


def test_unit_id_is_a_stable_content_hash():
    assert unit_id("Hello.") == unit_id("Hello.") != unit_id("Hello. ")
    assert unit_id("") == "cae66941d9efbd404e4d88758ea67670"  # blake2b-128 of nothing


def test_exact_dedup_counts_each_text_once():
    occ = [{"doc_id": "d", "position": i, "text": t, "separator": " "} for i, t in enumerate(["a", "b", "a", "a"])]
    with TestPipeline() as p:
        slim, units = p | beam.Create(occ) | ExactDedup()
        assert_that(units | beam.Map(lambda u: (u["text"], u["occurrence_count"])), equal_to([("a", 3), ("b", 1)]), label="units")
        assert_that(slim | beam.Map(lambda o: (o["position"], o["unit_id"], "text" in o)),
                    equal_to([(0, unit_id("a"), False), (1, unit_id("b"), False), (2, unit_id("a"), False), (3, unit_id("a"), False)]),
                    label="occurrences")


def _unit_vectors(n, d, seed):
    v = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


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
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    ids, scores = assign(points, a)
    assert len(set(ids.tolist())) == 4
    assert all(len(set(ids[i * 50 : (i + 1) * 50].tolist())) == 1 for i in range(4))
    assert scores.min() > 0.9


def test_near_duplicates_merge_into_the_most_frequent_text():
    base = _unit_vectors(3, 8, 2)
    close = base[0] + 0.01 * _unit_vectors(1, 8, 3)[0]
    vectors = np.stack([base[0], close / np.linalg.norm(close), base[1], base[2]])
    merges = group_near_duplicates(["u0", "u1", "u2", "u3"], vectors, [1, 5, 1, 1], threshold=0.95)
    assert [(m, c) for m, c, _ in merges] == [(0, 1)]  # u1 is more frequent, so it is canonical
    assert merges[0][2] >= 0.95
    assert group_near_duplicates(["u0"], vectors[:1], [1], 0.9) == []


def test_no_chaining_every_member_is_close_to_its_canonical():
    angles = [0.0, 0.3, 0.6]  # neighbours are close, the ends are not
    vectors = np.array([[np.cos(a), np.sin(a)] for a in angles], dtype=np.float32)
    merges = group_near_duplicates(["a", "b", "c"], vectors, [3, 2, 1], threshold=0.95)
    assert [(m, c) for m, c, _ in merges] == [(1, 0)]


def test_cluster_summary_picks_the_most_central_representative():
    v = _unit_vectors(3, 4, 5)
    units = [
        {"unit_id": "b", "text": "B", "vector": v[0], "occurrence_count": 2, "hyperword_score": 0.9},
        {"unit_id": "a", "text": "A", "vector": v[1], "occurrence_count": 1, "hyperword_score": 0.9},
        {"unit_id": "c", "text": "C", "vector": v[2], "occurrence_count": 1, "hyperword_score": 0.5},
    ]
    provenance, stats = summarise_cluster(7, units, threshold=0.999)
    assert provenance == []
    assert stats == {"hyperword": 7, "unit_count": 3, "occurrence_count": 4, "representative_unit_id": "a",
                     "representative_text": "A", "representative_score": 0.9, "near_duplicate_occurrences": 0}
    provenance, stats = summarise_cluster(7, units, threshold=-1.0)
    assert [(p["unit_id"], p["canonical_unit_id"]) for p in provenance] == [("a", "b"), ("c", "b")]
    assert stats["near_duplicate_occurrences"] == 2
