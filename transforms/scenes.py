"""Scenes: contiguous spans of one document, cut where meaning shifts, level by level up to one root.

Level 1 cuts a document's units; level k cuts the level k-1 scenes, whose vectors are their
centroids. Everything here is plain numpy on one document at a time, so the Beam stage that calls it
is a thin per-document map and the same input gives the same scenes on any runner.

How a level is cut (:func:`cut_points`): the items' vectors, minus the document's mean vector, are
split into the scenes that maximise the sum of each scene's vector-sum length less a cost per scene
(:func:`best_segmentation`), by dynamic programming within the level's minimum and maximum scene
length. A scene whose items agree has a long sum; where the subject changes, the items before and
after point different ways, and cutting there gains more than a scene costs. Because the mean is
the document's own, cuts are relative: the strongest shifts of each document are cut, and a short
document about one thing is still cut into scenes of the usual length.

Measured with ``benchmarks/segmentation.py`` (Choi-style documents of passages from different
books; Pk, lower is better; the every-N-units baseline scores about 0.48), on the tuning seed
(``--seed 0 --grid``), level 1, best setting of each method:

=========================  ==============  ==============  ==============
method                     English, torch  English, static Russian, torch
=========================  ==============  ==============  ==============
this (centred)             0.220           0.300           0.402
the same, not centred      0.232           0.384           0.467
TextTiling-style, centred  0.283           0.347           0.416
=========================  ==============  ==============  ==============

(TextTiling-style: cosine between the mean of the items before and after each gap, cuts at the
deepest dips, within the same bounds.) MiniLM reads Russian poorly (see the README's embedders),
which is most of the Russian gap.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields

import numpy as np

from hyperscene.transforms.errors import InvalidOption


@dataclass(frozen=True)
class SceneConfig:
    """How documents are cut into scenes. Validated on creation; does no I/O.

    ``penalty`` and ``min_units`` are the best level-1 setting of ``benchmarks/segmentation.py
    --seed 0 --grid`` with the torch embedder in English (1.5 and 3; 1.6 scored within 0.001), where
    passages are 3 to 11 units: level-1 scenes come out about 7.5 units long there (roughly 9
    tokens per unit). ``scene_penalty`` and ``min_children`` are the best of ``--same-book 3
    --segments 12 --seed 0 --grid`` (runs of three passages from one book: level 2 should cut at
    book changes): 1.0 and 2. Neither grid can tell maximum lengths apart (no true segment comes
    near them); they only bound scenes of a document that never changes subject: ``max_units``
    (40 units, about 360 tokens) and ``max_children`` (12) keep a scene's span and its children
    list short enough to read and to store in one row. ``gist_size`` 3 is about a third of a
    level-1 scene.
    """

    min_units: int = 3  # level 1: units per scene
    max_units: int = 40
    min_children: int = 2  # levels >= 2: child scenes per scene
    max_children: int = 12
    penalty: float = 1.5  # level 1: cost of one more scene, in mean (centred) item lengths
    scene_penalty: float = 1.0  # the same at levels >= 2
    gist_size: int = 3  # units in a scene's gist
    levels: int | None = None  # cap on the depth; None: up to one root per document

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("penalty", "scene_penalty"):
                if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
                    raise InvalidOption(f"scene {f.name} must be a finite number >= 0, not {value!r}")
                continue
            if f.name == "levels" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise InvalidOption(f"scene option {f.name} must be a whole number, not {value!r}")
        if self.min_units < 1:
            raise InvalidOption(f"scene min_units must be at least 1, not {self.min_units}")
        # A document of any length n >= min can be cut into lengths within [min, max] only if
        # max >= 2 * min - 1 (otherwise e.g. min=3, max=4 cannot cut n=5).
        if self.max_units < 2 * self.min_units - 1:
            raise InvalidOption(
                f"scene max_units ({self.max_units}) must be at least 2 * min_units - 1 "
                f"({2 * self.min_units - 1}), or some documents could not be cut within both bounds"
            )
        # Two or more children per scene is what makes every level smaller than the one below,
        # so the levels end in one root.
        if self.min_children < 2:
            raise InvalidOption(f"scene min_children must be at least 2, not {self.min_children}")
        if self.max_children < 2 * self.min_children - 1:
            raise InvalidOption(
                f"scene max_children ({self.max_children}) must be at least 2 * min_children - 1 "
                f"({2 * self.min_children - 1}), or some levels could not be cut within both bounds"
            )
        if self.gist_size < 1:
            raise InvalidOption(f"scene gist_size must be at least 1, not {self.gist_size}")
        if self.levels is not None and self.levels < 1:
            raise InvalidOption(f"--levels must be at least 1 (or left out for no cap), not {self.levels}")

    def bounds(self, level: int) -> tuple[int, int]:
        """(min length, max length) of scenes at ``level`` (1 = scenes of units), in items."""
        if level < 1:
            raise ValueError(f"scene levels start at 1, not {level}")
        return (self.min_units, self.max_units) if level == 1 else (self.min_children, self.max_children)

    def penalty_at(self, level: int) -> float:
        return self.penalty if level == 1 else self.scene_penalty


@dataclass(frozen=True)
class Scene:
    """One scene of one document, in a shape that maps to one Arrow row (:meth:`as_row`).

    ``index`` counts scenes within the document's level, in document order; ``parent`` is the
    index of the scene at ``level + 1`` that holds it (None for the root); ``children`` are indices
    at ``level - 1``, where level 0 is the units and a unit's index is its position. ``first`` and
    ``last`` are unit positions, both inclusive. ``gist`` holds the positions of the scene's most
    central units, in document order. ``centroid`` is float32 and unit length (see
    :func:`span_centroids`).
    """

    level: int
    index: int
    parent: int | None
    first: int
    last: int
    token_count: int
    children: tuple[int, ...]
    gist: tuple[int, ...]
    centroid: np.ndarray = field(compare=False, repr=False)

    @property
    def child_count(self) -> int:
        return len(self.children)

    @property
    def unit_count(self) -> int:
        return self.last - self.first + 1

    def as_row(self) -> dict:
        return {
            "level": self.level,
            "index": self.index,
            "parent": self.parent,
            "first": self.first,
            "last": self.last,
            "child_count": self.child_count,
            "token_count": self.token_count,
            "children": list(self.children),
            "gist": list(self.gist),
            "centroid": self.centroid,
        }


def _matrix(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be a 2-d array (items x dimensions), not shape {vectors.shape}")
    return vectors


def _normalise(rows: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    return rows / np.maximum(norms, 1e-12)[:, None]


def centred(vectors: np.ndarray) -> np.ndarray:
    """Items minus their mean, in float64.

    Sentence embeddings share a large common direction (any two passages of prose are somewhat
    alike), which hides the differences that mark a change of subject; taking the document's own
    mean out leaves what sets each item apart within it (measured: Pk 0.220 against 0.232 without,
    level 1, torch, English, tuning seed).
    """
    rows = np.asarray(vectors, dtype=np.float64)
    return rows - rows.mean(axis=0)


def best_segmentation(items: np.ndarray, min_len: int, max_len: int, penalty: float) -> list[int]:
    """Scene starts maximising the sum over scenes of |sum of the scene's items| minus a cost per scene.

    ``|sum|`` of a scene is the sum of its items' projections on their common direction: large when
    they agree, about ``sqrt(len)`` when they point anywhere. Splitting never lowers it (triangle
    inequality), so each scene costs ``penalty`` times the mean item length; the cut is where the
    gain of telling two spans apart beats that cost. Dynamic programming gives the exact optimum
    with every scene ``min_len..max_len`` items long (``n`` items with ``n >= min_len`` can always
    be cut so when ``max_len >= 2 * min_len - 1``, which SceneConfig checks). Ties go to the longer
    last scene, so the result is deterministic.
    """
    n = len(items)
    if n < 2 * min_len and n <= max_len:
        return [0]  # no cut could leave two scenes of min_len
    cost = penalty * float(np.sqrt(np.einsum("ij,ij->i", items, items)).mean())
    lengths = np.arange(min_len, max_len + 1)
    best = np.full(n + 1, -np.inf)
    best[0] = 0.0
    back = np.zeros(n + 1, dtype=np.int64)
    for block in range(min_len, n + 1, _DP_BLOCK):
        ends = np.arange(block, min(block + _DP_BLOCK, n + 1))
        strength = _scene_strengths(items, ends, lengths) - cost
        last = len(lengths) - 1
        for row, end in enumerate(ends.tolist()):
            # A length past ``end`` reads best[0], but its strength is -inf.
            scores = best[np.maximum(end - lengths, 0)] + strength[row]
            k = last - int(np.argmax(scores[::-1]))  # ties: the longer last scene
            best[end], back[end] = scores[k], end - lengths[k]
    if not np.isfinite(best[n]):
        raise ValueError(f"{n} items cannot be cut into scenes of {min_len} to {max_len} items")
    starts, end = [], n
    while end > 0:
        end = int(back[end])
        starts.append(end)
    return starts[::-1]


_DP_BLOCK = 4096  # scene ends whose strengths are computed at once: bounded memory on any document
_GRAM_ROWS = 256  # rows per matrix product of the banded Gram matrix


def _scene_strengths(items: np.ndarray, ends: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """|sum of items [end - length, end)| for each end (rows) and length (columns, ascending);
    -inf where ``length > end``.

    Grows each span one item at a time at its front: |s + x|^2 = |s|^2 + 2 x.s + |x|^2, where
    x.s comes from a banded Gram matrix (the dot products of items at most ``max(lengths)`` apart),
    which costs far less memory traffic than summing vectors for every span.
    """
    max_len = int(lengths[-1])
    first = max(0, int(ends[0]) - max_len)
    gram = _forward_gram(items, first, int(ends[-1]), max_len)
    ahead = np.cumsum(gram, axis=1) - gram[:, :1]  # ahead[f, m]: x_f . (x_{f+1} + ... + x_{f+m})
    squared = np.zeros(len(ends))
    out = np.full((len(ends), len(lengths)), -np.inf)
    for length in range(1, max_len + 1):
        front = ends - length
        ok = front >= 0
        f = front[ok] - first
        squared[ok] += 2 * ahead[f, length - 1] + gram[f, 0]
        if length >= lengths[0]:
            out[ok, length - lengths[0]] = np.sqrt(np.maximum(squared[ok], 0.0))
    return out


def _forward_gram(items: np.ndarray, first: int, last: int, width: int) -> np.ndarray:
    """``g[f - first, o] = items[f] . items[f + o]`` for f in [first, last), o in [0, width); 0 past the end.

    Matrix products of fixed-size row blocks, so the same document gives the same values.
    """
    n = len(items)
    gram = np.zeros((last - first, width))
    offsets = np.arange(width)[None, :]
    for a in range(first, last, _GRAM_ROWS):
        b = min(a + _GRAM_ROWS, last)
        block = items[a:b] @ items[a : min(n, b + width - 1)].T
        rows = np.arange(b - a)[:, None]
        cols = rows + offsets
        ok = cols < block.shape[1]
        gram[a - first : b - first][ok] = block[np.broadcast_to(rows, cols.shape)[ok], cols[ok]]
    return gram


def cut_points(vectors: np.ndarray, cfg: SceneConfig | None = None, level: int = 1) -> list[int]:
    """Where the scenes of one level of one document start: sorted item indices, 0 first.

    ``vectors`` are the L2-normalised embeddings of the document's consecutive items at this
    level (units for level 1, child scene centroids above), in document order. No items, no
    scenes: ``[]``. Every scene is between the level's minimum and maximum length; only a document
    shorter than the minimum makes a shorter scene (itself).
    """
    cfg = cfg or SceneConfig()
    vectors = _matrix(vectors)
    if len(vectors) == 0:
        return []
    min_len, max_len = cfg.bounds(level)
    return best_segmentation(centred(vectors), min_len, max_len, cfg.penalty_at(level))


class _Spans:
    """Token-weighted prefix sums of a document's unit vectors: any span's centroid in O(dims)."""

    def __init__(self, vectors: np.ndarray, token_counts: np.ndarray):
        # Weights are token counts, so a scene's vector reflects its text by volume as embedding
        # it whole would, and one-word units ("Yes.", headings) do not pull it as far as sentences.
        # A unit that counts no tokens still weighs one.
        self.weights = np.maximum(np.asarray(token_counts, dtype=np.float64), 1.0)
        self.prefix = np.zeros((len(vectors) + 1, vectors.shape[1]))
        np.cumsum(vectors * self.weights[:, None], axis=0, out=self.prefix[1:])
        self.tokens = np.zeros(len(vectors) + 1, dtype=np.int64)
        np.cumsum(np.asarray(token_counts, dtype=np.int64), out=self.tokens[1:])

    def sums(self, firsts: np.ndarray, lasts: np.ndarray) -> np.ndarray:
        """Token-weighted sums of the spans' unit vectors, float64."""
        return self.prefix[lasts + 1] - self.prefix[firsts]

    def centroids(self, firsts: np.ndarray, lasts: np.ndarray) -> np.ndarray:
        return _normalise(self.sums(firsts, lasts)).astype(np.float32)

    def token_counts(self, firsts: np.ndarray, lasts: np.ndarray) -> np.ndarray:
        return self.tokens[lasts + 1] - self.tokens[firsts]


