"""The store's contract: pyarrow schemas of every table and the manifest's format version."""

from hyperscene.schemas.store import (
    FORMAT_VERSION,
    VECTORS_SINCE,
    TABLES,
    SORT_KEYS,
    CODEBOOKS,
    DEAD_LETTERS,
    DOCUMENTS,
    HYPERWORDS,
    OCCURRENCES,
    PROVENANCE,
    SCENES,
    UNITS,
    VECTORS,
    VECTORS_INT8,
    VECTOR_SCHEMAS,
    table_schema,
)

__all__ = [
    "FORMAT_VERSION",
    "VECTORS_SINCE",
    "TABLES",
    "SORT_KEYS",
    "CODEBOOKS",
    "DEAD_LETTERS",
    "DOCUMENTS",
    "HYPERWORDS",
    "OCCURRENCES",
    "PROVENANCE",
    "SCENES",
    "UNITS",
    "VECTORS",
    "VECTORS_INT8",
    "VECTOR_SCHEMAS",
    "table_schema",
]
