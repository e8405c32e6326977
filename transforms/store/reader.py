"""Reading a published version: its manifest checked, every data file checked against it when read."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
from apache_beam.io.filesystems import FileSystems

from hyperscene.schemas import CENTROID_KEYS, DERIVED_COLUMNS, FORMAT_VERSION, read_schema, table_schema
from hyperscene.transforms.errors import Errors, StoreDamaged, StoreError
from hyperscene.transforms.store.layers import (PER_DOCUMENT_TABLES, documents_range, keep_live, latest_units, live_ids,
                                                range_problem, tag_held)
from hyperscene.transforms.store.layout import MANIFEST, contained, published_versions, read_bytes, version_dir, version_files
from hyperscene.transforms.unit_ids import has_hex_ids, upgrade_ids


def derive(table: str, column: str, rows):
    """A column readers give that the files do not hold (schemas.DERIVED_COLUMNS), from ``rows``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if (table, column) != ("occurrences", "hyperword"):
        raise KeyError(f"no derived column {table}.{column}")
    ids = rows.column("semantic_id")  # each semantic id ends with the hyperword
    last = np.cumsum(pc.list_value_length(ids).to_numpy(zero_copy_only=False)) - 1
    return pa.array(pc.list_flatten(ids).to_numpy(zero_copy_only=False)[last], pa.int32())


def as_today(table: str, part):
    """Rows of ``table`` read from a file of any format in today's types (format 3 kept float32
    centroids, format 4 hex unit ids and float32 scores), without the columns today's schema lacks
    (scenes.centroid before format 5)."""
    import pyarrow as pa

    part = upgrade_ids(part)
    schema = table_schema(table, part.column_names)
    if any(c not in schema.names for c in part.column_names):
        part = part.select([c for c in part.column_names if c in schema.names])
    if any(part.schema.field(c).type != schema.field(c).type for c in part.column_names):
        part = part.cast(pa.schema([schema.field(c) for c in part.column_names]))
    return part


def entry_problem(entry: object, version: int) -> str | None:
    """What is wrong with one file entry of version ``version``'s manifest (a missing field, a path
    outside its folder, a file of a later version), or None: shared by every reader and by verify."""
    if not (isinstance(entry, dict) and isinstance(entry.get("table"), str) and isinstance(entry.get("sha256"), str)
            and isinstance(entry.get("bytes"), int) and isinstance(entry.get("rows"), int) and isinstance(entry.get("path"), str)):
        return f"has a file entry without table, path, rows, bytes or sha256: {entry!r:.120}"
    if not contained(entry["path"]):
        return f"lists the file {entry['path']!r}, which lies outside its version"
    held = entry.get("version", version)
    if not (isinstance(held, int) and not isinstance(held, bool) and 1 <= held <= version):
        return f"lists the file {entry['path']!r} in version {held!r}, which is neither this version nor an earlier one"
    return range_problem(entry, held)


def entry_version(entry: dict, version: int) -> int:
    """The version whose folder holds a manifest entry's file: its ``version`` field when the file is
    shared with an earlier version (format 4), else the manifest's own."""
    return entry.get("version", version)


def entry_name(entry: dict, version: int) -> str:
    """A data file as messages name it: relative to the store."""
    return f"v{entry_version(entry, version):06d}/{entry['path']}"


