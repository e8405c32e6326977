"""The levels above the units: scenes per document, one codebook per level, every unit's semantic id.

Flow: assigned UnitBuckets are split into per-document parts (occurrence rows, token counts and
vectors) and gathered by document; short documents (under ``parts.GROUPED_BELOW`` units) travel
in groups, one part per bucket and group, so the steps after the gather cost per group, not per
document, while each document is still cut and coded alone. Each document's scene tree is built by
``transforms/scenes``; the scene centroids of each level train that
level's FAISS codebook (a global step, like the hyperwords'); then every scene gets its code and its
children's codes, and every occurrence its semantic id: the codes of the scenes holding it, from
the document's root down to level 1, then its hyperword.

A document of ``2 * window_units`` units or more (see ``scenes.WINDOW_UNITS``) is never gathered
whole, so its memory stays that of one window. Its parts are gathered by window instead; each
window cuts its own lowest levels (``scenes.window_depth``: 4 with the defaults) and sends the
document pass only their cuts and its top level (about 1/900 as many scenes as units), from which
the levels above are built (``scenes.upper_levels``). After the codebooks, each window is gathered
a second time: it rebuilds its levels from their cuts (no second cut), codes them, gives its
occurrences their semantic ids and ranks its units for the gists of the scenes above the windows,
which are then merged per document. A scene of the levels cut inside windows never crosses a
window boundary. Shorter documents take the first path, and their scenes are exactly what they
were before windows existed.

Vectors cross the gather rounded to float16: half the bytes through a distributed runner's shuffle
(a local one gets references to the spilled files instead, rounded the same way so every runner
builds the same scenes), and scene cuts compare sums of many vectors, far
above float16's rounding. Everything after the gather is float32.

Modules: :mod:`.parts` (split by document, gathered by document or window), :mod:`.encode` (codes,
scene rows, semantic ids), :mod:`.codebooks` (one codebook per level), :mod:`.stage` (the Beam
wiring, :class:`BuildLevels`).
"""

from hyperscene.transforms.levels.codebooks import CodeStats, LevelSample, codebook_rows, level_stats
from hyperscene.transforms.levels.encode import encode_document, gather_document
from hyperscene.transforms.levels.parts import bucket_parts, group_count
from hyperscene.transforms.levels.stage import BuildLevels

__all__ = ["BuildLevels", "CodeStats", "LevelSample", "bucket_parts", "codebook_rows", "encode_document", "gather_document",
           "group_count", "level_stats"]