def span_centroids(vectors: np.ndarray, token_counts, firsts, lasts) -> np.ndarray:
    """Centroids of unit spans ``[first, last]``: the normalised token-weighted mean of their unit vectors."""
    vectors = _matrix(vectors)
    return _Spans(vectors, token_counts).centroids(np.asarray(firsts), np.asarray(lasts))


def gists(vectors: np.ndarray, firsts: np.ndarray, lasts: np.ndarray, centroids: np.ndarray, size: int) -> list[tuple[int, ...]]:
    """For each scene ``[first, last]`` (together tiling the units), the positions of its ``size``
    units closest to its centroid, in document order.

    Units closest to the centroid are the ones that say most of what the scene as a whole says, so
    read in order they are its most faithful short version (``benchmarks/segmentation.py`` compares
    them with the scene's first units). Ties go to the earlier unit.
    """
    positions, _, counts = top_units(vectors, firsts, lasts, centroids, size)
    chosen = np.sort(positions)  # scenes are in order and disjoint: each scene's units in order
    return [tuple(int(p) for p in g) for g in np.split(chosen, np.cumsum(counts)[:-1])]


def top_units(vectors: np.ndarray, firsts: np.ndarray, lasts: np.ndarray, centroids: np.ndarray, size: int):
    """For each scene ``[first, last]`` (together tiling the units), its ``size`` units closest to its
    centroid, best first: (positions, their scores, how many per scene). Ties go to the earlier unit.

    A unit's score is a dot product of its own row and its scene's centroid, so it does not depend on
    which other units are scored with it: the best of each window's best are the scene's best.
    """
    lengths = lasts - firsts + 1
    owner = np.repeat(np.arange(len(firsts)), lengths)
    rows = vectors[firsts[0] : lasts[-1] + 1]
    scores = np.einsum("ij,ij->i", rows, centroids[owner].astype(rows.dtype, copy=False))
    position = np.arange(len(owner)) + firsts[0]
    order = np.lexsort((position, -scores, owner))  # by scene, best first, earlier first
    rank = np.arange(len(owner)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    keep = order[rank < size]  # rank within the scene, in scene order
    return position[keep], scores[keep], np.minimum(lengths, size)


def build_scene_tree(vectors: np.ndarray, token_counts, cfg: SceneConfig | None = None) -> list[Scene]:
    """All scenes of one document, level 1 up to its single root, sorted by (level, index).

    ``vectors`` are the document's unit embeddings in position order (L2-normalised), and
    ``token_counts`` their token counts. Each level is cut from the centroids of the level below
    (:func:`cut_points`) until a level has one scene. With ``cfg.levels = L``, level L (if the
    document gets that far) is that one root, holding all of level L-1 however many scenes it has,
    so every document always has exactly one root. An empty document has no scenes.
    """
    cfg = cfg or SceneConfig()
    vectors = _matrix(vectors)
    token_counts = np.asarray(token_counts)
    n = len(vectors)
    if token_counts.shape != (n,):
        raise ValueError(f"token_counts must hold one count per unit ({n}), not shape {token_counts.shape}")
    if n == 0:
        return []
    spans = _Spans(vectors, token_counts)
    levels = _levels(vectors, spans, cfg)
    scenes: list[Scene] = []
    for level, (starts, firsts, lasts, centroids) in enumerate(levels, start=1):
        ends = [*starts[1:], len(levels[level - 2][0]) if level > 1 else n]
        parents = _parents(levels[level][0], len(starts)) if level < len(levels) else [None]
        tokens = spans.token_counts(firsts, lasts)
        gist = gists(vectors, firsts, lasts, centroids, cfg.gist_size)
        for i, (a, b) in enumerate(zip(starts, ends)):
            scenes.append(
                Scene(
                    level=level,
                    index=i,
                    parent=parents[i],
                    first=int(firsts[i]),
                    last=int(lasts[i]),
                    token_count=int(tokens[i]),
                    children=tuple(range(a, b)),
                    gist=gist[i],
                    centroid=centroids[i],
                )
            )
    return scenes


def _levels(vectors: np.ndarray, spans: "_Spans", cfg: SceneConfig) -> list[tuple[list[int], np.ndarray, np.ndarray, np.ndarray]]:
    """Per level: (scene starts as indices into the level below, first units, last units, centroids)."""
    levels = []
    firsts = lasts = np.arange(len(vectors))  # level 0: the units
    items = vectors
    while True:
        level = len(levels) + 1
        capped = cfg.levels is not None and level == cfg.levels
        starts = [0] if capped else cut_points(items, cfg, level)
        ends = np.asarray([*starts[1:], len(firsts)])
        firsts, lasts = firsts[np.asarray(starts)], lasts[ends - 1]
        items = spans.centroids(firsts, lasts)
        levels.append((starts, firsts, lasts, items))
        if len(starts) == 1:
            return levels


def _parents(starts_above: list[int], count: int) -> list[int]:
    """For each of ``count`` scenes, the index of the scene above whose children start at ``starts_above``."""
    return [int(p) for p in np.searchsorted(np.asarray(starts_above), np.arange(count), side="right") - 1]


ROW_FIELDS = ("level", "index", "parent", "first", "last", "child_count", "token_count", "children", "gist", "centroid")


def scene_columns(scenes: list[Scene]) -> dict:
    """The records as columns for ``pa.table``: lists, and the centroids as one (rows, dims) float32 matrix."""
    rows = [s.as_row() for s in scenes]
    columns = {name: [r[name] for r in rows] for name in ROW_FIELDS[:-1]}
    columns["centroid"] = np.stack([s.centroid for s in scenes]) if scenes else np.zeros((0, 0), np.float32)
    return columns


# --- Documents too long to cut at once --------------------------------------------------------------
#
# Cutting a document holds several float64 copies of its unit vectors (about 10 KB a unit at 256
# dimensions), so one huge document would need memory in proportion to its length. A document of
# ``2 * size`` units or more (``size`` is WINDOW_UNITS in the pipeline) is therefore cut in windows of
# ``size`` to ``2 * size - 1`` units (:func:`windows`). The lowest levels are cut inside each window
# on its own, exactly as :func:`build_scene_tree` cuts a document (centred on the window's mean), so
# none of their scenes crosses a window boundary: as many levels as every window is sure to fill
# with at least ``min_children`` scenes (:func:`window_depth`: 4 with the defaults, whose top level
# is about 1/900 as many items as units). The levels above are cut from the windows' top-level
# centroids, in windows of ``size`` scenes, and a scene's centroid is there the normalised sum of
# its children's token-weighted sums. Only their gists need the units again: each window ranks its
# own units against the scenes over it, and a scene's gist is the best of those (a unit's score in
# :func:`top_units` does not depend on the window). A shorter document is one window, cut by
# :func:`build_scene_tree` exactly as before.

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
        raise InvalidOption(f"scene min_units ({cfg.min_units}) must be at most the {size} units of a long document's "
                            f"window, or its level-1 scenes could not all be that long")
    if cfg.levels == 1:
        return 0
    depth, fewest = 1, math.ceil(size / cfg.max_units)
    while fewest >= cfg.min_children and (cfg.levels is None or depth + 1 < cfg.levels):
        depth, fewest = depth + 1, math.ceil(fewest / cfg.max_children)
    return depth


@dataclass
class Level:
    """One level of scenes as arrays, one entry per scene in document order.

    ``starts`` index each scene's first child in the level below; at level 1 they are unit
    positions. A level cut inside a window (:func:`window_levels`) counts them within the window,
    a level joined over windows or above them within the document.
    """

    level: int
    starts: np.ndarray  # int64
    firsts: np.ndarray  # int64 unit positions, inclusive
    lasts: np.ndarray
    tokens: np.ndarray  # int64
    centroids: np.ndarray  # float32 (scenes, dims), unit length
    norms: np.ndarray  # float64: length of the scene's token-weighted sum (centroid * norm is that sum)
    gists: list[tuple[int, ...]] | None  # None until every window's candidates are in (merge_gists)

    def __len__(self) -> int:
        return len(self.starts)

    def ends(self, below: int) -> np.ndarray:
        """Each scene's end (exclusive) in the level below, of ``below`` items."""
        return np.append(self.starts[1:], below)

    def overlapping(self, first: int, end: int) -> tuple[int, int]:
        """``[i, j)``: the scenes holding some unit of ``[first, end)``."""
        return int(np.searchsorted(self.lasts, first)), int(np.searchsorted(self.firsts, end - 1, side="right"))


def _norms(sums: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("ij,ij->i", sums, sums))


def window_levels(vectors: np.ndarray, token_counts, offset: int, cfg: SceneConfig, depth: int, cuts=None,
                  with_gists: bool = True) -> list[Level]:
    """Levels 1 to ``depth`` of one window (its units from position ``offset``), with their gists
    (``None`` without ``with_gists``: the first pass over a window needs only cuts and centroids).

    Cut as :func:`build_scene_tree` cuts, or, given ``cuts`` (each level's starts, as this returned
    them), rebuilt without cutting: the same centroids and gists to the bit, as they depend only on
    the units and the spans.
    """
    vectors = _matrix(vectors)
    token_counts = np.asarray(token_counts)
    n = len(vectors)
    if n == 0 or token_counts.shape != (n,):
        raise ValueError(f"a window needs units and one token count per unit, not {n} units and shape {token_counts.shape}")
    spans = _Spans(vectors, token_counts)
    levels: list[Level] = []
    firsts = lasts = np.arange(n)
    items = vectors
    for k in range(1, depth + 1):
        starts = np.asarray(cut_points(items, cfg, k) if cuts is None else cuts[k - 1], dtype=np.int64)
        ends = np.append(starts[1:], len(firsts))
        firsts, lasts = firsts[starts], lasts[ends - 1]
        sums = spans.sums(firsts, lasts)
        items = _normalise(sums).astype(np.float32)
        gist = [tuple(p + offset for p in g) for g in gists(vectors, firsts, lasts, items, cfg.gist_size)] if with_gists else None
        levels.append(Level(k, starts + (offset if k == 1 else 0), firsts + offset, lasts + offset,
                            spans.token_counts(firsts, lasts), items, _norms(sums), gist))
    return levels


def window_piece(vectors: np.ndarray, token_counts, offset: int) -> Level:
    """A whole window as one span (no gist), for ``cfg.levels == 1``: the root joins every window's."""
    vectors = _matrix(vectors)
    spans = _Spans(vectors, np.asarray(token_counts))
    first, last = np.zeros(1, np.int64), np.array([len(vectors) - 1])
    sums = spans.sums(first, last)
    return Level(1, first + offset, first + offset, last + offset, spans.token_counts(first, last),
                 _normalise(sums).astype(np.float32), _norms(sums), None)


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
        return base, [_parent_level(base, np.zeros(1, np.int64), size, level=1)]
    levels: list[Level] = []
    below = base
    while len(below) > 1:
        level = below.level + 1
        if cfg.levels is not None and level == cfg.levels:
            starts = np.zeros(1, np.int64)
        else:  # windows of at least min_children scenes, so that every level is smaller than the one below
            starts = np.concatenate([a + np.asarray(cut_points(below.centroids[a:b], cfg, level), dtype=np.int64)
                                     for a, b in windows(len(below), max(size, cfg.min_children))])
        below = _parent_level(below, starts, size, level)
        levels.append(below)
    return base, levels


def _parent_level(below: Level, starts: np.ndarray, chunk: int, level: int) -> Level:
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
                 np.add.reduceat(below.tokens, starts), _normalise(sums).astype(np.float32), _norms(sums), None)


