"""Token and word counts of distinct unit texts, with a Hugging Face tokenizer.

By default the embedding model's own tokenizer counts, without special tokens. A document's token
count is the sum over its units; WordPiece and most BPE tokenizers never merge across whitespace,
so this matches tokenizing the whole text up to the separators.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Optional, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa

from hyperscene.schemas.unit_bucket import UnitBucket
from hyperscene.transforms.progress import Progress
from hyperscene.transforms.vectorize import flat_ids, own_tokens


def load_tokenizer(name_or_path: str):
    """A fast tokenizer from a local folder or the Hugging Face cache; never downloads."""
    import transformers
    from transformers import AutoTokenizer

    transformers.logging.set_verbosity_error()  # "sequence longer than max" is expected: we only count
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # A tokenizer.json may pad and truncate by default (MiniLM's: to 128); counting wants neither.
        # The tokenizer's own calls set both per call, so only the fast path below sees the change.
        backend.no_padding()
        backend.no_truncation()
    return tokenizer


def count_tokens(tokenizer, texts: Sequence[str]) -> list[int]:
    if not texts:
        return []
    encodings = fast_encodings(tokenizer, texts)
    if encodings is not None:
        return [len(e) for e in encodings]
    encoded = tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False)
    return [len(ids) for ids in encoded["input_ids"]]


def fast_encodings(tokenizer, texts: Sequence[str]):
    """The Rust tokenizer's encodings of ``texts`` without special tokens, offsets or Python lists of
    ids (the same tokens as calling the tokenizer, in half the time), or None where it has none."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.truncation is not None or backend.padding is not None or not hasattr(backend, "encode_batch_fast"):
        return None
    return backend.encode_batch_fast(list(texts), add_special_tokens=False)


def tokenizer_by_name(name: str):
    """A tokenizer from a sentence-transformers model name or folder, or a plain tokenizer folder or
    cached Hugging Face name; ModelNotFound if none is local."""
    from hyperscene.transforms.errors import Errors, ModelNotFound
    from hyperscene.transforms.model_catalog import resolve_model

    try:
        folder, _ = resolve_model(name)
    except Exception:
        folder = name  # a plain tokenizer repo or folder, not a sentence-transformers model
    try:
        return load_tokenizer(folder)
    except Exception as e:
        raise ModelNotFound(Errors.E312.format(name=name, error=type(e).__name__)) from None


def count_tokens_by_name(name: str, texts: Sequence[str], batch: int = 4096) -> list[int]:
    """Tokens of each text under the tokenizer :func:`tokenizer_by_name` finds, ``batch`` texts at a time."""
    tokenizer = tokenizer_by_name(name)
    counts: list[int] = []
    for start in range(0, len(texts), batch):
        counts += count_tokens(tokenizer, texts[start : start + batch])
    return counts


# --- one tokenization for counting and for a static embedder ------------------------------------


def static_id_map(counting, static) -> "np.ndarray | None":
    """For each id of the ``counting`` tokenizer, the id of the same token in a static embedder's
    ``static`` tokenizer (both ``tokenizers.Tokenizer``), or -1; None unless both are WordPiece and
    ``static`` is ``counting`` with tokens taken out, which is what model2vec makes of a WordPiece
    tokenizer (it drops the special and unused ones).

    Then a text whose counting tokens all map has the same tokens under both: the normalizer,
    pre-tokenizer and WordPiece settings are the same, ``static``'s added tokens are ``counting``'s
    with the same flags, and WordPiece takes the longest piece in its vocabulary at each step, which
    a smaller vocabulary holding that piece has no longer one than. A text with a token that does
    not map (a literal "[CLS]", which only ``counting`` splits out as its own) is tokenized by the
    static tokenizer itself (:func:`static_token_ids`).
    """
    a, b = json.loads(counting.to_str()), json.loads(static.to_str())
    model_a, model_b = dict(a["model"]), dict(b["model"])
    if model_a.get("type") != "WordPiece" or model_b.get("type") != "WordPiece":
        return None
    vocab_a, vocab_b = model_a.pop("vocab"), model_b.pop("vocab")
    if model_a != model_b or a.get("normalizer") != b.get("normalizer") or a.get("pre_tokenizer") != b.get("pre_tokenizer"):
        return None
    added_a = {t["content"]: {k: v for k, v in t.items() if k != "id"} for t in a.get("added_tokens") or []}
    added_b = {t["content"]: {k: v for k, v in t.items() if k != "id"} for t in b.get("added_tokens") or []}
    if not set(vocab_b) <= set(vocab_a) or any(added_a.get(token) != flags for token, flags in added_b.items()):
        return None
    ids = np.full(counting.get_vocab_size(with_added_tokens=True), -1, dtype=np.int64)
    for token, i in vocab_a.items():
        if token in vocab_b and (token in added_a) == (token in added_b):
            ids[i] = vocab_b[token]
    return ids