class StoreVersion:
    """A published version of a store, for reading.

    Opening one checks its manifest (JSON, a known format, a list of files inside the version); every
    data file is checked against the manifest's size and sha256 when it is read. Whatever fails is
    :class:`~hyperscene.transforms.errors.StoreDamaged`, naming the file and saying to run verify.
    """

    def __init__(self, store: str, version: int | None = None):
        versions = published_versions(store)
        if not versions:
            raise StoreError(Errors.E401.format(store=store))
        if version is None:
            version = versions[-1]
        elif version not in versions:
            raise StoreError(Errors.E403.format(store=store, version=version, versions=", ".join(map(str, versions))))
        self.store, self.version = store, version
        self.path = version_dir(store, version)
        self._entries: list[dict] | None = None
        self._revisions: dict[str, int] | None = None
        try:
            self.manifest = json.loads(read_bytes(FileSystems.join(self.path, MANIFEST)))
        except ValueError as e:  # not JSON, or not UTF-8
            raise self.damaged_manifest(f"is not a readable manifest ({' '.join(str(e).split())[:120]})") from None
        if not isinstance(self.manifest, dict):
            raise self.damaged_manifest("is not a manifest (a JSON object)")
        format_version = self.manifest.get("format_version")
        if not isinstance(format_version, int) or isinstance(format_version, bool) or format_version < 1:
            raise self.damaged_manifest(f"has no valid format_version ({format_version!r}, expected a whole number)")
        if format_version > FORMAT_VERSION:
            raise StoreError(Errors.E404.format(format=format_version, supported=FORMAT_VERSION))

    def damaged(self, name: str, problem: str) -> StoreDamaged:
        """The error for a data file of this version (``name`` relative to the store) that is not as published."""
        return StoreDamaged(Errors.E410.format(file=name, store=self.store, problem=problem, version=self.version),
                            name, problem)

    def damaged_manifest(self, problem: str) -> StoreDamaged:
        """The error for this version's manifest when it is not one: none of the version's files can be trusted."""
        name = f"v{self.version:06d}/{MANIFEST}"
        return StoreDamaged(Errors.E411.format(file=name, store=self.store, problem=problem, version=self.version),
                            name, problem)

    def entries(self) -> list[dict]:
        """The manifest's file entries, each checked to have a table, a contained path, rows, bytes and a sha256."""
        if self._entries is None:
            files = self.manifest.get("files")
            if not isinstance(files, list):
                raise self.damaged_manifest("lists no files")
            for entry in files:
                problem = entry_problem(entry, self.version)
                if problem is not None:
                    raise self.damaged_manifest(problem)
            self._entries = files
        return self._entries

    def files(self, table: str) -> list[dict]:
        return [f for f in self.entries() if f["table"] == table]

    def _with_centroids(self, table: str, columns: list[str] | None, filters):
        """hyperwords or codebooks rows with the centroid column joined from the centroids table."""
        import pyarrow as pa
        import pyarrow.compute as pc

        keys = CENTROID_KEYS[table]
        wanted = [c for c in (columns or read_schema(table).names) if c != "centroid"]
        rows = self.read(table, wanted + [k for k in keys if k not in wanted], filters)
        centroids = self.read("centroids")

        def key(levels, codes):
            return pa.array(levels.to_numpy().astype(np.int64) * (1 << 32) + codes.to_numpy().astype(np.int64))

        levels = pa.array(np.zeros(rows.num_rows, np.int32)) if table == "hyperwords" else rows.column("level")
        at = pc.index_in(key(levels, rows.column(keys[-1])), value_set=key(centroids.column("level"), centroids.column("code")))
        if at.null_count:
            name = self._name(self.files("centroids")[0])
            problem = f"lacks the centroid of {at.null_count} {table} row(s)"
            raise StoreDamaged(Errors.E410.format(file=name, store=self.store, problem=problem, version=self.version), name, problem)
        rows = rows.append_column(read_schema(table).field("centroid"), centroids.column("centroid").take(at))
        return rows.select(columns or read_schema(table).names)

    def quantizer(self) -> np.ndarray | None:
        """The centroids ``--vectors pq`` codes this version's vectors with, or None for the other
        encodings (vector_codec.decode takes it)."""
        if not any(e["rows"] for e in self.files("quantizer")):
            return None
        from hyperscene.transforms.store.vector_codec import quantizer_from_table

        return quantizer_from_table(self.read("quantizer"))

    def file_path(self, entry: dict) -> str:
        return FileSystems.join(version_dir(self.store, entry_version(entry, self.version)), entry["path"])

    def _name(self, entry: dict) -> str:
        return entry_name(entry, self.version)

    def documents_range(self, entry: dict) -> tuple[int, int]:
        return documents_range(entry, entry_version(entry, self.version))

    def layered(self, table: str) -> bool:
        """Whether some file of ``table`` holds rows this version does not (see layers.py): a
        per-document table that shares files of earlier versions, or units in files of several
        versions (a unit's newest row counts)."""
        if table == "units":
            return len({entry_version(e, self.version) for e in self.files(table)}) > 1
        return table in PER_DOCUMENT_TABLES and any(self.documents_range(e) != (1, self.version) for e in self.files(table))

    def revisions(self) -> dict[str, int]:
        """doc_id -> added_in_version of every document not deleted: which rows of a shared file are live."""
        if self._revisions is None:
            rows = self.read("documents", ["doc_id", "added_in_version", "deleted"])
            self._revisions = {d: v for d, v, deleted in zip(rows["doc_id"].to_pylist(), rows["added_in_version"].to_pylist(),
                                                             rows["deleted"].to_pylist()) if not deleted}
        return self._revisions

    def live_rows(self, table: str, entry: dict, rows):
        """``rows`` read from ``entry``'s file (with their ``doc_id``), less those this version does not
        hold; units rows tagged with the version holding them, for :func:`layers.latest_units`."""
        if not self.layered(table):
            return rows
        if table == "units":
            return tag_held(rows, entry_version(entry, self.version))
        return keep_live(rows, live_ids(self.revisions(), *self.documents_range(entry)))

    def shared(self, entry: dict) -> dict:
        """The entry as a later version's manifest lists this file: with the version that holds it."""
        return {**entry, "version": entry_version(entry, self.version)}

    def check_files(self) -> None:
        """Every listed file exists with its recorded size: the cheap check that a job makes before any
        work (reading checks each file's sha256 as well)."""
        present = version_files(self.store)
        for entry in self.entries():
            size = present.get(self._name(entry))
            if size is None:
                raise self.damaged(self._name(entry), "is missing")
            if size != entry["bytes"]:
                raise self.damaged(self._name(entry), f"holds {size:,} bytes, the manifest says {entry['bytes']:,}")

    def file_bytes(self, entry: dict) -> bytes:
        """A data file's bytes, after checking them against the manifest's size and sha256."""
        name = self._name(entry)
        try:
            data = read_bytes(self.file_path(entry))
        except FileNotFoundError:
            raise self.damaged(name, "is missing") from None
        except OSError as e:
            raise self.damaged(name, f"cannot be read ({type(e).__name__}: {e})") from None
        if len(data) != entry["bytes"]:
            raise self.damaged(name, f"holds {len(data):,} bytes, the manifest says {entry['bytes']:,}")
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise self.damaged(name, "does not match the sha256 in the manifest")
        return data

    def read_file(self, table: str, entry: dict, columns: list[str] | None = None, filters=None):
        """The rows of one of ``table``'s files that this version holds (see layers.py: units rows come
        tagged with their version when several versions hold units), in today's types (a file of
        format 3 holds float32 centroids); the file checked by :meth:`file_bytes`."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        data = self.file_bytes(entry)
        try:
            hex_ids = has_hex_ids(pq.ParquetFile(io.BytesIO(data)).schema_arrow)
            # a filter on unit ids holds int64 values, which a file of hex ids is compared with once upgraded
            part = pq.read_table(io.BytesIO(data), columns=None if hex_ids and filters is not None else columns,
                                 filters=None if hex_ids else filters)
        except (pa.ArrowException, ValueError) as e:  # sha256 matched, so it was written so: a bug, still named
            raise self.damaged(self._name(entry), f"does not read as the {table} table "
                               f"({type(e).__name__}: {' '.join(str(e).split())[:120]})") from None
        if hex_ids and filters is not None:
            part = as_today(table, part).filter(filters).select(columns or part.column_names)
        return self.live_rows(table, entry, as_today(table, part))

    def read(self, table: str, columns: list[str] | None = None, filters=None):
        """Some columns of one table (all without ``columns``), keeping rows that match ``filters`` (an
        Arrow expression): the rows this version holds, from every file it lists (:meth:`read_file`).
        hyperwords and codebooks come with their ``centroid``, from the centroids table from format 6 on."""
        import pyarrow as pa

        if table in CENTROID_KEYS and (columns is None or "centroid" in columns) and self.files("centroids"):
            return self._with_centroids(table, columns, filters)

        layered = self.layered(table)
        key = "unit_id" if table == "units" else "doc_id"
        derived = {c: source for c, (source, _) in DERIVED_COLUMNS.get(table, {}).items() if columns is None or c in columns}
        read_columns = columns and [c for c in columns if c not in derived] + [s for s in derived.values() if s not in columns]
        read_columns = read_columns + [key] if layered and read_columns and key not in read_columns else read_columns
        # a unit's newest row decides whether it matches: filter after choosing it
        newest = layered and table == "units"
        parts = [self.read_file(table, entry, read_columns, None if newest else filters) for entry in self.files(table)]
        if not parts:
            schema = read_schema(table)
            return (pa.schema([schema.field(c) for c in columns]) if columns else schema).empty_table()
        rows = latest_units(parts) if newest else pa.concat_tables(parts)
        if newest and filters is not None:
            rows = rows.filter(filters)
        for column in derived:
            rows = rows.append_column(read_schema(table).field(column), derive(table, column, rows))
        return rows.select(columns) if columns else rows


def frozen_codebooks(store: StoreVersion) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """The hyperword centroids and each scene level's codebook, as the store holds them (what a refresh
    assigns with, and encode)."""
    hyperwords = store.read("hyperwords", ["hyperword", "centroid"]).sort_by("hyperword")
    centroids = np.array(hyperwords.column("centroid").to_pylist(), dtype=np.float32)
    levels = []
    if store.files("codebooks"):
        rows = store.read("codebooks", ["level", "code", "centroid"]).sort_by([("level", "ascending"), ("code", "ascending")])
        level_column = rows.column("level").to_numpy()
        for level in np.unique(level_column):
            levels.append((int(level), np.array(rows.filter(level_column == level).column("centroid").to_pylist(), dtype=np.float32)))
    return centroids, levels
