"""The store's contract: pyarrow schemas of every table and the manifest's format version."""

from hyperscene.schemas.store import (
    FORMAT_VERSION,
    TABLES,
    SORT_KEYS,
    DEAD_LETTERS,
    DOCUMENTS,
    HYPERWORDS,
    OCCURRENCES,
    PROVENANCE,
    UNITS,
)

__all__ = [
    "FORMAT_VERSION",
    "TABLES",
    "SORT_KEYS",
    "DEAD_LETTERS",
    "DOCUMENTS",
    "HYPERWORDS",
    "OCCURRENCES",
    "PROVENANCE",
    "UNITS",
]