def gist_candidates(vectors: np.ndarray, offset: int, spans, size: int) -> list[tuple]:
    """One window's candidates for the gists still missing.

    ``vectors`` are the window's units, the first at position ``offset``; ``spans`` holds, per level
    whose gists are missing, (level, index of the first scene given, firsts, lasts, centroids) of
    some of its scenes in order (all of them, or those over the window). For each level the window
    overlaps: (level, index of its first scene there, per-scene counts, positions, scores) of the
    window's best units of each scene, as :func:`merge_gists` takes them.
    """
    vectors = _matrix(vectors)
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


def level_scenes(levels: list[Level]) -> list[Scene]:
    """Levels of one document, 1 up to its root, gists filled in, as Scene records sorted by (level, index)."""
    scenes = []
    for k, lv in enumerate(levels):
        above = levels[k + 1] if k + 1 < len(levels) else None
        parents = [None] * len(lv) if above is None else _parents(above.starts.tolist(), len(lv))
        ends = lv.lasts + 1 if k == 0 else lv.ends(len(levels[k - 1]))
        for i in range(len(lv)):
            scenes.append(Scene(level=lv.level, index=i, parent=parents[i], first=int(lv.firsts[i]), last=int(lv.lasts[i]),
                                token_count=int(lv.tokens[i]), children=tuple(range(int(lv.starts[i]), int(ends[i]))),
                                gist=lv.gists[i], centroid=lv.centroids[i]))
    return scenes


