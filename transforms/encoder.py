"""New text in a store's terms, without writing a version: :class:`Encoder`.

``Encoder.from_store(path)`` loads what the store was written with: its spaCy segmentation, its
embedding model (the same model files, checked by fingerprint, in the precision the manifest
records), its frozen hyperword centroids and scene codebooks, its near-duplicate threshold and word
check. :meth:`Encoder.encode_many` then does what a refresh would do to a new document, and keeps
the result in memory:

- each unit gets a hyperword: the stored one for a unit the store holds (as a refresh keeps it), the
  nearest centroid for a new one;
- its nearest stored unit: itself when the store holds it (``exact``), else the stored canonical unit
  of its hyperword that a refresh would merge it into (``near``, with the cosine), else none. As in a
  refresh (transforms/refresh/candidates.py) the candidates are found with the stored vectors' error
  bound and decided on vectors embedded again from their text, never on decoded ones;
- the document's scenes are cut and coded with the frozen level codebooks, and each unit gets its
  semantic id (the codes of the scenes holding it, root first, then its hyperword).

Tokens are the ``<hw_LEVEL_CODE>`` strings of ``hyperscene export --format hyperwords``
(:func:`hyperscene.transforms.export.hw_token`); :meth:`Encoder.representative_texts` is the way
back: a token's representative text (a hyperword's most central unit) or gist (a scene code's
representative scene).

Throughput: the distinct unit texts of :data:`BATCH_UNITS` units at a time are counted and
embedded in one call each, so on large inputs the time is the model's (benchmarks/encode_floor.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np

from hyperscene.transforms.errors import Errors, HypersceneError, InvalidOption, ModelNotFound, StoreError, Warnings

logger = logging.getLogger("hyperscene")

# Units segmented before their distinct texts are embedded together: large enough that the model
# runs full batches of similar lengths, small enough to hold a batch's vectors (16 MB at 384 dims).
BATCH_UNITS = 10_000
# Embedded stored candidates kept between batches, so that a unit compared again is not embedded again.
CANDIDATE_CACHE = 50_000


@dataclass(frozen=True)
class Match:
    """The stored unit a unit is, or would merge into."""

    unit_id: str  # hex, as the store's tables show it
    kind: str  # "exact": the store holds this very text; "near": a refresh would merge it into this canonical unit
    score: float  # cosine of the embedded vectors (1.0 for exact)
    method: str  # "exact", or the provenance method a refresh would record ("cosine", "cosine+same-words", ...)

    def as_dict(self) -> dict:
        return {"unit_id": self.unit_id, "kind": self.kind, "score": round(self.score, 6), "method": self.method}


@dataclass(frozen=True)
class EncodedUnit:
    position: int
    text: str
    separator: str  # the whitespace after it: prefix + text + separator of every unit is the document
    unit_id: str
    token_count: int
    hyperword: int
    hyperword_score: float  # cosine to the hyperword's centroid
    semantic_id: tuple[int, ...]  # scene codes from the root down to level 1, then the hyperword
    stored: bool  # whether the store holds this unit (its hyperword is then the stored one)
    match: Match | None

    def as_dict(self) -> dict:
        return {"position": self.position, "text": self.text, "separator": self.separator, "unit_id": self.unit_id,
                "token_count": self.token_count, "hyperword": self.hyperword,
                "hyperword_score": round(self.hyperword_score, 6), "semantic_id": list(self.semantic_id),
                "stored": self.stored, "match": None if self.match is None else self.match.as_dict()}


@dataclass
class EncodedDocument:
    doc_id: str
    prefix: str
    units: list[EncodedUnit]
    scenes: list[dict] = field(default_factory=list)  # level, index, first_position, last_position, code, code_score, gist, child_codes

    def text(self) -> str:
        """The document as given, byte for byte."""
        return self.prefix + "".join(u.text + u.separator for u in self.units)

    @property
    def depth(self) -> int:
        return max((s["level"] for s in self.scenes), default=0)

    def codes(self, level: int = 0) -> list[tuple[int, int]]:
        """(level, code) per unit (level 0) or per scene of ``level``; a document with fewer levels
        gives its root, as ``hyperscene export`` does."""
        top = min(level, self.depth)
        if top == 0:
            return [(0, u.hyperword) for u in self.units]
        return [(s["level"], s["code"]) for s in self.scenes if s["level"] == top]

    def tokens(self, level: int = 0) -> list[str]:
        from hyperscene.transforms.export import hw_token

        return [hw_token(lv, code) for lv, code in self.codes(level)]

    def as_dict(self) -> dict:
        return {"doc_id": self.doc_id, "prefix": self.prefix, "units": [u.as_dict() for u in self.units],
                "scenes": self.scenes}


# --- the pure steps ---------------------------------------------------------------------------


def nearest_stored(vectors: np.ndarray, hyperwords: np.ndarray, texts: Sequence[str], stored: "StoredCanonicals",
                   embed_texts, threshold: float, lang: str, check: str) -> list[Match | None]:
    """For units the store does not hold: the stored canonical unit of their hyperword each would
    merge into by the refresh's rule (the most similar at or above ``threshold`` that passes the
    word check), or None. ``embed_texts(unit ids, texts)`` gives the candidates' vectors, embedded
    from their text.

    The word check is a test of the two texts alone, so it runs first: only candidates that pass it
    are embedded (with the default check, few are), and the choice is the one the refresh makes.
    """
    from hyperscene.transforms.near_dup import METHOD
    from hyperscene.transforms.near_dup_verify import verify
    from hyperscene.transforms.refresh.candidates import candidate_pairs

    found: list[Match | None] = [None] * len(vectors)
    pairs: list[tuple[int, list[int], list[str | None]]] = []  # (unit, its candidates' stored rows, word-check reasons)
    for hw in np.unique(hyperwords):
        rows = stored.rows_of(int(hw))
        if not len(rows):
            continue
        mine = np.flatnonzero(hyperwords == hw)
        could = candidate_pairs(vectors[mine], stored.decoded(rows), stored.angles[rows], threshold)
        for i, c in zip(mine.tolist(), could):
            candidates = rows[c].tolist()
            reasons: list[str | None] = [None] * len(candidates)
            if check == "words":
                reasons = [verify(texts[i], stored.text(r), lang) for r in candidates]
                candidates, reasons = [r for r, w in zip(candidates, reasons) if w], [w for w in reasons if w]
            if candidates:
                pairs.append((i, candidates, reasons))
    if not pairs:
        return found
    wanted = np.unique(np.concatenate([np.asarray(c, np.int64) for _, c, _ in pairs]))
    candidate = dict(zip(wanted.tolist(), embed_texts(stored.ids[wanted], stored.texts(wanted))))
    limit = np.float32(threshold)
    for i, rows, reasons in pairs:
        scores = [float(vectors[i] @ candidate[r]) for r in rows]
        # the most similar at or above the threshold; ties to the stored unit the refresh ranks first (unit id order)
        best = max((k for k in range(len(rows)) if scores[k] >= limit), key=lambda k: (scores[k], -rows[k]), default=None)
        if best is not None:
            method = METHOD if reasons[best] is None else f"{METHOD}+{reasons[best]}"
            found[i] = Match(stored.hex_id(rows[best]), "near", scores[best], method)
    return found


def scene_rows(scenes_table) -> list[dict]:
    keep = ["level", "index", "first_position", "last_position", "code", "code_score", "gist", "child_codes"]
    rows = scenes_table.select(keep).to_pylist()
    for r in rows:
        r["code_score"] = round(float(r["code_score"]), 6)
    return sorted(rows, key=lambda r: (r["level"], r["index"]))


class StoredCanonicals:
    """The store's canonical units (near-duplicate members left out) with their stored vectors,
    grouped by hyperword: decoded on demand, a hyperword at a time."""

    def __init__(self, vectors_table, quantizer, units_table, store: str = ""):
        import pyarrow as pa

        from hyperscene.transforms.store.vector_codec import error_angles, pq_code_matrix

        vectors_table = vectors_table.sort_by([("hyperword", "ascending"), ("unit_id", "ascending")])
        self._table, self._quantizer, self._store = vectors_table, quantizer, store
        # pq codes as one byte matrix (96 B a unit with MiniLM), decoded a hyperword at a time
        self._codes = pq_code_matrix(vectors_table) if "code" in vectors_table.column_names else None
        self.ids = vectors_table.column("unit_id").to_numpy()
        self.angles = error_angles(vectors_table) if vectors_table.num_rows else np.zeros(0, np.float32)
        hyperwords = vectors_table.column("hyperword").to_numpy()
        self._starts = {int(h): (int(a), int(b)) for h, a, b in zip(*_runs(hyperwords))}
        # texts of the stored units, found by id: a sorted id array, so no Python dict of a million strings
        units_table = units_table.sort_by("unit_id")
        self._unit_ids = units_table.column("unit_id").to_numpy()
        self._texts = units_table.column("text").combine_chunks() if units_table.num_rows else pa.array([], pa.string())

    def rows_of(self, hyperword: int) -> np.ndarray:
        a, b = self._starts.get(hyperword, (0, 0))
        return np.arange(a, b)

    def decoded(self, rows: np.ndarray) -> np.ndarray:
        from hyperscene.transforms.store.vector_codec import decode, pq_decode

        if self._codes is not None:
            return pq_decode(self._codes[rows[0]:rows[-1] + 1], self._quantizer)
        return decode(self._table.slice(int(rows[0]), len(rows)), self._quantizer)

    def text(self, row: int) -> str:
        k = int(np.searchsorted(self._unit_ids, self.ids[row]))
        if k >= len(self._unit_ids) or self._unit_ids[k] != self.ids[row]:
            raise StoreError(Errors.E706.format(store=self._store, unit=self.hex_id(row)))
        return self._texts[k].as_py()

    def texts(self, rows: np.ndarray) -> list[str]:
        return [self.text(int(r)) for r in rows]

    def hex_id(self, row: int) -> str:
        from hyperscene.transforms.unit_ids import unit_hex

        return unit_hex(int(self.ids[row]))


def _recorded_precision(recorded: str, device: str, embedder: str, store: str) -> str:
    """The precision the store's vectors were computed in, when this device can compute in it; else
    what ``auto`` picks here, said in [W007] (a store embedded in float16 on a GPU, encoded on a CPU)."""
    from hyperscene.transforms.models import check_precision, torch_dtype

    try:
        check_precision(recorded, device, embedder)
        return recorded
    except InvalidOption:
        here = torch_dtype(device, embedder, "auto")
        logger.warning(Warnings.W007.format(store=store, recorded=recorded, device=device, precision=here))
        return here


def _runs(values: np.ndarray):
    """(value, start, end) of each run of equal values in a sorted array."""
    if not len(values):
        return [], [], []
    edges = np.flatnonzero(np.diff(values)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [len(values)]])
    return values[starts], starts, ends


# --- the encoder ------------------------------------------------------------------------------


class Encoder:
    """A store's segmentation, model, codebooks and near-duplicate rule, applied to new text.

    Build it with :meth:`from_store`; :meth:`encode` one text, :meth:`encode_many` many, batched.
    """

    def __init__(self, store, segmenter, model, tokenizer, centroids: np.ndarray, level_codebooks: dict[int, np.ndarray],
                 scene_config, stored_units, canonicals: StoredCanonicals | None, threshold: float, lang: str, check: str,
                 batch_size: int):
        self.store = store
        self._segmenter, self._model, self._tokenizer = segmenter, model, tokenizer
        self._centroids, self._codebooks, self._scene_config = centroids, level_codebooks, scene_config
        self._stored_ids, self._stored_hyperwords = stored_units
        self._canonicals, self._threshold, self._lang, self._check = canonicals, threshold, lang, check
        self._batch_size = batch_size
        self._candidate_vectors: dict[int, np.ndarray] = {}
        self.candidate_cache = CANDIDATE_CACHE
        self.code_texts = CodeTexts(store)
        self._seen: set[int] = set()
        # stored_elsewhere: stored units whose vector, embedded here, lies nearest another hyperword than
        # the stored one (they keep the stored one): how far this run's vectors are from compress's
        self.counts = {"documents": 0, "units": 0, "distinct_units": 0, "stored_units": 0, "stored_elsewhere": 0,
                       "near_matches": 0, "candidates_embedded": 0}
        self.seconds = {"segment": 0.0, "embed": 0.0, "candidates": 0.0, "scenes": 0.0}  # where the time went

    @classmethod
    def from_store(cls, path: str, version: int | None = None, *, device: str = "cpu", precision: str | None = None,
                   batch_size: int | None = None, cache_dir: str | None = None) -> "Encoder":
        """Everything from the store's manifest and tables. ``precision``: what the torch embedder
        computes in (default: what the manifest records, so vectors come out as compress made
        them); ``device``, ``batch_size`` and ``cache_dir`` as for compress."""
        import dataclasses

        from hyperscene.transforms.model_catalog import resolve_model
        from hyperscene.transforms.models import (check_device, check_precision, default_batch_size, describe_model,
                                                  folder_for_embedder, load_embedder)
        from hyperscene.transforms.scenes import SceneConfig
        from hyperscene.transforms.segment import Segmenter, default_max_unit_tokens
        from hyperscene.transforms.store.reader import StoreVersion, frozen_codebooks
        from hyperscene.transforms.tokens import load_tokenizer

        store = StoreVersion(path, version)
        config, recorded = store.manifest["config"], store.manifest["model"]
        embedder = recorded.get("embedder", config.get("embedder", "torch"))
        precision = precision or _recorded_precision(recorded.get("precision", "auto"), device, embedder, path)
        check_precision(precision, device, embedder)
        check_device(device)
        cache_dir = cache_dir or config.get("cache_dir")
        folder, source = resolve_model(config["model"], False, cache_dir)
        try:
            embedder_folder = folder_for_embedder(folder, embedder, cache_dir)
            model = load_embedder(embedder_folder, embedder, device, precision=precision)
        except HypersceneError:
            raise
        except Exception as e:  # a broken model folder, or a package this machine lacks
            raise ModelNotFound(Errors.E704.format(store=path, embedder=embedder, error=e)) from None
        identity = describe_model(config["model"], embedder_folder, source, model, embedder, precision)
        if recorded.get("fingerprint") and identity.fingerprint != recorded["fingerprint"]:
            raise StoreError(Errors.E408.format(model=config["model"], found=identity.fingerprint[:12],
                                                stored=recorded["fingerprint"][:12]))

        lang = config.get("lang", "en")
        segmenter = Segmenter(lang, config.get("spacy_model"), config.get("max_unit_tokens") or default_max_unit_tokens(lang))
        centroids, levels = frozen_codebooks(store)
        scene_config = SceneConfig(min_units=config.get("scene_min_units", SceneConfig.min_units),
                                   max_units=config.get("scene_max_units", SceneConfig.max_units), levels=config.get("levels"))
        top = max((level for level, _ in levels), default=None)
        if top is not None and (scene_config.levels is None or scene_config.levels > top):
            scene_config = dataclasses.replace(scene_config, levels=top)  # the frozen codebooks go no deeper
        units = store.read("units", ["unit_id", "hyperword", "text"]).sort_by("unit_id")
        canonicals = None
        if store.files("vectors") and config.get("vectors", "float16") != "none":
            import pyarrow.compute as pc

            vectors = store.read("vectors")
            members = store.read("provenance", ["unit_id"]).column("unit_id")
            vectors = vectors.filter(pc.invert(pc.is_in(vectors.column("unit_id"), value_set=members)))
            canonicals = StoredCanonicals(vectors, store.quantizer(), units, path)
        else:
            logger.warning(Warnings.W006.format(store=path))
        return cls(store, segmenter, model, load_tokenizer(folder), centroids, dict(levels), scene_config,
                   (units.column("unit_id").to_numpy(), units.column("hyperword").to_numpy()), canonicals,
                   config["near_dup_threshold"], lang, config.get("near_dup_check", "none"),
                   batch_size or default_batch_size(device, embedder))

    @property
    def levels(self) -> list[int]:
        """The scene levels of the store's frozen codebooks (level 0, the hyperwords, not among them)."""
        return sorted(self._codebooks)

    # -- encoding

    def encode(self, text: str, doc_id: str = "") -> EncodedDocument:
        return next(self.encode_many([(doc_id, text)]))

    def encode_many(self, documents: Iterable[str | tuple[str, str]], batch_units: int = BATCH_UNITS) -> Iterator[EncodedDocument]:
        """Texts, or (doc_id, text) pairs, in order -> their :class:`EncodedDocument`, in the same
        order. Documents are gathered until ``batch_units`` units, then encoded together."""
        if batch_units < 1:
            raise InvalidOption(Errors.E703.format(value=batch_units))
        pending: list[tuple[str, object]] = []
        size = 0
        for k, doc in enumerate(documents):
            doc_id, text = (str(k), doc) if isinstance(doc, str) else doc
            started = time.perf_counter()
            seg = self._segmenter.segment(text)
            self.seconds["segment"] += time.perf_counter() - started
            pending.append((doc_id, seg))
            size += len(seg.units)
            if size >= batch_units:
                yield from self._encode_batch(pending)
                pending, size = [], 0
        if pending:
            yield from self._encode_batch(pending)

    def _embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._centroids.shape[1]), np.float32)
        from hyperscene.transforms.vectorize import embed_texts

        started = time.perf_counter()
        vectors = embed_texts(self._model, texts, self._batch_size)
        self.seconds["embed"] += time.perf_counter() - started
        return vectors

    def _embed_candidates(self, ids: np.ndarray, texts: list[str]) -> list[np.ndarray]:
        todo = [k for k, i in enumerate(ids.tolist()) if i not in self._candidate_vectors]
        if todo and len(self._candidate_vectors) + len(todo) > self.candidate_cache:
            self._candidate_vectors.clear()  # then every id of this call is embedded again
            todo = list(range(len(ids)))
        if todo:
            vectors = self._embed([texts[k] for k in todo])
            self._candidate_vectors.update(zip((int(ids[k]) for k in todo), vectors))
            self.counts["candidates_embedded"] += len(todo)
        return [self._candidate_vectors[int(i)] for i in ids]

    def _encode_batch(self, pending) -> Iterator[EncodedDocument]:
        import pyarrow as pa

        from hyperscene.transforms.codebook import assign
        from hyperscene.transforms.levels.encode import DocumentScenes, encode_document
        from hyperscene.transforms.scenes import scene_levels
        from hyperscene.transforms.tokens import count_tokens
        from hyperscene.transforms.unit_ids import unit_hex, unit_ids

        texts = list(dict.fromkeys(t for _, seg in pending for t in seg.units))
        ids = unit_ids(texts)
        vectors = self._embed(texts)
        tokens = np.asarray(count_tokens(self._tokenizer, texts), np.int64)
        where = np.searchsorted(self._stored_ids, ids)
        where = np.minimum(where, max(len(self._stored_ids) - 1, 0))
        stored = (self._stored_ids[where] == ids) if len(self._stored_ids) else np.zeros(len(ids), bool)
        nearest, _ = assign(vectors, self._centroids) if len(texts) else (np.zeros(0, np.int64), None)
        hyperwords = np.where(stored, self._stored_hyperwords[where] if len(self._stored_ids) else 0, nearest).astype(np.int32)
        scores = np.einsum("ij,ij->i", vectors, self._centroids[hyperwords]) if len(texts) else np.zeros(0)
        matches: list[Match | None] = [Match(unit_hex(int(i)), "exact", 1.0, "exact") if s else None for i, s in zip(ids, stored)]
        new = np.flatnonzero(~stored)
        if len(new) and self._canonicals is not None:
            started, embedding = time.perf_counter(), self.seconds["embed"]
            near = nearest_stored(vectors[new], hyperwords[new], [texts[i] for i in new], self._canonicals,
                                  self._embed_candidates, self._threshold, self._lang, self._check)
            for i, m in zip(new, near):
                matches[i] = m
            self.seconds["candidates"] += time.perf_counter() - started - (self.seconds["embed"] - embedding)
        index = {t: k for k, t in enumerate(texts)}
        # counted once per distinct unit of the whole run, though a unit of two batches is embedded in each
        first = np.array([int(i) not in self._seen for i in ids], dtype=bool)
        self._seen.update(int(i) for i in ids[first])
        self.counts["distinct_units"] += int(first.sum())
        self.counts["stored_units"] += int((stored & first).sum())
        self.counts["stored_elsewhere"] += int((stored & first & (nearest != hyperwords)).sum())
        self.counts["near_matches"] += sum(1 for m, f in zip(matches, first) if f and m is not None and m.kind == "near")
        started = time.perf_counter()
        for doc_id, seg in pending:
            rows = np.array([index[t] for t in seg.units], np.int64)
            n = len(rows)
            semantic = [(int(h),) for h in hyperwords[rows]]
            scenes: list[dict] = []
            if n and self._codebooks:
                occurrences = pa.table({"doc_id": pa.array([doc_id] * n, pa.string()), "position": pa.array(np.arange(n)),
                                        "unit_id": pa.array(ids[rows]), "separator": pa.array(seg.separators, pa.string()),
                                        "hyperword": pa.array(hyperwords[rows])})
                levels = scene_levels(vectors[rows], tokens[rows], self._scene_config)
                if levels:
                    table, coded, _ = encode_document(DocumentScenes(doc_id, occurrences, levels), self._codebooks)
                    semantic = [tuple(s) for s in coded.column("semantic_id").to_pylist()]
                    scenes = scene_rows(table)
            units = [EncodedUnit(p, seg.units[p], seg.separators[p], unit_hex(int(ids[r])), int(tokens[r]), int(hyperwords[r]),
                                 float(scores[r]), semantic[p], bool(stored[r]), matches[r]) for p, r in enumerate(rows.tolist())]
            self.counts["documents"] += 1
            self.counts["units"] += n
            self.seconds["scenes"] += time.perf_counter() - started
            yield EncodedDocument(doc_id, seg.prefix, units, scenes)
            started = time.perf_counter()

    def representative_texts(self, tokens: Sequence[str]) -> list[str | None]:
        """The way back: see :meth:`CodeTexts.of`."""
        return self.code_texts.of(tokens)


