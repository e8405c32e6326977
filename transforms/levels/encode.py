"""Codes for every scene and semantic ids for every occurrence, as ``scenes`` and ``occurrences`` rows.

Once each level's codebook is trained, a document's scenes get their codes (the nearest centroid of
their level's codebook) and their children's codes, and every occurrence its semantic id: the codes
of the scenes holding it, from the document's root down to level 1, then its hyperword. One builder
of scene rows (:func:`scene_table`) and one of semantic ids (:func:`semantic_ids`) serve a whole
document (:func:`encode_document`) and a long one's parts: the levels above its windows
(:func:`encode_tree`) and each window (:func:`encode_window`), whose gists above are merged last
(:func:`fill_gists`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hyperscene.schemas import SCENES
from hyperscene.transforms.codebook import NearestCentroid, as_stored, assign
from hyperscene.transforms.levels.parts import gather_rows, gather_window
from hyperscene.transforms.scenes import Level, SceneConfig, WindowedTree, cut_levels, gist_candidates, merge_gists, windows


def scene_id(doc_id: str, level: int, index: int) -> str:
    return f"{doc_id}#{level}.{index}"


@dataclass(frozen=True)
class DocumentScenes:
    """A document gathered whole: its occurrences and its scene levels."""

    doc_id: str
    occurrences: pa.Table  # ASSIGNED_OCCURRENCE_COLUMNS, sorted by position (0, 1, ... n-1)
    levels: list[Level]  # 1 up to the root, gists filled in


@dataclass(frozen=True)
class DocumentGroup:
    """Documents gathered whole together (a group of short ones, or one alone): one table of their
    occurrences, each document's scene levels. One element for thousands of short documents, so the
    steps after the gather cost per group, not per document."""

    doc_ids: list[str]
    occurrences: pa.Table  # ASSIGNED_OCCURRENCE_COLUMNS, sorted by (doc_id, position)
    bounds: np.ndarray  # document i's rows are [bounds[i], bounds[i + 1])
    levels: list[list[Level]]

    def documents(self) -> Iterator[DocumentScenes]:
        for i, doc_id in enumerate(self.doc_ids):
            start, stop = int(self.bounds[i]), int(self.bounds[i + 1])
            yield DocumentScenes(doc_id, self.occurrences.slice(start, stop - start), self.levels[i])

    # A group crosses a shuffle between the scenes and their codes. Pickled as it is, its thousands of
    # small Level arrays cost about 75 us a document each way; packed into one array per field, a
    # group of a thousand documents pickles in a few milliseconds.
    def __getstate__(self):
        flat = [(d, lv) for d, levels in enumerate(self.levels) for lv in levels]
        gists = [g for _, lv in flat for g in (lv.gists or ())]
        packed = {
            "owner": np.array([d for d, _ in flat], np.int64),
            "level": np.array([lv.level for _, lv in flat], np.int64),
            "scenes": np.array([len(lv) for _, lv in flat], np.int64),
            "has_gists": np.array([lv.gists is not None for _, lv in flat], bool),
            "gist_sizes": np.array([len(g) for g in gists], np.int64),
            "gists": np.array([p for g in gists for p in g], np.int64),
        }
        for field in ("starts", "firsts", "lasts", "tokens", "norms"):
            packed[field] = np.concatenate([getattr(lv, field) for _, lv in flat]) if flat else np.zeros(0)
        packed["centroids"] = np.concatenate([lv.centroids for _, lv in flat]) if flat else np.zeros((0, 0), np.float32)
        return self.doc_ids, self.occurrences, self.bounds, packed

    def __setstate__(self, state):
        doc_ids, occurrences, bounds, packed = state
        levels: list[list[Level]] = [[] for _ in doc_ids]
        ends = np.cumsum(packed["scenes"])
        gist_ends = np.cumsum(packed["gist_sizes"])
        gist_at = 0  # scenes with gists so far
        for i, (owner, level, n, has_gists) in enumerate(zip(packed["owner"], packed["level"], packed["scenes"], packed["has_gists"])):
            a, b = int(ends[i] - n), int(ends[i])
            gists = None
            if has_gists:
                stops = gist_ends[gist_at : gist_at + n]
                starts = stops - packed["gist_sizes"][gist_at : gist_at + n]
                gists = [tuple(packed["gists"][x:y].tolist()) for x, y in zip(starts, stops)]
                gist_at += int(n)
            levels[owner].append(Level(int(level), packed["starts"][a:b], packed["firsts"][a:b], packed["lasts"][a:b],
                                       packed["tokens"][a:b], packed["centroids"][a:b], packed["norms"][a:b], gists))
        for name, value in (("doc_ids", doc_ids), ("occurrences", occurrences), ("bounds", bounds), ("levels", levels)):
            object.__setattr__(self, name, value)


def gather_document(doc_id: str, parts, cfg: SceneConfig) -> DocumentScenes:
    """One document's parts, from every bucket, into its occurrences in order and its scene levels."""
    (doc,) = gather_documents(parts, cfg).documents()
    if doc.doc_id != doc_id:
        raise ValueError(f"the parts gathered for {doc_id!r} hold {doc.doc_id!r}")
    return doc


