"""The store: write tables as sorted, sharded Parquet files and publish a version by its manifest.

Layout::

    STORE/v000001/manifest.json            written last: a version without it does not exist
    STORE/v000001/<table>/part-00000.parquet
    STORE/_work/v000001/...                scratch of the run writing v000001, deleted when it ends

Each table is keyed into shards by a hash of its first sort column, and each shard is written by
one worker, its rows in sort order and in row groups of a fixed number of rows, so the same input
gives byte-identical files on any runner. The manifest lists every data file with its row count,
size and sha256.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import posixpath
import re
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from hyperscene.schemas import FORMAT_VERSION, SORT_KEYS, TABLES
from hyperscene.schemas.unit_bucket import UnitBucket
from hyperscene.transforms.errors import StoreBusy, StoreDamaged, StoreError
from hyperscene.transforms.progress import stage_timer
from hyperscene.transforms.spill import SpilledRows, as_table, key_of

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


def clear_scratch(store: str) -> None:
    """Remove ``STORE/_work``: scratch of runs that were killed (even after publishing). Only with
    the store's lock held, so that no running writer's scratch goes."""
    scratch = FileSystems.join(store, "_work")
    try:
        if FileSystems.exists(scratch):
            logging.getLogger("hyperscene").info("clearing scratch files of an interrupted run in %s", scratch)
            FileSystems.delete([scratch])
    except Exception as e:  # scratch only costs disk; the run can go on
        logging.getLogger("hyperscene").warning("could not remove old scratch files in %s: %s; remove them by hand", scratch, e)


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


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return f.read()


def write_table_file(version_path: str, name: str, shard: int, table, file_name: str | None = None) -> dict:
    """One table (already sorted) as one Parquet file of the version."""
    return write_sorted_file(version_path, name, shard, [table], file_name)


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


def write_sorted_file(version_path: str, name: str, shard: int, tables, file_name: str | None = None) -> dict:
    """Tables of ``name``'s schema whose concatenation is in sort order, streamed into one Parquet
    file in row groups of a fixed number of rows (so the same rows give the same bytes)."""
    import pyarrow.parquet as pq

    schema = TABLES[name]
    relative = f"{name}/{file_name or f'part-{shard:05d}.parquet'}"
    dictionary = [c for c in schema.names if c in DICTIONARY_COLUMNS]
    # float16 vectors barely compress: a fast level keeps most of the little there is to gain.
    level = 1 if name == "vectors" else ZSTD_LEVEL
    group = ROW_GROUP_ROWS.get(name, DEFAULT_ROW_GROUP_ROWS)
    rows = 0
    with FileSystems.create(FileSystems.join(version_path, relative), compression_type=CompressionTypes.UNCOMPRESSED) as sink:
        out = _HashingFile(sink)
        with pq.ParquetWriter(out, schema, compression="zstd", compression_level=level, use_dictionary=dictionary) as writer:
            pending: list = []
            held = 0
            for table in tables:
                if table.num_rows == 0:
                    continue
                pending.append(_conform(name, table))
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


def _conform(name: str, table) -> "pa.Table":
    """The table's columns in the schema's order and types."""
    import pyarrow as pa

    schema = TABLES[name]
    if table.schema.equals(schema, check_metadata=True):
        return table
    return pa.Table.from_arrays([table.column(f.name).cast(f.type) for f in schema], schema=schema)


def shard_of(value: Any, num_shards: int) -> int:
    if num_shards == 1:
        return 0
    digest = hashlib.blake2b(str(value).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_shards


def shard_parts(element, key: str, num_shards: int):
    """A row (dict), an Arrow table or spilled rows -> (shard, part) by a hash of its ``key`` column."""
    if isinstance(element, dict):
        yield shard_of(element[key], num_shards), element
    elif num_shards == 1:
        yield 0, element
    elif isinstance(element, SpilledRows) and element.first_key and element.first_key[:1] == element.last_key[:1]:
        yield shard_of(element.first_key[0], num_shards), element  # rows sorted by key: one value throughout
    else:
        element = as_table(element)
        shards = np.array([shard_of(v, num_shards) for v in element.column(key).to_pylist()])
        for shard in np.unique(shards):
            yield int(shard), element.filter(shards == shard)


def sorted_runs(name: str, parts):
    """Rows (dicts), Arrow tables and :class:`~hyperscene.transforms.spill.SpilledRows` -> tables
    whose concatenation is every row, sorted by the table's sort keys.

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
    for part in ([pa.Table.from_pylist(rows, schema=schema)] if rows else []) + [p for p in parts if not isinstance(p, dict)]:
        if part.num_rows == 0:
            continue
        if not isinstance(part, SpilledRows):  # its key range, without a sorted copy of it
            order = pc.sort_indices(part, sort_keys=[(k, "ascending") for k in keys])
            spans.append((key_of(part, order[0].as_py(), keys), key_of(part, order[-1].as_py(), keys), part))
        else:
            spans.append((part.first_key, part.last_key, part))
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
    table = _concat([_conform(name, as_table(p)) for p in parts])
    return table.sort_by([(key, "ascending") for key in SORT_KEYS[name]])