def build_windowed_tree(vectors: np.ndarray, token_counts, cfg: SceneConfig | None = None, size: int = WINDOW_UNITS) -> list[Scene]:
    """All scenes of one document, cut in windows of ``size`` units when it has ``2 * size`` or more
    (see above), else exactly :func:`build_scene_tree`. The Beam stage does the same steps with
    each window on its own; this is the in-memory reference of what it builds."""
    cfg = cfg or SceneConfig()
    vectors = _matrix(vectors)
    token_counts = np.asarray(token_counts)
    n = len(vectors)
    if n < 2 * size:
        return build_scene_tree(vectors, token_counts, cfg)
    if token_counts.shape != (n,):
        raise ValueError(f"token_counts must hold one count per unit ({n}), not shape {token_counts.shape}")
    bounds = windows(n, size)
    depth = window_depth(cfg, size)
    if depth:
        per_window = [window_levels(vectors[a:b], token_counts[a:b], a, cfg, depth) for a, b in bounds]
        inside = join_windows(per_window)
        _, above = upper_levels([w[-1] for w in per_window], cfg, size)
    else:
        inside, (_, above) = [], upper_levels([window_piece(vectors[a:b], token_counts[a:b], a) for a, b in bounds], cfg, size)
    missing = [(lv.level, 0, lv.firsts, lv.lasts, lv.centroids) for lv in above]
    found = [c for a, b in bounds for c in gist_candidates(vectors[a:b], a, missing, cfg.gist_size)]
    for lv in above:
        lv.gists = merge_gists([c for c in found if c[0] == lv.level], len(lv), cfg.gist_size)
    return level_scenes(inside + above)