def gather_documents(parts, cfg: SceneConfig) -> DocumentGroup:
    """The parts of a group of documents (or of one), from every bucket, into their occurrences in
    order and each document's scene levels, each cut alone."""
    occurrences, tokens, vectors = gather_rows(parts)
    ids = occurrences.column("doc_id").combine_chunks()
    if len(ids):
        changes = np.flatnonzero(pc.not_equal(ids[1:], ids[:-1]).to_numpy(zero_copy_only=False)) + 1
    else:
        changes = np.zeros(0, np.int64)
    bounds = np.concatenate([[0], changes, [len(ids)]]).astype(np.int64)
    doc_ids = [ids[int(b)].as_py() for b in bounds[:-1]]
    levels = [cut_levels(vectors[a:b], tokens[a:b], cfg) for a, b in zip(bounds[:-1], bounds[1:])]
    return DocumentGroup(doc_ids, occurrences, bounds, levels)


def list_array(offsets, values: pa.Array) -> pa.ListArray:
    return pa.ListArray.from_arrays(pa.array(np.asarray(offsets, dtype=np.int32)), values)


class SceneRows:
    """``scenes`` rows added level by level (of one document, or of a whole group of them) and built
    into one table at the end, one Arrow array per column: a group's thousands of short levels cost
    a few list appends each, not a table each."""

    def __init__(self):
        self._ids, self._doc_ids, self._parents, self._gists = [], [], [], []
        self._arrays: dict[str, list[np.ndarray]] = {name: [] for name in (
            "level", "index", "first_position", "last_position", "child_count", "token_count", "code", "code_score",
            "gist_count", "child_codes")}

    def add(self, doc_id: str, level: int, first_index: int, parents, lv: Level, codes, scores, gists, child_counts,
            child_codes) -> "SceneRows":
        """Scenes of one level of one document: ``lv``'s rows, the first of them at index
        ``first_index``; ``parents`` their parents' indices (None at the root); ``gists`` None for
        empty ones (filled in later); ``child_codes`` all their children's codes, in order."""
        n = len(lv)
        index = np.arange(first_index, first_index + n)
        prefix = f"{doc_id}#{level}."  # scene_id's format
        self._ids.extend(prefix + str(x) for x in index.tolist())
        self._doc_ids.extend([doc_id] * n)
        if parents is None:
            self._parents.extend([None] * n)
        else:
            above = f"{doc_id}#{level + 1}."
            self._parents.extend(above + str(p) for p in np.asarray(parents).tolist())
        gist_counts = [len(g) for g in gists] if gists is not None else [0] * n
        for g in gists or ():
            self._gists.extend(g)
        for name, values, dtype in (
            ("level", np.full(n, level), np.int32), ("index", index, np.int32), ("first_position", lv.firsts, np.int64),
            ("last_position", lv.lasts, np.int64), ("child_count", child_counts, np.int32), ("token_count", lv.tokens, np.int64),
            ("code", codes, np.int32), ("code_score", scores, np.float32), ("gist_count", gist_counts, np.int64),
            ("child_codes", child_codes, np.int32),
        ):
            self._arrays[name].append(np.asarray(values, dtype))
        return self

    def table(self) -> pa.Table:
        arrays = {name: np.concatenate(parts) if parts else np.zeros(0, np.int64) for name, parts in self._arrays.items()}
        columns = {
            "scene_id": pa.array(self._ids, pa.string()),
            "doc_id": pa.array(self._doc_ids, pa.string()),
            "parent_scene_id": pa.array(self._parents, pa.string()),
            "gist": list_array(np.append(0, np.cumsum(arrays["gist_count"])), pa.array(self._gists, pa.int64())),
            "child_codes": list_array(np.append(0, np.cumsum(arrays["child_count"])), pa.array(arrays["child_codes"].astype(np.int32))),
        }
        for name in ("level", "index", "first_position", "last_position", "child_count", "token_count", "code", "code_score"):
            columns[name] = pa.array(arrays[name])
        return pa.Table.from_arrays([columns[f.name] for f in SCENES], schema=SCENES)


