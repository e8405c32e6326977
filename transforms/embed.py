"""Embed distinct unit texts with a sentence-transformers model through Beam's RunInference.

:class:`SentenceTransformerModelHandler` is the project's public ModelHandler: settings in
``__init__``, the model built in ``load_model`` (see :mod:`hyperscene.transforms.models` for the
embedders), batching handed to RunInference through ``batch_elements_kwargs``. RunInference loads
one model per worker process and shares it; the handler keeps the last model it loaded for the
process, so that a pipeline with several Embed stages (refresh) loads it once.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, replace
from typing import Any, Optional, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference

from hyperscene.schemas.unit_bucket import UnitBucket
from hyperscene.transforms.models import DEFAULT_EMBEDDER, load_embedder
from hyperscene.transforms.progress import Progress, stage_timer
from hyperscene.transforms.spill import is_local
from hyperscene.transforms.vectorize import TokenizedTexts, counting_tokenizer, embed_texts


# (settings, model) of the last model a handler loaded in this process: one, so that a process
# that goes on to another model does not keep the first.
_loaded: list = []
_loading = threading.Lock()


class SentenceTransformerModelHandler(ModelHandler[Sequence[str], PredictionResult, Any]):
    """Embeds batches of texts into unit-length float32 matrices with a sentence-transformers model.

    An example is a sequence of texts (a bucket of units here; ``beam.BatchElements`` makes them
    from a PCollection of strings), and its inference is a float32 matrix with one row per text.
    Each example is embedded on its own (:func:`~hyperscene.transforms.vectorize.embed_texts`:
    ``batch_size`` texts at a time, in order of their token counts): little padding, and a text's
    vector depends only on the example it came in, never on what else RunInference put into the
    same call.

    Args:
      model_folder: a local model folder (see :mod:`hyperscene.transforms.models`).
      embedder: one of ``models.EMBEDDERS``.
      device: ``cpu``, ``cuda``, ``cuda:1``, ``mps``...
      batch_size: texts per forward pass.
      precision: ``models.PRECISIONS``; ``auto`` picks by device (:func:`models.torch_dtype`).
      **kwargs: ModelHandler's own (``min_batch_size``, ``max_batch_size``: examples per call,
        default 1).
    """

    def __init__(self, model_folder: str, *, embedder: str = DEFAULT_EMBEDDER, device: str = "cpu",
                 batch_size: int = 64, precision: str = "auto", **kwargs):
        kwargs.setdefault("max_batch_size", 1)
        super().__init__(**kwargs)
        self._folder = model_folder
        self._embedder = embedder
        self._device = device
        self._batch_size = batch_size
        self._precision = precision

    def load_model(self):
        settings = (self._folder, self._embedder, self._device, self._precision)
        with _loading:
            if not _loaded or _loaded[0][0] != settings:
                with stage_timer("load model", 1):  # its items: how many times a worker process loaded it
                    model = load_embedder(self._folder, self._embedder, self._device, precision=self._precision)
                    counting_tokenizer(model)  # now, before threads share the model
                    _loaded[:] = [(settings, model)]
            return _loaded[0][1]

    def run_inference(self, batch: Sequence[Sequence[str]], model, inference_args: Optional[dict[str, Any]] = None):
        results = []
        for texts in batch:
            with stage_timer("embed", len(texts)):
                vectors = embed_texts(model, texts, self._batch_size, **(inference_args or {}))
            results.append(PredictionResult(texts, vectors))
        return results

    def get_num_bytes(self, batch: Sequence[Sequence[str]]) -> int:
        return sum(len(t.encode("utf-8")) for texts in batch for t in texts)

    def get_metrics_namespace(self) -> str:
        return "hyperscene_embed"


def spill_vectors(bucket: UnitBucket, folder: str) -> UnitBucket:
    """The bucket with its vectors written to ``folder`` (any Beam filesystem) and only the path kept.

    The file's name and bytes depend only on the bucket, so a retried bundle rewrites it identically.
    """
    path = FileSystems.join(folder, f"vectors-{bucket.bucket:06d}.npy")
    buffer = io.BytesIO()
    np.save(buffer, bucket.vectors, allow_pickle=False)
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(buffer.getbuffer())
    return replace(bucket, vectors=None, vector_file=path)


def load_vectors(bucket: UnitBucket) -> np.ndarray:
    """The bucket's vectors, from memory or from the file :func:`spill_vectors` wrote."""
    if bucket.vectors is not None:
        return bucket.vectors
    if bucket.vector_file is None:
        raise ValueError(f"bucket {bucket.bucket} has no vectors: it must pass through Embed first")
    with FileSystems.open(bucket.vector_file, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        vectors = np.load(io.BytesIO(f.read()), allow_pickle=False)
    if len(vectors) != len(bucket):
        raise ValueError(f"{bucket.vector_file} holds {len(vectors)} vectors for {len(bucket)} units: "
                         "it was left by another run; compress clears such files when it starts")
    return vectors


@dataclass(frozen=True)
class VectorRows:
    """Some rows of a spilled vector file, named instead of copied.

    A shuffle on a local runner is held in memory, so the stages that regroup units (near-duplicates
    by hyperword, scenes by document) send these references through it and read the rows where
    they are used. Only for files on the local disk: a distributed runner's shuffle spills to disk
    by itself, while every group reading every bucket's file from object storage would not scale.
    """

    path: str
    rows: np.ndarray
    dtype: str = "float32"  # the values are rounded to this, as they would be if carried

    def load(self) -> np.ndarray:
        vectors = np.load(self.path, mmap_mode="r", allow_pickle=False)
        try:
            return np.asarray(vectors[self.rows]).astype(self.dtype).astype(np.float32)
        finally:
            del vectors  # unmap now, so the file's pages leave this process's resident memory

    def take(self, rows: np.ndarray) -> "VectorRows":
        return VectorRows(self.path, self.rows[rows], self.dtype)


@dataclass(frozen=True)
class VectorValues:
    """Rows of vectors carried as values, rounded to the dtype they were made with: the same handle
    as :class:`VectorRows`."""

    values: np.ndarray

    def load(self) -> np.ndarray:
        return self.values.astype(np.float32)

    def take(self, rows: np.ndarray) -> "VectorValues":
        return VectorValues(self.values[rows])


def for_row_access(bucket: UnitBucket) -> UnitBucket:
    """The bucket ready for :func:`vector_rows`: vectors spilled to a local file stay there (rows
    are referenced), any others are loaded once, not once per group of rows."""
    if bucket.vectors is None and not is_local(bucket.vector_file):
        return bucket.with_vectors(load_vectors(bucket))
    return bucket


def vector_rows(bucket: UnitBucket, rows: np.ndarray, dtype: str = "float32") -> "VectorRows | VectorValues":
    """Rows ``rows`` of a :func:`for_row_access` bucket's vectors, to send through a shuffle: a
    :class:`VectorRows` reference to the local file, or the values in ``dtype``. Either way
    ``.load()`` gives the same float32 array back."""
    if bucket.vectors is None:
        return VectorRows(bucket.vector_file, np.asarray(rows), dtype)
    return VectorValues(bucket.vectors[rows].astype(dtype))


class _AttachVectors(beam.DoFn):
    def __init__(self, spill_to: Optional[str]):
        self._spill_to = spill_to

    def setup(self):
        self._progress = Progress("embed", "distinct units")

    def process(self, keyed):
        bucket, result = keyed
        self._progress.add(len(bucket))
        bucket = replace(bucket.with_vectors(result.inference), static_tokens=None)
        yield spill_vectors(bucket, self._spill_to) if self._spill_to else bucket


def _example(bucket: UnitBucket):
    texts = bucket.texts()
    return bucket, (TokenizedTexts(texts, bucket.static_tokens) if bucket.static_tokens is not None else texts)


class Embed(beam.PTransform):
    """UnitBuckets -> the same with ``vectors``, one RunInference example per bucket.

    Buckets are made from content (hashes of unit ids), so the same corpus is encoded in the same
    batches and gets the same vectors, to the last bit, on any runner and any number of workers.

    With ``spill_to`` (a folder), the vectors go to one file per bucket there and the buckets carry
    only its path (:func:`load_vectors` reads it back): a runner that holds a whole PCollection in
    memory between stages, as the local ones do, then holds kilobytes per bucket, not megabytes.
    """

    def __init__(self, handler: SentenceTransformerModelHandler, spill_to: Optional[str] = None):
        super().__init__()
        self._handler = KeyedModelHandler(handler)
        self._spill_to = spill_to

    def expand(self, buckets):
        return (
            buckets
            | "Texts" >> beam.Map(_example)
            | "RunInference" >> RunInference(self._handler)
            | "Attach" >> beam.ParDo(_AttachVectors(self._spill_to))
        )
