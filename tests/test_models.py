"""Embedders and devices (transforms/models.py): the OpenVINO export and its cache, the choices made
for a CUDA device, and the errors for what this machine lacks. Real bundled model, no network, no GPU."""

import subprocess
import sys

import numpy as np
import pytest

from hyperscene.pipelines import compress
from hyperscene.pipelines.config import CompressConfig
from hyperscene.transforms import model_catalog, models
from hyperscene.transforms.errors import InvalidOption
from hyperscene.transforms.near_dup import DEFAULT_THRESHOLDS

from conftest import REPO, SAMPLE_CORPUS

SENTENCES = [
    "A man is playing a guitar.",
    "Someone plays the guitar on a stage.",
    "The stock market fell sharply today.",
    "Она читала книгу у окна.",
]

openvino_installed = pytest.mark.skipif(bool(models.missing_openvino_packages()),
                                        reason="the openvino packages are not installed (make install adds them)")


def cosines(x, y):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)
    return (x * y).sum(axis=1)


@pytest.fixture(scope="module")
def torch_vectors(model_folder):
    return models.load_embedder(model_folder, "torch", precision="float32").encode(SENTENCES, normalize_embeddings=True)


@pytest.fixture(scope="module")
def exported(model_folder, tmp_path_factory):
    """The bundled model exported once into a fresh cache; ``calls`` records every export made."""
    cache = tmp_path_factory.mktemp("cache")
    calls = []
    export = models._export_openvino

    def counting(*args, **kwargs):
        calls.append(args)
        return export(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(models, "_export_openvino", counting)
        folder = models.openvino_model(model_folder, str(cache))
        yield folder, cache, calls


@openvino_installed
def test_openvino_export_is_cached_and_reused(exported, model_folder):
    folder, cache, calls = exported
    assert len(calls) == 1
    assert models.is_openvino_model(folder)
    assert [p.name for p in cache.iterdir()] == [folder.rsplit("/", 1)[-1]]  # no staging folder left behind
    assert models.openvino_model(model_folder, str(cache)) == folder  # second call: the cache, no export
    assert models.folder_for_embedder(model_folder, "openvino", str(cache)) == folder
    assert models.openvino_model(folder) == folder  # an exported folder is used as it is
    assert len(calls) == 1


@openvino_installed
def test_openvino_embeds_like_torch(exported, model_folder, torch_vectors):
    from hyperscene.transforms.embed import SentenceTransformerModelHandler

    folder, cache, calls = exported
    model = models.load_embedder(model_folder, "openvino", "cpu", cache_dir=str(cache))
    vectors = model.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)
    assert vectors.shape == (len(SENTENCES), 384) and vectors.dtype == np.float32
    assert (cosines(vectors, torch_vectors) > 0.99).all()
    # the handler's load_model(folder, embedder, device) with the exported folder, as a worker gets it
    handler_model = SentenceTransformerModelHandler(folder, embedder="openvino").load_model()
    assert (cosines(handler_model.encode(SENTENCES), torch_vectors) > 0.99).all()
    identity = models.describe_model("bundled", folder, "bundled", model, "openvino")
    assert identity.embedder == "openvino" and identity.dimension == 384
    assert len(calls) == 1  # neither load exported again


def test_missing_openvino_packages_is_one_clear_error(monkeypatch, model_folder, tmp_path):
    monkeypatch.setitem(sys.modules, "optimum.intel", None)  # as if optimum-intel were not installed
    assert "optimum-intel" in models.missing_openvino_packages()
    for attempt in (
        lambda: models.check_embedder("openvino", "cpu"),
        lambda: models.openvino_model(model_folder, str(tmp_path)),
        lambda: models.load_embedder(model_folder, "openvino", cache_dir=str(tmp_path)),
        lambda: compress.parse([str(SAMPLE_CORPUS), "--out", str(tmp_path / "s"), "--embedder", "openvino"]),
    ):
        with pytest.raises(InvalidOption, match=r"needs optimum-intel.*pip install --no-deps optimum-intel") as e:
            attempt()
        assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("native_bf16", [False, True])
def test_dtype_and_batch_size_follow_the_device(native_bf16, monkeypatch):
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: native_bf16)
    cpu = "bfloat16" if native_bf16 else "float32"
    assert [models.torch_dtype(d) for d in ("cuda", "cuda:1", "cpu", "mps")] == ["float16", "float16", cpu, "float32"]
    assert models.torch_dtype("cuda", "static") == "float32"  # only the transformer runs in half precision
    assert models.torch_dtype("cpu", "openvino") == "float32"
    assert models.torch_dtype("cpu", "torch", "float32") == "float32"  # --precision overrides auto
    assert models.torch_dtype("cuda", "torch", "bfloat16") == "bfloat16"
    assert [models.default_batch_size(d) for d in ("cuda", "cuda:0", "cpu", "mps")] == [512, 512, 64, 64]
    assert models.default_batch_size("cpu", "static") == models.STATIC_BATCH_SIZE
    # the config resolves a batch size the user did not give, and checks nothing on the machine
    assert CompressConfig(inputs=("x",), out="o", device="cuda").batch_size == 512
    assert CompressConfig(inputs=("x",), out="o", device="cuda:1", batch_size=32).batch_size == 32
    assert CompressConfig(inputs=("x",), out="o").batch_size == 64
    with pytest.raises(InvalidOption, match="openvino runs on the CPU"):
        CompressConfig(inputs=("x",), out="o", embedder="openvino", device="cuda")
    cfg = CompressConfig(inputs=("x",), out="o", embedder="openvino")
    assert cfg.near_dup_threshold == DEFAULT_THRESHOLDS["minilm"]["openvino"]
    assert CompressConfig(inputs=("x",), out="o", embedder="static").batch_size == models.STATIC_BATCH_SIZE


