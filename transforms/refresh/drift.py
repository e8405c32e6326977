"""Drift: how far a refresh's fresh units sit from their hyperwords against the codebook's baseline,
the manifest section that records it, and the W003 warning when it could not be measured."""

from __future__ import annotations

from hyperscene.transforms.errors import Warnings

# Drift is measured only when the codebook was trained on at least this many units per hyperword.
# k-means puts each centroid at the mean of the units it was fitted on, so those units sit closer to
# it than units it never saw, by about (u + 1) / (u - 1) with u units per hyperword: a refresh with no
# drift at all reads 3 at u = 2, 1.67 at u = 4, 1.22 at u = 10 and 1.04 at u = 50 (and with as many
# hyperwords as units, the baseline is 0 and the ratio anything). Below 10 the ratio says more about
# the codebook's size than about the new documents. With the default codebook
# size (about 2 * sqrt(n) hyperwords for n units, so u = sqrt(n) / 2) that is 400 distinct units.
MIN_UNITS_PER_HYPERWORD = 10


def drift_section(stats: dict, baseline: float | None, baseline_units: int | None = None) -> dict:
    """How far this refresh's fresh units sit from their hyperwords, against the baseline (the
    units the codebook was trained on) and against the units stored before this refresh.

    ``ratio`` is None when there were no fresh units, or when the baseline means nothing (none, or
    fewer than :data:`MIN_UNITS_PER_HYPERWORD` units per hyperword behind it): ``reason`` says why,
    and ``--retrain-if-drift`` does not fire on it. ``baseline_units`` is the number of units the
    baseline was measured over; without it, the units stored before this refresh stand in (as many,
    for a first refresh after compress or retrain; more after several refreshes).
    """
    fresh = stats.get("_fresh_units", 0)
    stored = stats.get("_stored_units", 0)
    fresh_mean = stats.get("_fresh_distance_total", 0.0) / fresh if fresh else None
    stored_mean = stats.get("_stored_distance_total", 0.0) / stored if stored else None
    hyperwords = stats.get("codebook_size", 0)
    units = stored if baseline_units is None else baseline_units
    per_hyperword = units / hyperwords if hyperwords else None
    ratio = reason = None
    if fresh_mean is None:
        reason = "no fresh units: nothing new was embedded"
    elif baseline is None or baseline <= 0:
        reason = f"the codebook has no baseline distance (baseline_mean_distance {baseline})"
    elif per_hyperword is None or per_hyperword < MIN_UNITS_PER_HYPERWORD:
        reason = (f"the codebook was trained on {units:,} units for {hyperwords:,} hyperwords "
                  f"({0 if per_hyperword is None else per_hyperword:.2f} per hyperword, under {MIN_UNITS_PER_HYPERWORD}): "
                  f"those units sit closer to it than any unseen one, so a ratio would measure the codebook's size, not drift")
    else:
        ratio = fresh_mean / baseline
    return {
        "fresh_units": fresh,
        "fresh_mean_distance": None if fresh_mean is None else round(fresh_mean, 6),
        "stored_mean_distance": None if stored_mean is None else round(stored_mean, 6),
        "baseline_mean_distance": baseline,
        "units_per_hyperword": None if per_hyperword is None else round(per_hyperword, 2),
        "ratio": None if ratio is None else round(ratio, 4),
        "reason": reason,
    }


def drift_warning(manifest: dict) -> str | None:
    """One coded line when a refresh embedded fresh units but could not measure their drift, else None
    (for refresh, after it publishes, and inspect)."""
    drift = (manifest.get("refresh") or {}).get("drift") or {}
    if drift.get("ratio") is not None or not drift.get("fresh_units"):
        return None
    return Warnings.W003.format(reason=drift.get("reason") or "no ratio recorded", version=manifest.get("version"),
                                units_per_hyperword=MIN_UNITS_PER_HYPERWORD)


def complete_sections(sections: dict, stats: dict) -> dict:
    """A refresh's manifest sections once its statistics are in: its drift against the codebook's
    baseline, and how many stored units it embedded again."""
    codebook = sections.get("codebook") or {}
    refresh = sections.get("refresh")
    if refresh is not None and refresh.get("drift") is None:
        refresh["drift"] = drift_section(stats, codebook.get("baseline_mean_distance"), codebook.get("baseline_units"))
        # stored units embedded again from their text to decide near-duplicates (refresh/candidates.py)
        refresh["candidates_embedded"] = int(stats.get("_candidates_embedded", 0))
    return sections
