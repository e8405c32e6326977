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

    def texts(self) -> list[str]:
        return self.units.column("text").to_pylist()
