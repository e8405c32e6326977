"""Embedding models: derive faster variants of them, choose their device and precision, load them.
Which model a name means is :mod:`hyperscene.transforms.model_catalog` (its names are importable
from here too); the cache the variants are kept in is :mod:`hyperscene.transforms.model_cache`.

Embedders (``--embedder``) are ways of running one model:

- ``torch``: the sentence-transformers model itself (the quality reference);
- ``static``: a static embedding table distilled from that model with model2vec (offline, about
  20 s, cached by the model's fingerprint), loaded as a sentence-transformers ``StaticEmbedding``:
  no attention, about a hundred times faster on a CPU;
- ``openvino``: the same model exported once (offline, a few seconds, cached by the model's
  fingerprint) to an OpenVINO IR and run by OpenVINO's CPU runtime through sentence-transformers'
  ``backend="openvino"``: the same vectors (cosine > 0.9999 to ``torch``), about 3.4 times faster
  on a 2-core CPU. Needs the optional packages in :data:`OPENVINO_INSTALL`. An IR with 8-bit
  weights (``openvino_model(weights="int8")``) is measured by the benchmark but not offered: it was
  no faster than float32 here (1,309 against 1,350 units/s) and slightly worse (STS-B 0.8449,
  near-duplicate threshold 0.93 instead of 0.92); only its file is smaller (22 MB against 88 MB).

Devices and precision: the ``torch`` embedder runs the transformer in float16 on ``cuda``/``cuda:N``,
in bfloat16 on a CPU with AMX (1.9 to 3.1 times float32's speed on the days the README's tables were
measured, cosine to float32 vectors above 0.9999; on a day this machine showed AVX512-BF16 and no
AMX, bfloat16 was slower than float32), in float32 elsewhere; pooling and
normalisation stay float32 (:func:`torch_dtype`, ``--precision`` to choose). The default batch is
larger on a GPU and for ``static`` (:func:`default_batch_size`); :func:`check_device` turns a
device this machine lacks into one clear error before any work.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

from hyperscene.transforms.cpu import cpu_flags
from hyperscene.transforms.errors import Errors, InvalidOption
from hyperscene.transforms.model_cache import default_cache_dir, fingerprint, publish_folder
from hyperscene.transforms.model_loading import load_in_dtype, sentence_transformer

logger = logging.getLogger("hyperscene")

EMBEDDERS = ("torch", "static", "openvino")
DEFAULT_EMBEDDER = "torch"
STATIC_PCA_DIMS = 256
CPU_BATCH_SIZE = 64
GPU_BATCH_SIZE = 512  # MiniLM in float16 uses well under 1 GiB of GPU memory at this size
# A static model's cost per text is a table lookup, so sentence-transformers' per-batch overhead
# dominates at 64: 4,096 doubles its speed (benchmarks/near_dup_threshold.py --embedder static).
STATIC_BATCH_SIZE = 4096
# --precision: "auto" is float16 on a CUDA GPU, bfloat16 on a CPU with native bfloat16, else float32.
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
# CPU flags (Linux /proc/cpuinfo) of bfloat16 matrix products that beat float32: AMX's. AVX512-BF16
# alone is not enough: on a Xeon with it and no AMX, MiniLM ran at 87 units/s in bfloat16 against
# 127 in float32 (benchmarks/embed_floor.py --precisions float32,bfloat16); without either, torch
# emulates bfloat16, slower still.
NATIVE_BF16_FLAGS = frozenset({"amx_bf16"})
# optimum-intel declares torchvision as a dependency, and no torchvision build works with the CPU
# torch wheel (transformers then fails on "operator torchvision::nms does not exist"): it goes in
# with --no-deps, and its real runtime dependencies are named here. Versions verified together.
OPENVINO_PACKAGES = ("optimum==2.3.0", "nncf==3.4.0", "openvino==2026.4.1", "openvino-tokenizers==2026.4.1.0")
OPENVINO_INSTALL = "pip install --no-deps optimum-intel==2.2.0 && pip install " + " ".join(OPENVINO_PACKAGES)


@dataclass(frozen=True)
class ModelIdentity:
    """What the manifest records: enough to tell whether two stores used the same model."""

    name: str
    source: str  # bundled | local | huggingface-cache | huggingface-hub
    fingerprint: str  # sha256 over the loaded folder's file names, sizes and weight bytes
    dimension: int
    embedder: str = DEFAULT_EMBEDDER
    precision: str = "float32"  # what the transformer ran in (torch_dtype); float32 for static and openvino

    def as_dict(self) -> dict:
        return {"name": self.name, "source": self.source, "embedder": self.embedder,
                "fingerprint": self.fingerprint, "dimension": self.dimension, "precision": self.precision}


# --- static (model2vec) ------------------------------------------------------------------------


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
    publish_folder(staging, target)
    return str(target)


# --- OpenVINO ----------------------------------------------------------------------------------

OPENVINO_WEIGHTS = ("fp32", "int8")


def is_openvino_model(folder: str) -> bool:
    """Whether ``folder`` holds a sentence-transformers model exported to an OpenVINO IR."""
    return (Path(folder) / "openvino" / "openvino_model.xml").is_file()


def missing_openvino_packages() -> list[str]:
    """The packages the openvino embedder needs that are not installed (checked without importing them)."""
    import importlib.util

    missing = []
    for module, package in (("openvino", "openvino"), ("optimum", "optimum"), ("optimum.intel", "optimum-intel"), ("nncf", "nncf")):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(package)
    return missing


def require_openvino() -> None:
    missing = missing_openvino_packages()
    if missing:
        raise InvalidOption(Errors.E311.format(packages=", ".join(missing), verb="is" if len(missing) == 1 else "are",
                                               install=OPENVINO_INSTALL))


def openvino_model(base_folder: str, cache_dir: str | None = None, weights: str = "fp32") -> str:
    """``base_folder``'s model exported to an OpenVINO IR, made once and cached.

    ``weights="int8"`` compresses the weights to 8 bits (NNCF weight-only, no calibration data).
    A folder that already holds an OpenVINO model is used as it is.
    """
    if weights not in OPENVINO_WEIGHTS:
        raise InvalidOption(Errors.E240.format(weights=", ".join(OPENVINO_WEIGHTS), value=weights))
    if is_openvino_model(base_folder):
        return base_folder
    require_openvino()
    suffix = "" if weights == "fp32" else f"-{weights}"
    target = Path(cache_dir or default_cache_dir()) / f"openvino{suffix}-{fingerprint(base_folder)[:16]}"
    if is_openvino_model(str(target)):
        return str(target)
    logger.info("exporting %s to OpenVINO (%s weights; once: cached in %s)", base_folder, weights, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    _export_openvino(base_folder, str(staging), weights)
    publish_folder(staging, target)
    return str(target)


def _export_openvino(base_folder: str, staging: str, weights: str) -> None:
    model_kwargs = {}
    if weights == "int8":
        from optimum.intel import OVWeightQuantizationConfig

        model_kwargs["quantization_config"] = OVWeightQuantizationConfig(bits=8)
    with _quiet_openvino():
        model = sentence_transformer(base_folder, backend="openvino", model_kwargs=model_kwargs)
    model.save_pretrained(staging)  # keeps the IR in openvino/, beside the tokenizer and pooling


@contextlib.contextmanager
def _quiet_openvino():
    """Silence advice that does not apply here: "save the exported model" (we do), optimum's "could
    not infer whether the model was converted" (it is a local folder), NNCF's statistics table and
    the tracer's warnings while the graph is captured."""
    import optimum.intel.openvino  # noqa: F401  (it sets its loggers' levels when first imported)

    quiet = [logging.getLogger(name) for name in ("sentence_transformers", "nncf", "optimum")]
    levels = [log.level for log in quiet]
    try:
        for log in quiet:
            log.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for log, level in zip(quiet, levels):
            log.setLevel(level)


