"""The three export formats, each from a store version to records in shard writers: distilled text,
hyperword code sequences with their vocabulary and centroids, and chat pairs at one scene level."""

from __future__ import annotations

from apache_beam.io.filesystems import FileSystems

from hyperscene.pipelines.decompress import gist_text
from hyperscene.pipelines.export.options import Options
from hyperscene.pipelines.export.reading import at_level, document_batches, read_units, scene_rows, verified_documents
from hyperscene.transforms import export as ex
from hyperscene.transforms.progress import Progress
from hyperscene.transforms.store.documents import read_table
from hyperscene.transforms.store.reader import StoreVersion


class Writers:
    """One :class:`ShardWriter` per split, opened on the first record of that split."""

    def __init__(self, out: str, file_format: str, schema, shard_bytes: int, held_out: set[str]):
        self._args = (out, file_format, schema, shard_bytes)
        self._held_out = held_out
        self._writers: dict[str, ex.ShardWriter] = {}
        self.rows = {split: 0 for split in ex.SPLITS}

    def add(self, doc_id: str, record: dict) -> None:
        split = "test" if doc_id in self._held_out else "train"
        if split not in self._writers:
            out, file_format, schema, shard_bytes = self._args
            self._writers[split] = ex.ShardWriter(out, split, file_format, schema, shard_bytes)
        self._writers[split].add(record)
        self.rows[split] += 1

    def close(self) -> list[dict]:
        return [f for split in ex.SPLITS if split in self._writers for f in self._writers[split].close()]