class CodeTexts:
    """What ``<hw_L_C>`` tokens stand for, read from a store version's tables (no model needed)."""

    def __init__(self, store):
        self.store = store
        self._levels: dict[int, dict[int, str | None]] = {}

    def of(self, tokens: Sequence[str]) -> list[str | None]:
        """Tokens -> a hyperword's representative unit text (level 0), a scene code's representative
        scene gist (above); None for a code with no member."""
        from hyperscene.transforms.export import parse_token

        out = []
        for token in tokens:
            try:
                level, code = parse_token(token)
            except ValueError:
                raise InvalidOption(Errors.E701.format(value=token)) from None
            if level not in self._levels:
                self._levels[level] = representatives(self.store, level)
            texts = self._levels[level]
            if code not in texts:
                what = f"codes 0 to {len(texts) - 1}" if texts else "no codes"
                raise InvalidOption(Errors.E702.format(token=token, store=self.store.store, version=self.store.version,
                                                       level=level, what=what))
            out.append(texts[code])
        return out


def representatives(store, level: int) -> dict[int, str | None]:
    """code -> representative text of a level: level 0 the hyperwords' representative unit texts,
    above the gists of the level codebook's representative scenes."""
    if level == 0:
        t = store.read("hyperwords", ["hyperword", "representative_text"])
        return dict(zip(t.column("hyperword").to_pylist(), t.column("representative_text").to_pylist()))
    if not store.files("codebooks"):
        return {}
    from hyperscene.transforms.store.documents import gist_text, gist_texts, read_table

    t = read_table(store, "codebooks", ["level", "code", "representative_scene_id"], {"level": [level]}).to_pylist()
    ids = [r["representative_scene_id"] for r in t if r["representative_scene_id"]]
    scenes = read_table(store, "scenes", ["scene_id", "doc_id", "gist"], {"scene_id": ids}).to_pylist() if ids else []
    text_at = gist_texts(store, scenes)
    gist_of = {s["scene_id"]: gist_text([text_at[(s["doc_id"], p)] for p in s["gist"]]) for s in scenes}
    return {r["code"]: gist_of.get(r["representative_scene_id"]) for r in t}
