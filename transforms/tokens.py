"""Token and word counts of distinct unit texts, with a Hugging Face tokenizer.

By default the embedding model's own tokenizer counts, without special tokens. A document's token
count is the sum over its units; WordPiece and most BPE tokenizers never merge across whitespace,
so this matches tokenizing the whole text up to the separators.
"""

from __future__ import annotations

import logging
from typing import Sequence

import apache_beam as beam

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
    encoded = tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False)
    return [len(ids) for ids in encoded["input_ids"]]


def count_words(text: str) -> int:
    return len(text.split())


class _CountDoFn(beam.DoFn):
    def __init__(self, tokenizer_path: str):
        self._path = tokenizer_path

    def setup(self):
        logging.getLogger("transformers").setLevel(logging.ERROR)
        self._tokenizer = load_tokenizer(self._path)
        self._progress = Progress("count tokens", "distinct units")

    def process(self, batch: list[dict]):
        with self._progress.timed(len(batch)):
            counts = count_tokens(self._tokenizer, [u["text"] for u in batch])
            out = [{**u, "token_count": n, "word_count": count_words(u["text"])} for u, n in zip(batch, counts)]
        yield from out


class CountTokens(beam.PTransform):
    """Units ``{text, ...}`` -> the same with ``token_count`` and ``word_count``."""

    def __init__(self, tokenizer_path: str, batch_size: int = 1024):
        super().__init__()
        self._path = tokenizer_path
        self._batch_size = batch_size

    def expand(self, units):
        return (
            units
            | "Batch" >> beam.BatchElements(min_batch_size=self._batch_size, max_batch_size=self._batch_size)
            | "Count" >> beam.ParDo(_CountDoFn(self._path))
        )
