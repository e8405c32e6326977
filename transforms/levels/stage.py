"""The Beam stage: assigned UnitBuckets -> scenes, occurrences with semantic ids, level codebooks.

Only wiring: every step is a function of :mod:`.parts`, :mod:`.encode`, :mod:`.codebooks` or
``transforms/scenes`` (see the package's docstring for the flow).
"""

from __future__ import annotations

from dataclasses import replace

import apache_beam as beam
import numpy as np

from hyperscene.schemas import SORT_KEYS
from hyperscene.transforms import scenes as scenes_package
from hyperscene.transforms.levels.codebooks import (
    CodeStats, LevelSample, codebook_rows, group_level_centroids, level_centroids, level_stats, train_level, window_keys,
)
from hyperscene.transforms.levels.encode import (
    DocumentGroup, WindowedTree, encode_group, encode_tree, encode_window, fill_gists, gather_documents,
)
from hyperscene.transforms.levels.parts import GROUPED_BELOW, bucket_parts, document_lengths, gather_window
from hyperscene.transforms.outputs import SplitOutputs
from hyperscene.transforms.progress import Progress, stage_timer
from hyperscene.transforms.scenes import SceneConfig, build_tree, summarize_window, window_depth
from hyperscene.transforms.spill import NO_SPILL, SpillPolicy, scratch_name


def window_scenes(key, parts, cfg: SceneConfig, size: int, depth: int):
    """One window of a long document, first pass -> ((doc_id, WindowSummary), [(level, (sample keys, centroids))])."""
    doc_id, window, _ = key
    occurrences, tokens, vectors = gather_window(parts, window * size)
    summary, levels = summarize_window(vectors, tokens, window, cfg, size, depth)
    if depth == 0:  # the root is level 1: the units' hyperwords are its child codes
        summary = replace(summary, hyperwords=occurrences.column("hyperword").to_numpy().astype(np.int32))
    return (doc_id, summary), [(lv.level, (window_keys(doc_id, lv.level, window, len(lv)), lv.centroids)) for lv in levels]


def _keyed_parts(bucket, lengths: dict, spill: SpillPolicy, size: int, groups: int):
    """:func:`bucket_parts`, a group's parts apart (``groups``) from those of a document gathered alone."""
    for key, part in bucket_parts(bucket, spill, lengths, size, groups):
        yield beam.pvalue.TaggedOutput("groups", (key, part)) if isinstance(key, int) else (key, part)


class _SceneDoFn(beam.DoFn):
    """A group of whole documents' trees, or one whole document's (main output), or one window of a
    long one: its summary (``windows``) and its codebook samples (``samples``)."""

    def __init__(self, cfg: SceneConfig, size: int):
        self._cfg, self._size, self._depth = cfg, size, window_depth(cfg, size)

    def setup(self):
        self._progress = Progress("scenes", "documents or windows")

    def process(self, item):
        key, parts = item
        if isinstance(key, int) or key[2] == 1:  # a group, or a document gathered alone
            with stage_timer("scenes", 0) as timed:
                group = gather_documents(parts, self._cfg)
                timed.items = len(group.doc_ids)
            self._progress.add(timed.items)
            yield group
            return
        with self._progress.timed(1):
            summary, samples = window_scenes(key, parts, self._cfg, self._size, self._depth)
        yield beam.pvalue.TaggedOutput("windows", summary)
        for sample in samples:
            yield beam.pvalue.TaggedOutput("samples", sample)


class _TreeDoFn(beam.DoFn):
    def __init__(self, cfg: SceneConfig, size: int):
        self._cfg, self._size = cfg, size

    def process(self, item):
        doc_id, summaries = item
        with stage_timer("scenes above windows", 1):
            tree = build_tree(doc_id, summaries, self._cfg, self._size)
        yield tree


class _EncodeDoFn(beam.DoFn):
    def process(self, group: DocumentGroup, codebooks: dict):
        with stage_timer("encode levels", group.occurrences.num_rows):
            scenes, occurrences, members = encode_group(group, codebooks)
        yield scenes
        yield beam.pvalue.TaggedOutput("occurrences", occurrences)
        for level, code, sid, score in members:
            yield beam.pvalue.TaggedOutput("members", ((level, code), (score, sid)))


