"""One document's scene tree as arrays: levels of spans, their centroids, token counts and gists.

Level 1 cuts a document's units; level k cuts the level k-1 scenes, whose vectors are their
centroids (where to cut is :mod:`.cut`'s). Everything here is plain numpy on one document (or one
window of one) at a time, so the Beam stage that calls it is a thin map and the same input gives
the same scenes on any runner. A tree is a list of :class:`Level` (arrays, what the pipeline
stores); :class:`Scene` records are the same tree one scene at a time, for tests and benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hyperscene.transforms.scenes.cut import SceneConfig, as_matrix, cut_points, normalise


@dataclass(frozen=True)
class Scene:
    """One scene of one document, in a shape that maps to one Arrow row (:meth:`as_row`).

    ``index`` counts scenes within the document's level, in document order; ``parent`` is the
    index of the scene at ``level + 1`` that holds it (None for the root); ``children`` are indices
    at ``level - 1``, where level 0 is the units and a unit's index is its position. ``first`` and
    ``last`` are unit positions, both inclusive. ``gist`` holds the positions of the scene's most
    central units, in document order. ``centroid`` is float32 and unit length: the
    normalised token-weighted mean of its units' vectors.
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


class Spans:
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

    def token_counts(self, firsts: np.ndarray, lasts: np.ndarray) -> np.ndarray:
        return self.tokens[lasts + 1] - self.tokens[firsts]


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




@dataclass
class Level:
    """One level of scenes as arrays, one entry per scene in document order.

    ``starts`` index each scene's first child in the level below; at level 1 they are unit
    positions. A level cut inside a window (:func:`cut_levels` with an offset) counts them within the window,
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


def norms(sums: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("ij,ij->i", sums, sums))


def cut_levels(vectors: np.ndarray, token_counts, cfg: SceneConfig, offset: int = 0, depth: int | None = None,
               cuts=None, with_gists: bool = True) -> list[Level]:
    """The levels of one document, or of one window of one whose first unit is at ``offset``.

    Each level is cut from the centroids of the level below (:func:`~.cut.cut_points`). Without
    ``depth``, up to a level of one scene, the root: with ``cfg.levels = L``, level L (if the
    document gets that far) is that root, holding all of level L-1 however many scenes it has, so
    every document has exactly one root. With ``depth`` (a window: see :mod:`.windows`), levels 1 to
    ``depth``. Given ``cuts`` (each level's starts, as this returned them, less ``offset`` at level
    1), the levels are rebuilt without cutting: the same centroids and gists to the bit, as they
    depend only on the units and the spans. Without ``with_gists``, gists are None: the first pass
    over a window needs only cuts and centroids. No units, no levels.
    """
    vectors = as_matrix(vectors)
    token_counts = np.asarray(token_counts)
    n = len(vectors)
    if token_counts.shape != (n,):
        raise ValueError(f"token_counts must hold one count per unit ({n}), not shape {token_counts.shape}")
    if n == 0:
        return []
    spans = Spans(vectors, token_counts)
    levels: list[Level] = []
    firsts = lasts = np.arange(n)
    items = vectors
    for k in range(1, (depth if depth is not None else n) + 1):
        if cuts is not None:
            starts = cuts[k - 1]
        elif depth is None and cfg.levels is not None and k == cfg.levels:
            starts = [0]
        else:
            starts = cut_points(items, cfg, k)
        starts = np.asarray(starts, dtype=np.int64)
        ends = np.append(starts[1:], len(firsts))
        firsts, lasts = firsts[starts], lasts[ends - 1]
        sums = spans.sums(firsts, lasts)
        items = normalise(sums).astype(np.float32)
        gist = [tuple(p + offset for p in g) for g in gists(vectors, firsts, lasts, items, cfg.gist_size)] if with_gists else None
        levels.append(Level(k, starts + (offset if k == 1 else 0), firsts + offset, lasts + offset,
                            spans.token_counts(firsts, lasts), items, norms(sums), gist))
        if depth is None and len(starts) == 1:
            break
    return levels


def parents_of(starts_above: list[int], count: int) -> list[int]:
    """For each of ``count`` scenes, the index of the scene above whose children start at ``starts_above``."""
    return [int(p) for p in np.searchsorted(np.asarray(starts_above), np.arange(count), side="right") - 1]


def level_scenes(levels: list[Level]) -> list[Scene]:
    """Levels of one document, 1 up to its root, gists filled in, as Scene records sorted by (level, index)."""
    scenes = []
    for k, lv in enumerate(levels):
        above = levels[k + 1] if k + 1 < len(levels) else None
        parents = [None] * len(lv) if above is None else parents_of(above.starts.tolist(), len(lv))
        ends = lv.lasts + 1 if k == 0 else lv.ends(len(levels[k - 1]))
        for i in range(len(lv)):
            scenes.append(Scene(level=lv.level, index=i, parent=parents[i], first=int(lv.firsts[i]), last=int(lv.lasts[i]),
                                token_count=int(lv.tokens[i]), children=tuple(range(int(lv.starts[i]), int(ends[i]))),
                                gist=lv.gists[i], centroid=lv.centroids[i]))
    return scenes


ROW_FIELDS = ("level", "index", "parent", "first", "last", "child_count", "token_count", "children", "gist", "centroid")


def scene_columns(scenes: list[Scene]) -> dict:
    """The records as columns for ``pa.table``: lists, and the centroids as one (rows, dims) float32 matrix."""
    rows = [s.as_row() for s in scenes]
    columns = {name: [r[name] for r in rows] for name in ROW_FIELDS[:-1]}
    columns["centroid"] = np.stack([s.centroid for s in scenes]) if scenes else np.zeros((0, 0), np.float32)
    return columns
