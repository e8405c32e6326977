"""Writing a version's tables: sorted, sharded Parquet files, each written by one worker.

Each table is keyed into shards by a hash of its first sort column, and each shard's rows are
written in sort order and in row groups of a fixed number of rows, so the same input gives
byte-identical files on any runner. Every file written is described by a record (table, path, rows,
bytes, sha256) that the manifest lists (publish.py).
"""

from __future__ import annotations

import hashlib
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from hyperscene.schemas import SORT_KEYS, TABLES, table_schema
from hyperscene.schemas.unit_bucket import UnitBucket
from hyperscene.transforms.progress import stage_timer
from hyperscene.transforms.spill import TableRows, as_rows, key_of


# Dictionary encoding pays only for columns with few distinct values; on hashes, texts and vectors it
# costs space (measured on the 1M-token slice: centroids 1.5 MB with it, 0.94 MB without).
# Counts take few values: their dictionary indices pack into fewer bits than zstd finds (whole
# reference corpus: units.token_count 0.92 MB plain, 0.65 MB so; scene codes lost by it: 2.18 MB
# of child_codes plain, 2.48 MB so).
DICTIONARY_COLUMNS = frozenset({"doc_id", "source", "format", "prefix", "separator", "hyperword", "method", "reason",
                                "token_count", "word_count", "occurrence_count"})


ZSTD_LEVEL = 9
# Columns measured better at another level (whole reference corpus). The units' text is most of a
# store without vectors, and zstd's top level finds 6% more in it (18.5 MB at 9, 17.3 MB at 19) for
# about 10 s more of one core; the semantic ids come out smaller at the fastest (3.15 MB at 9, 2.86
# MB at 1).
COLUMN_ZSTD_LEVELS = {("units", "text"): 19, ("occurrences", "semantic_id"): 1}

# A file sorted by unit id holds ids that grow by about 2**64 / rows: delta encoding stores the steps
# (about 6 bytes for 100,000 units, not 8; measured on the 1M-token slice: units.unit_id 0.87 MB
# plain, 0.69 MB delta-encoded). Every Parquet reader decodes it (it is in the format since 2.0).
# Positions and scene indices in a file sorted by document step by about one: their deltas take bits.
DELTA_COLUMNS = {"units": ("unit_id",), "vectors": ("unit_id",), "provenance": ("unit_id",), "occurrences": ("position",),
                 "scenes": ("index", "first_position", "last_position")}


def write_table_file(version_path: str, name: str, shard: int, table, file_name: str | None = None) -> dict:
    """One table (already sorted) as one Parquet file of the version."""
    return write_sorted_file(version_path, name, shard, [table], file_name, table_schema(name, table.column_names))


# Rows per Parquet row group. Beyond the parts it is handed (references, for a long document's on
# the local runner), the writer holds one run of overlapping parts (see ``sorted_runs``) and one
# group. Scene rows carry a centroid each, so theirs are fewer.
ROW_GROUP_ROWS = {"scenes": 16_384}


DEFAULT_ROW_GROUP_ROWS = 131_072


