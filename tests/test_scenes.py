"""Scenes: cut points, the scene tree and its invariants, on synthetic vectors (no model, no Beam)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hyperscene.transforms.errors import InvalidOption
from hyperscene.transforms.scenes import (
    ROW_FIELDS,
    SceneConfig,
    best_segmentation,
    build_scene_tree,
    cut_points,
    gists,
    scene_columns,
    window_depth,
    window_of,
    windows,
)


def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def topic_blocks(lengths, dim=48, noise=0.6, seed=0, topics=None):
    """Consecutive blocks of items around one random direction each: the true cuts are obvious."""
    rng = np.random.default_rng(seed)
    topics = rng.normal(size=(len(lengths), dim)) if topics is None else topics
    rows = [t + noise * rng.normal(size=(n, dim)) / np.sqrt(dim) * np.linalg.norm(t) for t, n in zip(topics, lengths)]
    return unit_rows(np.concatenate(rows))


def block_starts(lengths):
    return [int(x) for x in np.cumsum([0, *lengths])[:-1]]


def random_rows(n, dim=16, seed=0):
    return unit_rows(np.random.default_rng(seed).normal(size=(n, dim))) if n else np.zeros((0, dim), np.float32)


# --- SceneConfig ---------------------------------------------------------------------------------


def test_defaults_are_valid_and_frozen():
    cfg = SceneConfig()
    assert cfg.bounds(1) == (cfg.min_units, cfg.max_units)
    assert cfg.bounds(2) == cfg.bounds(5) == (cfg.min_children, cfg.max_children)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.min_units = 1


@pytest.mark.parametrize(
    "options, code, words",
    [
        ({"min_units": 0}, "E232", "min_units must be at least 1"),
        ({"min_units": 5, "max_units": 8}, "E233", "at least 2 * min_units - 1 (9)"),
        ({"min_children": 1}, "E234", "min_children must be at least 2"),
        ({"min_children": 3, "max_children": 4}, "E235", "at least 2 * min_children - 1 (5)"),
        ({"levels": 0}, "E237", "--levels must be at least 1"),
        ({"gist_size": 0}, "E236", "gist_size must be at least 1"),
        ({"penalty": -1.0}, "E230", "penalty must be a finite number >= 0"),
        ({"scene_penalty": float("nan")}, "E230", "scene_penalty must be a finite number"),
        ({"max_units": 40.0}, "E231", "max_units must be a whole number"),
        ({"levels": True}, "E231", "levels must be a whole number"),
    ],
)
def test_invalid_config_is_one_clear_error(options, code, words):
    with pytest.raises(InvalidOption, match=rf"^\[{code}\] ") as e:
        SceneConfig(**options)
    assert words in str(e.value)


def test_level_zero_has_no_bounds():
    with pytest.raises(ValueError, match="start at 1"):
        SceneConfig().bounds(0)


# --- cut_points ----------------------------------------------------------------------------------


@pytest.mark.parametrize("lengths", [[6, 9, 4, 12, 7], [3, 3, 3, 3], [11, 3, 8, 5, 10, 4]])
def test_cuts_fall_on_topic_boundaries(lengths):
    assert cut_points(topic_blocks(lengths, seed=len(lengths))) == block_starts(lengths)


def test_cuts_on_higher_levels_use_the_children_bounds():
    lengths = [2, 3, 2, 4]
    assert cut_points(topic_blocks(lengths, seed=3), level=2) == block_starts(lengths)
    # Level 1 cannot cut a 2-item block off: its minimum is 3 units.
    assert min(np.diff([*cut_points(topic_blocks(lengths, seed=3), level=1), 11])) >= 3


@pytest.mark.parametrize("n, expected", [(0, []), (1, [0]), (2, [0]), (5, [0])])
def test_tiny_documents(n, expected):
    assert cut_points(random_rows(n)) == expected


def test_a_uniform_document_is_still_cut_at_the_maximum():
    same = np.tile(random_rows(1), (100, 1))
    starts = cut_points(same, SceneConfig(max_units=40))
    lengths = np.diff([*starts, 100])
    assert starts[0] == 0 and lengths.max() <= 40 and lengths.min() >= 3


def test_cut_points_rejects_a_flat_array():
    with pytest.raises(ValueError, match="2-d"):
        cut_points(np.zeros(8))


def test_best_segmentation_refuses_impossible_bounds():
    with pytest.raises(ValueError, match="cannot be cut"):
        best_segmentation(np.random.default_rng(0).normal(size=(6, 4)), 4, 5, 1.0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 120),
    min_len=st.integers(1, 6),
    extra=st.integers(0, 30),
    penalty=st.floats(0, 4),
    seed=st.integers(0, 2**16),
)
def test_scene_lengths_always_within_bounds(n, min_len, extra, penalty, seed):
    max_len = 2 * min_len - 1 + extra
    cfg = SceneConfig(min_units=min_len, max_units=max_len, penalty=penalty)
    starts = cut_points(random_rows(n, seed=seed), cfg)
    if n == 0:
        assert starts == []
        return
    assert starts[0] == 0 and starts == sorted(set(starts))
    lengths = np.diff([*starts, n])
    assert lengths.max() <= max_len
    assert lengths.min() >= min(min_len, n)


def test_cut_points_is_deterministic_and_local_to_the_document():
    rows = topic_blocks([5, 8, 6, 9], seed=7)
    assert cut_points(rows) == cut_points(rows.copy())
    # A document's cuts do not depend on what else is being cut, nor on its dtype.
    assert cut_points(rows.astype(np.float64)) == cut_points(rows)


# --- build_scene_tree ----------------------------------------------------------------------------


def check_tree(scenes, n, tokens, cfg):
    """Every invariant the store relies on: levels tile the document, nest, and end in one root."""
    if n == 0:
        assert scenes == []
        return
    assert scenes == sorted(scenes, key=lambda s: (s.level, s.index))
    top = max(s.level for s in scenes)
    if cfg.levels is not None:
        assert top <= cfg.levels
    by_level = {lvl: [s for s in scenes if s.level == lvl] for lvl in range(1, top + 1)}
    assert len(by_level[top]) == 1 and by_level[top][0].parent is None
    assert (by_level[top][0].first, by_level[top][0].last) == (0, n - 1)
    for lvl, level_scenes in by_level.items():
        assert [s.index for s in level_scenes] == list(range(len(level_scenes)))
        # Spans tile [0, n) in order: no gap, no overlap.
        assert level_scenes[0].first == 0 and level_scenes[-1].last == n - 1
        assert all(a.last + 1 == b.first for a, b in zip(level_scenes, level_scenes[1:]))
        below = by_level.get(lvl - 1)
        children_seen = []
        for s in level_scenes:
            assert s.child_count == len(s.children) >= 1
            assert list(s.children) == list(range(s.children[0], s.children[-1] + 1))
            children_seen.extend(s.children)
            if below is None:  # level 1: children are unit positions
                assert s.children == tuple(range(s.first, s.last + 1))
            else:
                kids = [below[c] for c in s.children]
                assert (kids[0].first, kids[-1].last) == (s.first, s.last)
                assert all(k.parent == s.index for k in kids)
            assert s.token_count == int(tokens[s.first : s.last + 1].sum())
            assert len(s.gist) == min(cfg.gist_size, s.unit_count)
            assert list(s.gist) == sorted(set(s.gist)) and s.first <= s.gist[0] and s.gist[-1] <= s.last
            assert s.centroid.dtype == np.float32 and abs(float(np.linalg.norm(s.centroid)) - 1) < 1e-5
            if lvl < top:
                assert s.parent is not None
            capped = cfg.levels is not None and lvl == cfg.levels
            if not capped and len(level_scenes) > 1:
                low, high = cfg.bounds(lvl)
                assert low <= s.child_count <= high
        assert children_seen == list(range(n if below is None else len(below)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 300),
    levels=st.one_of(st.none(), st.integers(1, 4)),
    min_units=st.integers(1, 5),
    min_children=st.integers(2, 4),
    gist_size=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_tree_spans_tile_and_nest_up_to_one_root(n, levels, min_units, min_children, gist_size, seed):
    cfg = SceneConfig(min_units=min_units, max_units=4 * min_units + 3, min_children=min_children,
                      max_children=2 * min_children + 2, gist_size=gist_size, levels=levels)
    tokens = np.random.default_rng(seed).integers(0, 30, n)
    scenes = build_scene_tree(random_rows(n, seed=seed), tokens, cfg)
    check_tree(scenes, n, tokens, cfg)


def test_short_documents_have_one_root():
    cfg = SceneConfig()
    assert build_scene_tree(random_rows(0), np.zeros(0, int), cfg) == []
    for n in (1, 2):
        (root,) = build_scene_tree(random_rows(n), np.full(n, 4), cfg)
        assert (root.level, root.index, root.parent, root.first, root.last) == (1, 0, None, 0, n - 1)
        assert root.children == tuple(range(n)) and root.token_count == 4 * n and root.gist == tuple(range(n))


def test_levels_cap_makes_the_top_level_one_root():
    rows, tokens = topic_blocks([5] * 12, seed=2), np.full(60, 9)
    free = build_scene_tree(rows, tokens)
    assert max(s.level for s in free) >= 3
    (only,) = build_scene_tree(rows, tokens, SceneConfig(levels=1))
    assert only.children == tuple(range(60)) and only.parent is None
    capped = build_scene_tree(rows, tokens, SceneConfig(levels=2))
    level1 = [s for s in capped if s.level == 1]
    (root,) = [s for s in capped if s.level == 2]
    assert [(s.first, s.last) for s in level1] == [(s.first, s.last) for s in free if s.level == 1]
    assert root.children == tuple(range(len(level1))) and all(s.parent == 0 for s in level1)


def test_two_level_topics_give_two_levels_of_cuts():
    rng = np.random.default_rng(11)
    themes = rng.normal(size=(4, 48))
    # Three sub-topics per theme: near their theme, far from the other themes.
    topics = np.concatenate([t + 1.0 * rng.normal(size=(3, 48)) for t in themes])
    lengths = [8] * 12
    scenes = build_scene_tree(topic_blocks(lengths, topics=topics, noise=0.4, seed=11), np.full(96, 10))
    assert [s.first for s in scenes if s.level == 1] == block_starts(lengths)
    assert [s.first for s in scenes if s.level == 2] == [0, 24, 48, 72]


def test_tree_is_deterministic():
    rows, tokens = random_rows(500, seed=5), np.random.default_rng(5).integers(1, 20, 500)
    a, b = build_scene_tree(rows, tokens), build_scene_tree(rows.copy(), tokens.copy())
    assert a == b
    assert all(x.centroid.tobytes() == y.centroid.tobytes() for x, y in zip(a, b))


def test_tree_rejects_mismatched_token_counts():
    with pytest.raises(ValueError, match="one count per unit"):
        build_scene_tree(random_rows(4), [1, 2, 3])


def test_centroid_weighs_units_by_tokens():
    rows = unit_rows(np.eye(3, 8)[[0, 0, 1]] + 0.0)
    (root,) = build_scene_tree(rows, [1, 1, 8])  # n=3 < 2 * min_units: one scene
    expected = np.array([2, 8, 0, 0, 0, 0, 0, 0], np.float32) / np.sqrt(68)
    np.testing.assert_allclose(root.centroid, expected, atol=1e-6)


def test_gist_is_the_most_central_units_in_document_order():
    rng = np.random.default_rng(4)
    theme = rng.normal(size=32)
    rows = np.stack([theme + (3.0 if i in (0, 2, 5) else 0.3) * rng.normal(size=32) for i in range(8)])
    rows = unit_rows(rows)
    centroid = unit_rows(rows.sum(axis=0, keepdims=True))
    (g,) = gists(rows, np.array([0]), np.array([7]), centroid, 5)
    assert g == (1, 3, 4, 6, 7)  # the three outliers are left out, the rest keep their order
    # Two scenes at once, each ranked against its own centroid; ties go to the earlier unit.
    same = np.tile(rows[:1], (6, 1))
    assert gists(same, np.array([0, 3]), np.array([2, 5]), same[[0, 3]], 2) == [(0, 1), (3, 4)]


def test_columns_hold_one_row_per_scene():
    scenes = build_scene_tree(topic_blocks([5, 6, 7], seed=1), np.full(18, 3))
    columns = scene_columns(scenes)
    assert tuple(columns) == ROW_FIELDS
    assert all(len(columns[name]) == len(scenes) for name in ROW_FIELDS)
    assert columns["centroid"].dtype == np.float32 and columns["centroid"].shape == (len(scenes), 48)
    assert columns["parent"][-1] is None and columns["child_count"] == [len(c) for c in columns["children"]]
    assert scene_columns([])["centroid"].shape[0] == 0


def test_tree_does_not_depend_on_the_blas_thread_count():
    """Workers may run with any number of BLAS threads; the banded Gram products must not care."""
    code = (
        "import hashlib, numpy as np\n"
        "from hyperscene.transforms.scenes import build_scene_tree\n"
        "rng = np.random.default_rng(0)\n"
        "v = rng.normal(size=(3000, 64)).astype(np.float32)\n"
        "v /= np.linalg.norm(v, axis=1, keepdims=True)\n"
        "v[1000:1050] = v[1000]\n"  # exact repeats: tied spans
        "h = hashlib.sha256()\n"
        "for s in build_scene_tree(v, rng.integers(1, 20, 3000)):\n"
        "    h.update(repr(s).encode() + s.centroid.tobytes())\n"
        "print(h.hexdigest())\n"
    )
    digests = set()
    for threads in ("1", "2"):
        env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
        digests.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
    assert len(digests) == 1


# --- Long documents, cut in windows --------------------------------------------------------------


def test_windows_are_never_short():
    assert windows(0, 10) == [(0, 0)]
    assert windows(19, 10) == [(0, 19)]  # under two windows: one, as before windows existed
    assert windows(20, 10) == [(0, 10), (10, 20)]
    assert windows(47, 10) == [(0, 10), (10, 20), (20, 30), (30, 47)]  # the last holds the rest
    assert window_of([0, 9, 10, 29, 30, 46], 47, 10).tolist() == [0, 0, 1, 2, 3, 3]
    with pytest.raises(ValueError):
        windows(5, 0)


def test_window_depth_is_what_every_window_is_sure_to_fill():
    assert window_depth(SceneConfig(), 20_000) == 4  # windows hold >= 500, 42, 4 scenes at levels 1-3
    assert window_depth(SceneConfig(levels=3), 20_000) == 2  # the cap is the root, above the windows
    assert window_depth(SceneConfig(levels=1), 20_000) == 0
    assert window_depth(SceneConfig(min_units=2, max_units=8), 10) == 2  # >= 2 level-1 scenes, then 1
    with pytest.raises(InvalidOption, match=r"^\[E238\] scene min_units"):
        window_depth(SceneConfig(min_units=30, max_units=60), 20)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 400),
    extra=st.integers(0, 30),
    levels=st.one_of(st.none(), st.integers(1, 4)),
    min_units=st.integers(1, 3),
    gist_size=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_a_long_document_is_cut_in_windows(n, extra, levels, min_units, gist_size, seed):
    """Past two windows, level 1 never crosses a window boundary; every level still tiles the
    document once, nests and ends in one root, and every gist is the scene's most central units of
    its whole span (as :func:`gists` picks them from all its units at once)."""
    cfg = SceneConfig(min_units=min_units, max_units=4 * min_units + 3, gist_size=gist_size, levels=levels)
    size = min_units + extra  # windows as short as a level-1 scene can be
    rng = np.random.default_rng(seed)
    rows = topic_blocks(rng.integers(2, 12, n), seed=seed)[:n]
    tokens = rng.integers(0, 30, n)
    scenes = build_scene_tree(rows, tokens, cfg, size)
    check_tree(scenes, n, tokens, cfg)
    edges = [a for a, _ in windows(n, size)][1:]
    if n >= 2 * size:  # the levels cut inside windows never cross one; at least level 1, unless it is the root
        depth = window_depth(cfg, size)
        assert depth >= (0 if levels == 1 else 1)
        assert not [s for s in scenes if s.level <= depth and any(s.first < e <= s.last for e in edges)]
    for level in {s.level for s in scenes}:
        own = [s for s in scenes if s.level == level]
        firsts, lasts = np.array([s.first for s in own]), np.array([s.last for s in own])
        assert gists(rows, firsts, lasts, np.stack([s.centroid for s in own]), gist_size) == [s.gist for s in own]


def test_windowed_centroids_are_the_token_weighted_means_of_their_units():
    rng = np.random.default_rng(7)
    rows, tokens = random_rows(300, seed=7), rng.integers(0, 20, 300)
    for s in build_scene_tree(rows, tokens, SceneConfig(), 40):
        weights = np.maximum(tokens[s.first : s.last + 1], 1)[:, None]
        mean = (rows[s.first : s.last + 1].astype(np.float64) * weights).sum(axis=0)
        np.testing.assert_allclose(s.centroid, mean / np.linalg.norm(mean), atol=1e-5)


def test_windowed_level_1_cuts_topics_inside_windows():
    lengths = [8] * 20  # 160 units, windows of 40: every window boundary is a topic boundary
    scenes = build_scene_tree(topic_blocks(lengths, seed=3), np.full(160, 9), SceneConfig(), 40)
    assert [s.first for s in scenes if s.level == 1] == block_starts(lengths)
