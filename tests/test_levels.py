"""Levels above the units (transforms/levels.py): per-document gathering, codes, semantic ids, and the
Beam stage on synthetic buckets whose topics are known."""

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from hyperscene.schemas import SCENES
from hyperscene.schemas.unit_bucket import UnitBucket
from hyperscene.transforms.levels import BuildLevels, CodeStats, document_parts, encode_document, gather_document
from hyperscene.transforms.scenes import SceneConfig

DIM = 16
CFG = SceneConfig(min_units=2, max_units=8)


def topic_vectors(topics, rng):
    """One unit per entry of ``topics``: a noisy copy of that topic's direction, unit length."""
    axes = np.eye(DIM, dtype=np.float32)
    v = axes[topics] + 0.05 * rng.standard_normal((len(topics), DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def corpus(n_buckets=3, seed=0):
    """Two documents of topic blocks, their units spread over ``n_buckets`` buckets with vectors."""
    rng = np.random.default_rng(seed)
    docs = {"a": [0] * 6 + [1] * 6 + [2] * 6, "b": [3] * 5 + [4] * 5}
    rows = [(doc, pos, t) for doc, topics in docs.items() for pos, t in enumerate(topics)]
    vectors = topic_vectors([t for _, _, t in rows], rng)
    buckets = []
    for b in range(n_buckets):
        mine = [i for i in range(len(rows)) if i % n_buckets == b]
        ids = [f"{i:032x}" for i in mine]  # every occurrence its own unit, ids sorted as UnitBucket wants
        units = pa.table({"unit_id": ids, "text": [f"unit {i}" for i in mine], "occurrence_count": [1] * len(mine),
                          "token_count": [3] * len(mine), "hyperword": pa.array([rows[i][2] for i in mine], pa.int32())})
        occurrences = pa.table({"doc_id": [rows[i][0] for i in mine], "position": [rows[i][1] for i in mine],
                                "unit_id": ids, "separator": [" "] * len(mine),
                                "hyperword": pa.array([rows[i][2] for i in mine], pa.int32())})
        buckets.append(UnitBucket(b, units, occurrences, vectors[mine]))
    return docs, buckets


def gathered(buckets):
    parts = {}
    for bucket in buckets:
        for doc_id, part in document_parts(bucket):
            parts.setdefault(doc_id, []).append(part)
    return {doc_id: gather_document(doc_id, ps, CFG) for doc_id, ps in parts.items()}


def test_documents_are_gathered_in_order_from_every_bucket():
    docs, buckets = corpus()
    for doc_id, doc in gathered(buckets).items():
        assert doc.occurrences.column("position").to_pylist() == list(range(len(docs[doc_id])))
        assert doc.scenes[-1].first == 0 and doc.scenes[-1].last == len(docs[doc_id]) - 1
        level1 = [(s.first, s.last) for s in doc.scenes if s.level == 1]
        assert [f for f, _ in level1] == ([0, 6, 12] if doc_id == "a" else [0, 5])


def test_codes_child_codes_and_semantic_ids_agree():
    _, buckets = corpus()
    doc = gathered(buckets)["a"]
    levels = sorted({s.level for s in doc.scenes})
    codebooks = {level: np.stack([s.centroid for s in doc.scenes if s.level == level]) for level in levels}
    scenes, occurrences, members = encode_document(doc, codebooks)
    assert scenes.schema == SCENES
    rows = scenes.to_pylist()
    # each scene's own centroid is in its level's codebook, so it gets its own index as its code
    assert all(r["code"] == r["index"] and r["code_score"] == pytest.approx(1.0, abs=1e-5) for r in rows)
    level1 = [r for r in rows if r["level"] == 1]
    hyperwords = occurrences.column("hyperword").to_pylist()
    for r in level1:
        assert r["child_codes"] == hyperwords[r["first_position"] : r["last_position"] + 1]
    semantic = occurrences.column("semantic_id").to_pylist()
    assert all(len(s) == len(levels) + 1 for s in semantic)
    for r in level1:
        for pos in range(r["first_position"], r["last_position"] + 1):
            assert semantic[pos][-2:] == [r["code"], hyperwords[pos]]
            assert semantic[pos][0] == 0  # the root, the only scene at the top level
    assert len(members) == len(rows)


def test_code_stats_do_not_depend_on_arrival_order():
    members = [(0.9, "d#1.2"), (0.95, "d#1.1"), (0.95, "d#1.0"), (0.5, "c#1.0")]
    fn = CodeStats()
    forward = fn.merge_accumulators([fn.add_input(fn.create_accumulator(), m) for m in members])
    backward = fn.merge_accumulators([fn.add_input(fn.create_accumulator(), m) for m in reversed(members)])
    assert forward == backward == (4, 0.95, "d#1.0")


def test_build_levels_in_a_pipeline_covers_every_scene_and_code():
    docs, buckets = corpus()

    def check_scenes(tables):
        table = pa.concat_tables(tables)
        assert sorted(set(table.column("doc_id").to_pylist())) == ["a", "b"]
        for doc_id, topics in docs.items():
            roots = [r for r in table.to_pylist() if r["doc_id"] == doc_id and r["parent_scene_id"] is None]
            assert len(roots) == 1 and (roots[0]["first_position"], roots[0]["last_position"]) == (0, len(topics) - 1)

    def check_codebooks(rows):
        by_level = {}
        for r in rows:
            by_level.setdefault(r["level"], []).append(r)
        assert 1 in by_level
        # every scene counted once, in the codebook of its own level
        assert sum(r["scene_count"] for r in by_level[1]) == 5  # 3 scenes in a, 2 in b

    def check_occurrences(tables):
        table = pa.concat_tables(tables)
        assert table.num_rows == sum(len(t) for t in docs.values())
        assert all(len(s) >= 2 for s in table.column("semantic_id").to_pylist())

    with TestPipeline() as p:
        out = p | beam.Create(buckets) | BuildLevels(CFG, codebook_sizes=(4,))
        assert_that(out["scenes"], check_scenes, label="scenes")
        assert_that(out["codebooks"], check_codebooks, label="codebooks")
        assert_that(out["occurrences"], check_occurrences, label="occurrences")
