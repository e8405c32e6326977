"""A unit's id: a 64-bit integer from the BLAKE2b hash of its exact text, the same on any machine.

It is the first 8 bytes of the 128-bit BLAKE2b digest that stores of format 4 and earlier wrote as
32 hex digits, read as an unsigned number and shifted down by 2**63 into a signed int64 (Parquet's
and every reader's integer). The shift keeps the order: ids sort as the old hex ids did, so units
sort, bucket and tie-break as before, and an old file's id converts without its text
(:func:`upgrade_ids`, :func:`hex_to_id_sql`).

Two different texts with one id would be one unit and a wrong text on decompress, so every place
that meets a text under an id already held compares the texts and stops with E442 on a mismatch
(about one chance in 3.7e7 for a million distinct units, one in 3,700 for a hundred million).
"""

from __future__ import annotations

import hashlib
from typing import Iterable

import numpy as np

from hyperscene.schemas.store import UNIT_ID_COLUMNS

SHIFT = 1 << 63


def unit_id(text: str) -> int:
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
    return int.from_bytes(digest[:8], "big") - SHIFT


def unit_ids(texts: Iterable[str]) -> np.ndarray:
    return np.fromiter((unit_id(t) for t in texts), dtype=np.int64)


def unit_hex(uid: int) -> str:
    """The id as 16 hex digits (the first 16 of the 32 that format-4 stores wrote)."""
    return format(int(uid) + SHIFT, "016x")


def bucket_of(ids, n_buckets: int) -> np.ndarray:
    """The hash bucket of each id: its top 48 bits modulo ``n_buckets`` (the buckets of format 4's
    hex ids, so a store refreshed across the change keeps its units in their buckets)."""
    unsigned = np.asarray(ids, dtype=np.int64).view(np.uint64) ^ np.uint64(SHIFT)
    return ((unsigned >> np.uint64(16)) % np.uint64(n_buckets)).astype(np.int64)


def has_hex_ids(schema) -> bool:
    """Whether a file of this Arrow schema holds unit ids as hex strings (format 4 or earlier)."""
    import pyarrow as pa

    return any(f.name in ALL_ID_COLUMNS and pa.types.is_string(f.type) for f in schema)


def upgrade_ids(table):
    """An Arrow table with the unit-id columns of a format-4-or-earlier file (hex strings) as int64."""
    import pyarrow as pa

    for i, field in enumerate(table.schema):
        if field.name in ALL_ID_COLUMNS and pa.types.is_string(field.type):
            values = table.column(i).to_pylist()
            ids = pa.array([None if v is None else int(v[:16], 16) - SHIFT for v in values], pa.int64())
            table = table.set_column(i, pa.field(field.name, pa.int64(), field.nullable), ids)
    return table


def hex_to_id_sql(column: str) -> str:
    """DuckDB's :func:`upgrade_ids` of one column."""
    return f"(('0x' || substr({column}, 1, 16))::UBIGINT::HUGEINT - {SHIFT})::BIGINT"


ALL_ID_COLUMNS = frozenset(c for columns in UNIT_ID_COLUMNS.values() for c in columns)
