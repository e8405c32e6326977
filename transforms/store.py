"""The store: write tables as sorted, sharded Parquet files and publish a version by its manifest.

Layout::

    STORE/v000001/manifest.json            written last: a version without it does not exist
    STORE/v000001/<table>/part-00000.parquet
    STORE/_work/v000001/...                scratch of the run writing v000001, deleted when it ends

Each table is keyed into shards by a hash of its first sort column, and each shard is sorted and
written whole by one worker, so the same input gives byte-identical files on any runner. The
manifest lists every data file with its row count, size and sha256.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import re
import time
import warnings
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from hyperscene.schemas import FORMAT_VERSION, SORT_KEYS, TABLES
from hyperscene.transforms.errors import StoreError
from hyperscene.transforms.progress import stage_timer

MANIFEST = "manifest.json"
# Dictionary encoding pays only for columns with few distinct values; on hashes, texts and vectors it
# costs space (measured on the 1M-token slice: centroids 1.5 MB with it, 0.94 MB without).
DICTIONARY_COLUMNS = frozenset({"doc_id", "source", "format", "prefix", "separator", "hyperword", "method", "reason"})
ZSTD_LEVEL = 9
_VERSION = re.compile(r"v(\d{6})$")


def version_dir(store: str, version: int) -> str:
    return FileSystems.join(store, f"v{version:06d}")


def work_dir(store: str, version: int) -> str:
    """Scratch files of the run writing ``version`` (spilled vectors): never part of a version, cleared
    when the run ends and, after a crash, when the next one starts."""
    return FileSystems.join(store, "_work", f"v{version:06d}")


def published_versions(store: str) -> list[int]:
    """Versions whose manifest exists, ascending."""
    from hyperscene.transforms.read import glob_escape

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            found = FileSystems.match([FileSystems.join(glob_escape(store), "v*", MANIFEST)])[0].metadata_list
    except Exception:
        return []
    versions = []
    for meta in found:
        m = _VERSION.search(posixpath.dirname(meta.path.replace("\\", "/")))
        if m:
            versions.append(int(m.group(1)))
    return sorted(versions)


def _write_bytes(path: str, data: bytes) -> None:
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)


def _read_bytes(path: str) -> bytes:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return f.read()


def write_table_file(version_path: str, name: str, shard: int, table) -> dict:
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    dictionary = [c for c in table.column_names if c in DICTIONARY_COLUMNS]
    pq.write_table(table, buffer, compression="zstd", compression_level=ZSTD_LEVEL, use_dictionary=dictionary)
    data = buffer.getvalue()
    relative = f"{name}/part-{shard:05d}.parquet"
    _write_bytes(FileSystems.join(version_path, relative), data)
    return {"table": name, "path": relative, "rows": table.num_rows, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def shard_of(value: Any, num_shards: int) -> int:
    if num_shards == 1:
        return 0
    digest = hashlib.blake2b(str(value).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_shards


def shard_parts(element, key: str, num_shards: int):
    """A row (dict) or an Arrow table -> (shard, part) by a hash of its ``key`` column."""
    if isinstance(element, dict):
        yield shard_of(element[key], num_shards), element
    elif num_shards == 1:
        yield 0, element
    else:
        import numpy as np

        shards = np.array([shard_of(v, num_shards) for v in element.column(key).to_pylist()])
        for shard in np.unique(shards):
            yield int(shard), element.filter(shards == shard)


def parts_to_table(name: str, parts) -> "pa.Table":
    """Rows (dicts) and Arrow tables -> one table of the table's schema, sorted by its sort keys."""
    import pyarrow as pa

    schema = TABLES[name]
    rows = [p for p in parts if isinstance(p, dict)]
    tables = [
        pa.Table.from_arrays([p.column(f.name).cast(f.type) for f in schema], schema=schema)
        for p in parts
        if not isinstance(p, dict)
    ]
    if rows or not tables:
        tables.append(pa.Table.from_pylist(rows, schema=schema))
    table = pa.concat_tables(tables)
    return table.sort_by([(key, "ascending") for key in SORT_KEYS[name]]) if table.num_rows else table


