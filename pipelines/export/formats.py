"""The three export formats, each from a store version to records in shard writers: distilled text,
hyperword code sequences with their vocabulary and centroids, and chat pairs at one scene level; each
in the chosen --order, text and hyperwords with --mix's share of documents as their exact text.

An order is one or more passes over the documents, each a documents table in the order to write and
what to write of each: ``document``, one pass in doc_id order; ``novelty``, text and hyperwords one
pass in novelty order, pairs a pass of the new scenes then one of the repeats; ``level``, a pass per
level from the deepest down to --level. The last pass holds every document: it is where each is
counted (``tokens_in``) and, for text and pairs, checked against its sha256 at the latest."""

from __future__ import annotations

from apache_beam.io.filesystems import FileSystems

from hyperscene.transforms.store.documents import gist_text
from hyperscene.pipelines.export.options import Options
from hyperscene.pipelines.export.reading import (
    Occurrences, at_level, checked_text, doc_spans, novelty_ordered, read_units, scene_rows, take_documents,
    verified_documents)
from hyperscene.transforms import export as ex
from hyperscene.transforms.progress import Progress
from hyperscene.transforms.store.documents import OCCURRENCE_COLUMNS, read_table
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
    # kind: "distilled", or "raw" for a document --mix writes as its exact text (units_out = units_in)
    "text": lambda pa: pa.schema([("text", pa.string()), ("doc_id", pa.string()), ("units_in", pa.int64()),
                                  ("units_out", pa.int64()), ("tokens_in", pa.int64()), ("tokens_out", pa.int64()),
                                  ("kind", pa.string())]),
    # kind: "hyperwords", or "raw" for a document --mix writes as its exact text: in text, no ids, level null
    "hyperwords": lambda pa: pa.schema([("text", pa.string()), ("ids", pa.list_(pa.int32())), ("doc_id", pa.string()),
                                        ("level", pa.int32()), ("tokens_in", pa.int64()), ("kind", pa.string())]),
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
    occurrences = Occurrences(store, OCCURRENCE_COLUMNS + (["hyperword"] if opts.order == "novelty" else []))
    if opts.order == "novelty":
        documents = novelty_ordered(documents, occurrences)
    raw = ex.mixed_documents(documents["doc_id"].to_pylist(), opts.mix)
    totals = {"tokens_in": 0, "tokens_out": 0, "units_in": 0, "units_out": 0, "raw_documents": 0, "raw_tokens": 0}
    for doc, pieces, unit_ids in verified_documents(store, documents, units, mismatches, progress, occurrences):
        tokens = [units.tokens_of[u] for u in unit_ids]
        keep = deduper.keep(unit_ids, tokens)  # a raw document's units count as seen all the same
        is_raw = doc["doc_id"] in raw
        if is_raw:
            keep = [True] * len(unit_ids)
        record = {"text": ex.distil(doc["prefix"], pieces, keep), "doc_id": doc["doc_id"],
                  "units_in": len(unit_ids), "units_out": sum(keep),
                  "tokens_in": sum(tokens), "tokens_out": sum(t for t, k in zip(tokens, keep) if k),
                  "kind": ex.KIND_RAW if is_raw else ex.KIND_DISTILLED}
        writers.add(doc["doc_id"], record)
        for key in ("tokens_in", "tokens_out", "units_in", "units_out"):
            totals[key] += record[key]
        totals["raw_documents"] += is_raw
        totals["raw_tokens"] += record["tokens_out"] if is_raw else 0
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


