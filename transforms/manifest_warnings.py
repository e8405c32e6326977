"""Coded warnings read from a published manifest: what compress, refresh and inspect say about a
store whose model could not do its job on the corpus (W001, W002) or whose drift was not measured
(W003). Pure functions of the manifest: no I/O."""

from __future__ import annotations

from hyperscene.transforms.errors import Warnings
from hyperscene.transforms.model_catalog import known_model
from hyperscene.transforms.refresh import drift_warning


# A corpus where most units have another unit of their cluster within the threshold is one the
# model cannot read: MiniLM's static table put 89% of Russian novels' units there, against 3-6%
# for a model that reads the language (README, "Near-duplicates").
BLIND_CANDIDATE_SHARE = 0.5


def blindness(manifest: dict) -> str | None:
    """One coded line when the model could not tell the corpus's units apart, else None."""
    counts = manifest.get("counts", {})
    units, candidates = counts.get("distinct_units", 0), counts.get("near_duplicate_candidates")
    if not units or candidates is None or candidates / units <= BLIND_CANDIDATE_SHARE:
        return None
    model = manifest.get("model", {})
    lang = manifest.get("config", {}).get("lang", "en")
    advice = "--model e5-small" if model.get("name") != "e5-small" else "a model trained on this language (--model NAME)"
    return Warnings.W001.format(model=model.get("name"), embedder=model.get("embedder"), share=candidates / units,
                                lang=lang, advice=advice)


# An English-only model on a corpus more than this share of whose distinct units are in another
# script (Cyrillic, Greek, CJK, ...) is warned about: those units' vectors mean little.
FOREIGN_SCRIPT_SHARE = 0.05


def script_warning(manifest: dict) -> str | None:
    """One coded line when an English-only model was given text in other scripts, else None."""
    counts = manifest.get("counts", {})
    units, foreign = counts.get("distinct_units", 0), counts.get("non_latin_units")
    model = manifest.get("model", {})
    known = known_model(model.get("name", ""))
    if not units or foreign is None or known is None or known.languages != "en" or foreign / units <= FOREIGN_SCRIPT_SHARE:
        return None
    return Warnings.W002.format(model=model.get("name"), share=foreign / units)


def model_warnings(manifest: dict) -> list[str]:
    """The coded warnings about the model and the corpus (W001, W002), for compress and inspect."""
    return [line for line in (blindness(manifest), script_warning(manifest)) if line]


def manifest_warnings(manifest: dict) -> list[str]:
    """Every coded warning about this version, for inspect: the model's (W001, W002) and drift's (W003)."""
    return model_warnings(manifest) + [line for line in (drift_warning(manifest),) if line]
