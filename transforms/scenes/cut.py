"""Where to cut one level of one document into scenes: the cut algorithm and its settings.

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
from dataclasses import dataclass, fields

import numpy as np

from hyperscene.transforms.errors import Errors, InvalidOption


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
                    raise InvalidOption(Errors.E230.format(option=f.name, value=value))
                continue
            if f.name == "levels" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise InvalidOption(Errors.E231.format(option=f.name, value=value))
        if self.min_units < 1:
            raise InvalidOption(Errors.E232.format(value=self.min_units))
        # A document of any length n >= min can be cut into lengths within [min, max] only if
        # max >= 2 * min - 1 (otherwise e.g. min=3, max=4 cannot cut n=5).
        if self.max_units < 2 * self.min_units - 1:
            raise InvalidOption(Errors.E233.format(max_units=self.max_units, least=2 * self.min_units - 1))
        # Two or more children per scene is what makes every level smaller than the one below,
        # so the levels end in one root.
        if self.min_children < 2:
            raise InvalidOption(Errors.E234.format(value=self.min_children))
        if self.max_children < 2 * self.min_children - 1:
            raise InvalidOption(Errors.E235.format(max_children=self.max_children, least=2 * self.min_children - 1))
        if self.gist_size < 1:
            raise InvalidOption(Errors.E236.format(value=self.gist_size))
        if self.levels is not None and self.levels < 1:
            raise InvalidOption(Errors.E237.format(value=self.levels))

    def bounds(self, level: int) -> tuple[int, int]:
        """(min length, max length) of scenes at ``level`` (1 = scenes of units), in items."""
        if level < 1:
            raise ValueError(f"scene levels start at 1, not {level}")
        return (self.min_units, self.max_units) if level == 1 else (self.min_children, self.max_children)

    def penalty_at(self, level: int) -> float:
        return self.penalty if level == 1 else self.scene_penalty



def as_matrix(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be a 2-d array (items x dimensions), not shape {vectors.shape}")
    return vectors


def normalise(rows: np.ndarray) -> np.ndarray:
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
    # spans longer than the last end start before item 0 for every end: those stay -inf, and a
    # short document (most of a corpus of short records) skips most of max_len's steps
    for length in range(1, min(max_len, int(ends[-1])) + 1):
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
    vectors = as_matrix(vectors)
    if len(vectors) == 0:
        return []
    min_len, max_len = cfg.bounds(level)
    return best_segmentation(centred(vectors), min_len, max_len, cfg.penalty_at(level))