def _build_vocabulary(store: StoreVersion, level: int, scenes_by_doc: dict[str, list[dict]], coarser: list[int]):
    """(Vocabulary, centroid matrix in vocabulary id order) for ``level``, with the roots of shallower
    documents' levels added, and every code of the ``coarser`` levels' codebooks (--order level)."""
    import numpy as np

    rows, centroids = _codebook_rows(store, level)
    extra = {(s["level"], s["code"]) for scenes in scenes_by_doc.values() for s in at_level(scenes, level)
             if s["level"] != level} if level else set()
    extra_rows, extra_centroids = {}, {}
    for other in sorted({lv for lv, _ in extra} | set(coarser)):
        other_rows, other_centroids = _codebook_rows(store, other)
        for r in other_rows:
            if other in coarser or (other, r["code"]) in extra:
                extra.add((other, r["code"]))
                extra_rows[(other, r["code"])] = r
                extra_centroids[(other, r["code"])] = other_centroids[r["code"]]
    vocab = ex.Vocabulary.build(level, rows, extra, extra_rows)
    matrix = np.array([centroids[r["code"]] if r["level"] == level else extra_centroids[(r["level"], r["code"])]
                       for r in vocab.rows], dtype=np.float32)
    return vocab, matrix


def export_hyperwords(store: StoreVersion, opts: Options, documents, writers: Writers, progress: Progress,
                      mismatches: list[str]) -> dict:
    level = opts.level
    units = read_units(store, opts.tokenizer, need_text=opts.mix > 0)
    scenes_by_doc = scene_rows(store, ["doc_id", "level", "index", "code"]) if level or opts.order == "level" else {}
    deepest = max((s["level"] for scenes in scenes_by_doc.values() for s in scenes), default=0)
    levels = ex.export_levels(deepest, level, opts.order)
    vocab, matrix = _build_vocabulary(store, level, scenes_by_doc, levels[:-1])
    columns = ["doc_id", "position", "unit_id"] + (["hyperword"] if level == 0 or opts.order == "novelty" else [])
    occurrences = Occurrences(store, columns + (["separator"] if opts.mix else []))
    if opts.order == "novelty":
        documents = novelty_ordered(documents, occurrences)
    raw = ex.mixed_documents(documents["doc_id"].to_pylist(), opts.mix)
    totals = {"tokens_in": 0, "tokens_out": 0, "raw_documents": 0, "raw_tokens": 0}
    for current in levels:
        finest = current == level
        # A coarser pass: the documents with scenes of that level, not written raw.
        docs = documents if finest else take_documents(documents, [
            d for d, scenes in scenes_by_doc.items() if d not in raw and any(s["level"] == current for s in scenes)])
        for batch, rows in occurrences.batches(docs):
            occ = rows.to_pydict()
            span = doc_spans(rows["doc_id"])
            for doc in batch.to_pylist() if raw else ({"doc_id": d} for d in batch["doc_id"].to_pylist()):
                doc_id = doc["doc_id"]
                progress.add()
                start, end = span.get(doc_id, (0, 0))
                tokens_in = sum(units.tokens_of[u] for u in occ["unit_id"][start:end])
                if finest:
                    totals["tokens_in"] += tokens_in
                if doc_id in raw:
                    pieces = [units.text_of.get(u) for u in occ["unit_id"][start:end]]
                    pieces = [None if t is None else t + sep for t, sep in zip(pieces, occ["separator"][start:end])]
                    text = checked_text(store, doc, pieces, occ["unit_id"][start:end], mismatches)
                    if text is not None:
                        writers.add(doc_id, {"text": text, "ids": [], "doc_id": doc_id, "level": None,
                                             "tokens_in": tokens_in, "kind": ex.KIND_RAW})
                        totals["raw_documents"] += 1
                        totals["raw_tokens"] += tokens_in
                    continue
                if current == 0:
                    codes = [(0, h) for h in occ["hyperword"][start:end]]
                else:
                    codes = [(s["level"], s["code"]) for s in ex.pass_scenes(scenes_by_doc.get(doc_id, []), current, level)]
                ids = vocab.encode(codes)
                writers.add(doc_id, {"text": ex.code_string(codes), "ids": ids, "doc_id": doc_id, "level": current,
                                     "tokens_in": tokens_in, "kind": ex.KIND_HYPERWORDS})
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
    occurrences = Occurrences(store, OCCURRENCE_COLUMNS)
    totals = {"tokens_in": 0, "tokens_out": 0, "scenes": 0, "skipped_scenes": 0, "transitions": 0}
    passes = _pair_passes(opts.order, level, documents, scenes_by_doc)
    for number, (docs, chosen) in enumerate(passes):
        last_pass = number == len(passes) - 1
        for doc, pieces, unit_ids in verified_documents(store, docs, units, mismatches, progress, occurrences):
            tokens = [units.tokens_of[u] for u in unit_ids]
            if last_pass:
                totals["tokens_in"] += sum(tokens)
            for s, following in chosen(doc["doc_id"]):
                first, last = s["first_position"], s["last_position"]
                scene_tokens = sum(tokens[first : last + 1])
                if opts.max_scene_tokens and scene_tokens > opts.max_scene_tokens:
                    totals["skipped_scenes"] += 1
                    continue
                text = _scene_text(s, pieces, unit_ids, units)
                codes = ex.scene_codes(s["level"], s["code"], s["child_codes"])
                gist = gist_text([units.text_of[unit_ids[p]] for p in s["gist"]])
                gist_tokens = sum(tokens[p] for p in s["gist"])
                totals["scenes"] += 1
                records = [(task, messages, scene_tokens + (gist_tokens if task == "expand_gist" else len(codes)))
                           for task, messages in ex.pair_messages(s["level"], ex.code_string(codes), text, gist, tasks,
                                                                  opts.expand_from)]
                if "transitions" in tasks and following is not None:
                    next_codes = ex.scene_codes(following["level"], following["code"], following["child_codes"])
                    next_gist = gist_text([units.text_of[unit_ids[p]] for p in following["gist"]])
                    out = scene_tokens + len(next_codes) + sum(tokens[p] for p in following["gist"])
                    records += [(task, messages, out) for task, messages in
                                ex.transition_messages(text, ex.code_string(next_codes), next_gist)]
                    totals["transitions"] += 1
                for task, messages, tokens_out in records:
                    writers.add(doc["doc_id"], {"messages": messages, "task": task, "doc_id": doc["doc_id"],
                                                "scene_id": s["scene_id"], "level": s["level"]})
                    totals["tokens_out"] += tokens_out
    return {**totals, "counted_with": units.counted_with}