class WriteTable(beam.PTransform):
    """Rows (dicts) or Arrow tables with the table's columns -> one file record per written shard."""

    def __init__(self, name: str, version_path: str, num_shards: int = 1):
        super().__init__()
        self._name, self._path, self._shards = name, version_path, num_shards

    def expand(self, parts):
        name, path, shards, key = self._name, self._path, self._shards, SORT_KEYS[self._name][0]
        return (
            parts
            | "Shard" >> beam.FlatMap(shard_parts, key=key, num_shards=shards)
            | "Group" >> beam.GroupByKey()
            | "Write" >> beam.MapTuple(lambda shard, ps: _write_shard(shard, ps, path, name))
        )


def _write_shard(shard: int, parts, path: str, name: str) -> dict:
    parts = list(parts)
    with stage_timer("write", sum(1 if isinstance(p, dict) else p.num_rows for p in parts)):
        return write_table_file(path, name, shard, parts_to_table(name, parts))


@dataclass
class ManifestInfo:
    """What the launcher knows before the pipeline runs."""

    config: dict
    model: dict
    started_at: float
    version: int = 1


def _publish(version_path: str, info: ManifestInfo, files: list[dict], stats: dict) -> dict:
    """Write empty files for tables that got no rows, then the manifest, atomically."""
    written = {f["table"] for f in files}
    files = list(files) + [write_table_file(version_path, name, 0, parts_to_table(name, [])) for name in TABLES if name not in written]
    finished = time.time()
    manifest = {
        "format_version": FORMAT_VERSION,
        "version": info.version,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(finished)),
        "config": info.config,
        "model": info.model,
        "counts": dict(sorted(stats.items())),
        "timings": {"wall_seconds": round(finished - info.started_at, 3)},
        "files": sorted(files, key=lambda f: f["path"]),
    }
    manifest["counts"]["store_bytes"] = sum(f["bytes"] for f in files)
    tmp = FileSystems.join(version_path, MANIFEST + ".tmp")
    _write_bytes(tmp, json.dumps(manifest, indent=2, sort_keys=False).encode("utf-8"))
    FileSystems.rename([tmp], [FileSystems.join(version_path, MANIFEST)])
    return manifest


class PublishVersion(beam.PTransform):
    """File records + (name, value) statistics -> the published manifest (a single element)."""

    def __init__(self, version_path: str, info: ManifestInfo):
        super().__init__()
        self._path, self._info = version_path, info

    def expand(self, inputs):
        files, stats = inputs
        stats_dict = (
            stats
            | "Sum" >> beam.CombinePerKey(sum)
            | "AsDict" >> beam.combiners.ToDict()
        )
        return (
            files
            | "AllFiles" >> beam.combiners.ToList()
            | "Publish" >> beam.Map(_publish_with, path=self._path, info=self._info, stats=beam.pvalue.AsSingleton(stats_dict))
        )


def _publish_with(files, path, info, stats):
    return _publish(path, info, files, stats)


class StoreVersion:
    """A published version of a store, for reading."""

    def __init__(self, store: str, version: int | None = None):
        versions = published_versions(store)
        if not versions:
            raise StoreError(f"{store!r} holds no published store version: compress into it first")
        if version is None:
            version = versions[-1]
        elif version not in versions:
            raise StoreError(f"{store!r} has no version {version} (has: {', '.join(map(str, versions))})")
        self.store, self.version = store, version
        self.path = version_dir(store, version)
        self.manifest = json.loads(_read_bytes(FileSystems.join(self.path, MANIFEST)))
        if self.manifest.get("format_version", 0) > FORMAT_VERSION:
            raise StoreError(
                f"store format {self.manifest['format_version']} is newer than this hyperscene reads "
                f"({FORMAT_VERSION}): upgrade hyperscene"
            )

    def files(self, table: str) -> list[dict]:
        return [f for f in self.manifest["files"] if f["table"] == table]

    def read(self, table: str, columns: list[str] | None = None):
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = [pq.read_table(io.BytesIO(_read_bytes(FileSystems.join(self.path, f["path"]))), columns=columns) for f in self.files(table)]
        schema = TABLES[table]
        if columns:
            schema = pa.schema([schema.field(c) for c in columns])
        return pa.concat_tables(parts) if parts else schema.empty_table()
