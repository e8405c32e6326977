"""Unit-length vectors of texts with a loaded embedder (:mod:`hyperscene.transforms.models`): the
embedding itself, without Beam, as the embed stage, ``hyperscene encode`` and the benchmarks' floor
all run it."""

from __future__ import annotations

import itertools
import threading
import weakref
from typing import Sequence

import numpy as np

from hyperscene.transforms.heap import reusing_freed_memory
from hyperscene.transforms.models import load_embedder


def embed_texts(model, texts: Sequence[str], batch_size: int, **kwargs) -> np.ndarray:
    """Unit-length float32 vectors of ``texts``: what compress, refresh and encode all embed with.
    A transformer runs batches of texts of about the same token count (:func:`encode_by_tokens`); a
    static model on the CPU is its own look-up (:func:`static_vectors`), the same vectors as ``encode``.
    While a transformer runs, glibc keeps the buffers it frees for reuse (:mod:`~hyperscene.transforms.heap`)."""
    table = static_table(model)
    if table is not None and table.embedding.weight.device.type == "cpu" and not kwargs:
        vectors = static_vectors(table, texts)  # a few large buffers: nothing to reuse
    else:
        with reusing_freed_memory():
            if table is None and len(texts) and counting_tokenizer(model) is not None:
                vectors = encode_by_tokens(model, texts, batch_size, **kwargs)
            else:
                vectors = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                       convert_to_numpy=True, show_progress_bar=False, **kwargs)
    vectors = vectors.astype("float32", copy=False)
    # A static model has no vector for a text none of whose tokens it knows (a lone BOM, NULs, a
    # zero-width space): normalising its empty mean can give NaN (its float16 table's epsilon is
    # zero), which k-means and cosines cannot take. Such a unit gets the zero vector: similar to nothing.
    vectors[~np.isfinite(vectors).all(axis=1)] = 0.0
    return vectors


def encode_by_tokens(model, texts: Sequence[str], batch_size: int, **kwargs) -> np.ndarray:
    """``encode`` of ``texts``, ``batch_size`` at a time in order of their token counts under the
    model's own tokenizer (longest first, ties in their given order).

    sentence-transformers orders by characters, a loose proxy for tokens: on the units of the
    reference corpus's 1M-token slice, its batches of 64 hold 40% more positions than tokens, padding
    the model computes and throws away; in token order, under 2% (``benchmarks/embed_floor.py``
    times both). The batches depend only on ``texts``, so a text's vector still depends only on the
    example it came in.
    """
    texts = list(texts)
    encodings = counting_tokenizer(model).encode_batch_fast(texts, add_special_tokens=True)
    lengths = np.fromiter(map(len, encodings), np.int64, len(texts))
    limit = model.max_seq_length
    if limit and limit < np.iinfo(np.int64).max:  # a tokenizer without a limit says 1e30
        np.minimum(lengths, int(limit), out=lengths)  # past it, encode truncates: all the same length
    order = np.argsort(-lengths, kind="stable")
    vectors = None
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = model.encode([texts[i] for i in rows], batch_size=batch_size, normalize_embeddings=True,
                             convert_to_numpy=True, show_progress_bar=False, **kwargs)
        if vectors is None:
            vectors = np.empty((len(texts), batch.shape[1]), batch.dtype)
        vectors[rows] = batch
    return vectors


_counting: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_counting_lock = threading.Lock()


def counting_tokenizer(model):
    """A copy of a transformer's fast tokenizer that counts without truncation or padding, or None
    where the model has none (a slow tokenizer, a static table): made once per model.

    A copy, because calling the model's own tokenizer with other settings than ``encode``'s would
    reconfigure what every thread sharing the model tokenizes with (RunInference shares one model
    per process), and a tokenizer reconfigured while another thread encodes raises or truncates
    wrongly. The embed handler makes it when it loads the model, before any thread encodes.
    """
    backend = getattr(getattr(model, "tokenizer", None), "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "encode_batch_fast"):
        return None
    with _counting_lock:
        tokenizer = _counting.get(model)
        if tokenizer is None:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_str(backend.to_str())
            tokenizer.no_truncation()
            tokenizer.no_padding()
            _counting[model] = tokenizer
        return tokenizer


def static_table(model):
    """The StaticEmbedding of a model that is nothing else (``--embedder static``), or None."""
    from sentence_transformers.models import StaticEmbedding

    modules = list(model) if hasattr(model, "__iter__") else []
    return modules[0] if len(modules) == 1 and isinstance(modules[0], StaticEmbedding) else None


def static_tokenizer(folder: str):
    """The tokenizer a static embedder from ``folder`` looks its table up with, configured as loading
    the embedder configures it (model2vec sets its truncation from the model's config, whatever
    tokenizer.json says)."""
    return static_table(load_embedder(folder, "static")).tokenizer


class TokenizedTexts(list):
    """Texts that come with their tokens under a static embedder's tokenizer, (lengths, ids
    concatenated), as CountTokens leaves them: :func:`static_vectors` then looks them up without
    tokenizing again. Everywhere else they are the list of texts they are."""

    def __init__(self, texts, static_tokens: tuple[np.ndarray, np.ndarray]):
        super().__init__(texts)
        self.static_tokens = static_tokens


def static_vectors(table, texts: Sequence[str]) -> np.ndarray:
    """What ``encode(texts, normalize_embeddings=True)`` gives for a static model on the CPU, vector
    for vector, without its per-token Python: the tokenizer's fast batch encoding (ids only; or the
    tokens :class:`TokenizedTexts` bring), flattened by numpy, and one EmbeddingBag call. A table
    look-up costs less than sentence-transformers' handling of it."""
    import torch

    given = getattr(texts, "static_tokens", None)
    lengths, flat = given if given is not None else own_tokens(table.tokenizer, texts)
    offsets = np.zeros(len(lengths), np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    with torch.inference_mode():
        bags = table.embedding(torch.from_numpy(flat), torch.from_numpy(offsets))
        return torch.nn.functional.normalize(bags, p=2, dim=1).numpy()


def own_tokens(tokenizer, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(lengths, ids concatenated) of ``texts`` under ``tokenizer`` (a ``tokenizers.Tokenizer``), no special tokens."""
    return flat_ids([e.ids for e in tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)])


def flat_ids(ids: list) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter(map(len, ids), np.int64, len(ids))
    return lengths, np.fromiter(itertools.chain.from_iterable(ids), np.int64, int(lengths.sum()))
