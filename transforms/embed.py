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


class SentenceTransformerModelHandler(ModelHandler[Sequence[str], PredictionResult, Any]):
    """Embeds batches of texts into unit-length float32 matrices with a sentence-transformers model.

    An example is a sequence of texts (a bucket of units here; ``beam.BatchElements`` makes them
    from a PCollection of strings), and its inference is a float32 matrix with one row per text.
    Each example is encoded in its own ``encode`` call, which sorts the texts by length and runs
    them ``batch_size`` at a time: little padding, and a text's vector depends only on the example
    it came in, never on what else RunInference put into the same call.

    Args:
      model_folder: a local model folder (see :mod:`hyperscene.transforms.models`).
      embedder: one of ``models.EMBEDDERS``.
      device: ``cpu``, ``cuda``, ``cuda:1``, ``mps``...
      batch_size: texts per forward pass.
      **kwargs: ModelHandler's own (``min_batch_size``, ``max_batch_size``: examples per call,
        default 1).
    """

    def __init__(self, model_folder: str, *, embedder: str = DEFAULT_EMBEDDER, device: str = "cpu",
                 batch_size: int = 64, **kwargs):
        kwargs.setdefault("max_batch_size", 1)
        super().__init__(**kwargs)
        self._folder = model_folder
        self._embedder = embedder
        self._device = device
        self._batch_size = batch_size

    def load_model(self):
        return load_embedder(self._folder, self._embedder, self._device)

    def run_inference(self, batch: Sequence[Sequence[str]], model, inference_args: Optional[dict[str, Any]] = None):
        results = []
        for texts in batch:
            with stage_timer("embed", len(texts)):
                vectors = model.encode(
                    list(texts),
                    batch_size=self._batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                    **(inference_args or {}),
                )
            results.append(PredictionResult(texts, vectors.astype("float32", copy=False)))
        return results

    def get_num_bytes(self, batch: Sequence[Sequence[str]]) -> int:
        return sum(len(t.encode("utf-8")) for texts in batch for t in texts)

    def get_metrics_namespace(self) -> str:
        return "hyperscene_embed"


class _AttachVectors(beam.DoFn):
    def setup(self):
        self._progress = Progress("embed", "distinct units")

    def process(self, keyed):
        bucket, result = keyed
        self._progress.add(len(bucket))
        yield bucket.with_vectors(result.inference)


class Embed(beam.PTransform):
    """UnitBuckets -> the same with ``vectors``, one RunInference example per bucket.

    Buckets are made from content (hashes of unit ids), so the same corpus is encoded in the same
    batches and gets the same vectors, to the last bit, on any runner and any number of workers.
    """

    def __init__(self, handler: SentenceTransformerModelHandler):
        super().__init__()
        self._handler = KeyedModelHandler(handler)

    def expand(self, buckets):
        return (
            buckets
            | "Texts" >> beam.Map(lambda b: (b, b.texts()))
            | "RunInference" >> RunInference(self._handler)
            | "Attach" >> beam.ParDo(_AttachVectors())
        )
