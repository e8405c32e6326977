"""Scenes: contiguous spans of one document, cut where meaning shifts, level by level up to one root.

- :mod:`.cut`: where to cut one level (the algorithm, its measured settings, :class:`SceneConfig`);
- :mod:`.tree`: a document's levels as arrays (:class:`Level`), their centroids and gists;
- :mod:`.windows`: long documents cut in windows, and :func:`scene_levels` /
  :func:`build_scene_tree`, the tree of any document, windowed or not.

All plain numpy; the Beam stage that runs it over a corpus is ``transforms/levels``.
"""

from hyperscene.transforms.scenes.cut import SceneConfig, best_segmentation, centred, cut_points
from hyperscene.transforms.scenes.tree import ROW_FIELDS, Level, Scene, cut_levels, gists, level_scenes, scene_columns
from hyperscene.transforms.scenes.windows import (
    WINDOW_UNITS, WindowedTree, WindowSummary, build_scene_tree, build_tree, gist_candidates, merge_gists, scene_levels,
    summarize_window, upper_levels, window_depth, window_of, windows,
)

__all__ = [
    "ROW_FIELDS", "WINDOW_UNITS", "Level", "Scene", "SceneConfig", "WindowSummary", "WindowedTree", "best_segmentation",
    "build_scene_tree", "build_tree", "centred", "cut_levels", "cut_points", "gist_candidates", "gists", "level_scenes",
    "merge_gists", "scene_columns", "scene_levels", "summarize_window", "upper_levels",
    "window_depth", "window_of", "windows",
]