def static_token_ids(encodings, id_map: "np.ndarray | None", static, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(lengths, ids concatenated) of ``texts`` under the ``static`` tokenizer, from the counting
    tokenizer's ``encodings`` through ``id_map`` (:func:`static_id_map`). The static tokenizer
    tokenizes the rest itself: the texts with a token the map lacks, those longer than it truncates
    at, or all of them without a map."""
    if id_map is None or encodings is None:
        return own_tokens(static, texts)
    lengths, flat = flat_ids([e.ids for e in encodings])
    flat = np.where(flat < len(id_map), id_map[np.minimum(flat, len(id_map) - 1)], -1)  # ids past the map: added since
    redo = np.zeros(len(texts), dtype=bool)
    redo[np.searchsorted(np.cumsum(lengths), np.flatnonzero(flat < 0), side="right")] = True
    if static.truncation is not None:
        redo |= lengths > static.truncation["max_length"]
    if not redo.any():
        return lengths, flat
    rows = np.split(flat, np.cumsum(lengths)[:-1])
    again = np.flatnonzero(redo)
    for i, e in zip(again.tolist(), static.encode_batch_fast([texts[i] for i in again], add_special_tokens=False)):
        rows[i] = np.asarray(e.ids, dtype=np.int64)
    return np.fromiter(map(len, rows), np.int64, len(rows)), np.concatenate(rows)


def count_words(text: str) -> int:
    return len(text.split())


class _CountDoFn(beam.DoFn):
    def __init__(self, tokenizer_path: str, static_folder: Optional[str]):
        self._path = tokenizer_path
        self._static_folder = static_folder

    def setup(self):
        logging.getLogger("transformers").setLevel(logging.ERROR)
        self._tokenizer = load_tokenizer(self._path)
        self._static = self._id_map = None
        if self._static_folder:
            from hyperscene.transforms.vectorize import static_tokenizer

            self._static = static_tokenizer(self._static_folder)
            backend = getattr(self._tokenizer, "backend_tokenizer", None)
            self._id_map = static_id_map(backend, self._static) if backend is not None else None
        self._progress = Progress("count tokens", "distinct units")

    def process(self, bucket: UnitBucket):
        with self._progress.timed(len(bucket)):
            texts = bucket.texts()
            encodings = fast_encodings(self._tokenizer, texts) if texts else None
            counts = [len(e) for e in encodings] if encodings is not None else count_tokens(self._tokenizer, texts)
            result = bucket.with_unit_columns(
                token_count=pa.array(counts, pa.int64()),
                word_count=pa.array([count_words(t) for t in texts], pa.int64()),
            )
            if self._static is not None:
                result = replace(result, static_tokens=static_token_ids(encodings, self._id_map, self._static, texts))
        yield result


class CountTokens(beam.PTransform):
    """UnitBuckets -> the same with ``token_count`` and ``word_count`` unit columns.

    With ``static_folder`` (a static embedder's model folder, ``--embedder static``), each bucket
    also carries its units' tokens under that embedder's tokenizer (``static_tokens``) to Embed,
    whose vectors are a look-up over them: one tokenization serves both where the two tokenizers
    agree (:func:`static_id_map`).
    """

    def __init__(self, tokenizer_path: str, static_folder: Optional[str] = None):
        super().__init__()
        self._path = tokenizer_path
        self._static_folder = static_folder

    def expand(self, buckets):
        return buckets | "Count" >> beam.ParDo(_CountDoFn(self._path, self._static_folder))
