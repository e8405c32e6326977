"""Retrain: new codebooks for a store whose units have drifted from them, with ids kept where they can be.

Every codebook (the hyperwords, and each scene level's) is trained again by k-means started from
the stored centroids (``codebook.train_codebook(init=...)``), so code i stays near where it was;
the stored vectors are used as they are (a store of pq codes has its units embedded again instead:
pipelines/retrain.py), and no scene is cut again. The store
keeps no scene centroids: each is computed again as compress computes it, the token-weighted mean
of its units' vectors (:func:`with_scene_centroids`). Every unit is assigned again, near-duplicate groups are found again within the new
clusters (the rule of compress), and every scene gets its new code, its children's codes and every
occurrence its new semantic id (:func:`recode_document`). The id-stability report counts how many
units kept their hyperword and how many occurrences kept their semantic id.
"""

from __future__ import annotations

import hashlib
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hyperscene.schemas import TABLES
from hyperscene.schemas.unit_bucket import UnitBucket
from hyperscene.transforms.codebook import as_stored, assign, default_codebook_size, train_codebook
from hyperscene.transforms.embed import load_vectors
from hyperscene.transforms.progress import stage_timer
from hyperscene.transforms.scenes.cut import normalise
from hyperscene.transforms.scenes.tree import Spans
from hyperscene.transforms.store.layers import latest_units
from hyperscene.transforms.store.vector_codec import decode, vector_table

UNIT_COLUMNS = ["unit_id", "text", "occurrence_count", "token_count", "word_count"]
OCCURRENCE_COLUMNS = ["doc_id", "position", "unit_id", "separator", "semantic_id"]
LEVEL_SAMPLE = 200_000


def bucket_from_store(item, dimension: int, embedded_again: bool = False) -> Iterator[UnitBucket]:
    """(bucket, {"units", "vectors", "occurrences"}: stored rows of one bucket) -> a UnitBucket with
    the stored vectors (none with ``embedded_again``: Embed gives them), and the stored hyperword and
    semantic ids kept as ``previous_*`` columns."""
    bucket, joined = item
    units = list(joined["units"])
    if not units:
        return
    units = latest_units(units).sort_by("unit_id")  # each unit's newest row, when a refresh wrote some
    vectors = pa.concat_tables(list(joined["vectors"])) if joined["vectors"] else TABLES["vectors"].empty_table()
    rows = pc.index_in(units["unit_id"], value_set=vectors["unit_id"])
    if rows.null_count:
        missing = units["unit_id"].filter(pc.is_null(rows))[0].as_py()
        raise ValueError(f"the store's vectors table lacks unit {missing}: the store is damaged (check it with hyperscene verify)")
    if embedded_again:
        matrix = None
    else:
        matrix = decode(vectors.take(rows)) if len(units) else np.zeros((0, dimension), np.float32)
    occurrences = list(joined["occurrences"])
    occurrences = pa.concat_tables(occurrences) if occurrences else TABLES["occurrences"].empty_table().select(OCCURRENCE_COLUMNS)
    occurrences = occurrences.rename_columns([c if c != "semantic_id" else "previous_semantic_id" for c in occurrences.column_names])
    at = pc.index_in(occurrences["unit_id"], value_set=units["unit_id"])
    occurrences = occurrences.append_column("previous_hyperword", pc.take(units["hyperword"], at))
    kept = units.select(UNIT_COLUMNS).append_column("previous_hyperword", units["hyperword"])
    yield UnitBucket(bucket, kept, occurrences, vectors=matrix)


def vectors_with_hyperwords(item) -> tuple[int, pa.Table]:
    """(bucket, {"vectors": stored vectors rows, "units": unit_id and new hyperword}) -> the bucket's
    vectors rows with the new hyperwords, every code as stored: a retrain embeds nothing, and
    coding decoded vectors again would only add error."""
    bucket, joined = item
    vectors = pa.concat_tables(list(joined["vectors"])).sort_by("unit_id")
    units = pa.concat_tables(list(joined["units"]))
    at = pc.index_in(vectors["unit_id"], value_set=units["unit_id"])
    column = vectors.schema.get_field_index("hyperword")
    return bucket, vectors.set_column(column, "hyperword", pc.take(units["hyperword"], at))


def unit_rows(bucket: UnitBucket) -> pa.Table:
    return bucket.units.select(["unit_id", "text", "occurrence_count", "token_count", "word_count", "hyperword", "hyperword_score"])


