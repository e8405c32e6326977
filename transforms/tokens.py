"""Token and word counts of distinct unit texts, with a Hugging Face tokenizer.

By default the embedding model's own tokenizer counts, without special tokens. A document's token
count is the sum over its units; WordPiece and most BPE tokenizers never merge across whitespace,
so this matches tokenizing the whole text up to the separators.
"""

from __future__ import annotations

import logging
from typing import Sequence

import apache_beam as beam
import pyarrow as pa

from hyperscene.schemas.unit_bucket import UnitBucket
from hyperscene.transforms.progress import Progress


def load_tokenizer(name_or_path: str):
    """A fast tokenizer from a local folder or the Hugging Face cache; never downloads."""
    import transformers
    from transformers import AutoTokenizer

    transformers.logging.set_verbosity_error()  # "sequence longer than max" is expected: we only count
    return AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)


def count_tokens(tokenizer, texts: Sequence[str]) -> list[int]:
    if not texts:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and backend.truncation is None and hasattr(backend, "encode_batch_fast"):
        # the Rust tokenizer without offsets or Python lists of ids: the same counts, in half the time
        return [len(e) for e in backend.encode_batch_fast(list(texts), add_special_tokens=False)]
    encoded = tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False)
    return [len(ids) for ids in encoded["input_ids"]]


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


def count_words(text: str) -> int:
    return len(text.split())


class _CountDoFn(beam.DoFn):
    def __init__(self, tokenizer_path: str):
        self._path = tokenizer_path

    def setup(self):
        logging.getLogger("transformers").setLevel(logging.ERROR)
        self._tokenizer = load_tokenizer(self._path)
        self._progress = Progress("count tokens", "distinct units")

    def process(self, bucket: UnitBucket):
        with self._progress.timed(len(bucket)):
            texts = bucket.texts()
            result = bucket.with_unit_columns(
                token_count=pa.array(count_tokens(self._tokenizer, texts), pa.int64()),
                word_count=pa.array([count_words(t) for t in texts], pa.int64()),
            )
        yield result


class CountTokens(beam.PTransform):
    """UnitBuckets -> the same with ``token_count`` and ``word_count`` unit columns."""

    def __init__(self, tokenizer_path: str):
        super().__init__()
        self._path = tokenizer_path

    def expand(self, buckets):
        return buckets | "Count" >> beam.ParDo(_CountDoFn(self._path))