def scene_table(doc_id: str, level: int, first_index: int, parents, lv: Level, codes, scores, gists, child_counts, child_codes) -> pa.Table:
    """Scenes of one level of one document as a ``scenes`` table (see :meth:`SceneRows.add`)."""
    return SceneRows().add(doc_id, level, first_index, parents, lv, codes, scores, gists, child_counts, child_codes).table()


def level_slice(lv: Level, i: int, j: int) -> Level:
    return Level(lv.level, lv.starts[i:j], lv.firsts[i:j], lv.lasts[i:j], lv.tokens[i:j], lv.centroids[i:j], lv.norms[i:j],
                 None if lv.gists is None else lv.gists[i:j])


def parents_above(above: Level | None, first: int, count: int):
    """The indices in ``above`` of the parents of ``count`` scenes from index ``first`` (None at the root)."""
    return None if above is None else np.searchsorted(above.starts, np.arange(first, first + count), side="right") - 1


def nearest_coders(codebooks: dict) -> dict[int, NearestCentroid]:
    """Each level's codebook (centroids, or a coder already built) as a :class:`NearestCentroid`."""
    return {level: c if isinstance(c, NearestCentroid) else NearestCentroid(c) for level, c in codebooks.items()}


def encode_document(doc: DocumentScenes, codebooks: dict):
    """Codes for every scene and semantic ids for every occurrence of one document (``codebooks``:
    each level's centroids, or their :func:`nearest_coders`).

    Returns (scenes table, occurrences table with ``semantic_id``, [(level, code, scene_id, score)]).
    """
    rows, members = SceneRows(), []
    coded = group_codes([doc.levels], nearest_coders(codebooks))[0]
    matrix = _encode_levels(doc.doc_id, doc.occurrences, doc.levels, coded, rows, members)
    return rows.table(), doc.occurrences.append_column("semantic_id", semantic_id_column([matrix])), members


def encode_group(group: DocumentGroup, codebooks: dict):
    """:func:`encode_document` for every document of a group, each coded as it would be alone (one
    search per level for the whole group), into one scenes table and one occurrences table:
    (scenes, occurrences with ``semantic_id``, [(level, code, scene_id, score)])."""
    coders = nearest_coders(codebooks)
    docs = list(group.documents())
    coded = group_codes([doc.levels for doc in docs], coders)
    rows, members = SceneRows(), []
    matrices = [_encode_levels(doc.doc_id, doc.occurrences, doc.levels, codes, rows, members) for doc, codes in zip(docs, coded)]
    return rows.table(), group.occurrences.append_column("semantic_id", semantic_id_column(matrices)), members