def load_openvino(folder: str, cache_dir: str | None = None):
    """The openvino embedder: an exported folder as it is, any other model folder exported first."""
    require_openvino()
    ir_folder = openvino_model(folder, cache_dir)
    with _quiet_openvino():
        return sentence_transformer(ir_folder, backend="openvino")


# --- devices -----------------------------------------------------------------------------------


def is_cuda(device: str) -> bool:
    return device == "cuda" or device.startswith("cuda:")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 faster than float32 (read from Linux's /proc/cpuinfo; False elsewhere)."""
    return not NATIVE_BF16_FLAGS.isdisjoint(cpu_flags())


def check_precision(precision: str, device: str, embedder: str) -> None:
    """The rules of ``--precision``, without I/O (config validation uses this too)."""
    if precision not in PRECISIONS:
        raise InvalidOption(Errors.E241.format(precisions=", ".join(PRECISIONS), value=precision))
    if precision not in ("auto", "float32") and embedder != "torch":
        raise InvalidOption(Errors.E242.format(precision=precision, embedder=embedder))
    if precision == "float16" and not is_cuda(device):
        raise InvalidOption(Errors.E243)


def torch_dtype(device: str, embedder: str = DEFAULT_EMBEDDER, precision: str = "auto") -> str:
    """The precision the transformer runs in: for the ``torch`` embedder with ``precision="auto"``,
    float16 on a CUDA GPU, bfloat16 on a CPU with native bfloat16 (:func:`cpu_has_native_bf16`),
    float32 elsewhere; the other embedders always float32."""
    if embedder != "torch":
        return "float32"
    if precision != "auto":
        return precision
    if is_cuda(device):
        return "float16"
    return "bfloat16" if device == "cpu" and cpu_has_native_bf16() else "float32"


def default_batch_size(device: str, embedder: str = DEFAULT_EMBEDDER) -> int:
    """Texts per forward pass when the user gives none: larger on a GPU and for a static table, where it pays."""
    if embedder == "static":
        return STATIC_BATCH_SIZE
    return GPU_BATCH_SIZE if is_cuda(device) else CPU_BATCH_SIZE


def check_device(device: str) -> None:
    """Raise InvalidOption unless torch can run on ``device`` here. ``cpu`` is checked without importing torch."""
    if device == "cpu":
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise InvalidOption(Errors.E244.format(device=device)) from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is a CPU-only build" if torch.version.cuda is None else "torch sees no CUDA GPU"
            raise InvalidOption(Errors.E245.format(device=device, why=why, torch=torch.__version__))
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise InvalidOption(Errors.E246.format(device=device, count=torch.cuda.device_count()))
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise InvalidOption(Errors.E247.format(device=device))
    elif parsed.type != "cpu":
        raise InvalidOption(Errors.E248.format(device=device))


def check_embedder_device(embedder: str, device: str) -> None:
    """The device rules of each embedder, without I/O (config validation uses this too)."""
    if embedder == "openvino" and device != "cpu":
        raise InvalidOption(Errors.E249.format(device=device))


def check_embedder(embedder: str, device: str) -> None:
    """What the embedder needs from this machine, before any work: its packages and its device."""
    if embedder == "openvino":
        require_openvino()
    check_device(device)


# --- loading -----------------------------------------------------------------------------------


def folder_for_embedder(folder: str, embedder: str = DEFAULT_EMBEDDER, cache_dir: str | None = None) -> str:
    """The folder the embedder loads: the model itself, or its distilled or exported variant (cached)."""
    if embedder == "static":
        return static_model(folder, cache_dir)
    if embedder == "openvino":
        return openvino_model(folder, cache_dir)
    return folder


def load_embedder(folder: str, embedder: str = DEFAULT_EMBEDDER, device: str = "cpu", cache_dir: str | None = None,
                  precision: str = "auto"):
    if embedder not in EMBEDDERS:
        raise InvalidOption(Errors.E218.format(embedders=", ".join(EMBEDDERS), value=embedder))
    check_embedder_device(embedder, device)
    check_precision(precision, device, embedder)
    check_device(device)
    if embedder == "static":
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.models import StaticEmbedding

        return SentenceTransformer(modules=[StaticEmbedding.from_model2vec(folder)], device=device)
    if embedder == "openvino":
        return load_openvino(folder, cache_dir)
    return load_sentence_transformer(folder, device, torch_dtype(device, embedder, precision))


def load_sentence_transformer(folder: str, device: str = "cpu", dtype: str | None = None):
    """The model itself, in ``dtype`` (default: :func:`torch_dtype` of the device); see
    :func:`~hyperscene.transforms.model_loading.load_in_dtype`."""
    return load_in_dtype(folder, device, dtype or torch_dtype(device))


def describe_model(name: str, folder: str, source: str, model, embedder: str = DEFAULT_EMBEDDER,
                   precision: str = "float32") -> ModelIdentity:
    dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return ModelIdentity(name, source, fingerprint(folder), dimension(), embedder, precision)
