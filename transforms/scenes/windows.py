"""Long documents, cut in windows; and the scene tree of any document (:func:`scene_levels`).

Cutting a document holds several float64 copies of its unit vectors (about 10 KB a unit at 256
dimensions), so one huge document would need memory in proportion to its length. A document of
``2 * size`` units or more (``size`` is WINDOW_UNITS in the pipeline) is therefore cut in windows of
``size`` to ``2 * size - 1`` units (:func:`windows`). The lowest levels are cut inside each window
on its own, exactly as :func:`~.tree.cut_levels` cuts a document (centred on the window's mean), so
none of their scenes crosses a window boundary: as many levels as every window is sure to fill
with at least ``min_children`` scenes (:func:`window_depth`: 4 with the defaults, whose top level
is about 1/900 as many items as units). The levels above are cut from the windows' top-level
centroids, in windows of ``size`` scenes, and a scene's centroid is there the normalised sum of
its children's token-weighted sums. Only their gists need the units again: each window ranks its
own units against the scenes over it, and a scene's gist is the best of those (a unit's score in
:func:`~.tree.top_units` does not depend on the window). A shorter document is one window, cut
by :func:`~.tree.cut_levels` whole.

The pipeline runs these steps with a shuffle between them (``transforms/levels``): each window's
first pass (:func:`summarize_window`), the levels above the windows per document
(:func:`build_tree`), each window's second pass (its levels rebuilt from their cuts, with gists, and
its gist candidates for the scenes above), then the gists above merged (:func:`merge_gists`).
:func:`scene_levels` runs the same steps in memory: what tests compare the pipeline with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hyperscene.transforms.errors import Errors, InvalidOption
from hyperscene.transforms.scenes.cut import SceneConfig, as_matrix, cut_points, normalise
from hyperscene.transforms.scenes.tree import Level, Scene, Spans, cut_levels, level_scenes, norms, top_units

WINDOW_UNITS = 20_000  # 20,000 to 39,999 units a window: 20-60 MB of float32 vectors at 256-384 dims


def windows(n: int, size: int = WINDOW_UNITS) -> list[tuple[int, int]]:
    """``[start, end)`` of the windows of ``n`` items: ``size`` items each, the last one holding the
    rest (``size`` to ``2 * size - 1``), so that no window is short and fewer than ``2 * size`` items
    are one window."""
    if size < 1:
        raise ValueError(f"window size must be at least 1, not {size}")
    count = max(1, n // size)
    return [(i * size, (i + 1) * size if i < count - 1 else n) for i in range(count)]


def window_of(positions, n: int, size: int = WINDOW_UNITS) -> np.ndarray:
    """The window (as :func:`windows` numbers them) of each position of a document of ``n`` units."""
    return np.minimum(np.asarray(positions) // size, max(1, n // size) - 1)


def window_depth(cfg: SceneConfig, size: int) -> int:
    """How many levels are cut inside each window of a long document: level k+1 only if every window
    (``size`` units or more) is sure to hold at least ``min_children`` level-k scenes, so its cut
    keeps within the bounds; and never the level ``cfg.levels`` caps, which is the document's root.
    0 with ``cfg.levels == 1``: the root is level 1 itself."""
    if size < cfg.min_units:
        raise InvalidOption(Errors.E238.format(min_units=cfg.min_units, size=size))
    if cfg.levels == 1:
        return 0
    depth, fewest = 1, math.ceil(size / cfg.max_units)
    while fewest >= cfg.min_children and (cfg.levels is None or depth + 1 < cfg.levels):
        depth, fewest = depth + 1, math.ceil(fewest / cfg.max_children)
    return depth


def window_piece(vectors: np.ndarray, token_counts, offset: int) -> Level:
    """A whole window as one span (no gist), for ``cfg.levels == 1``: the root joins every window's."""
    vectors = as_matrix(vectors)
    spans = Spans(vectors, np.asarray(token_counts))
    first, last = np.zeros(1, np.int64), np.array([len(vectors) - 1])
    sums = spans.sums(first, last)
    return Level(1, first + offset, first + offset, last + offset, spans.token_counts(first, last),
                 normalise(sums).astype(np.float32), norms(sums), None)


def join_windows(per_window: list[list[Level]]) -> list[Level]:
    """The levels cut inside windows (each window's, in window order) as levels of the document."""
    joined = []
    below = None  # the level under, per window: its scene counts
    for k in range(len(per_window[0])):
        own = [w[k] for w in per_window]
        shift = [0] * len(own) if k == 0 else np.cumsum([0, *below[:-1]]).tolist()
        joined.append(Level(own[0].level, np.concatenate([lv.starts + d for lv, d in zip(own, shift)]),
                            *(np.concatenate([getattr(lv, f) for lv in own]) for f in ("firsts", "lasts", "tokens", "centroids", "norms")),
                            [g for lv in own for g in lv.gists]))
        below = [len(lv) for lv in own]
    return joined


