"""Everything the report page shows, read from a store version as plain Python and numpy values;
the figures themselves are computed by :mod:`hyperscene.transforms.report_data`."""

from __future__ import annotations

from hyperscene.transforms import report_data as rd
from hyperscene.transforms.errors import Errors, StoreError
from hyperscene.transforms.store.reader import StoreVersion

DEFAULT_MAX_POINTS = 2000
DEFAULT_GROUPS = 10
DEFAULT_TREES = 3
SAMPLES_PER_GROUP = 3


def threshold_of(store: StoreVersion) -> tuple[float, str]:
    """The near-duplicate threshold the version was compressed with, and where it comes from."""
    value = store.manifest.get("config", {}).get("near_dup_threshold")
    if value is not None:
        return float(value), "the manifest's config"
    # Only for a manifest without it: near_dup imports Beam's ML modules and torch (seconds).
    from hyperscene.transforms.model_catalog import DEFAULT_MODEL
    from hyperscene.transforms.near_dup import default_threshold

    model = store.manifest.get("model", {})
    embedder = model.get("embedder", "torch")
    return default_threshold(model.get("name", DEFAULT_MODEL), embedder), f"the default for the {embedder} embedder"


def live_documents(store: StoreVersion):
    """The documents table without rows marked deleted (format 3 and later; older stores have no
    such column and no deleted documents)."""
    import pyarrow.compute as pc

    docs = store.read("documents")
    if "deleted" in docs.column_names:
        docs = docs.filter(pc.invert(pc.fill_null(docs["deleted"], False)))
    return docs


def _centroids(column):
    """A list<float> column of equal-length vectors -> (rows, dim) float32 array."""
    import numpy as np
    import pyarrow.compute as pc

    if len(column) == 0:
        return np.zeros((0, 0), np.float32)
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    if lengths.min() != lengths.max():
        raise StoreError(Errors.E413)
    flat = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.float32)
    return flat.reshape(len(column), int(lengths[0]))


def gather(store: StoreVersion, max_points: int = DEFAULT_MAX_POINTS, groups: int = DEFAULT_GROUPS,
           trees: int = DEFAULT_TREES, doc_ids: list[str] | None = None) -> dict:
    """Everything the page shows, as plain Python and numpy values."""
    import numpy as np

    from hyperscene.transforms.store.documents import read_table
    from hyperscene.pipelines.inspect_store import document_scenes, summarise

    summary = summarise(store)
    data: dict = {"summary": summary, "manifest": store.manifest}

    hw = store.read("hyperwords", ["hyperword", "centroid", "unit_count", "occurrence_count", "representative_text"])
    unit_counts = hw["unit_count"].to_numpy()
    data["cluster_bins"] = rd.size_bins(unit_counts)
    data["cluster_spread"] = rd.spread(unit_counts[unit_counts > 0])
    data["empty_clusters"] = int((unit_counts == 0).sum())

    live = unit_counts > 0
    ids, sizes, occ = hw["hyperword"].to_numpy()[live], unit_counts[live], hw["occurrence_count"].to_numpy()[live]
    texts = [t for t, keep in zip(hw["representative_text"].to_pylist(), live) if keep]
    projection = rd.pca_2d(_centroids(hw["centroid"])[live])
    shown = np.lexsort((ids, -sizes))[:max_points]  # the largest first, ties by hyperword id
    data["map"] = {
        "explained": projection.explained, "total": len(ids),
        "points": [{"hyperword": int(ids[i]), "x": float(projection.coords[i, 0]), "y": float(projection.coords[i, 1]),
                    "units": int(sizes[i]), "occurrences": int(occ[i]), "text": texts[i] or ""} for i in shown],
    }

    units = store.read("units", ["token_count", "occurrence_count"])
    scenes = store.read("scenes", ["level", "token_count"]) if store.files("scenes") else None
    data["tokens_by_level"] = rd.tokens_by_level(
        units["token_count"].to_numpy(), units["occurrence_count"].to_numpy(),
        scenes["level"].to_numpy() if scenes is not None else np.zeros(0, np.int32),
        scenes["token_count"].to_numpy() if scenes is not None else np.zeros(0, np.int64))
    data["compression"] = rd.compression_rows(summary["levels"])

    prov = store.read("provenance", ["unit_id", "canonical_unit_id", "score"])
    scores = prov["score"].to_numpy()
    threshold, source = threshold_of(store)
    data["near_dup"] = {"scores": scores, "threshold": threshold, "threshold_source": source}
    members, canonicals = prov["unit_id"].to_pylist(), prov["canonical_unit_id"].to_pylist()
    involved = sorted(set(members) | set(canonicals))
    rows = read_table(store, "units", ["unit_id", "occurrence_count"], {"unit_id": involved}) if involved else None
    occurrences = dict(zip(rows["unit_id"].to_pylist(), rows["occurrence_count"].to_pylist())) if rows is not None else {}
    top = rd.near_dup_groups(members, canonicals, scores, occurrences, groups, SAMPLES_PER_GROUP)
    wanted = sorted({g["canonical_unit_id"] for g in top} | {s["unit_id"] for g in top for s in g["samples"]})
    text_rows = read_table(store, "units", ["unit_id", "text"], {"unit_id": wanted}) if wanted else None
    text_of = dict(zip(text_rows["unit_id"].to_pylist(), text_rows["text"].to_pylist())) if text_rows is not None else {}
    for g in top:
        g["text"] = text_of.get(g["canonical_unit_id"], "")
        for s in g["samples"]:
            s["text"] = text_of.get(s["unit_id"], "")
    data["groups"] = {"top": top, "total": len({c for c in canonicals})}

    docs = live_documents(store)
    if doc_ids:
        chosen = list(dict.fromkeys(doc_ids))
    else:
        ranked = sorted(zip(docs["doc_id"].to_pylist(), docs["unit_count"].to_pylist()), key=lambda d: (-d[1], d[0]))
        chosen = [d for d, n in ranked if n > 0][:trees]
    data["trees"] = []
    for doc_id in chosen:
        doc, doc_scenes = document_scenes(store, doc_id)
        data["trees"].append({"doc": doc, "scenes": doc_scenes})
    data["documents"] = docs.num_rows
    return data