def _scene_text(scene: dict, pieces: list[str], unit_ids: list, units) -> str:
    """A scene's exact text: the whitespace after its last unit separates it from the next scene and
    is not part of it."""
    first, last = scene["first_position"], scene["last_position"]
    return "".join(pieces[first:last]) + units.text_of[unit_ids[last]]


def _pair_passes(order: str, level: int, documents, scenes_by_doc: dict[str, list[dict]]) -> list[tuple[object, object]]:
    """The passes of a pairs export: (documents table, doc_id -> [(scene, the next scene at its level
    or None)]) in the order to write. The last pass holds every document."""
    def chosen(doc_id: str, current: int) -> list[tuple[dict, dict | None]]:
        return ex.with_next(ex.pass_scenes(scenes_by_doc.get(doc_id, []), current, level))

    if order == "level":
        deepest = max((s["level"] for scenes in scenes_by_doc.values() for s in scenes), default=level)
        return [(documents if current == level else take_documents(documents, [
                    d for d, scenes in scenes_by_doc.items() if any(s["level"] == current for s in scenes)]),
                 lambda doc_id, current=current: chosen(doc_id, current))
                for current in ex.export_levels(deepest, level, order)]
    if order == "novelty":
        walk = [s for doc_id in documents["doc_id"].to_pylist() for s in chosen(doc_id, level)]
        new = {s["scene_id"] for (s, _), fresh in zip(walk, ex.first_seen(ex.scene_key(s) for s, _ in walk)) if fresh}
        with_new = take_documents(documents, {s["doc_id"] for s, _ in walk if s["scene_id"] in new})
        return [(with_new, lambda doc_id: [(s, n) for s, n in chosen(doc_id, level) if s["scene_id"] in new]),
                (documents, lambda doc_id: [(s, n) for s, n in chosen(doc_id, level) if s["scene_id"] not in new])]
    return [(documents, lambda doc_id: chosen(doc_id, level))]


EXPORTERS = {"text": export_text, "hyperwords": export_hyperwords, "pairs": export_pairs}
