"""Validated configuration of the compress job. Validation never touches files, models or the network."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from hyperscene.transforms.codebook import DEFAULT_SAMPLE as DEFAULT_CODEBOOK_SAMPLE
from hyperscene.transforms.model_catalog import default_model
from hyperscene.transforms.models import DEFAULT_EMBEDDER, EMBEDDERS, check_embedder_device, check_precision, default_batch_size
from hyperscene.transforms.errors import Errors, InvalidOption
from hyperscene.transforms.near_dup import CHECKS as NEAR_DUP_CHECKS, DEFAULT_CHECK as DEFAULT_NEAR_DUP_CHECK, default_threshold
from hyperscene.transforms.inputs import FORMATS as INPUT_FORMATS
from hyperscene.transforms.scenes import SceneConfig
from hyperscene.transforms.store.vector_codec import DEFAULT_ENCODING as DEFAULT_VECTORS, ENCODINGS as VECTOR_ENCODINGS
from hyperscene.transforms.segment import default_max_unit_tokens


MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class CompressConfig:
    inputs: tuple[str, ...]
    out: str
    input_format: str = "auto"
    text_field: str = "text"
    id_field: str | None = None
    lang: str = "en"
    spacy_model: str | None = None
    max_unit_tokens: int | None = None  # None: the language's measured default (segment.default_max_unit_tokens)
    model: str | None = None  # None: the language's default (model_catalog.default_model)
    embedder: str = DEFAULT_EMBEDDER
    cache_dir: str | None = None  # where distilled and exported models are kept; None: ~/.cache/hyperscene
    allow_download: bool = False
    device: str = "cpu"
    batch_size: int | None = None  # None: 64 on the CPU, 512 on a CUDA GPU, 4,096 static (models.default_batch_size)
    precision: str = "auto"  # the torch embedder's; auto: float16 on CUDA, bfloat16 on a CPU with it in hardware
    codebook_size: int | None = None  # None: scales with the number of distinct units
    codebook_sample: int = DEFAULT_CODEBOOK_SAMPLE
    seed: int = 0
    near_dup_threshold: float | None = None  # None: the model's and embedder's measured default
    near_dup_check: str = DEFAULT_NEAR_DUP_CHECK  # what a cosine candidate must also pass to merge
    levels: int | None = None  # scene levels above the units; None: up to one root per document
    scene_min_units: int = SceneConfig.min_units
    scene_max_units: int = SceneConfig.max_units
    level_codebook_sizes: tuple[int, ...] = ()  # level 1 first; levels beyond: about 2*sqrt(scenes)
    num_shards: int = 1
    vectors: str = DEFAULT_VECTORS  # how the vectors table holds embeddings (transforms/store/vector_codec.py)
    beam_args: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self):
        if not self.inputs:
            raise InvalidOption(Errors.E210)
        if not self.out:
            raise InvalidOption(Errors.E211)
        if self.input_format not in INPUT_FORMATS:
            raise InvalidOption(Errors.E212.format(formats=", ".join(INPUT_FORMATS), value=self.input_format))
        if self.model is None:
            object.__setattr__(self, "model", default_model(self.lang))
        if self.max_unit_tokens is None:
            object.__setattr__(self, "max_unit_tokens", default_max_unit_tokens(self.lang))
        if self.max_unit_tokens < 2:
            raise InvalidOption(Errors.E213.format(value=self.max_unit_tokens))
        if self.batch_size is None:
            object.__setattr__(self, "batch_size", default_batch_size(self.device, self.embedder))
        if self.batch_size < 1:
            raise InvalidOption(Errors.E214.format(value=self.batch_size))
        if self.codebook_size is not None and self.codebook_size < 1:
            raise InvalidOption(Errors.E215.format(value=self.codebook_size))
        # FAISS takes its seed as a C int: a larger one fails only after embedding, in a traceback.
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise InvalidOption(Errors.E216.format(most=MAX_SEED, value=self.seed))
        if self.codebook_sample < 1:
            raise InvalidOption(Errors.E217.format(value=self.codebook_sample))
        if self.embedder not in EMBEDDERS:
            raise InvalidOption(Errors.E218.format(embedders=", ".join(EMBEDDERS), value=self.embedder))
        check_embedder_device(self.embedder, self.device)
        check_precision(self.precision, self.device, self.embedder)
        if self.near_dup_threshold is None:
            object.__setattr__(self, "near_dup_threshold", default_threshold(self.model, self.embedder))
        if not 0.0 < self.near_dup_threshold <= 1.0:
            raise InvalidOption(Errors.E219.format(value=self.near_dup_threshold))
        if self.near_dup_check not in NEAR_DUP_CHECKS:
            raise InvalidOption(Errors.E220.format(checks=", ".join(NEAR_DUP_CHECKS), value=self.near_dup_check))
        if any(size < 1 for size in self.level_codebook_sizes):
            raise InvalidOption(Errors.E221.format(value=",".join(map(str, self.level_codebook_sizes))))
        self.scene_config()  # raises InvalidOption on bad scene bounds or --levels
        if self.num_shards < 1:
            raise InvalidOption(Errors.E222.format(value=self.num_shards))
        if not self.text_field:
            raise InvalidOption(Errors.E223)
        if self.vectors not in VECTOR_ENCODINGS:
            raise InvalidOption(Errors.E225.format(encodings=", ".join(VECTOR_ENCODINGS), value=self.vectors))

    def scene_config(self) -> SceneConfig:
        return SceneConfig(min_units=self.scene_min_units, max_units=self.scene_max_units, levels=self.levels)

    def as_manifest(self) -> dict:
        """Settings that shape the store, for the manifest (runner flags are not among them)."""
        d = asdict(self)
        d.pop("beam_args")
        d["inputs"] = list(self.inputs)
        d["level_codebook_sizes"] = list(self.level_codebook_sizes)
        return d