class WriteTable(beam.PTransform):
    """Rows (dicts), Arrow tables or spilled rows with the table's columns -> one file record per written shard."""

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
        return write_sorted_file(path, name, shard, sorted_runs(name, parts))


def vector_file_name(version: int, bucket: int) -> str:
    """Vector files are named by the version that embedded them: a refresh copies the earlier ones
    as they are and adds its own beside them."""
    return f"part-v{version:06d}-{bucket:05d}.parquet"


def vector_table(bucket: UnitBucket) -> "pa.Table":
    """A bucket's units as ``vectors`` rows: id, hyperword, and the vector rounded to float16."""
    import pyarrow as pa

    from hyperscene.transforms.embed import load_vectors

    vectors = load_vectors(bucket).astype(np.float16)
    column = pa.ListArray.from_arrays(
        pa.array(np.arange(0, vectors.size + 1, max(vectors.shape[1], 1), dtype=np.int32)), pa.array(vectors.ravel()))
    return pa.Table.from_arrays([bucket.units.column("unit_id"), bucket.units.column("hyperword"), column],
                                schema=TABLES["vectors"])


def read_vectors(table) -> np.ndarray:
    """The ``vector`` column of a vectors table as a float32 matrix."""
    column = table.column("vector").combine_chunks()
    if len(column) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    values = column.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(len(column), -1).astype(np.float32)


def write_vector_file(bucket: UnitBucket, version_path: str, version: int) -> dict:
    with stage_timer("write", len(bucket)):
        return write_table_file(version_path, "vectors", 0, vector_table(bucket), vector_file_name(version, bucket.bucket))


@dataclass
class ManifestInfo:
    """What the launcher knows before the pipeline runs."""

    config: dict
    model: dict
    started_at: float
    version: int = 1
    # Extra manifest sections: "codebook" (where the hyperword codebook was trained, and how far
    # units sat from it then: the baseline of drift), "refresh" (what a refresh changed).
    sections: dict = field(default_factory=dict)
    # The job's own completion of its sections from the run's statistics, (sections, stats) ->
    # sections, applied to a copy when the version is published; a module-level function.
    complete: Callable[[dict, dict], dict] | None = None


def _publish(version_path: str, info: ManifestInfo, files: list[dict], stats: dict) -> dict:
    """Write empty files for tables that got no rows, then the manifest, atomically."""
    written = {f["table"] for f in files}
    files = list(files) + [write_table_file(version_path, name, 0, TABLES[name].empty_table()) for name in TABLES if name not in written]
    finished = time.time()
    manifest = {
        "format_version": FORMAT_VERSION,
        "version": info.version,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(finished)),
        "config": info.config,
        "model": info.model,
        # Names starting with "_" are figures the sections are computed from, not counts.
        "counts": dict(sorted((k, v) for k, v in stats.items() if not k.startswith("_"))),
        "timings": {"wall_seconds": round(finished - info.started_at, 3)},
        **_sections(info, stats),
        "files": sorted(files, key=lambda f: f["path"]),
    }
    manifest["counts"]["store_bytes"] = sum(f["bytes"] for f in files)
    manifest["counts"]["vector_bytes"] = sum(f["bytes"] for f in files if f["table"] == "vectors")
    tmp = FileSystems.join(version_path, MANIFEST + ".tmp")
    _write_bytes(tmp, json.dumps(manifest, indent=2, sort_keys=False).encode("utf-8"))
    FileSystems.rename([tmp], [FileSystems.join(version_path, MANIFEST)])
    return manifest


def _sections(info: ManifestInfo, stats: dict) -> dict:
    sections = json.loads(json.dumps(info.sections))  # a copy: the same info may publish twice on a retry
    return info.complete(sections, stats) if info.complete is not None else sections


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