def unit_stability(bucket: UnitBucket) -> Iterator[tuple[str, float]]:
    same = pc.equal(bucket.units["hyperword"], bucket.units["previous_hyperword"])
    yield "_units_kept_hyperword", int(pc.sum(same.cast(pa.int64())).as_py() or 0)
    yield "_units_compared", bucket.units.num_rows
    # The baseline of later drift: over the units in use (distinct_units), as compress measures it.
    scores = bucket.units["hyperword_score"].to_numpy()
    used = bucket.units["occurrence_count"].to_numpy() > 0
    yield "_hyperword_distance_total", float(np.sum(1.0 - scores[used], dtype=np.float64))


def document_occurrences(bucket: UnitBucket) -> Iterator[tuple[str, pa.Table]]:
    """A bucket's occurrences, with their new hyperwords and, for the scene centroids, their units'
    token counts and vectors (int8, a quarter of float32's bytes on the way), split by document."""
    occurrences = bucket.occurrences
    rows = pc.index_in(occurrences["unit_id"], value_set=bucket.units["unit_id"])
    coded = vector_table(occurrences["unit_id"], occurrences["hyperword"], load_vectors(bucket)[rows.to_numpy()], "int8")
    occurrences = (occurrences.append_column("token_count", pc.take(bucket.units["token_count"], rows))
                   .append_column("vector", coded["vector"]).append_column("scale", coded["scale"]))
    docs = pc.dictionary_encode(occurrences["doc_id"]).combine_chunks()
    codes = docs.indices.to_numpy()
    for code in np.unique(codes):
        yield docs.dictionary[code].as_py(), occurrences.filter(pa.array(codes == code))


def by_document(table: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    docs = pc.dictionary_encode(table["doc_id"]).combine_chunks()
    codes = docs.indices.to_numpy()
    for code in np.unique(codes):
        yield docs.dictionary[code].as_py(), table.filter(pa.array(codes == code))


def with_scene_centroids(item) -> Iterator[tuple]:
    """(doc_id, {"occurrences": [...], "scenes": [...]}) -> (doc_id, its occurrences by position or
    None, its scenes by level and index, their centroids or None): a scene's centroid as compress
    computes it (scenes/tree.py), the normalised token-weighted sum of its units' vectors."""
    doc_id, joined = item
    occurrences, scenes = list(joined["occurrences"]), list(joined["scenes"])
    scenes = pa.concat_tables(scenes) if scenes else TABLES["scenes"].empty_table()
    scenes = scenes.sort_by([("level", "ascending"), ("index", "ascending")])
    if not occurrences:  # an empty document: no units, so no codes to change
        yield doc_id, None, scenes, None
        return
    occurrences = pa.concat_tables(occurrences).sort_by("position")
    spans = Spans(decode(occurrences.select(["vector", "scale"])), occurrences["token_count"].to_numpy())
    sums = spans.sums(scenes["first_position"].to_numpy(), scenes["last_position"].to_numpy())
    yield doc_id, occurrences, scenes, as_stored(normalise(sums))


def level_samples(item) -> Iterator[tuple[int, tuple[np.ndarray, np.ndarray]]]:
    """(level, (sample keys, centroids)) of one document's scenes (:func:`with_scene_centroids`): keys
    are hashes of scene ids, as levels.level_centroids orders a level's sample."""
    _, _, scenes, centroids = item
    if centroids is None:
        return
    levels = scenes["level"].to_numpy()
    ids = scenes["scene_id"].to_pylist()
    for level in np.unique(levels):
        rows = np.flatnonzero(levels == level)
        keys = np.asarray([hashlib.blake2b(ids[i].encode(), digest_size=8).hexdigest() for i in rows], dtype="U16")
        yield int(level), (keys, centroids[rows])


def retrain_level(level: int, parts, init: dict[int, np.ndarray], sizes: tuple[int, ...] = (), seed: int = 0,
                  sample: int = LEVEL_SAMPLE) -> tuple[int, np.ndarray]:
    parts = list(parts)
    keys = np.concatenate([k for k, _ in parts])
    centroids = np.concatenate([c for _, c in parts])
    order = np.argsort(keys, kind="stable")[:sample]
    size = sizes[level - 1] if level <= len(sizes) else default_codebook_size(len(keys))
    with stage_timer("retrain level codebooks", len(order)):
        return level, train_codebook(centroids[order], size, seed + level, init=init.get(level))


def _list_column(matrix_rows: list[np.ndarray], type_) -> pa.ListArray:
    lengths = np.array([len(r) for r in matrix_rows], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = np.concatenate(matrix_rows) if len(matrix_rows) else np.zeros(0)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type_), type=pa.list_(pa.field("element", type_)))