def upper_levels(tops: list[Level], cfg: SceneConfig, size: int = WINDOW_UNITS) -> tuple[Level, list[Level]]:
    """The levels above the windows, from each window's top level (or piece), in window order:
    (those joined as one level, the levels above them up to one root). Each is cut from the
    centroids of the level below in windows of ``size`` scenes, with ``cfg.levels`` capping the
    depth as in :func:`build_scene_tree`; with pieces (``cfg.levels == 1``) the root is level 1.
    Gists are left None: they need the units (:func:`gist_candidates`)."""
    base = Level(tops[0].level, np.zeros(0, np.int64),
                 *(np.concatenate([getattr(t, f) for t in tops]) for f in ("firsts", "lasts", "tokens", "centroids", "norms")), None)
    base.starts = np.arange(len(base.firsts))  # not used above: the level's own order
    if cfg.levels == 1:
        return base, [parent_level(base, np.zeros(1, np.int64), size, level=1)]
    levels: list[Level] = []
    below = base
    while len(below) > 1:
        level = below.level + 1
        if cfg.levels is not None and level == cfg.levels:
            starts = np.zeros(1, np.int64)
        else:  # windows of at least min_children scenes, so that every level is smaller than the one below
            starts = np.concatenate([a + np.asarray(cut_points(below.centroids[a:b], cfg, level), dtype=np.int64)
                                     for a, b in windows(len(below), max(size, cfg.min_children))])
        below = parent_level(below, starts, size, level)
        levels.append(below)
    return base, levels


def parent_level(below: Level, starts: np.ndarray, chunk: int, level: int) -> Level:
    """The scenes made of the runs of ``below`` starting at ``starts``: spans, tokens, and centroids
    from the summed token-weighted sums, in float64 over ``chunk`` scenes at a time (bounded memory).
    At level 1 (a root over pieces), the starts are unit positions: the first."""
    m, dims = below.centroids.shape
    sums = np.zeros((len(starts), dims))
    owner = np.searchsorted(starts, np.arange(m), side="right") - 1
    for a in range(0, m, chunk):
        b = min(a + chunk, m)
        part = below.centroids[a:b].astype(np.float64) * below.norms[a:b, None]
        o = owner[a:b]
        heads = np.flatnonzero(np.r_[True, o[1:] != o[:-1]])
        sums[o[heads]] += np.add.reduceat(part, heads, axis=0)
    ends = np.append(starts[1:], m)
    return Level(level, starts if level > 1 else below.firsts[starts], below.firsts[starts], below.lasts[ends - 1],
                 np.add.reduceat(below.tokens, starts), normalise(sums).astype(np.float32), norms(sums), None)


def gist_candidates(vectors: np.ndarray, offset: int, spans, size: int) -> list[tuple]:
    """One window's candidates for the gists still missing.

    ``vectors`` are the window's units, the first at position ``offset``; ``spans`` holds, per level
    whose gists are missing, (level, index of the first scene given, firsts, lasts, centroids) of
    some of its scenes in order (all of them, or those over the window). For each level the window
    overlaps: (level, index of its first scene there, per-scene counts, positions, scores) of the
    window's best units of each scene, as :func:`merge_gists` takes them.
    """
    vectors = as_matrix(vectors)
    end = offset + len(vectors)
    out = []
    for level, base, firsts, lasts, centroids in spans:
        i, j = int(np.searchsorted(lasts, offset)), int(np.searchsorted(firsts, end - 1, side="right"))
        if i >= j:
            continue
        local_firsts = np.maximum(firsts[i:j], offset) - offset
        local_lasts = np.minimum(lasts[i:j], end - 1) - offset
        positions, scores, counts = top_units(vectors, local_firsts, local_lasts, centroids[i:j], size)
        out.append((level, base + i, counts, positions + offset, scores))
    return out


def merge_gists(candidates, count: int, size: int) -> list[tuple[int, ...]]:
    """The gists of ``count`` scenes of one level from every window's candidates for it (as
    :func:`gist_candidates` gives them): each scene's ``size`` best units, ties to the earlier, in
    document order; the same units :func:`gists` would pick from the whole span."""
    candidates = list(candidates)
    if not candidates:
        raise ValueError("no gist candidates: every scene overlaps at least one window")
    owner = np.concatenate([np.repeat(np.arange(i, i + len(c)), c) for _, i, c, _, _ in candidates])
    positions = np.concatenate([p for *_, p, _ in candidates])
    scores = np.concatenate([s for *_, s in candidates])
    order = np.lexsort((positions, -scores, owner))
    owner, positions = owner[order], positions[order]
    rank = np.arange(len(owner)) - np.searchsorted(owner, owner)
    keep = rank < size
    owner, positions = owner[keep], positions[keep]
    by_scene = np.lexsort((positions, owner))
    owner, positions = owner[by_scene], positions[by_scene]
    if not np.array_equal(np.unique(owner), np.arange(count)):
        raise ValueError(f"gist candidates cover {len(np.unique(owner))} of {count} scenes")
    return [tuple(int(p) for p in g) for g in np.split(positions, np.searchsorted(owner, np.arange(1, count)))]