def test_precision_is_checked_without_io():
    for bad, message in ((dict(precision="half"), "--precision must be one of"),
                         (dict(precision="bfloat16", embedder="static"), "applies to --embedder torch only"),
                         (dict(precision="float16"), "needs a CUDA GPU")):
        with pytest.raises(InvalidOption, match=message):
            CompressConfig(inputs=("x",), out="o", **bad)
    assert CompressConfig(inputs=("x",), out="o", precision="float16", device="cuda").precision == "float16"


@pytest.mark.skipif(not __import__("os").path.exists("/proc/cpuinfo"), reason="reads Linux's /proc/cpuinfo")
def test_native_bf16_is_read_from_the_cpu_flags():
    """On this Linux machine the answer must agree with /proc/cpuinfo, whatever the CPU."""
    flags = next((line for line in open("/proc/cpuinfo") if line.startswith("flags")), "")
    assert models.cpu_has_native_bf16() == ("amx_bf16" in flags.split())


@pytest.mark.parametrize("dtype, min_cosine", [("bfloat16", 0.999), ("float16", 0.99)])
def test_reduced_precision_keeps_float32_unit_vectors(dtype, min_cosine, model_folder, torch_vectors):
    """What auto picks on a CPU with bfloat16 in hardware, and the CUDA path's float16 run on the
    CPU: the transformer in reduced precision, float32 pooling, unit vectors close to float32's
    (bfloat16: 0.99987 at least over STS-B's sentences, benchmarks/near_dup_threshold.py)."""
    import torch

    model = models.load_sentence_transformer(model_folder, dtype=dtype)
    assert next(model.parameters()).dtype == getattr(torch, dtype)
    vectors = model.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (cosines(vectors, torch_vectors) > min_cosine).all()


def test_a_model_saved_in_float16_runs_in_float32_on_a_cpu(model_folder, torch_vectors, tmp_path, monkeypatch):
    """transformers keeps a checkpoint's saved dtype unless told otherwise; float16 on a CPU is
    many times slower, so the CPU path must ask for its own precision whatever the weights were saved in."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "fp16-model"
    shutil.copytree(model_folder, folder)
    weights = load_file(folder / "model.safetensors")
    save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()}, folder / "model.safetensors",
              metadata={"format": "pt"})
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: False)
    model = models.load_sentence_transformer(str(folder), "cpu")
    assert next(model.parameters()).dtype == torch.float32
    vectors = model.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)
    assert (cosines(vectors, torch_vectors) > 0.9999).all()


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_fails_fast_with_one_line(device, model_folder, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(InvalidOption, match="CUDA is not available on this machine"):
        models.check_device(device)
    with pytest.raises(InvalidOption, match="CUDA is not available"):
        models.load_embedder(model_folder, "torch", device)
    with pytest.raises(InvalidOption, match="CUDA is not available"):
        compress.parse([str(SAMPLE_CORPUS), "--out", str(tmp_path / "s"), "--device", device])
    # the command: one line, status 2, no traceback, nothing written
    out = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-m", "hyperscene.pipelines.cli", "compress", str(SAMPLE_CORPUS), "--out", str(out), "--device", device],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("hyperscene compress: error: [E245]") and "CUDA is not available" in lines[0]
    assert not out.exists()


def test_unknown_device_is_an_invalid_option():
    for device in ("tpu", "cuda:x"):
        with pytest.raises(InvalidOption, match="is not a device"):
            models.check_device(device)
    models.check_device("cpu")


@openvino_installed
def test_openvino_compress_round_trips(tmp_path, monkeypatch):
    from hyperscene.pipelines import decompress
    from hyperscene.transforms.store.reader import StoreVersion

    monkeypatch.setenv("HYPERSCENE_CACHE", str(tmp_path / "default-cache"))  # must not be used
    store, restored = tmp_path / "store", tmp_path / "restored"
    compress.run([str(SAMPLE_CORPUS), "--out", str(store), "--embedder", "openvino", "--cache-dir", str(tmp_path / "cache")])
    assert [p.name.split("-")[0] for p in (tmp_path / "cache").iterdir()] == ["openvino"]
    assert not (tmp_path / "default-cache").exists()
    manifest = StoreVersion(str(store)).manifest
    assert manifest["model"]["embedder"] == "openvino" and manifest["model"]["dimension"] == 384
    assert manifest["config"]["near_dup_threshold"] == DEFAULT_THRESHOLDS["minilm"]["openvino"]
    decompress.run([str(store), "--out", str(restored)])
    name = "alice-in-wonderland.txt"
    assert (restored / name).read_bytes() == (SAMPLE_CORPUS / name).read_bytes()


def test_every_known_model_and_embedder_has_a_measured_near_duplicate_threshold():
    assert set(DEFAULT_THRESHOLDS) == set(model_catalog.KNOWN_MODELS)
    for by_embedder in DEFAULT_THRESHOLDS.values():
        assert set(by_embedder) == set(models.EMBEDDERS)


def test_the_default_model_follows_the_language():
    assert CompressConfig(inputs=("x",), out="o").model == "minilm"
    ru = CompressConfig(inputs=("x",), out="o", lang="ru")
    assert (ru.model, ru.max_unit_tokens, ru.near_dup_threshold) == ("e5-small", 8, DEFAULT_THRESHOLDS["e5-small"]["torch"])
    assert CompressConfig(inputs=("x",), out="o", lang="de").model == "e5-small"
    # a model named by the user keeps MiniLM's measured thresholds, the only ones there are for it
    assert CompressConfig(inputs=("x",), out="o", model="some/model", embedder="static").near_dup_threshold == 0.95
