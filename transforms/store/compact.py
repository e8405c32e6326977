"""Compaction: a version whose tables have come to be many files (a refresh adds vector files of its
own beside the ones it shares) rewritten into as few as a compress writes, as a new version.

Rows are only moved, never changed: the new version holds the same rows of every table, so it
decompresses to the same bytes. Files already as few as a compress writes are shared, not rewritten.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from hyperscene.schemas import SHARDED_TABLES, SORT_KEYS, table_schema
from hyperscene.transforms.store.layers import latest_units
from hyperscene.transforms.store.writer import shard_of, vector_file_name, write_sorted_file

_VECTOR_FILE = re.compile(r"^vectors/part-v\d{6}-(\d{5})\.parquet$")


@dataclass(frozen=True)
class Rewrite:
    """Files of one table merged into ``names`` (one file, or one per shard), sorted as a compress sorts."""

    table: str
    entries: tuple[dict, ...]
    names: tuple[str, ...]


def plan_compaction(entries: list[dict], version: int, num_shards: int, layered: frozenset[str] = frozenset()
                    ) -> tuple[list[Rewrite], list[dict]]:
    """(the rewrites that bring version ``version - 1``'s files, ``entries``, down to what a compress
    writes; the entries left as they are). The ``layered`` tables (shared files holding rows of old
    revisions: see layers.py) are rewritten in any case, with their live rows only. Files without
    rows are left out: publishing writes an empty file for a table that has none."""
    by_table: dict[str, list[dict]] = {}
    for entry in entries:
        if entry["rows"]:
            by_table.setdefault(entry["table"], []).append(entry)
    rewrites, kept = [], []
    for table, files in sorted(by_table.items()):
        if table == "vectors":
            buckets: dict[int | None, list[dict]] = {}
            for entry in files:
                m = _VECTOR_FILE.match(entry["path"])
                buckets.setdefault(int(m.group(1)) if m else None, []).append(entry)
            for bucket, group in sorted(buckets.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
                if bucket is None or len(group) == 1:
                    kept.extend(group)
                else:
                    rewrites.append(Rewrite(table, tuple(group), (vector_file_name(version, bucket),)))
            continue
        shards = num_shards if table in SHARDED_TABLES else 1
        if len(files) <= shards and table not in layered:
            kept.extend(files)
        else:
            rewrites.append(Rewrite(table, tuple(files), tuple(f"part-{s:05d}.parquet" for s in range(shards))))
    return rewrites, kept


def rewrite_files(rewrite: Rewrite, read_rows, version_path: str) -> list[dict]:
    """Write one rewrite's files into ``version_path``; ``read_rows(entry)`` gives the rows of an
    entry's file that the version holds, in today's types (StoreVersion.read_file). Returns the new
    files' manifest entries."""
    table = latest_units([read_rows(e) for e in rewrite.entries])  # each unit's newest row; other tables concatenated
    schema = table_schema(rewrite.table, table.column_names)
    keys = SORT_KEYS[rewrite.table]
    table = table.sort_by([(k, "ascending") for k in keys])
    if len(rewrite.names) == 1:
        return [write_sorted_file(version_path, rewrite.table, 0, [table], rewrite.names[0], schema)]
    shards = np.array([shard_of(v, len(rewrite.names)) for v in table.column(keys[0]).to_pylist()])
    return [write_sorted_file(version_path, rewrite.table, shard, [table.filter(shards == shard)], name, schema)
            for shard, name in enumerate(rewrite.names)]