class _EncodeTreeDoFn(beam.DoFn):
    def process(self, tree: WindowedTree, codebooks: dict):
        with stage_timer("encode levels", len(tree.base) + sum(len(lv) for lv in tree.above)):
            pending, members, per_window = encode_tree(tree, codebooks)
        yield tree.doc_id, pending
        for level, code, sid, score in members:
            yield beam.pvalue.TaggedOutput("members", ((level, code), (score, sid)))
        for keyed in per_window:
            yield beam.pvalue.TaggedOutput("windows", keyed)


class _EncodeWindowDoFn(beam.DoFn):
    """One window of a long document, coded. Its occurrences and scenes reach the writer as
    :class:`~hyperscene.transforms.spill.Rows`: in scratch files if the run's policy spills."""

    def __init__(self, cfg: SceneConfig, spill: SpillPolicy):
        self._cfg, self._spill = cfg, spill

    def process(self, item, codebooks: dict):
        (doc_id, window, _), joined = item
        (codes,) = joined["codes"]
        with stage_timer("encode windows", codes.end - codes.first):
            tables, occurrences, members, candidates = encode_window(joined["parts"], codes, self._cfg, codebooks)
            name = f"{scratch_name(doc_id)}-w{window:06d}.arrow"
            (occurrences,) = self._spill.hold([occurrences], f"occurrences-{name}", 1, SORT_KEYS["occurrences"])
            tables = self._spill.hold([t for t in tables if t.num_rows], f"scenes-{name}", 1, SORT_KEYS["scenes"])
        yield occurrences
        for table in tables:
            yield beam.pvalue.TaggedOutput("scenes", table)
        for level, code, sid, score in members:
            yield beam.pvalue.TaggedOutput("members", ((level, code), (score, sid)))
        yield beam.pvalue.TaggedOutput("candidates", (doc_id, candidates))


def _fill_gists(item, gist_size: int):
    _, joined = item
    (pending,) = joined["pending"]
    with stage_timer("gists above windows", pending.num_rows):
        table = fill_gists(pending, [c for cs in joined["candidates"] for c in cs], gist_size)
    yield table