class _HashingFile:
    """A write-only file for ParquetWriter that passes bytes on to ``sink``, counting and hashing them,
    so the manifest's size and sha256 come without reading the file back or holding it in memory."""

    def __init__(self, sink):
        self._sink, self._sha, self.size, self.closed = sink, hashlib.sha256(), 0, False

    def write(self, data) -> int:
        self._sha.update(data)
        self._sink.write(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass

    def close(self) -> None:  # the sink is closed by its owner
        self.closed = True

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def zstd_levels(name: str, schema) -> dict[str, int]:
    """Each column's zstd level, keyed as Parquet names the leaves (a list's values: "c.list.element")."""
    import pyarrow as pa

    return {f"{f.name}.list.element" if pa.types.is_list(f.type) else f.name: COLUMN_ZSTD_LEVELS.get((name, f.name), ZSTD_LEVEL)
            for f in schema}


def write_sorted_file(version_path: str, name: str, shard: int, tables, file_name: str | None = None, schema=None) -> dict:
    """Tables of ``name``'s schema (or ``schema``: the vectors table has one per encoding) whose
    concatenation is in sort order, streamed into one Parquet file in row groups of a fixed number
    of rows (so the same rows give the same bytes)."""
    import pyarrow.parquet as pq

    schema = schema or TABLES[name]
    relative = f"{name}/{file_name or f'part-{shard:05d}.parquet'}"
    dictionary = [c for c in schema.names if c in DICTIONARY_COLUMNS]
    # float16 vectors barely compress: a fast level keeps most of the little there is to gain.
    level = 1 if name == "vectors" else zstd_levels(name, schema)
    group = ROW_GROUP_ROWS.get(name, DEFAULT_ROW_GROUP_ROWS)
    rows = 0
    with FileSystems.create(FileSystems.join(version_path, relative), compression_type=CompressionTypes.UNCOMPRESSED) as sink:
        out = _HashingFile(sink)
        encoding = {c: "DELTA_BINARY_PACKED" for c in DELTA_COLUMNS.get(name, ())}
        with pq.ParquetWriter(out, schema, compression="zstd", compression_level=level, use_dictionary=dictionary,
                              column_encoding=encoding or None) as writer:
            pending: list = []
            held = 0
            for table in tables:
                if table.num_rows == 0:
                    continue
                pending.append(_conform(schema, table))
                held += table.num_rows
                rows += table.num_rows
                if held >= group:
                    whole = _concat(pending)
                    full = (held // group) * group
                    for start in range(0, full, group):
                        # one chunk per group: the file is to depend on the rows alone, never on
                        # how they came split into parts
                        writer.write_table(whole.slice(start, group).combine_chunks(), row_group_size=group)
                    pending, held = ([whole.slice(full)] if held > full else []), held - full
            if pending or rows == 0:
                writer.write_table(_concat(pending).combine_chunks() if pending else schema.empty_table(), row_group_size=group)
    return {"table": name, "path": relative, "rows": rows, "bytes": out.size, "sha256": out.hexdigest()}


def _concat(tables):
    import pyarrow as pa

    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def _conform(schema, table) -> "pa.Table":
    """The table's columns in the schema's order and types."""
    import pyarrow as pa

    if table.schema.equals(schema, check_metadata=True):
        return table
    return pa.Table.from_arrays([table.column(f.name).cast(f.type) for f in schema], schema=schema)


def shard_of(value: Any, num_shards: int) -> int:
    if num_shards == 1:
        return 0
    digest = hashlib.blake2b(str(value).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_shards


def shard_parts(element, key: str, num_shards: int):
    """A row (dict), or rows (an Arrow table or a :class:`~hyperscene.transforms.spill.Rows`
    handle) -> (shard, part) by a hash of its ``key`` column."""
    if isinstance(element, dict):
        yield shard_of(element[key], num_shards), element
        return
    rows = as_rows(element)
    if num_shards == 1:
        yield 0, rows
    elif rows.first_key and rows.first_key[:1] == rows.last_key[:1]:
        yield shard_of(rows.first_key[0], num_shards), rows  # rows sorted by key: one value throughout
    else:
        table = rows.load()
        shards = np.array([shard_of(v, num_shards) for v in table.column(key).to_pylist()])
        for shard in np.unique(shards):
            yield int(shard), TableRows(table.filter(shards == shard))


def sorted_runs(name: str, parts):
    """Rows (dicts) and :class:`~hyperscene.transforms.spill.Rows` handles -> tables whose
    concatenation is every row, sorted by the table's sort keys.

    Parts are ordered by their first and last keys; parts whose key ranges overlap form a run, which
    is read, concatenated and sorted alone. The parts of one long document are disjoint spans of
    it, so a shard holding one is written a window at a time.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    schema, keys = TABLES[name], list(SORT_KEYS[name])
    parts = list(parts)
    rows = [p for p in parts if isinstance(p, dict)]
    spans = []  # (first key, last key, part)
    for part in ([TableRows(pa.Table.from_pylist(rows, schema=schema))] if rows else []) + [as_rows(p) for p in parts if not isinstance(p, dict)]:
        if part.num_rows == 0:
            continue
        if part.first_key:  # sorted by the table's keys, as a spilled part is
            spans.append((part.first_key, part.last_key, part))
        else:  # its key range, without a sorted copy of it
            table = part.load()
            order = pc.sort_indices(table, sort_keys=[(k, "ascending") for k in keys])
            spans.append((key_of(table, order[0].as_py(), keys), key_of(table, order[-1].as_py(), keys), part))
    if any(None in first or None in last or not first for first, last, _ in spans):  # no order to go by: one run
        if spans:
            yield _sort(name, [p for _, _, p in spans])
        return
    spans.sort(key=lambda s: s[0])
    run, run_last = [], None
    for first, last, part in spans:
        if run and first > run_last:
            yield _sort(name, run)
            run = []
        run_last = last if not run or last > run_last else run_last
        run.append(part)
    if run:
        yield _sort(name, run)


def _sort(name: str, parts) -> "pa.Table":
    table = _concat([_conform(TABLES[name], p.load()) for p in parts])
    return table.sort_by([(key, "ascending") for key in SORT_KEYS[name]])


class WriteTable(beam.PTransform):
    """Rows (dicts), Arrow tables or :class:`~hyperscene.transforms.spill.Rows` with the table's
    columns -> one file record per written shard."""

    def __init__(self, name: str, version_path: str, num_shards: int = 1):
        super().__init__()
        self._name, self._path, self._shards = name, version_path, num_shards

    def expand(self, parts):
        name, path, shards, key = self._name, self._path, self._shards, SORT_KEYS[self._name][0]
        return (
            parts
            | "Shard" >> beam.FlatMap(shard_parts, key=key, num_shards=shards)
            | "GatherSmall" >> beam.ParDo(_GatherSmallParts(name))
            | "Group" >> beam.GroupByKey()
            | "Write" >> beam.MapTuple(lambda shard, ps: _write_shard(shard, ps, path, name))
        )


# Parts of fewer rows than this (a short document's rows, a document row) are gathered, per shard
# and bundle, into sorted tables of about GATHERED_ROWS rows before the shuffle: each element
# crossing it costs as much as writing a few hundred rows.
SMALL_PART_ROWS = 1_000
GATHERED_ROWS = 20_000


class _GatherSmallParts(beam.DoFn):
    """(shard, part) -> the same, small parts of a bundle gathered into sorted :class:`TableRows`
    (their first and last keys set, as a spilled part's are); larger parts pass as they are."""

    def __init__(self, name: str):
        self._name = name

    def start_bundle(self):
        self._held: dict[int, list] = {}
        self._rows: dict[int, int] = {}

    def process(self, item):
        shard, part = item
        n = 1 if isinstance(part, dict) else part.num_rows
        if n >= SMALL_PART_ROWS:
            yield shard, part
            return
        self._held.setdefault(shard, []).append(part)
        self._rows[shard] = self._rows.get(shard, 0) + n
        if self._rows[shard] >= GATHERED_ROWS:
            yield shard, self._gathered(shard)

    def finish_bundle(self):
        from apache_beam.transforms.window import GlobalWindow
        from apache_beam.utils.windowed_value import WindowedValue

        for shard in list(self._held):
            yield WindowedValue((shard, self._gathered(shard)), 0, [GlobalWindow()])

    def _gathered(self, shard: int) -> TableRows:
        import pyarrow as pa

        parts = self._held.pop(shard)
        self._rows.pop(shard)
        rows = [p for p in parts if isinstance(p, dict)]
        handles = ([TableRows(pa.Table.from_pylist(rows, schema=TABLES[self._name]))] if rows else []) + [
            as_rows(p) for p in parts if not isinstance(p, dict)]
        table, keys = _sort(self._name, handles).combine_chunks(), list(SORT_KEYS[self._name])
        return TableRows(table, key_of(table, 0, keys), key_of(table, table.num_rows - 1, keys))


def _write_shard(shard: int, parts, path: str, name: str) -> dict:
    parts = list(parts)
    with stage_timer("write", sum(1 if isinstance(p, dict) else p.num_rows for p in parts)):
        return write_sorted_file(path, name, shard, sorted_runs(name, parts))


def vector_file_name(version: int, bucket: int) -> str:
    """Vector files are named by the version that embedded them: a refresh copies the earlier ones
    as they are and adds its own beside them."""
    return f"part-v{version:06d}-{bucket:05d}.parquet"


def write_vector_rows(item, version_path: str, version: int) -> dict:
    """(bucket, its ``vectors`` rows) as one file of this version, the rows as they are."""
    bucket, table = item
    with stage_timer("write", table.num_rows):
        return write_table_file(version_path, "vectors", 0, table, vector_file_name(version, bucket))


def write_vector_file(bucket: UnitBucket, version_path: str, version: int, encoding: str, quantizer=None) -> dict:
    """A bucket's units as one file of ``vectors`` rows (id, hyperword, vector in ``encoding``; pq
    coded with the store's ``quantizer``)."""
    from hyperscene.transforms.embed import load_vectors
    from hyperscene.transforms.store.vector_codec import vector_table

    with stage_timer("write", len(bucket)):
        table = vector_table(bucket.units.column("unit_id"), bucket.units.column("hyperword"), load_vectors(bucket), encoding,
                             quantizer)
        return write_table_file(version_path, "vectors", 0, table, vector_file_name(version, bucket.bucket))
