"""A model folder loaded with sentence-transformers: offline, without progress bars, and in a chosen
torch dtype with float32 pooling. Below :mod:`hyperscene.transforms.models`, so that the e5
converter can load its own output without importing the module that resolves model names."""

from __future__ import annotations

import os


def load_in_dtype(folder: str, device: str, dtype: str):
    """The model itself, in ``dtype``.

    In float16 or bfloat16 only the transformer runs in reduced precision: its token embeddings are
    cast back to float32 before pooling, so vectors come out float32 and unit-length either way. The dtype is
    always passed: transformers otherwise keeps the dtype the weights were saved in, and a model
    saved in float16 would then run in float16 on a CPU, many times slower.
    """
    import torch

    model = sentence_transformer(folder, device=device, model_kwargs={"dtype": getattr(torch, dtype)})
    if dtype != "float32":
        model[0].register_forward_hook(_token_embeddings_to_float32)
    return model


def _token_embeddings_to_float32(module, inputs, features):
    features["token_embeddings"] = features["token_embeddings"].float()
    return features


def sentence_transformer(folder: str, **kwargs):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder needs no hub; never try one
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per worker per load is noise in a pipeline's log
    hf_logging.set_verbosity_error()  # e.g. a "load report" on an unused buffer of the checkpoint

    return SentenceTransformer(folder, local_files_only=True, **kwargs)