def group_codes(levels_of_documents: list[list[Level]], coders: dict) -> list[dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Each document's scene codes and scores by level, as it gets them alone, searched level by
    level for the whole group (:meth:`NearestCentroid.each_alone`)."""
    coded: list[dict] = [{} for _ in levels_of_documents]
    by_level: dict[int, list[tuple[int, Level]]] = {}
    for d, levels in enumerate(levels_of_documents):
        for lv in levels:
            by_level.setdefault(lv.level, []).append((d, lv))
    for level, held in by_level.items():
        for (d, _), result in zip(held, coders[level].each_alone([as_stored(lv.centroids) for _, lv in held])):
            coded[d][level] = result
    return coded


def _encode_levels(doc_id: str, occurrences: pa.Table, levels: list[Level], coded: dict, rows: SceneRows,
                   members: list) -> np.ndarray:
    """One whole document's scenes, their codes and scores by level searched (``coded``, from
    :func:`group_codes`), into ``rows`` and ``members``; returns its semantic ids, one row per
    occurrence (root code first, hyperword last)."""
    hyperwords = occurrences.column("hyperword").to_numpy()
    codes: dict[int, np.ndarray] = {0: hyperwords}
    scores: dict[int, np.ndarray] = {}
    for lv in levels:
        codes[lv.level], scores[lv.level] = coded[lv.level]
    for k, lv in enumerate(levels):
        ends = lv.lasts + 1 if k == 0 else lv.ends(len(levels[k - 1]))
        parents = parents_above(levels[k + 1] if k + 1 < len(levels) else None, 0, len(lv))
        rows.add(doc_id, lv.level, 0, parents, lv, codes[lv.level], scores[lv.level], lv.gists, ends - lv.starts,
                 codes[lv.level - 1])
        prefix = f"{doc_id}#{lv.level}."
        members.extend((lv.level, c, prefix + str(x), s)
                       for x, (c, s) in enumerate(zip(codes[lv.level].tolist(), scores[lv.level].tolist())))
    positions = occurrences.column("position").to_numpy()
    return semantic_matrix(positions, [(lv.firsts, codes[lv.level]) for lv in reversed(levels)], hyperwords)


@dataclass(frozen=True)
class WindowCodes:
    """What one window of a long document needs, once the levels above it are coded."""

    first: int  # the window's units: [first, end)
    end: int
    cuts: list[np.ndarray]  # starts of each level cut inside it
    offsets: list[int]  # index in the document of its first scene at each of those levels
    top_codes: np.ndarray  # codes and scores of its scenes at its top inside level, coded in the
    top_scores: np.ndarray  # document pass with the whole level
    above: list[tuple]  # (level, index of the first, firsts, codes) of the scenes above the windows over it, root level first
    spans: list[tuple]  # the same scenes as scenes.gist_candidates takes them


def _list_array(offsets, values: pa.Array) -> pa.ListArray:
    return pa.ListArray.from_arrays(pa.array(np.asarray(offsets, dtype=np.int32)), values)


def encode_tree(tree: WindowedTree, codebooks: dict[int, np.ndarray]):
    """Codes for the scenes above a long document's windows, and for its windows' top inside level.

    Returns (the table of the scenes above the windows, gists empty, [(level, code, scene_id,
    score)] of those scenes, [((doc_id, window, windows), WindowCodes)]).
    """
    codes: dict[int, np.ndarray] = {}
    scores: dict[int, np.ndarray] = {}
    for lv in ([tree.base] if tree.depth else []) + tree.above:
        codes[lv.level], scores[lv.level] = assign(as_stored(lv.centroids), codebooks[lv.level])
    below = tree.hyperwords if tree.depth == 0 else codes[tree.depth]
    tables, members = [], []
    for k, lv in enumerate(tree.above):
        above = tree.above[k + 1] if k + 1 < len(tree.above) else None
        ends = lv.lasts + 1 if lv.level == 1 else lv.ends(len(below))
        for i in range(0, len(lv), tree.size):  # tables of at most ``size`` rows
            j = min(i + tree.size, len(lv))
            parents = parents_above(above, i, j - i)
            part = level_slice(lv, i, j)
            tables.append(scene_table(tree.doc_id, lv.level, i, parents, part, codes[lv.level][i:j], scores[lv.level][i:j],
                                      None, ends[i:j] - part.starts, below[part.starts[0] : ends[j - 1]]))
        members.extend((lv.level, int(c), scene_id(tree.doc_id, lv.level, x), float(s))
                       for x, (c, s) in enumerate(zip(codes[lv.level], scores[lv.level])))
        below = codes[lv.level]
    bounds = windows(tree.units, tree.size)
    counts = np.array([[len(c) for c in cuts] for cuts in tree.cuts]).reshape(len(bounds), tree.depth)
    offsets = np.cumsum(np.vstack([np.zeros((1, tree.depth), np.int64), counts[:-1]]), axis=0)
    per_window = []
    for w, (first, end) in enumerate(bounds):
        over = [(lv, *lv.overlapping(first, end)) for lv in reversed(tree.above)]
        top = slice(int(offsets[w, -1]), int(offsets[w, -1] + counts[w, -1])) if tree.depth else slice(0, 0)
        per_window.append(((tree.doc_id, w, len(bounds)), WindowCodes(
            first, end, tree.cuts[w], offsets[w].tolist(),
            codes[tree.depth][top] if tree.depth else np.zeros(0, np.int32),
            scores[tree.depth][top] if tree.depth else np.zeros(0, np.float32),
            [(lv.level, i, lv.firsts[i:j], codes[lv.level][i:j]) for lv, i, j in over],
            [(lv.level, i, lv.firsts[i:j], lv.lasts[i:j], lv.centroids[i:j]) for lv, i, j in over])))
    return pa.concat_tables(tables), members, per_window


def semantic_matrix(positions: np.ndarray, codes, hyperwords: np.ndarray) -> np.ndarray:
    """For each position, a row: the codes of the scenes holding it, from the root down (``codes``:
    per level, root first, (firsts, codes) of scenes covering the positions), then its hyperword."""
    columns = [level_codes[np.searchsorted(firsts, positions, side="right") - 1] for firsts, level_codes in codes]
    columns.append(hyperwords)
    return np.stack(columns, axis=1).astype(np.int32)


def semantic_id_column(matrices: list[np.ndarray]) -> pa.ListArray:
    """:func:`semantic_matrix` rows of consecutive documents (each its own depth) as one list column."""
    widths = np.concatenate([np.full(len(m), m.shape[1], np.int64) for m in matrices])
    values = np.concatenate([m.ravel() for m in matrices]).astype(np.int32)
    return list_array(np.append(0, np.cumsum(widths)), pa.array(values))


def semantic_ids(positions: np.ndarray, codes, hyperwords: np.ndarray) -> pa.ListArray:
    """:func:`semantic_matrix` as a list column."""
    return semantic_id_column([semantic_matrix(positions, codes, hyperwords)])


def encode_window(parts, wc: WindowCodes, cfg: SceneConfig, codebooks: dict[int, np.ndarray]):
    """One window of a long document, gathered again: its levels rebuilt from their cuts and coded.

    Returns (scenes tables of its inside levels, its occurrences with ``semantic_id``,
    [(level, code, scene_id, score)], its gist candidates for the scenes above the windows).
    """
    occurrences, tokens, vectors = gather_window(parts, wc.first)
    if occurrences.num_rows != wc.end - wc.first:
        raise ValueError(f"the window [{wc.first}, {wc.end}) holds {occurrences.num_rows} units")
    doc_id = occurrences.column("doc_id")[0].as_py()
    hyperwords = occurrences.column("hyperword").to_numpy().astype(np.int32)
    depth = len(wc.cuts)
    levels = cut_levels(vectors, tokens, cfg, offset=wc.first, depth=depth, cuts=wc.cuts) if depth else []
    codes, scores = {0: hyperwords}, {}
    for lv in levels[:-1]:
        codes[lv.level], scores[lv.level] = assign(as_stored(lv.centroids), codebooks[lv.level])
    if depth:
        codes[depth], scores[depth] = wc.top_codes, wc.top_scores
    tables, members = [], []
    for k, lv in enumerate(levels):
        local = np.arange(len(lv))
        if k + 1 < depth:
            parents = wc.offsets[k + 1] + np.searchsorted(levels[k + 1].starts, local, side="right") - 1
        else:  # the lowest level above the windows
            _, base, firsts, _ = wc.above[-1]
            parents = base + np.searchsorted(firsts, lv.firsts, side="right") - 1
        ends = lv.lasts + 1 - wc.first if k == 0 else lv.ends(len(levels[k - 1]))
        starts = lv.starts - wc.first if k == 0 else lv.starts
        tables.append(scene_table(doc_id, lv.level, wc.offsets[k], parents, lv, codes[lv.level], scores[lv.level], lv.gists,
                                  ends - starts, codes[lv.level - 1]))
        members.extend((lv.level, int(c), scene_id(doc_id, lv.level, wc.offsets[k] + x), float(s))
                       for x, (c, s) in enumerate(zip(codes[lv.level], scores[lv.level])))
    path = [(firsts, level_codes) for _, _, firsts, level_codes in wc.above]
    path += [(lv.firsts, codes[lv.level]) for lv in reversed(levels)]
    positions = occurrences.column("position").to_numpy()
    occurrences = occurrences.append_column("semantic_id", semantic_ids(positions, path, hyperwords))
    return tables, occurrences, members, gist_candidates(vectors, wc.first, wc.spans, cfg.gist_size)


def fill_gists(pending: pa.Table, candidates, gist_size: int) -> pa.Table:
    """The scenes of one document above its windows, with their gists from every window's
    candidates. ``pending`` is sorted by (level, index), each level complete."""
    levels = pending.column("level").to_numpy()
    by_level: dict[int, list] = {}
    for c in candidates:
        by_level.setdefault(c[0], []).append(c)
    gists = []
    for level in np.unique(levels):  # ascending, as the rows are
        gists.extend(merge_gists(by_level.get(int(level), []), int((levels == level).sum()), gist_size))
    column = list_array(np.append(0, np.cumsum([len(g) for g in gists])), pa.array([p for g in gists for p in g], pa.int64()))
    return pending.set_column(SCENES.get_field_index("gist"), SCENES.field("gist"), column)