# Built with pyarrow passed in, which is imported where it is used.
SCHEMAS = {
    "text": lambda pa: pa.schema([("text", pa.string()), ("doc_id", pa.string()), ("units_in", pa.int64()),
                                  ("units_out", pa.int64()), ("tokens_in", pa.int64()), ("tokens_out", pa.int64())]),
    "hyperwords": lambda pa: pa.schema([("text", pa.string()), ("ids", pa.list_(pa.int32())), ("doc_id", pa.string()),
                                        ("level", pa.int32()), ("tokens_in", pa.int64())]),
    "pairs": lambda pa: pa.schema([("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
                                   ("task", pa.string()), ("doc_id", pa.string()), ("scene_id", pa.string()),
                                   ("level", pa.int32())]),
}


def export_text(store: StoreVersion, opts: Options, documents, writers: Writers, progress: Progress,
                mismatches: list[str]) -> dict:
    units = read_units(store, opts.tokenizer)
    provenance = store.read("provenance", ["unit_id", "canonical_unit_id"])
    deduper = ex.Deduper(dict(zip(provenance["unit_id"].to_pylist(), provenance["canonical_unit_id"].to_pylist())),
                         opts.dedup_scope, opts.min_dedup_tokens)
    totals = {"tokens_in": 0, "tokens_out": 0, "units_in": 0, "units_out": 0}
    for doc, pieces, unit_ids in verified_documents(store, documents, units, mismatches, progress):
        tokens = [units.tokens_of[u] for u in unit_ids]
        keep = deduper.keep(unit_ids, tokens)
        record = {"text": ex.distil(doc["prefix"], pieces, keep), "doc_id": doc["doc_id"],
                  "units_in": len(unit_ids), "units_out": sum(keep),
                  "tokens_in": sum(tokens), "tokens_out": sum(t for t, k in zip(tokens, keep) if k)}
        writers.add(doc["doc_id"], record)
        for key in totals:
            totals[key] += record[key]
    return {**totals, "counted_with": units.counted_with}


def _codebook_rows(store: StoreVersion, level: int) -> tuple[list[dict], dict[int, list[float]]]:
    """A level's codebook as rows (``code``, ``representative_id``, ``representative_text``) and
    code -> centroid. Level 0: the hyperwords; above: the scene codebooks, represented by the gist
    of their representative scene."""
    if level == 0:
        t = store.read("hyperwords", ["hyperword", "centroid", "representative_unit_id", "representative_text"]).to_pylist()
        rows = [{"code": r["hyperword"], "representative_id": r["representative_unit_id"],
                 "representative_text": r["representative_text"]} for r in t]
        return rows, {r["hyperword"]: r["centroid"] for r in t}
    t = read_table(store, "codebooks", ["level", "code", "centroid", "representative_scene_id"], {"level": [level]}).to_pylist()
    gists = _scene_gists(store, [r["representative_scene_id"] for r in t if r["representative_scene_id"]])
    rows = [{"code": r["code"], "representative_id": r["representative_scene_id"],
             "representative_text": gists.get(r["representative_scene_id"])} for r in t]
    return rows, {r["code"]: r["centroid"] for r in t}


def _scene_gists(store: StoreVersion, scene_ids: list[str]) -> dict[str, str]:
    """scene_id -> its gist text (:func:`gist_text` of its gist units)."""
    if not scene_ids:
        return {}
    scenes = read_table(store, "scenes", ["scene_id", "doc_id", "gist"], {"scene_id": scene_ids}).to_pylist()
    wanted = {(s["doc_id"], p) for s in scenes for p in s["gist"]}
    occurrences = read_table(store, "occurrences", ["doc_id", "position", "unit_id"],
                             {"doc_id": sorted({d for d, _ in wanted})}).to_pylist()
    unit_at = {(o["doc_id"], o["position"]): o["unit_id"] for o in occurrences if (o["doc_id"], o["position"]) in wanted}
    units = read_table(store, "units", ["unit_id", "text"], {"unit_id": sorted(set(unit_at.values()))})
    text_of = dict(zip(units["unit_id"].to_pylist(), units["text"].to_pylist()))
    return {s["scene_id"]: gist_text([text_of[unit_at[(s["doc_id"], p)]] for p in s["gist"]]) for s in scenes}


def _build_vocabulary(store: StoreVersion, level: int, scenes_by_doc: dict[str, list[dict]]):
    """(Vocabulary, centroid matrix in vocabulary id order) for ``level``, with the roots of shallower
    documents' levels added."""
    import numpy as np

    rows, centroids = _codebook_rows(store, level)
    extra = {(s["level"], s["code"]) for scenes in scenes_by_doc.values() for s in at_level(scenes, level)
             if s["level"] != level} if level else set()
    extra_rows, extra_centroids = {}, {}
    for lower in sorted({lv for lv, _ in extra}):
        lower_rows, lower_centroids = _codebook_rows(store, lower)
        for r in lower_rows:
            if (lower, r["code"]) in extra:
                extra_rows[(lower, r["code"])] = r
                extra_centroids[(lower, r["code"])] = lower_centroids[r["code"]]
    vocab = ex.Vocabulary.build(level, rows, extra, extra_rows)
    matrix = np.array([centroids[r["code"]] if r["level"] == level else extra_centroids[(r["level"], r["code"])]
                       for r in vocab.rows], dtype=np.float32)
    return vocab, matrix


def export_hyperwords(store: StoreVersion, opts: Options, documents, writers: Writers, progress: Progress,
                      mismatches: list[str]) -> dict:
    level = opts.level
    units = read_units(store, opts.tokenizer, need_text=False)
    scenes_by_doc = scene_rows(store, ["doc_id", "level", "index", "code"]) if level else {}
    vocab, matrix = _build_vocabulary(store, level, scenes_by_doc)
    columns = ["doc_id", "position", "unit_id"] + (["hyperword"] if level == 0 else [])
    totals = {"tokens_in": 0, "tokens_out": 0}
    for batch, occurrences in document_batches(store, documents, columns):
        occ = occurrences.to_pydict()
        i = 0
        for doc_id in batch["doc_id"].to_pylist():
            progress.add()
            while i < len(occ["doc_id"]) and occ["doc_id"][i] < doc_id:  # rows of no listed document
                i += 1
            start = i
            while i < len(occ["doc_id"]) and occ["doc_id"][i] == doc_id:
                i += 1
            if level == 0:
                codes = [(0, h) for h in occ["hyperword"][start:i]]
            else:
                codes = [(s["level"], s["code"]) for s in at_level(scenes_by_doc.get(doc_id, []), level)]
            ids = vocab.encode(codes)
            tokens_in = sum(units.tokens_of[u] for u in occ["unit_id"][start:i])
            writers.add(doc_id, {"text": ex.code_string(codes), "ids": ids, "doc_id": doc_id, "level": level,
                                 "tokens_in": tokens_in})
            totals["tokens_in"] += tokens_in
            totals["tokens_out"] += len(ids)
    ex.write_vocabulary(opts.out, vocab)
    ex.write_npy(FileSystems.join(opts.out, ex.CENTROIDS), matrix)
    return {**totals, "counted_with": units.counted_with, "vocabulary": len(vocab), "dimension": int(matrix.shape[1]) if matrix.size else 0}


def export_pairs(store: StoreVersion, opts: Options, documents, writers: Writers, progress: Progress,
                 mismatches: list[str]) -> dict:
    level, tasks = opts.level, ex.parse_tasks(opts.tasks)
    units = read_units(store, opts.tokenizer)
    scenes_by_doc = scene_rows(store, ["scene_id", "doc_id", "level", "index", "first_position", "last_position",
                                       "code", "gist", "child_codes"])
    totals = {"tokens_in": 0, "tokens_out": 0, "scenes": 0, "skipped_scenes": 0}
    for doc, pieces, unit_ids in verified_documents(store, documents, units, mismatches, progress):
        tokens = [units.tokens_of[u] for u in unit_ids]
        totals["tokens_in"] += sum(tokens)
        for s in at_level(scenes_by_doc.get(doc["doc_id"], []), level):
            first, last = s["first_position"], s["last_position"]
            scene_tokens = sum(tokens[first : last + 1])
            if opts.max_scene_tokens and scene_tokens > opts.max_scene_tokens:
                totals["skipped_scenes"] += 1
                continue
            # The whitespace after the scene's last unit separates it from the next scene: not part of it.
            last_text = units.text_of[unit_ids[last]]
            text = "".join(pieces[first:last]) + last_text
            codes = ex.scene_codes(s["level"], s["code"], s["child_codes"])
            gist = gist_text([units.text_of[unit_ids[p]] for p in s["gist"]])
            gist_tokens = sum(tokens[p] for p in s["gist"])
            totals["scenes"] += 1
            for task, messages in ex.pair_messages(s["level"], ex.code_string(codes), text, gist, tasks, opts.expand_from):
                writers.add(doc["doc_id"], {"messages": messages, "task": task, "doc_id": doc["doc_id"],
                                            "scene_id": s["scene_id"], "level": s["level"]})
                totals["tokens_out"] += scene_tokens + (gist_tokens if task == "expand_gist" else len(codes))
    return {**totals, "counted_with": units.counted_with}


EXPORTERS = {"text": export_text, "hyperwords": export_hyperwords, "pairs": export_pairs}