LOCK = "_lock"


class StoreLock:
    """The store's writer lock: one compress or refresh at a time.

    ``STORE/_lock`` names the process holding it (JSON: pid, host, command, start). On a local disk
    the contents are written to a temporary file ``_lock.<pid>.<random>.tmp`` first and then
    hard-linked to ``_lock``: the link is the exclusive step (it fails if a lock exists) and the lock
    never exists without its full contents. A lock is taken over when it is stale:

    * its holder is readable and is a process of this machine that no longer runs (killed), so a
      crashed refresh never blocks the next; a holder on another machine cannot be checked and holds;
    * its holder cannot be read (empty or not JSON: written by an older hyperscene, which created the
      file before writing it, or cut by a crash or a full disk) and it is older than
      :attr:`GRACE_SECONDS`. A younger one may be a writer between creating and writing it, so it
      holds (StoreBusy, saying when it will count as stale).

    On object stores (gs://, s3://) the check and the creation are two steps, so two writers started
    within the same moment can both pass: schedule them apart (best effort).
    """

    # An unreadable lock is taken over only this many seconds after it was last written. Locks of
    # this version are never unreadable (linked in whole); an older hyperscene leaves its lock empty
    # for the moment between creating and writing it, which can stretch to seconds on a loaded
    # machine or a network disk, and mtimes set by a file server's clock may be off from ours by
    # some seconds. A minute covers both with room, and is little to wait for after a crash next
    # to the length of a compress or refresh.
    GRACE_SECONDS = 60

    def __init__(self, store: str, command: str):
        self.path = FileSystems.join(store, LOCK)
        self._command = command
        self._held = False
        self._data: bytes | None = None  # what our lock holds, local only

    def __enter__(self):
        import os
        import socket

        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": self._command,
              "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        data = json.dumps(me).encode("utf-8")
        local = FileSystems.get_scheme(self.path) is None
        for _ in range(5):  # each round: create, else (if stale) remove; a writer that keeps winning ends it
            if self._create(data):
                self._held = True
                return self
            if local:
                self._take_over_local()
            else:
                self._take_over_remote()
        raise StoreBusy(f"could not take the lock {self.path}: other writers keep taking it. Retry, or remove it if "
                        f"no compress or refresh runs")

    def __exit__(self, *exc):
        if self._held:
            self._held = False
            try:
                if self._data is not None:  # local: remove the lock only if it is still the one we wrote
                    import os

                    try:
                        with open(self.path, "rb") as f:
                            current = f.read()
                    except FileNotFoundError:
                        logging.getLogger("hyperscene").warning("the lock %s was removed while this run held it", self.path)
                        return False
                    if current != self._data:  # by content: a new file may reuse the inode number of ours
                        logging.getLogger("hyperscene").warning(
                            "the lock %s was replaced while this run held it (removed by hand?): left in place", self.path)
                        return False
                    os.unlink(self.path)
                else:
                    FileSystems.delete([self.path])
            except Exception as e:  # the work is done or failed already; a left lock is taken over next time
                logging.getLogger("hyperscene").warning("could not remove the lock %s: %s", self.path, e)
        return False

    def _create(self, data: bytes) -> bool:
        import os
        import secrets

        if FileSystems.get_scheme(self.path) is None:  # local: a complete file linked into place, in one step
            folder = os.path.dirname(self.path) or "."
            os.makedirs(folder, exist_ok=True)
            # Unique per attempt; one left by a killed process is harmless (no reader looks at it).
            tmp = os.path.join(folder, f"{LOCK}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())  # after a power cut the lock is whole too, or (empty) stale after the grace
                try:
                    os.link(tmp, self.path)
                except FileExistsError:
                    return False
                except OSError:  # no hard links here (FAT, some network disks): create, then write
                    return self._create_in_place(data)
                self._data = data
                return True
            finally:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
        if FileSystems.exists(self.path):
            return False
        _write_bytes(self.path, data)
        return True

    def _create_in_place(self, data: bytes) -> bool:
        """Exclusive creation, then the contents: empty for a moment, which the grace period covers."""
        import os

        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        self._data = data
        return True

    def _take_over_local(self) -> None:
        """Remove the lock if it is stale; raise StoreBusy if not. Returns when the caller should try again.

        Two processes can find the same stale lock at once. Removing it by its name would then be a
        race: A removes it and links its own lock, and B, still believing the name holds the stale
        one, removes A's live lock and links its own; both go ahead. So the lock is judged and removed
        through an open descriptor, with flock on it held from the judgement to the removal:

        * the descriptor pins the file judged: its age and contents are read from it (fstat, read),
          never again from the name;
        * whoever removes that file holds its flock, so takers-over of the same file go one at a time;
        * before removing, the name must still be that file (same device and inode). A second taker
          over that waited for the flock finds the name gone or naming a new lock, removes nothing and
          tries again: it links its own lock, or reads the new holder and stops.

        Between that check and the unlink nothing else can change the name: it names the stale file,
        so no link onto it succeeds, and only its holder (gone) or a taker over (holding the flock)
        removes it. The flock is the kernel's and ends with the process, so a killed taker over
        leaves nothing behind. Where flock is not available the check narrows the race to that moment.
        """
        import os

        try:
            try:
                fd = os.open(self.path, os.O_RDWR)  # for writing: flock over NFS is a write lock
            except PermissionError:
                fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return  # released meanwhile
        except OSError as e:
            raise StoreBusy(f"cannot read the lock {self.path} ({e}): remove it if no compress or refresh runs") from e
        try:
            try:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX)
            except (ImportError, OSError):
                pass
            st = os.fstat(fd)
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
            taking = self._stale(b"".join(chunks), time.time() - st.st_mtime)
            try:
                now = os.stat(self.path)
            except FileNotFoundError:
                return
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                return  # taken over by another process meanwhile: try again against the new lock
            os.unlink(self.path)
            logging.getLogger("hyperscene").warning("%s", taking)
        finally:
            os.close(fd)  # releases the flock

    def _take_over_remote(self) -> None:
        try:
            raw = read_bytes(self.path)
        except Exception:
            if not FileSystems.exists(self.path):
                return  # released meanwhile
            raw = b""
        try:
            age = time.time() - FileSystems.last_updated(self.path)
        except Exception:
            age = None
        taking = self._stale(raw, age)
        try:
            FileSystems.delete([self.path])
        except Exception:
            pass
        logging.getLogger("hyperscene").warning("%s", taking)

    def _stale(self, raw: bytes, age: float | None) -> str:
        """Raise StoreBusy unless a lock with these contents and this age may be taken over; else say why it may."""
        try:
            holder = json.loads(raw)
        except ValueError:  # not JSON, or not UTF-8
            holder = None
        if isinstance(holder, dict):
            if not _is_dead(holder):
                raise StoreBusy(
                    f"another {holder.get('command', 'writer')} is writing this store (pid {holder.get('pid')} on "
                    f"{holder.get('host')}, since {holder.get('started_at')}): wait for it to finish. If no such process "
                    f"runs, remove {self.path}")
            return f"taking over the lock of a {holder.get('command', 'writer')} that no longer runs (pid {holder.get('pid')})"
        what = "empty" if not raw.strip() else "not a lock's JSON"
        if age is None:
            raise StoreBusy(f"the lock {self.path} cannot be read ({what}) and its age is unknown: if no compress or "
                            f"refresh runs, remove it")
        if age < self.GRACE_SECONDS:
            raise StoreBusy(
                f"the lock {self.path} cannot be read ({what}) and is {max(age, 0):.0f} s old: another writer may be "
                f"taking it at this moment. It counts as stale {self.GRACE_SECONDS} s after it was written: retry in "
                f"{self.GRACE_SECONDS - max(age, 0):.0f} s, or remove it now if no compress or refresh runs")
        return f"taking over an unreadable lock ({what}), {age:.0f} s old"


