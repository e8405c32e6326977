"""The element the unit stages pass along: one hash bucket of distinct units, with every occurrence.

Between exact dedup and the writes, the pipeline does not carry one element per unit: per-element
overhead in Beam costs more than the work on a short text. It carries buckets instead. A unit's
bucket is a hash of its id, so all occurrences of a unit fall in the same bucket: a bucket is a
self-contained slice of the corpus's units that every stage can work on with no join.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
import pyarrow as pa

# The columns a bucket's tables hold as it leaves each stage (the units' and the occurrences'),
# whatever their order. Later stages read them by name, so a stage adding one declares it here.
UNIT_COLUMNS_AFTER = {
    "dedup": ("unit_id", "text", "occurrence_count"),
    "count tokens": ("unit_id", "text", "occurrence_count", "token_count", "word_count"),
    "assign": ("unit_id", "text", "occurrence_count", "token_count", "word_count", "hyperword", "hyperword_score"),
}
OCCURRENCE_COLUMNS_AFTER = {
    "dedup": ("doc_id", "position", "separator", "unit_id"),
    "count tokens": ("doc_id", "position", "separator", "unit_id"),
    "assign": ("doc_id", "position", "separator", "unit_id", "hyperword"),
}
# An assigned bucket's occurrences as the scene stage takes them, and one document's part of them
# as it crosses the gathers by document and by window (transforms/levels/parts.py); ``vector_row``
# joins them where the vectors stay in the bucket's spilled file.
ASSIGNED_OCCURRENCE_COLUMNS = ["doc_id", "position", "unit_id", "separator", "hyperword"]
DOCUMENT_PART_COLUMNS = [*ASSIGNED_OCCURRENCE_COLUMNS, "token_count"]


@dataclass(frozen=True)
class UnitBucket:
    bucket: int
    # unit_id, text, occurrence_count, and the columns later stages add (token_count, word_count,
    # hyperword, hyperword_score); one row per distinct unit, sorted by unit_id.
    units: pa.Table
    # doc_id, position, unit_id, separator (and hyperword once assigned), in no particular order.
    occurrences: pa.Table
    # float32, shape (units.num_rows, dim), unit length; row i embeds units row i. None before Embed.
    vectors: Optional[np.ndarray] = None
    # Or, instead of ``vectors``, the .npy file holding them (see transforms/embed.py: spill_vectors),
    # so that a large corpus's vectors stay out of the runner's memory between stages.
    vector_file: Optional[str] = None
    # With --embedder static, from CountTokens to Embed only: the units' tokens under the static
    # embedder's tokenizer, (lengths, ids concatenated), so that the texts are tokenized once.
    static_tokens: Optional[tuple[np.ndarray, np.ndarray]] = None

    def __len__(self) -> int:
        return self.units.num_rows

    def with_unit_columns(self, **columns) -> "UnitBucket":
        units = self.units
        for name, values in columns.items():
            units = units.append_column(name, values if isinstance(values, pa.Array) else pa.array(values))
        return replace(self, units=units)

    def with_vectors(self, vectors: np.ndarray) -> "UnitBucket":
        if len(vectors) != len(self):
            raise ValueError(f"{len(vectors)} vectors for {len(self)} units in bucket {self.bucket}")
        return replace(self, vectors=vectors)

    def missing_columns(self, stage: str) -> list[str]:
        """The columns declared for buckets leaving ``stage`` that this one lacks, or holds beyond."""
        units, occurrences = set(self.units.column_names), set(self.occurrences.column_names)
        return sorted(units ^ set(UNIT_COLUMNS_AFTER[stage])) + sorted(occurrences ^ set(OCCURRENCE_COLUMNS_AFTER[stage]))

    def texts(self) -> list[str]:
        return self.units.column("text").to_pylist()
