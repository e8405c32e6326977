"""Embed distinct unit texts with a sentence-transformers model through Beam's RunInference.

:class:`SentenceTransformerModelHandler` is the project's public ModelHandler: settings in
``__init__``, the model built in ``load_model`` (see :mod:`hyperscene.transforms.models` for the
embedders), batching handed to RunInference through ``batch_elements_kwargs``. RunInference loads
one model per worker process and shares it.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference

from hyperscene.transforms.models import DEFAULT_EMBEDDER, load_embedder
from hyperscene.transforms.progress import Progress, stage_timer


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