def _is_dead(holder: dict) -> bool:
    """Whether the lock's process is known to have ended: only a process of this machine can be checked."""
    import os
    import socket

    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False  # 0 and negative numbers name process groups, not a process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    try:  # a killed process its parent has not reaped yet still answers the signal: a zombie
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def contained(path: object) -> bool:
    """Whether a manifest's file path stays inside its version's folder: relative, normalised, no ``..``.
    A manifest is data, so a path that leaves the folder (``../../etc/passwd``) marks a damaged store."""
    return (isinstance(path, str) and bool(path) and "\\" not in path and posixpath.normpath(path) == path
            and not path.startswith("/") and ".." not in path.split("/"))


class StoreVersion:
    """A published version of a store, for reading.

    Opening one checks its manifest (JSON, a known format, a list of files inside the version); every
    data file is checked against the manifest's size and sha256 when it is read. Whatever fails is
    :class:`~hyperscene.transforms.errors.StoreDamaged`, naming the file and saying to run verify.
    """

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
        self._entries: list[dict] | None = None
        name = f"v{version:06d}/{MANIFEST}"
        try:
            self.manifest = json.loads(read_bytes(FileSystems.join(self.path, MANIFEST)))
        except ValueError as e:  # not JSON, or not UTF-8
            raise self.damaged(name, f"is not a readable manifest ({' '.join(str(e).split())[:120]})") from None
        if not isinstance(self.manifest, dict):
            raise self.damaged(name, "is not a manifest (a JSON object)")
        format_version = self.manifest.get("format_version")
        if not isinstance(format_version, int) or isinstance(format_version, bool) or format_version < 1:
            raise self.damaged(name, f"has no valid format_version ({format_version!r}, expected a whole number)")
        if format_version > FORMAT_VERSION:
            raise StoreError(
                f"store format {format_version} is newer than this hyperscene reads ({FORMAT_VERSION}): upgrade hyperscene"
            )

    def damaged(self, name: str, problem: str) -> StoreDamaged:
        """The error for a file of this version (``name`` relative to the store) that is not as published."""
        return StoreDamaged(f"{name} in {self.store} {problem}: the store is damaged (see every problem with: "
                            f"hyperscene verify {self.store} --version {self.version})", name, problem)

    def entries(self) -> list[dict]:
        """The manifest's file entries, each checked to have a table, a contained path, rows, bytes and a sha256."""
        if self._entries is None:
            files = self.manifest.get("files")
            name = f"v{self.version:06d}/{MANIFEST}"
            if not isinstance(files, list):
                raise self.damaged(name, "lists no files")
            for i, entry in enumerate(files):
                if not (isinstance(entry, dict) and isinstance(entry.get("table"), str)
                        and isinstance(entry.get("sha256"), str) and isinstance(entry.get("bytes"), int)
                        and isinstance(entry.get("rows"), int) and "path" in entry):
                    raise self.damaged(name, f"has a file entry ({i}) without table, path, rows, bytes or sha256")
                if not contained(entry["path"]):
                    raise self.damaged(name, f"lists the file {entry['path']!r}, which lies outside version {self.version}")
            self._entries = files
        return self._entries

    def files(self, table: str) -> list[dict]:
        return [f for f in self.entries() if f["table"] == table]

    def file_path(self, entry: dict) -> str:
        return FileSystems.join(self.path, entry["path"])

    def check_files(self) -> None:
        """Every listed file exists with its recorded size: the cheap check that a job makes before any
        work (reading checks each file's sha256 as well)."""
        from hyperscene.transforms.read import glob_escape, match_sizes

        entries = self.entries()
        present = {p.replace("\\", "/"): size for p, size in match_sizes(FileSystems.join(glob_escape(self.path), "**")).items()}
        root = self.path.replace("\\", "/").rstrip("/") + "/"
        for entry in entries:
            size = present.get(root + entry["path"])
            if size is None:
                raise self.damaged(f"v{self.version:06d}/{entry['path']}", "is missing")
            if size != entry["bytes"]:
                raise self.damaged(f"v{self.version:06d}/{entry['path']}", f"holds {size:,} bytes, the manifest says {entry['bytes']:,}")

    def file_bytes(self, entry: dict) -> bytes:
        """A data file's bytes, after checking them against the manifest's size and sha256."""
        name = f"v{self.version:06d}/{entry['path']}"
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

    def read(self, table: str, columns: list[str] | None = None, filters=None):
        """Some columns of one table (all without ``columns``), keeping rows that match ``filters`` (an
        Arrow expression); every file checked by :meth:`file_bytes`."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = []
        for entry in self.files(table):
            data = self.file_bytes(entry)
            try:
                parts.append(pq.read_table(io.BytesIO(data), columns=columns, filters=filters))
            except (pa.ArrowException, ValueError) as e:  # sha256 matched, so it was written so: a bug, still named
                raise self.damaged(f"v{self.version:06d}/{entry['path']}", f"does not read as the {table} table "
                                   f"({type(e).__name__}: {' '.join(str(e).split())[:120]})") from None
        schema = TABLES[table]
        if columns:
            schema = pa.schema([schema.field(c) for c in columns])
        return pa.concat_tables(parts) if parts else schema.empty_table()