def recode_document(doc_id: str, occurrences: pa.Table, scenes: pa.Table, centroids: np.ndarray, codebooks: dict[int, np.ndarray]):
    """One document's new codes (its occurrences by position, its scenes by level and index with their
    centroids, as :func:`with_scene_centroids` gives them): its scenes rows with ``code``,
    ``code_score`` and ``child_codes`` from the new codebooks, and its occurrences with their new
    ``semantic_id``.

    Returns (scenes, occurrences, [(level, code, scene_id, score)], (kept semantic ids, compared)).
    """
    hyperwords = occurrences["hyperword"].to_numpy().astype(np.int32)
    n = len(hyperwords)
    levels = scenes["level"].to_numpy()
    firsts = scenes["first_position"].to_numpy()
    lasts = scenes["last_position"].to_numpy()
    codes = np.zeros(len(levels), np.int32)
    scores = np.zeros(len(levels), np.float32)
    children: list[np.ndarray] = [np.zeros(0, np.int32)] * len(levels)
    lower_first, lower_codes = np.arange(n), hyperwords
    by_level = {}
    for level in np.unique(levels):
        rows = np.flatnonzero(levels == level)
        ids, sc = assign(centroids[rows], codebooks[int(level)])
        codes[rows], scores[rows] = ids, sc
        for r in rows:  # the children of a scene are the lower-level items whose first unit it spans
            lo, hi = np.searchsorted(lower_first, [firsts[r], lasts[r] + 1])
            children[r] = lower_codes[lo:hi].astype(np.int32)
        lower_first, lower_codes = firsts[rows], ids
        by_level[int(level)] = (firsts[rows], ids)

    columns = [by_level[level][1][np.searchsorted(by_level[level][0], np.arange(n), side="right") - 1]
               for level in sorted(by_level, reverse=True)] + [hyperwords]
    matrix = np.stack(columns, axis=1).astype(np.int32) if n else np.zeros((0, len(columns)), np.int32)
    semantic = pa.ListArray.from_arrays(pa.array(np.arange(0, matrix.size + 1, max(matrix.shape[1], 1), dtype=np.int32)),
                                        pa.array(matrix.ravel(), pa.int32()))
    previous = occurrences["previous_semantic_id"].to_pylist()
    kept = sum(1 for old, new in zip(previous, matrix.tolist()) if old == new)

    scenes = scenes.set_column(scenes.schema.get_field_index("code"), "code", pa.array(codes, pa.int32()))
    scenes = scenes.set_column(scenes.schema.get_field_index("code_score"), "code_score", pa.array(scores, pa.float32()))
    scenes = scenes.set_column(scenes.schema.get_field_index("child_codes"), "child_codes", _list_column(children, pa.int32()))
    out = occurrences.select(["doc_id", "position", "unit_id", "separator", "hyperword"]).append_column("semantic_id", semantic)
    members = list(zip(levels.tolist(), codes.tolist(), scenes["scene_id"].to_pylist(), scores.tolist()))
    return scenes, out, members, (kept, n)


def stability_section(stats: dict) -> dict:
    units, occurrences = stats.get("_units_compared", 0), stats.get("_occurrences_compared", 0)
    kept_units, kept_ids = stats.get("_units_kept_hyperword", 0), stats.get("_occurrences_kept_semantic_id", 0)
    return {
        "units": units, "units_kept_hyperword": kept_units,
        "units_kept_hyperword_share": round(kept_units / units, 4) if units else None,
        "occurrences": occurrences, "occurrences_kept_semantic_id": kept_ids,
        "occurrences_kept_semantic_id_share": round(kept_ids / occurrences, 4) if occurrences else None,
    }


def complete_sections(sections: dict, stats: dict) -> dict:
    """A retrain's manifest sections once its statistics are in: the new codebook's baseline and the
    ids that stayed."""
    from hyperscene.transforms.codebook import codebook_baseline

    sections = codebook_baseline(sections, stats)
    retrain = sections.get("retrain")
    if retrain is not None and retrain.get("stability") is None:
        retrain["stability"] = stability_section(stats)
    return sections