@dataclass(frozen=True)
class WindowSummary:
    """What one window of a long document tells the document pass."""

    window: int
    units: int
    cuts: list[np.ndarray]  # starts of each level cut inside the window (cut_levels rebuilds them)
    top: Level  # its top inside level, without gists; or, with the root at level 1, its piece
    hyperwords: np.ndarray | None = None  # int32; only with the root at level 1, whose child codes they are


def summarize_window(vectors: np.ndarray, token_counts, window: int, cfg: SceneConfig, size: int, depth: int):
    """A long document's window's first pass: (its :class:`WindowSummary`, the levels cut inside
    it, without gists). ``depth`` is :func:`window_depth`; at 0 the window is one piece."""
    first = window * size
    if depth == 0:
        return WindowSummary(window, len(vectors), [], window_piece(vectors, token_counts, first)), []
    levels = cut_levels(vectors, token_counts, cfg, offset=first, depth=depth, with_gists=False)
    cuts = [lv.starts - (first if lv.level == 1 else 0) for lv in levels]
    return WindowSummary(window, len(vectors), cuts, levels[-1]), levels


@dataclass(frozen=True)
class WindowedTree:
    """A long document after the window pass: its levels above the windows, and what each window needs
    to rebuild its own levels."""

    doc_id: str
    units: int
    size: int  # window size, in units (and in scenes above the windows)
    cuts: list[list[np.ndarray]]  # per window: the starts of each level cut inside it
    base: Level  # the windows' top inside level joined (level ``depth``), or their pieces joined
    above: list[Level]  # the levels above the windows, up to the root; gists still missing
    hyperwords: np.ndarray | None  # int32, with the root at level 1 (depth 0): its child codes

    @property
    def depth(self) -> int:
        return len(self.cuts[0])

    def gist_spans(self) -> list[tuple]:
        """The scenes above the windows as :func:`gist_candidates` takes them."""
        return [(lv.level, 0, lv.firsts, lv.lasts, lv.centroids) for lv in self.above]


def build_tree(doc_id: str, summaries, cfg: SceneConfig, size: int) -> WindowedTree:
    """A long document's window summaries -> its levels above the windows (:func:`upper_levels`)."""
    summaries = sorted(summaries, key=lambda s: s.window)
    if [s.window for s in summaries] != list(range(len(summaries))):
        raise ValueError(f"document {doc_id!r}: windows {[s.window for s in summaries]} are not 0..{len(summaries) - 1}")
    base, above = upper_levels([s.top for s in summaries], cfg, size)
    hyperwords = None if summaries[0].hyperwords is None else np.concatenate([s.hyperwords for s in summaries])
    return WindowedTree(doc_id, sum(s.units for s in summaries), size, [s.cuts for s in summaries], base, above, hyperwords)


def scene_levels(vectors: np.ndarray, token_counts, cfg: SceneConfig | None = None, size: int = WINDOW_UNITS) -> list[Level]:
    """Every level of one document, 1 up to its root, gists filled in: whole if it has fewer than
    ``2 * size`` units, else in windows of ``size``, by the pipeline's steps (see the module's
    docstring) run in memory."""
    cfg = cfg or SceneConfig()
    vectors = as_matrix(vectors)
    token_counts = np.asarray(token_counts)
    n = len(vectors)
    if n < 2 * size:
        return cut_levels(vectors, token_counts, cfg)
    if token_counts.shape != (n,):
        raise ValueError(f"token_counts must hold one count per unit ({n}), not shape {token_counts.shape}")
    bounds = windows(n, size)
    depth = window_depth(cfg, size)
    tree = build_tree("", [summarize_window(vectors[a:b], token_counts[a:b], w, cfg, size, depth)[0]
                           for w, (a, b) in enumerate(bounds)], cfg, size)
    inside = join_windows([cut_levels(vectors[a:b], token_counts[a:b], cfg, offset=a, depth=depth, cuts=cuts)
                           for (a, b), cuts in zip(bounds, tree.cuts)]) if depth else []
    found = [c for a, b in bounds for c in gist_candidates(vectors[a:b], a, tree.gist_spans(), cfg.gist_size)]
    for lv in tree.above:
        lv.gists = merge_gists([c for c in found if c[0] == lv.level], len(lv), cfg.gist_size)
    return inside + tree.above


def build_scene_tree(vectors: np.ndarray, token_counts, cfg: SceneConfig | None = None, size: int = WINDOW_UNITS) -> list[Scene]:
    """All scenes of one document, level 1 up to its single root, sorted by (level, index), as
    :class:`~.tree.Scene` records (:func:`scene_levels`). ``vectors`` are the document's unit
    embeddings in position order (L2-normalised), ``token_counts`` their token counts. An empty
    document has no scenes."""
    return level_scenes(scene_levels(vectors, token_counts, cfg, size))
