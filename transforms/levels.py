"""The levels above the units: scenes per document, one codebook per level, every unit's semantic id.

Flow: assigned UnitBuckets are split into per-document parts (occurrence rows, token counts and
vectors) and gathered by document; each document's scene tree is built by
:func:`hyperscene.transforms.scenes.build_scene_tree`; the scene centroids of each level train that
level's FAISS codebook (a global step, like the hyperwords'); then every scene gets its code and its
children's codes, and every occurrence its semantic id: the codes of the scenes holding it, from
the document's root down to level 1, then its hyperword.

A document of ``2 * window_units`` units or more (see ``scenes.WINDOW_UNITS``) is never gathered
whole, so its memory stays that of one window. Its parts are gathered by window instead; each
window cuts its own lowest levels (``scenes.window_levels``: 4 with the defaults) and sends the
document pass only their cuts and its top level (about 1/900 as many scenes as units), from which
the levels above are built (``scenes.upper_levels``). After the codebooks, each window is gathered
a second time: it rebuilds its levels from their cuts (no second cut), codes them, gives its
occurrences their semantic ids and ranks its units for the gists of the scenes above the windows,
which are then merged per document. A scene of the levels cut inside windows never crosses a
window boundary. Shorter documents take the first path, and their scenes are exactly what they
were before windows existed.

Vectors cross the gather rounded to float16: half the bytes through a distributed runner's shuffle
(a local one gets references to the spilled files instead, see ``embed.VectorRows``, rounded the
same way so every runner builds the same scenes), and scene cuts compare sums of many vectors, far
above float16's rounding. Everything after the gather is float32.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from typing import Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hyperscene.schemas import SCENES, SORT_KEYS
from hyperscene.schemas.unit_bucket import UnitBucket
from hyperscene.transforms.codebook import assign, default_codebook_size, train_codebook
from hyperscene.transforms.embed import VectorRows, for_row_access, take_rows, vector_rows
from hyperscene.transforms.progress import Progress, stage_timer
from hyperscene.transforms.spill import SpilledRows, as_table, is_local, scratch_name, spill_tables
from hyperscene.transforms.scenes import (
    WINDOW_UNITS, Level, Scene, SceneConfig, build_scene_tree, gist_candidates, merge_gists, upper_levels,
    window_depth, window_levels, window_of, window_piece, windows,
)

OCCURRENCE_COLUMNS = ["doc_id", "position", "unit_id", "separator", "hyperword"]
LEVEL_SAMPLE = 200_000  # scenes per level the k-means is trained on at most
SPILL_MIN_ROWS = 256  # a bucket's rows of one document spilled to a file, at least (see document_parts)


def scene_id(doc_id: str, level: int, index: int) -> str:
    return f"{doc_id}#{level}.{index}"


@dataclass(frozen=True)
class DocumentScenes:
    doc_id: str
    occurrences: pa.Table  # OCCURRENCE_COLUMNS, sorted by position (0, 1, ... n-1)
    scenes: list[Scene]  # sorted by (level, index); the last is the root

    def by_level(self) -> dict[int, list[Scene]]:
        levels: dict[int, list[Scene]] = {}
        for s in self.scenes:
            levels.setdefault(s.level, []).append(s)
        return levels


@dataclass(frozen=True)
class SpilledPart:
    """One bucket's occurrences of one document (or of one window of it), spilled (see
    ``transforms/spill.py``): the rows, sorted by position, with ``token_count`` and ``vector_row``
    (their row in ``vector_file``) beside the occurrence columns."""

    rows: SpilledRows
    vector_file: str

    def values(self) -> tuple[pa.Table, np.ndarray, VectorRows]:
        table = self.rows.load()
        return (table.select(OCCURRENCE_COLUMNS), table.column("token_count").to_numpy(),
                VectorRows(self.vector_file, table.column("vector_row").to_numpy(), "float16"))


def document_parts(bucket: UnitBucket, spill_to: str | None = None) -> Iterator[tuple[str, tuple[pa.Table, np.ndarray, np.ndarray] | SpilledPart]]:
    """A bucket's occurrences split by document: (doc_id, (rows, token counts, vectors)); the vectors
    rounded to float16, as values or as a reference to their spilled file (``embed.vector_rows``).

    With ``spill_to`` (a local folder) and the bucket's vectors in a local file, parts of
    ``SPILL_MIN_ROWS`` rows or more (a long document's) go to one file per bucket there and travel
    as :class:`SpilledPart` references; smaller ones are not worth a file read each.
    """
    bucket = for_row_access(bucket)
    occurrences = bucket.occurrences.select(OCCURRENCE_COLUMNS)
    row = pc.index_in(occurrences.column("unit_id"), value_set=bucket.units.column("unit_id")).to_numpy()
    tokens = bucket.units.column("token_count").to_numpy()[row]
    docs = pc.dictionary_encode(occurrences.column("doc_id")).combine_chunks()
    order = np.argsort(docs.indices.to_numpy(), kind="stable")
    codes = docs.indices.to_numpy()[order]
    present, starts = np.unique(codes, return_index=True)
    groups = [(docs.dictionary[code].as_py(), order[start:end]) for code, start, end in zip(present, starts, [*starts[1:], len(order)])]
    spill = spill_to is not None and bucket.vectors is None and is_local(bucket.vector_file)
    spilled, tables = [], []
    positions = occurrences.column("position").to_numpy()
    for doc_id, rows in groups:
        if not spill or len(rows) < SPILL_MIN_ROWS:
            yield doc_id, (occurrences.take(rows), tokens[rows], vector_rows(bucket, row[rows], "float16"))
            continue
        rows = rows[np.argsort(positions[rows], kind="stable")]
        spilled.append(doc_id)
        tables.append(occurrences.take(rows).append_column("token_count", pa.array(tokens[rows], pa.int64()))
                      .append_column("vector_row", pa.array(row[rows], pa.int64())))
    if tables:
        name = os.path.splitext(os.path.basename(bucket.vector_file))[0]  # unique per bucket, also in a refresh
        references = spill_tables(tables, os.path.join(spill_to, f"parts-{name}.arrow"), keys=("doc_id", "position"))
        for doc_id, reference in zip(spilled, references):
            yield doc_id, SpilledPart(reference, bucket.vector_file)


def gather_rows(parts) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """Parts of one document (or of one window of it), from every bucket: (occurrences, token
    counts, float32 vectors), in position order."""
    parts = [p.values() if isinstance(p, SpilledPart) else p for p in parts]
    occurrences = pa.concat_tables([p[0] for p in parts])
    order = np.argsort(occurrences.column("position").to_numpy(), kind="stable")
    tokens = np.concatenate([p[1] for p in parts])[order]
    vectors = np.concatenate([take_rows(p[2]) for p in parts])[order]
    return occurrences.take(order), tokens, vectors


def gather_document(doc_id: str, parts, cfg: SceneConfig) -> DocumentScenes:
    """One document's parts, from every bucket, into its occurrences in order and its scene tree."""
    occurrences, tokens, vectors = gather_rows(parts)
    return DocumentScenes(doc_id, occurrences, build_scene_tree(vectors, tokens, cfg))


def level_centroids(doc: DocumentScenes) -> Iterator[tuple[int, tuple[list[str], np.ndarray]]]:
    """(level, (sample keys, centroids)) of one document's scenes, one element per level."""
    for level, scenes in doc.by_level().items():
        # Hashes of scene ids order the sample: uniform over documents, independent of arrival order.
        keys = [hashlib.blake2b(scene_id(doc.doc_id, level, s.index).encode(), digest_size=8).hexdigest() for s in scenes]
        yield level, (keys, np.stack([s.centroid for s in scenes]).astype(np.float32))


class LevelSample(beam.CombineFn):
    """Per level: (its scene count, the centroids of its ``sample`` scenes with the smallest keys,
    in key order). Keys are hashes, so the sample is uniform over documents and does not depend on
    the order scenes arrive in. Only keys that can still be among the smallest are held, so memory is
    bounded by the sample however many scenes a level has (one huge document has hundreds of
    thousands), and every scene is sorted a bounded number of times."""

    def __init__(self, sample: int = LEVEL_SAMPLE):
        self._sample = sample

    def create_accumulator(self):
        return [0, [], None, 0]  # scenes seen, held (keys, centroids) parts, the largest key worth holding, rows held

    def add_input(self, acc, part):
        keys, centroids = part
        acc[0] += len(keys)
        self._hold(acc, np.asarray(keys, dtype="U16"), centroids)
        return acc

    def merge_accumulators(self, accumulators):
        out = self.create_accumulator()
        for acc in accumulators:
            out[0] += acc[0]
            for keys, centroids in acc[1]:
                self._hold(out, keys, centroids)
        return out

    def extract_output(self, acc):
        self._compact(acc)
        return acc[0], acc[1][0][1]

    def _hold(self, acc, keys, centroids):
        if acc[2] is not None:  # the sample is full: only smaller keys can enter it
            keep = keys < acc[2]
            keys, centroids = keys[keep], centroids[keep]
        if len(keys):
            acc[1].append((keys, centroids))
            acc[3] += len(keys)
        if acc[3] > self._sample + self._sample // 4:
            self._compact(acc)

    def _compact(self, acc):
        keys = np.concatenate([k for k, _ in acc[1]])
        order = np.argsort(keys, kind="stable")[: self._sample]
        acc[1] = [(keys[order], np.concatenate([c for _, c in acc[1]])[order])]
        acc[3] = len(order)
        if len(order) == self._sample:
            acc[2] = keys[order[-1]]


def train_level(level: int, sample, sizes: tuple[int, ...] = (), seed: int = 0) -> tuple[int, np.ndarray]:
    """(level, its codebook): FAISS k-means on the level's :class:`LevelSample` (count, centroids)."""
    count, centroids = sample
    size = sizes[level - 1] if level <= len(sizes) else default_codebook_size(count)
    with stage_timer("train level codebooks", len(centroids)):
        return level, train_codebook(centroids, size, seed + level)


def encode_document(doc: DocumentScenes, codebooks: dict[int, np.ndarray]):
    """Codes for every scene and semantic ids for every occurrence of one document.

    Returns (scenes table, occurrences table with ``semantic_id``, [(level, code, scene_id, score)]).
    """
    n = doc.occurrences.num_rows
    hyperwords = doc.occurrences.column("hyperword").to_numpy()
    codes: dict[int, np.ndarray] = {0: hyperwords}
    scores: dict[int, np.ndarray] = {}
    by_level = doc.by_level()
    for level, scenes in by_level.items():
        ids, score = assign(np.stack([s.centroid for s in scenes]), codebooks[level])
        codes[level], scores[level] = ids, score

    rows, members = [], []
    for s in doc.scenes:
        sid = scene_id(doc.doc_id, s.level, s.index)
        code = int(codes[s.level][s.index])
        rows.append({
            "scene_id": sid, "doc_id": doc.doc_id, "level": s.level, "index": s.index,
            "parent_scene_id": None if s.parent is None else scene_id(doc.doc_id, s.level + 1, s.parent),
            "first_position": s.first, "last_position": s.last, "child_count": s.child_count,
            "token_count": s.token_count, "code": code, "code_score": float(scores[s.level][s.index]),
            "gist": list(s.gist), "child_codes": codes[s.level - 1][list(s.children)].tolist(),
        })
        members.append((s.level, code, sid, float(scores[s.level][s.index])))
    # Centroids go in as one numpy block: a Python float per value would cost seconds per book.
    centroids = np.stack([s.centroid for s in doc.scenes]).astype(np.float32)
    centroid_column = pa.ListArray.from_arrays(
        pa.array(np.arange(0, centroids.size + 1, centroids.shape[1], dtype=np.int32)), pa.array(centroids.ravel()))
    table = pa.Table.from_pylist(rows, schema=SCENES.remove(SCENES.get_field_index("centroid")))
    table = table.add_column(SCENES.get_field_index("centroid"), SCENES.field("centroid"), centroid_column)

    # Semantic id: for each level from the root down, the code of the scene holding each position.
    columns = []
    for level in sorted(by_level, reverse=True):
        firsts = np.asarray([s.first for s in by_level[level]])
        columns.append(codes[level][np.searchsorted(firsts, np.arange(n), side="right") - 1])
    columns.append(hyperwords)
    matrix = np.stack(columns, axis=1).astype(np.int32)
    semantic = pa.ListArray.from_arrays(pa.array(np.arange(0, matrix.size + 1, matrix.shape[1], dtype=np.int32)),
                                        pa.array(matrix.ravel()))
    occurrences = doc.occurrences.append_column("semantic_id", semantic)
    return table, occurrences, members


class CodeStats(beam.CombineFn):
    """Per code: (scene count, best score, most central scene id); ties go to the smallest id, so
    the result does not depend on the order scenes arrive in."""

    def create_accumulator(self):
        return (0, None, None)

    def add_input(self, acc, member):
        score, sid = member
        return self.merge_accumulators([acc, (1, score, sid)])

    def merge_accumulators(self, accumulators):
        count, best, best_id = 0, None, None
        for n, score, sid in accumulators:
            count += n
            if score is not None and (best is None or score > best or (score == best and sid < best_id)):
                best, best_id = score, sid
        return count, best, best_id

    def extract_output(self, acc):
        return acc


def codebook_rows(level: int, centroids: np.ndarray, stats: dict | None = None) -> Iterator[dict]:
    """Every code of one level as a row, with its scene count and most central scene."""
    for code, centroid in enumerate(centroids):
        count, score, sid = (stats or {}).get((level, code), (0, None, None))
        yield {"level": level, "code": code, "centroid": centroid.tolist(), "scene_count": count,
               "representative_scene_id": sid, "representative_score": score}


# --- Long documents, by window -----------------------------------------------------------------------


def document_length(item) -> tuple[str, int]:
    """(doc_id, units) as far as one part shows it; the maximum over parts is the document's length."""
    doc_id, part = item
    if isinstance(part, SpilledPart):
        return doc_id, int(part.rows.last_key[1]) + 1
    return doc_id, int(pc.max(part[0].column("position")).as_py()) + 1


def window_parts(item, long_documents: dict, size: int = WINDOW_UNITS):
    """A part keyed by (doc_id, window, windows): split by window for a document in
    ``long_documents`` (doc_id -> units, those of ``2 * size`` units or more), else (doc_id, 0, 1)."""
    doc_id, part = item
    n = long_documents.get(doc_id)
    if n is None:
        yield (doc_id, 0, 1), part
        return
    count = len(windows(n, size))
    if isinstance(part, SpilledPart):  # its rows are sorted by position: each window's are a span of them
        positions = part.rows.load(["position"]).column("position").to_numpy()
        window = window_of(positions, n, size)
        present, starts = np.unique(window, return_index=True)
        for w, start, stop in zip(present, starts, [*starts[1:], len(window)]):
            rows = part.rows.rows(int(start), int(stop), (doc_id, int(positions[start])), (doc_id, int(positions[stop - 1])))
            yield (doc_id, int(w), count), replace(part, rows=rows)
        return
    rows, tokens, vectors = part
    window = window_of(rows.column("position").to_numpy(), n, size)
    for w in np.unique(window):
        take = np.flatnonzero(window == w)
        sub = VectorRows(vectors.path, vectors.rows[take], vectors.dtype) if isinstance(vectors, VectorRows) else vectors[take]
        yield (doc_id, int(w), count), (rows.take(take), tokens[take], sub)


def gather_window(parts, first: int) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """One window's parts in position order, checked to hold consecutive units from ``first`` on."""
    occurrences, tokens, vectors = gather_rows(parts)
    positions = occurrences.column("position").to_numpy()
    if not np.array_equal(positions, np.arange(first, first + len(positions))):
        raise ValueError(f"the window from position {first} does not hold consecutive positions")
    return occurrences, tokens, vectors


@dataclass(frozen=True)
class WindowSummary:
    """What one window of a long document tells the document pass."""

    window: int
    units: int
    cuts: list[np.ndarray]  # starts of each level cut inside the window (window_levels rebuilds them)
    top: Level  # its top inside level, without gists; or, with the root at level 1, its piece
    hyperwords: np.ndarray | None  # int32; only with the root at level 1, whose child codes they are


def window_keys(doc_id: str, level: int, window: int, count: int) -> list[str]:
    """Sample keys of scenes cut inside a window. Their index in the document is not known there,
    so the key hashes the window and the index in it: still uniform and the same on every runner."""
    return [hashlib.blake2b(f"{doc_id}#{level}.w{window}.{i}".encode(), digest_size=8).hexdigest() for i in range(count)]


def window_scenes(key, parts, cfg: SceneConfig, size: int, depth: int):
    """One window of a long document -> ((doc_id, WindowSummary), [(level, (sample keys, centroids))])."""
    doc_id, window, _ = key
    first = window * size
    occurrences, tokens, vectors = gather_window(parts, first)
    if depth == 0:
        piece = window_piece(vectors, tokens, first)
        hyperwords = occurrences.column("hyperword").to_numpy().astype(np.int32)
        return (doc_id, WindowSummary(window, len(tokens), [], piece, hyperwords)), []
    levels = window_levels(vectors, tokens, first, cfg, depth, with_gists=False)
    cuts = [lv.starts - (first if lv.level == 1 else 0) for lv in levels]
    samples = [(lv.level, (window_keys(doc_id, lv.level, window, len(lv)), lv.centroids)) for lv in levels]
    return (doc_id, WindowSummary(window, len(tokens), cuts, levels[-1], None)), samples


@dataclass(frozen=True)
class WindowedTree:
    """A long document after the window pass: its levels above the windows, and what each window needs
    to rebuild and code its own levels."""

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


def build_tree(doc_id: str, summaries, cfg: SceneConfig, size: int) -> WindowedTree:
    """A long document's window summaries -> its levels above the windows (:func:`scenes.upper_levels`)."""
    summaries = sorted(summaries, key=lambda s: s.window)
    if [s.window for s in summaries] != list(range(len(summaries))):
        raise ValueError(f"document {doc_id!r}: windows {[s.window for s in summaries]} are not 0..{len(summaries) - 1}")
    base, above = upper_levels([s.top for s in summaries], cfg, size)
    hyperwords = None if summaries[0].hyperwords is None else np.concatenate([s.hyperwords for s in summaries])
    return WindowedTree(doc_id, sum(s.units for s in summaries), size, [s.cuts for s in summaries], base, above, hyperwords)


def tree_level_centroids(tree: WindowedTree) -> Iterator[tuple[int, tuple[list[str], np.ndarray]]]:
    """As :func:`level_centroids`, for the levels above a long document's windows."""
    for lv in tree.above:
        keys = [hashlib.blake2b(scene_id(tree.doc_id, lv.level, i).encode(), digest_size=8).hexdigest() for i in range(len(lv))]
        yield lv.level, (keys, lv.centroids)


@dataclass(frozen=True)
class WindowCodes:
    """What one window of a long document needs, once the levels above it are coded."""

    first: int  # the window's units: [first, end)
    end: int
    cuts: list[np.ndarray]  # starts of each level cut inside it
    offsets: list[int]  # index in the document of its first scene at each of those levels
    top_codes: np.ndarray  # codes and scores of its scenes at its top inside level, coded in the
    top_scores: np.ndarray  # document pass with the whole level (FAISS rounds by batch shape)
    above: list[tuple]  # (level, index of the first, firsts, codes) of the scenes above the windows over it, root level first
    spans: list[tuple]  # the same scenes as scenes.gist_candidates takes them


def _list_array(offsets, values: pa.Array) -> pa.ListArray:
    return pa.ListArray.from_arrays(pa.array(np.asarray(offsets, dtype=np.int32)), values)


def scene_table(doc_id: str, level: int, first_index: int, parents, lv: Level, codes, scores, gists, child_counts, child_codes) -> pa.Table:
    """Scenes of one level of one document as a ``scenes`` table: ``lv``'s rows, the first of them
    at index ``first_index``; ``parents`` their parents' indices (None at the root); ``gists`` None
    for empty ones (filled in later); ``child_codes`` all their children's codes, in order."""
    n = len(lv)
    index = np.arange(first_index, first_index + n)
    if parents is None:
        parent_ids = pa.nulls(n, pa.string())
    else:
        parent_ids = pa.array([scene_id(doc_id, level + 1, int(p)) for p in parents], pa.string())
    gist_counts = [len(g) for g in gists] if gists is not None else [0] * n
    centroids = lv.centroids
    columns = {
        "scene_id": pa.array([scene_id(doc_id, level, int(x)) for x in index], pa.string()),
        "doc_id": pa.array([doc_id] * n, pa.string()),
        "level": pa.array(np.full(n, level, np.int32)),
        "index": pa.array(index.astype(np.int32)),
        "parent_scene_id": parent_ids,
        "first_position": pa.array(lv.firsts.astype(np.int64)),
        "last_position": pa.array(lv.lasts.astype(np.int64)),
        "child_count": pa.array(np.asarray(child_counts, np.int32)),
        "token_count": pa.array(lv.tokens.astype(np.int64)),
        "centroid": _list_array(np.arange(0, centroids.size + 1, centroids.shape[1]), pa.array(centroids.ravel())),
        "code": pa.array(np.asarray(codes, np.int32)),
        "code_score": pa.array(np.asarray(scores, np.float32)),
        "gist": _list_array(np.append(0, np.cumsum(gist_counts)), pa.array([p for g in gists or [] for p in g], pa.int64())),
        "child_codes": _list_array(np.append(0, np.cumsum(child_counts)), pa.array(np.asarray(child_codes, np.int32))),
    }
    return pa.Table.from_arrays([columns[f.name] for f in SCENES], schema=SCENES)


def _slice(lv: Level, i: int, j: int) -> Level:
    return Level(lv.level, lv.starts[i:j], lv.firsts[i:j], lv.lasts[i:j], lv.tokens[i:j], lv.centroids[i:j], lv.norms[i:j],
                 None if lv.gists is None else lv.gists[i:j])


def encode_tree(tree: WindowedTree, codebooks: dict[int, np.ndarray]):
    """Codes for the scenes above a long document's windows, and for its windows' top inside level.

    Returns (the table of the scenes above the windows, gists empty, [(level, code, scene_id,
    score)] of those scenes, [((doc_id, window, windows), WindowCodes)]).
    """
    codes: dict[int, np.ndarray] = {}
    scores: dict[int, np.ndarray] = {}
    for lv in ([tree.base] if tree.depth else []) + tree.above:
        codes[lv.level], scores[lv.level] = assign(lv.centroids, codebooks[lv.level])
    below = tree.hyperwords if tree.depth == 0 else codes[tree.depth]
    tables, members = [], []
    for k, lv in enumerate(tree.above):
        above = tree.above[k + 1] if k + 1 < len(tree.above) else None
        ends = lv.lasts + 1 if lv.level == 1 else lv.ends(len(below))
        for i in range(0, len(lv), tree.size):  # tables of at most ``size`` rows
            j = min(i + tree.size, len(lv))
            parents = None if above is None else np.searchsorted(above.starts, np.arange(i, j), side="right") - 1
            part = _slice(lv, i, j)
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


def semantic_ids(positions: np.ndarray, codes, hyperwords: np.ndarray) -> pa.ListArray:
    """For each position: the codes of the scenes holding it, from the root down (``codes``: per
    level, root first, (firsts, codes) of scenes covering the positions), then its hyperword."""
    columns = [level_codes[np.searchsorted(firsts, positions, side="right") - 1] for firsts, level_codes in codes]
    columns.append(hyperwords)
    matrix = np.stack(columns, axis=1).astype(np.int32)
    return _list_array(np.arange(0, matrix.size + 1, matrix.shape[1]), pa.array(matrix.ravel()))


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
    levels = window_levels(vectors, tokens, wc.first, cfg, depth, wc.cuts) if depth else []
    codes, scores = {0: hyperwords}, {}
    for lv in levels[:-1]:
        codes[lv.level], scores[lv.level] = assign(lv.centroids, codebooks[lv.level])
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
    column = _list_array(np.append(0, np.cumsum([len(g) for g in gists])), pa.array([p for g in gists for p in g], pa.int64()))
    return pending.set_column(SCENES.get_field_index("gist"), SCENES.field("gist"), column)


class _SceneDoFn(beam.DoFn):
    """A whole document's tree (main output), or one window of a long one: its summary (``windows``)
    and its codebook samples (``samples``)."""

    def __init__(self, cfg: SceneConfig, size: int):
        self._cfg, self._size, self._depth = cfg, size, window_depth(cfg, size)

    def setup(self):
        self._progress = Progress("scenes", "documents or windows")

    def process(self, item):
        key, parts = item
        doc_id, _, count = key
        with self._progress.timed(1):
            if count == 1:
                doc, summary, samples = gather_document(doc_id, parts, self._cfg), None, []
            else:
                doc, (summary, samples) = None, window_scenes(key, parts, self._cfg, self._size, self._depth)
        if doc is not None:
            yield doc
        else:
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
    def process(self, doc: DocumentScenes, codebooks: dict):
        with stage_timer("encode levels", doc.occurrences.num_rows):
            scenes, occurrences, members = encode_document(doc, codebooks)
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
    """One window of a long document, coded. With ``spill_to``, its occurrences and scenes go to
    files there and travel to the writer as references (``transforms/spill.py``)."""

    def __init__(self, cfg: SceneConfig, spill_to: str | None = None):
        self._cfg, self._spill_to = cfg, spill_to

    def process(self, item, codebooks: dict):
        (doc_id, window, _), joined = item
        (codes,) = joined["codes"]
        with stage_timer("encode windows", codes.end - codes.first):
            tables, occurrences, members, candidates = encode_window(joined["parts"], codes, self._cfg, codebooks)
            if self._spill_to is not None:
                name = f"{scratch_name(doc_id)}-w{window:06d}.arrow"
                (occurrences,) = spill_tables([occurrences], os.path.join(self._spill_to, f"occurrences-{name}"), SORT_KEYS["occurrences"])
                tables = spill_tables([t for t in tables if t.num_rows], os.path.join(self._spill_to, f"scenes-{name}"), SORT_KEYS["scenes"])
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

    ``spill_to``, a scratch folder on the local disk, keeps a long document's rows out of the local
    runner's memory: they cross the gathers and reach the writer as references to files there
    (``transforms/spill.py``). Only buckets whose vectors are in a local file are spilled (in a
    refresh, the fresh units'; its known units carry their vectors, and their rows, as values).
    Elsewhere it is ignored and the values travel.
    """

    def __init__(self, cfg: SceneConfig, codebook_sizes: tuple[int, ...] = (), seed: int = 0, frozen=None,
                 window_units: int | None = None, spill_to: str | None = None):
        super().__init__()
        self._cfg, self._sizes, self._seed, self._frozen = cfg, tuple(codebook_sizes), seed, frozen
        self._spill_to = spill_to if is_local(spill_to) else None
        window_units = WINDOW_UNITS if window_units is None else window_units
        if isinstance(window_units, bool) or not isinstance(window_units, int) or window_units < 1:
            raise ValueError(f"window_units must be a whole number of at least 1, not {window_units!r}")
        window_depth(cfg, window_units)  # a clear error now, not on a worker, if no window can hold a scene
        self._window = window_units

    def expand(self, buckets):
        size, cfg = self._window, self._cfg
        by_document = buckets | "ByDocument" >> beam.FlatMap(document_parts, spill_to=self._spill_to)
        long_documents = (
            by_document
            | "PartLengths" >> beam.Map(document_length)
            | "Lengths" >> beam.CombinePerKey(max)
            | "LongOnly" >> beam.Filter(lambda kv: kv[1] >= 2 * size)
        )
        parts = by_document | "ByWindow" >> beam.FlatMap(window_parts, beam.pvalue.AsDict(long_documents), size=size)
        gathered = (
            parts
            | "Gather" >> beam.GroupByKey()
            | "Scenes" >> beam.ParDo(_SceneDoFn(cfg, size)).with_outputs("windows", "samples", main="docs")
        )
        docs = gathered.docs
        trees = (
            gathered.windows
            | "WindowsByDocument" >> beam.GroupByKey()
            | "ScenesAboveWindows" >> beam.ParDo(_TreeDoFn(cfg, size))
        )
        codebooks = self._frozen if self._frozen is not None else (
            (docs | "LevelCentroids" >> beam.FlatMap(level_centroids),
             trees | "TreeLevelCentroids" >> beam.FlatMap(tree_level_centroids),
             gathered.samples)
            | "AllLevelCentroids" >> beam.Flatten()
            | "ByLevel" >> beam.CombinePerKey(LevelSample())
            | "Train" >> beam.MapTuple(train_level, sizes=self._sizes, seed=self._seed)
        )
        encoded = docs | "Encode" >> beam.ParDo(_EncodeDoFn(), beam.pvalue.AsDict(codebooks)).with_outputs(
            "occurrences", "members", main="scenes")
        coded = trees | "EncodeTrees" >> beam.ParDo(_EncodeTreeDoFn(), beam.pvalue.AsDict(codebooks)).with_outputs(
            "members", "windows", main="pending")
        windowed = (
            {"parts": parts | "WindowedOnly" >> beam.Filter(lambda kv: kv[0][2] > 1), "codes": coded.windows}
            | "JoinWindows" >> beam.CoGroupByKey()
            | "EncodeWindows" >> beam.ParDo(_EncodeWindowDoFn(cfg, self._spill_to), beam.pvalue.AsDict(codebooks)).with_outputs(
                "scenes", "members", "candidates", main="occurrences")
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


def level_stats(scenes):
    """("level_<L>_scenes", scenes) and ("level_<L>_tokens", tokens) pairs of one document's scenes
    table (or spilled rows of one), summed over documents into the manifest's counts."""
    scenes = as_table(scenes, ["level", "token_count"])
    levels = scenes.column("level").to_numpy()
    tokens = scenes.column("token_count").to_numpy()
    for level in np.unique(levels):
        yield f"level_{level}_scenes", int((levels == level).sum())
        yield f"level_{level}_tokens", int(tokens[levels == level].sum())
