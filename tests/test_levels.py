"""Levels above the units (transforms/levels/): per-document gathering, codes, semantic ids, and the
Beam stage on synthetic buckets whose topics are known."""

import dataclasses
import pickle

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from hyperscene.schemas import SCENES
from hyperscene.schemas.unit_bucket import UnitBucket
from hyperscene.transforms.embed import spill_vectors
from hyperscene.transforms.levels import (
    BuildLevels, CodeStats, LevelSample, bucket_parts, encode_document, gather_document,
)
from hyperscene.transforms.levels.encode import gather_documents
from hyperscene.transforms.levels.parts import document_lengths
from hyperscene.transforms.codebook import as_stored, assign
from hyperscene.transforms.scenes import SceneConfig, build_scene_tree, level_scenes, window_depth, windows
from hyperscene.transforms.spill import NO_SPILL, SpilledRows, SpillPolicy, as_rows

DIM = 16
CFG = SceneConfig(min_units=2, max_units=8)


def topic_vectors(topics, rng):
    """One unit per entry of ``topics``: a noisy copy of that topic's direction, unit length."""
    axes = np.eye(DIM, dtype=np.float32)
    v = axes[topics] + 0.05 * rng.standard_normal((len(topics), DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def corpus(n_buckets=3, seed=0):
    """Two documents of topic blocks, their units spread over ``n_buckets`` buckets with vectors."""
    docs = {"a": [0] * 6 + [1] * 6 + [2] * 6, "b": [3] * 5 + [4] * 5}
    return docs, make_buckets(docs, n_buckets, np.random.default_rng(seed))[0]


def make_buckets(docs, n_buckets, rng, tokens=None):
    """Buckets holding every occurrence of ``docs`` (doc_id -> topic per unit), one unit each; and
    the vectors in occurrence order (documents in turn, positions in order)."""
    rows = [(doc, pos, t) for doc, topics in docs.items() for pos, t in enumerate(topics)]
    vectors = topic_vectors([t for _, _, t in rows], rng)
    tokens = np.full(len(rows), 3) if tokens is None else tokens
    buckets = []
    for b in range(n_buckets):
        mine = [i for i in range(len(rows)) if i % n_buckets == b]
        ids = [f"{i:032x}" for i in mine]  # every occurrence its own unit, ids sorted as UnitBucket wants
        units = pa.table({"unit_id": ids, "text": [f"unit {i}" for i in mine], "occurrence_count": [1] * len(mine),
                          "token_count": tokens[mine], "hyperword": pa.array([rows[i][2] for i in mine], pa.int32())})
        occurrences = pa.table({"doc_id": [rows[i][0] for i in mine], "position": [rows[i][1] for i in mine],
                                "unit_id": ids, "separator": [" "] * len(mine),
                                "hyperword": pa.array([rows[i][2] for i in mine], pa.int32())})
        buckets.append(UnitBucket(b, units, occurrences, vectors[mine]))
    return buckets, vectors


def gathered(buckets):
    parts = {}
    for bucket in buckets:
        for (doc_id, _, _), part in bucket_parts(bucket, NO_SPILL):
            parts.setdefault(doc_id, []).append(part)
    return {doc_id: gather_document(doc_id, ps, CFG) for doc_id, ps in parts.items()}


def test_document_lengths_name_only_documents_reaching_the_threshold():
    docs = {"a": [0] * 6, "b": [1] * 12, "c": [2] * 2}
    buckets, _ = make_buckets(docs, 3, np.random.default_rng(0))
    lengths = {}
    for bucket in buckets:
        for doc_id, n in document_lengths(bucket, at_least=6):
            lengths[doc_id] = max(n, lengths.get(doc_id, 0))
    assert lengths == {"a": 6, "b": 12}


def test_a_group_of_documents_crosses_a_shuffle_field_for_field():
    """A DocumentGroup is packed into one array per field when pickled; every level must come back
    with the same arrays, dtypes and gists."""
    rng = np.random.default_rng(2)
    docs = {f"d{i:03d}": list(rng.integers(0, DIM, rng.integers(1, 15))) for i in range(60)}
    buckets, _ = make_buckets(docs, 3, rng, rng.integers(0, 9, sum(map(len, docs.values()))))
    group = gather_documents([part for b in buckets for _, part in bucket_parts(b, NO_SPILL, {}, groups=1)], CFG)
    back = pickle.loads(pickle.dumps(group))
    assert back.doc_ids == group.doc_ids == sorted(docs) and back.occurrences.equals(group.occurrences)
    assert np.array_equal(back.bounds, group.bounds)
    assert [[lv.level for lv in levels] for levels in back.levels] == [[lv.level for lv in levels] for levels in group.levels]
    for levels, original in zip(back.levels, group.levels):
        for lv, ov in zip(levels, original):
            assert lv.gists == ov.gists
            for field in ("starts", "firsts", "lasts", "tokens", "centroids", "norms"):
                a, b = getattr(lv, field), getattr(ov, field)
                assert a.dtype == b.dtype and np.array_equal(a, b)


def test_short_documents_gathered_in_groups_get_the_scenes_and_codes_they_get_alone():
    """Grouping is only a way to move many short documents at once: every table BuildLevels writes
    must be the same, row for row, with documents gathered in groups or each alone."""
    rng = np.random.default_rng(5)
    docs = {f"d{i:03d}": list(rng.integers(0, DIM, rng.integers(1, 12))) for i in range(40)}
    docs["medium"] = [i // 4 % DIM for i in range(30)]  # of grouped_below units or more: gathered alone
    buckets, _ = make_buckets(docs, 4, rng, rng.integers(1, 9, sum(map(len, docs.values()))))
    grouped_parts = [key for b in buckets for key, _ in bucket_parts(b, NO_SPILL, {"medium": 30}, groups=3)]
    assert {k for k in grouped_parts if not isinstance(k, int)} == {("medium", 0, 1)}
    assert {k for k in grouped_parts if isinstance(k, int)} == {0, 1, 2}

    def sorted_rows(tables, keys):
        return pa.concat_tables([as_rows(t).load() for t in tables]).sort_by([(k, "ascending") for k in keys]).to_pylist()

    def check(tagged):
        by = {(how, name): [v for h, n, v in tagged if (h, n) == (how, name)] for how, name, _ in tagged}
        results = {how: (sorted_rows(by[how, "scenes"], ["scene_id"]), sorted_rows(by[how, "occurrences"], ["doc_id", "position"]),
                         sorted(by[how, "codebooks"], key=lambda r: (r["level"], r["code"]))) for how in ("alone", "grouped")}
        alone, grouped = results["alone"], results["grouped"]
        assert len(alone[0]) > 40 and len(alone[1]) == sum(map(len, docs.values()))
        assert alone == grouped

    with TestPipeline() as p:
        buckets_in = p | beam.Create(buckets)
        tagged = []
        for how, groups in (("alone", 0), ("grouped", 3)):
            out = buckets_in | f"Levels {how}" >> BuildLevels(CFG, codebook_sizes=(5, 3), groups=groups, grouped_below=20)
            for name in ("scenes", "occurrences", "codebooks"):
                tagged.append(out[name] | f"Tag {how} {name}" >> beam.Map(lambda v, how=how, name=name: (how, name, v)))
        assert_that(tagged | beam.Flatten(), check)


def test_documents_are_gathered_in_order_from_every_bucket():
    docs, buckets = corpus()
    for doc_id, doc in gathered(buckets).items():
        assert doc.occurrences.column("position").to_pylist() == list(range(len(docs[doc_id])))
        scenes = level_scenes(doc.levels)
        assert scenes[-1].first == 0 and scenes[-1].last == len(docs[doc_id]) - 1
        level1 = [(s.first, s.last) for s in scenes if s.level == 1]
        assert [f for f, _ in level1] == ([0, 6, 12] if doc_id == "a" else [0, 5])


def test_codes_child_codes_and_semantic_ids_agree():
    _, buckets = corpus()
    doc = gathered(buckets)["a"]
    from hyperscene.transforms.codebook import as_stored

    codebooks = {lv.level: as_stored(lv.centroids) for lv in doc.levels}  # float16 values, as trained codebooks hold
    scenes, occurrences, members = encode_document(doc, codebooks)
    assert scenes.schema == SCENES
    rows = scenes.to_pylist()
    # each scene's own centroid, as stored, is in its level's codebook, so it gets its own index as its
    # code (the score is its squared length: 1 within float16's rounding)
    assert all(r["code"] == r["index"] and r["code_score"] == pytest.approx(1.0, abs=2e-3) for r in rows)
    level1 = [r for r in rows if r["level"] == 1]
    hyperwords = occurrences.column("hyperword").to_pylist()
    for r in level1:
        assert r["child_codes"] == hyperwords[r["first_position"] : r["last_position"] + 1]
    semantic = occurrences.column("semantic_id").to_pylist()
    assert all(len(s) == len(doc.levels) + 1 for s in semantic)
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


@pytest.mark.parametrize("sample", [7, 60, 10_000])
def test_level_sample_is_the_smallest_keys_whatever_the_arrival_order(sample):
    """The codebook sample is the centroids of the ``sample`` smallest keys, in key order, as one
    sort of every key would give, however the scenes are split into parts and merged."""
    rng = np.random.default_rng(1)
    parts = [([f"{rng.integers(16 ** 15):016x}" for _ in range(n)], rng.normal(size=(n, 3)).astype(np.float32))
             for n in rng.integers(1, 40, 80)]
    keys = np.concatenate([np.asarray(k, "U16") for k, _ in parts])
    expected = np.concatenate([c for _, c in parts])[np.argsort(keys, kind="stable")[:sample]]
    fn = LevelSample(sample)
    for seed in range(3):
        accumulators = []
        for chunk in np.array_split(np.random.default_rng(seed).permutation(len(parts)), 5):
            acc = fn.create_accumulator()
            for i in chunk:
                acc = fn.add_input(acc, parts[i])
            accumulators.append(acc)
        count, centroids = fn.extract_output(fn.merge_accumulators(accumulators))
        assert count == len(keys) and np.array_equal(centroids, expected)


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


@pytest.mark.parametrize("spilled, levels, spill_rows", [(False, None, False), (True, None, False), (True, None, True),
                                                       (False, 1, False), (False, 3, False)],
                         ids=["vector values", "spilled vector references", "spilled rows", "root at level 1", "root at level 3"])
def test_a_long_document_is_built_in_windows_as_the_reference_builds_it(spilled, levels, spill_rows, tmp_path):
    """A document of 2 windows or more (window_units=10 here) is gathered window by window; its
    scenes must be exactly those of scenes.build_scene_tree (spans, parents, gists, centroids to
    the bit), whichever way its vectors and rows travel, and its child codes and semantic ids must
    follow its scenes' codes; a shorter document keeps build_scene_tree's scenes."""
    size, cfg = 10, dataclasses.replace(CFG, levels=levels)
    rng = np.random.default_rng(3)
    docs = {"long": [i // 5 % DIM for i in range(305)], "short": [3] * 9 + [4] * 10}  # 305 units: 30 windows; 19: one
    tokens = rng.integers(0, 9, sum(map(len, docs.values())))
    buckets, vectors = make_buckets(docs, 4, rng, tokens)
    if spilled:
        buckets = [spill_vectors(b, str(tmp_path)) for b in buckets]
    vectors = vectors.astype(np.float16).astype(np.float32)  # as the gather rounds them
    split = len(docs["long"])
    expected = {"long": build_scene_tree(vectors[:split], tokens[:split], cfg, size),
                "short": build_scene_tree(vectors[split:], tokens[split:], cfg)}
    assert len(windows(split, size)) == 30
    if levels is None:
        assert window_depth(cfg, size) == 2 and max(s.level for s in expected["long"]) >= 4
        # levels 1-2 are cut inside each window; level 3, from 2 windows' worth of level-2 scenes or more, in windows of them
        assert len([s for s in expected["long"] if s.level == 2]) >= 2 * size
    else:
        assert max(s.level for s in expected["long"]) == levels and len([s for s in expected["long"] if s.level == levels]) == 1

    def check_scenes(tables):
        assert any(isinstance(t, SpilledRows) for t in tables) == spill_rows  # parts in files, or values
        table = pa.concat_tables([as_rows(t).load() for t in tables]).sort_by([("doc_id", "ascending"), ("level", "ascending"), ("index", "ascending")])
        assert table.schema == SCENES
        for doc_id, scenes in expected.items():
            rows = [r for r in table.to_pylist() if r["doc_id"] == doc_id]
            assert len(rows) == len(scenes)
            codes = {(r["level"], r["index"]): r["code"] for r in rows}
            for r, s in zip(rows, scenes):
                assert (r["level"], r["index"], r["first_position"], r["last_position"], r["token_count"], r["child_count"]) == (
                    s.level, s.index, s.first, s.last, s.token_count, s.child_count)
                assert r["parent_scene_id"] == (None if s.parent is None else f"{doc_id}#{s.level + 1}.{s.parent}")
                assert tuple(r["gist"]) == s.gist
                if s.level == 1:
                    assert r["child_codes"] == docs[doc_id][s.first : s.last + 1]  # the hyperwords
                else:
                    assert r["child_codes"] == [codes[(s.level - 1, c)] for c in s.children]

    def check_occurrences(tagged):
        scenes = pa.concat_tables([as_rows(t).load() for tag, t in tagged if tag == "scenes"]).to_pylist()
        table = pa.concat_tables([as_rows(t).load() for tag, t in tagged if tag == "occurrences"])
        for doc_id, expected_scenes in expected.items():
            rows = sorted((r for r in table.to_pylist() if r["doc_id"] == doc_id), key=lambda r: r["position"])
            assert [r["position"] for r in rows] == list(range(len(docs[doc_id])))
            top = max(s.level for s in expected_scenes)
            for r in rows:  # root first: the code of the one scene per level that holds the position
                path = [s["code"] for s in sorted(scenes, key=lambda s: -s["level"]) if s["doc_id"] == doc_id
                        and s["first_position"] <= r["position"] <= s["last_position"]]
                assert len(path) == top and r["semantic_id"] == [*path, r["hyperword"]]

    def check_codebooks(tagged):
        rows = [r for tag, t in tagged if tag == "codebooks" for r in t]
        counts = {}
        for r in rows:
            counts[r["level"]] = counts.get(r["level"], 0) + r["scene_count"]
        for level in range(1, max(s.level for s in expected["long"]) + 1):
            assert counts[level] == sum(1 for ss in expected.values() for s in ss if s.level == level)
        # every scene's code and score are its reference centroid's (as stored: float16) in its level's codebook
        books = {level: np.array([r["centroid"] for r in sorted(rows, key=lambda r: r["code"]) if r["level"] == level], np.float32)
                 for level in counts}
        scenes = pa.concat_tables([as_rows(t).load() for tag, t in tagged if tag == "scenes"]).to_pylist()
        stored = {(r["doc_id"], r["level"], r["index"]): r for r in scenes}
        for doc_id, ss in expected.items():
            for s in ss:
                [code], [score] = assign(as_stored(s.centroid[None]), books[s.level])
                r = stored[(doc_id, s.level, s.index)]
                assert r["code"] == code and r["code_score"] == float(np.float16(score))  # stored in float16

    with TestPipeline() as p:
        out = p | beam.Create(buckets) | BuildLevels(cfg, codebook_sizes=(6, 4), window_units=size,
                                                     spill=SpillPolicy.for_scratch(str(tmp_path / "rows"), part_rows=20) if spill_rows else NO_SPILL)
        assert_that(out["scenes"], check_scenes, label="scenes")
        both = (out["scenes"] | "TagScenes" >> beam.Map(lambda t: ("scenes", t)),
                out["occurrences"] | "TagOccurrences" >> beam.Map(lambda t: ("occurrences", t))) | beam.Flatten()
        assert_that(both, check_occurrences, label="occurrences")
        with_books = (out["scenes"] | "TagScenes2" >> beam.Map(lambda t: ("scenes", t)),
                      out["codebooks"] | "TagBooks" >> beam.Map(lambda r: ("codebooks", [r]))) | "Both2" >> beam.Flatten()
        assert_that(with_books, check_codebooks, label="codebooks")
    if spill_rows:  # every bucket's rows of the long document went to a file, and every window's output
        assert len(list((tmp_path / "rows").glob("parts-*.arrow"))) == 4
        assert len(list((tmp_path / "rows").glob("occurrences-*.arrow"))) == 30

