"""Refresh: new and changed documents become a new store version, against the frozen codebooks.
The new version shares the earlier versions' files and writes only its own rows (see
transforms/store/layers.py for which rows of a shared file a version holds).

    plan.py     what a refresh changes, from ids and sha256 alone (RefreshPlan); no Beam
    merge.py    each unit bucket joined with the stored units: stored, fresh and known units
    candidates.py  the stored units a fresh unit could match, by their vectors' error bound: embedded again
    match.py    near-duplicates of fresh units, stored canonicals kept canonical
    stored.py   the stored version read back into the pipeline; fresh units onto frozen hyperwords
    stats.py    statistics of whole tables: hyperword rows and the manifest's counts
    drift.py    how far fresh units sit from their hyperwords, and warning W003
"""

from hyperscene.transforms.refresh.candidates import StoredCandidates, candidates_of
from hyperscene.transforms.refresh.drift import MIN_UNITS_PER_HYPERWORD, complete_sections, drift_section, drift_warning
from hyperscene.transforms.refresh.match import MatchFreshUnits, match_fresh_units, stored_parts
from hyperscene.transforms.refresh.merge import MergedBucket, MergeWithStore, merge_bucket
from hyperscene.transforms.refresh.plan import RefreshPlan, drop_documents, plan_refresh, update_documents
from hyperscene.transforms.refresh.stats import (
    HyperwordStats, document_stats, fresh_stats, fresh_unit_rows, hyperword_members, hyperword_rows, known_stats,
    scene_members, unit_stats)
from hyperscene.transforms.refresh.stored import (
    READ_BATCH_ROWS, assign_frozen, by_bucket, read_stored, stored_vectors_for)

# What the refresh job (pipelines/refresh.py, pipelines/retrain.py, pipelines/job.py), manifest_warnings
# and the tests import from the package.
__all__ = [
    "StoredCandidates", "candidates_of",
    "MIN_UNITS_PER_HYPERWORD", "complete_sections", "drift_section", "drift_warning",
    "MatchFreshUnits", "match_fresh_units", "stored_parts",
    "MergedBucket", "MergeWithStore", "merge_bucket",
    "RefreshPlan", "drop_documents", "plan_refresh", "update_documents",
    "HyperwordStats", "document_stats", "fresh_stats", "fresh_unit_rows", "hyperword_members", "hyperword_rows",
    "known_stats", "scene_members", "unit_stats",
    "READ_BATCH_ROWS", "assign_frozen", "by_bucket", "read_stored", "stored_vectors_for",
]