class BuildLevels(beam.PTransform):
    """Assigned UnitBuckets -> ``scenes`` tables, ``occurrences`` tables (with ``semantic_id``),
    ``codebooks`` rows and ``levels`` (per-level statistics for the manifest).

    ``frozen`` (a PCollection of (level, centroids), as a refresh reads them from the store) replaces
    training: scenes are coded with those codebooks, and ``cfg.levels`` must not exceed their depth.
    Documents of ``2 * window_units`` units or more are cut in windows (see the module's docstring);
    the default is ``scenes.WINDOW_UNITS``, and tests pass a small one.

    ``spill``, the run's policy, may keep a long document's rows out of the local runner's memory:
    they cross the gathers and reach the writer as references to scratch files
    (:func:`~hyperscene.transforms.levels.parts.bucket_parts`). Only buckets whose vectors are in a
    local file are spilled (in a refresh, the fresh units'; its known units carry their vectors, and
    their rows, as values).

    Documents of fewer than ``grouped_below`` units are gathered in ``groups`` groups (by a hash of
    their id: :func:`~hyperscene.transforms.levels.parts.group_of`), so a corpus of millions of short
    documents costs the steps after the gather per group, not per document. Pipelines pass
    :func:`~hyperscene.transforms.levels.parts.group_count` of their bucket count. Each document's
    scenes and codes are those it gets gathered alone (``groups=0``).
    """

    def __init__(self, cfg: SceneConfig, codebook_sizes: tuple[int, ...] = (), seed: int = 0, frozen=None,
                 window_units: int | None = None, spill: SpillPolicy = NO_SPILL, groups: int = 1,
                 grouped_below: int = GROUPED_BELOW):
        super().__init__()
        self._cfg, self._sizes, self._seed, self._frozen = cfg, tuple(codebook_sizes), seed, frozen
        self._spill = spill
        window_units = scenes_package.WINDOW_UNITS if window_units is None else window_units
        if isinstance(window_units, bool) or not isinstance(window_units, int) or window_units < 1:
            raise ValueError(f"window_units must be a whole number of at least 1, not {window_units!r}")
        for name, value in (("groups", groups), ("grouped_below", grouped_below)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number of at least 0, not {value!r}")
        window_depth(cfg, window_units)  # a clear error now, not on a worker, if no window can hold a scene
        self._window = window_units
        self._groups, self._grouped_below = (groups, grouped_below) if grouped_below else (0, 0)

    def expand(self, buckets):
        size, cfg = self._window, self._cfg
        # the documents gathered alone: those of at least grouped_below units (or, with no groups,
        # those long enough for windows; every other is then alone too)
        alone_from = min(self._grouped_below, 2 * size) if self._groups else 2 * size
        lengths = (
            buckets
            | "PartLengths" >> beam.FlatMap(document_lengths, at_least=alone_from)
            | "Lengths" >> beam.CombinePerKey(max)
        )
        parts = buckets | "ByDocument" >> SplitOutputs(_keyed_parts, beam.pvalue.AsDict(lengths), tags=("groups",),
                                                       main="documents", spill=self._spill, size=size, groups=self._groups)
        gathered = (
            (parts.documents | "Gather" >> beam.GroupByKey(), parts.groups | "GatherGroups" >> beam.GroupByKey())
            | "AllGathered" >> beam.Flatten()
            | "Scenes" >> SplitOutputs(_SceneDoFn(cfg, size), tags=("windows", "samples"), main="docs")
        )
        docs = gathered.docs
        trees = (
            gathered.windows
            | "WindowsByDocument" >> beam.GroupByKey()
            | "ScenesAboveWindows" >> beam.ParDo(_TreeDoFn(cfg, size))
        )
        codebooks = self._frozen if self._frozen is not None else (
            (docs | "LevelCentroids" >> beam.FlatMap(group_level_centroids),
             trees | "TreeLevelCentroids" >> beam.FlatMap(lambda tree: level_centroids(tree.doc_id, tree.above)),
             gathered.samples)
            | "AllLevelCentroids" >> beam.Flatten()
            | "ByLevel" >> beam.CombinePerKey(LevelSample())
            | "Train" >> beam.MapTuple(train_level, sizes=self._sizes, seed=self._seed)
        )
        encoded = docs | "Encode" >> SplitOutputs(_EncodeDoFn(), beam.pvalue.AsDict(codebooks), tags=("occurrences", "members"),
                                             main="scenes")
        coded = trees | "EncodeTrees" >> SplitOutputs(_EncodeTreeDoFn(), beam.pvalue.AsDict(codebooks), tags=("members", "windows"),
                                                 main="pending")
        windowed = (
            {"parts": parts.documents | "WindowedOnly" >> beam.Filter(lambda kv: kv[0][2] > 1), "codes": coded.windows}
            | "JoinWindows" >> beam.CoGroupByKey()
            | "EncodeWindows" >> SplitOutputs(_EncodeWindowDoFn(cfg, self._spill), beam.pvalue.AsDict(codebooks),
                                             tags=("scenes", "members", "candidates"), main="occurrences")
        )
        gisted = (
            {"pending": coded.pending, "candidates": windowed.candidates}
            | "JoinGists" >> beam.CoGroupByKey()
            | "FillGists" >> beam.FlatMap(_fill_gists, gist_size=cfg.gist_size)
        )
        scenes = (encoded.scenes, windowed.scenes, gisted) | "AllScenes" >> beam.Flatten()
        occurrences = (encoded.occurrences, windowed.occurrences) | "AllOccurrences" >> beam.Flatten()
        members = (encoded.members, coded.members, windowed.members) | "AllMembers" >> beam.Flatten()
        stats = members | "CodeStats" >> beam.CombinePerKey(CodeStats())
        rows = codebooks | "Rows" >> beam.FlatMapTuple(codebook_rows, stats=beam.pvalue.AsDict(stats))
        levels = (
            (scenes | "LevelStats" >> beam.FlatMap(level_stats),
             codebooks | "CodebookSizes" >> beam.MapTuple(lambda level, c: (f"level_{level}_codebook_size", len(c))))
            | "AllLevelStats" >> beam.Flatten()
        )
        return {"scenes": scenes, "occurrences": occurrences, "codebooks": rows, "levels": levels}
