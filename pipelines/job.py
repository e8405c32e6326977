"""The life of a job that writes a store version (compress, refresh, retrain), written once.

    with job.locked(store, "refresh"):              # the writer's lock; scratch of killed runs cleared
        base = job.base_version(store, "refresh")   # refresh, retrain: the version they start from, checked
        model = job.load_model(cfg)                 # compress, refresh: the embedder and its identity
        manifest, stages = job.write_version(store, version, build, beam_args, needed)

``write_version`` clears what an interrupted run left of that version, runs the graph that ``build``
wires into a pipeline, and publishes; if the run fails or is stopped (Ctrl-C, SIGTERM), what it wrote
goes with it. A job module is then its options and its graph. :func:`print_summary` is what the
command prints once a version is published.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

from apache_beam.io.filesystems import FileSystems

from hyperscene.pipelines import cliutil, runners
from hyperscene.schemas import VECTORS_SINCE
from hyperscene.transforms.errors import DiskFull, Errors, ModelNotFound, StoreError, Warnings
from hyperscene.transforms.progress import stage_report
from hyperscene.transforms.store.layout import clear_scratch, version_dir
from hyperscene.transforms.store.lock import StoreLock, clear_lock_leftovers, process_ended
from hyperscene.transforms.store.reader import StoreVersion, entry_version

logger = logging.getLogger("hyperscene")


def log_stages(result) -> dict:
    """Per-stage seconds, items and peak memory of a finished pipeline, logged and returned."""
    stages = runners.finish(result)
    if stages is None:
        stages = stage_report(result)
    for stage, s in stages.items():
        logger.info("stage %-16s %8.1f s  %10s items  %8s items/s  peak %s MiB", stage, s["seconds"],
                    f"{s['items']:,}", s["items_per_s"], s["peak_rss_mb"])
    return stages


@contextmanager
def locked(store: str, command: str):
    """The store's writer lock, held for the block; scratch left by killed runs is cleared first
    (the lock means no running writer owns any)."""
    with StoreLock(store, command):
        clear_scratch(store)
        clear_lock_leftovers(store)
        yield


def base_version(store: str, command: str) -> StoreVersion:
    """The latest version, which refresh and retrain build on: its files checked before any work."""
    stored = StoreVersion(store)
    stored.check_files()
    if stored.manifest.get("format_version", 0) < VECTORS_SINCE:
        raise StoreError(Errors.E405.format(store=store, format=stored.manifest.get("format_version"), command=command,
                                            needed=VECTORS_SINCE))
    if stored.manifest["config"].get("vectors") == "none":
        raise StoreError(Errors.E409.format(store=store, command=command))
    return stored


@dataclass(frozen=True)
class LoadedModel:
    folder: str  # the model's own folder: its tokenizer counts tokens whatever the embedder
    embedder_folder: str  # what the embedder loads (a distilled or exported copy for static and openvino)
    identity: object  # transforms.models.ModelIdentity: what the manifest records


def load_model(cfg) -> LoadedModel:
    """Resolve and load ``cfg``'s model once in the launcher, so that a missing model, package or
    device fails before any work; its identity is what the manifest records."""
    from hyperscene.transforms.model_catalog import resolve_model
    from hyperscene.transforms.models import describe_model, folder_for_embedder, load_embedder, torch_dtype

    folder, source = resolve_model(cfg.model, cfg.allow_download, cfg.cache_dir)
    try:
        embedder_folder = folder_for_embedder(folder, cfg.embedder, cfg.cache_dir)
        model = load_embedder(embedder_folder, cfg.embedder, cfg.device, precision=cfg.precision)
    except Exception as e:  # a broken model folder, or a device this machine lacks
        raise ModelNotFound(Errors.E310.format(model=cfg.model, embedder=cfg.embedder, device=cfg.device, error=e)) from None
    identity = describe_model(cfg.model, embedder_folder, source, model, cfg.embedder,
                              torch_dtype(cfg.device, cfg.embedder, cfg.precision))
    return LoadedModel(folder, embedder_folder, identity)


# --- the base version's files, for refresh and retrain ------------------------------------------


def stored_files(stored: StoreVersion, table: str) -> list[str]:
    return [stored.file_path(f) for f in stored.files(table)]


def read_stored(p, name: str, stored: StoreVersion, table: str, **kwargs):
    """The rows ``stored`` holds of ``table`` as a PCollection of Arrow tables (see
    transforms.refresh.read_stored): of a per-document table whose files it shares, only the live rows;
    units from files of several versions tagged, so that each unit's newest row is chosen where they
    meet (transforms/store/layers.py)."""
    import apache_beam as beam

    from hyperscene.transforms.refresh import read_stored as read_file

    files = [(stored.file_path(e), stored.documents_range(e), entry_version(e, stored.version)) for e in stored.files(table)]
    layered = stored.layered(table)
    revisions = stored.revisions() if layered and table != "units" else None
    return p | f"Stored {name}" >> beam.Create(files) | f"Read stored {name}" >> beam.FlatMap(
        read_file, table, revisions=revisions, tag_held_units=layered and table == "units", **kwargs)


def shared_files(stored: StoreVersion, tables: tuple[str, ...]) -> list[dict]:
    """The stored files of ``tables`` as the new version's manifest lists them: shared, not copied
    (each entry names the version whose folder holds the file)."""
    return [stored.shared(e) for e in stored.entries() if e["table"] in tables and e["rows"]]


def written_bytes(stored: StoreVersion, shared: tuple[str, ...]) -> int:
    """Bytes of the stored tables a new version writes again (all but the ``shared`` ones): the disk
    it needs for them."""
    return sum(e["bytes"] for e in stored.entries() if e["table"] not in shared)


# --- writing a version ---------------------------------------------------------------------------


def remove_scratch(scratch: str) -> None:
    """Delete a run's scratch folder, and ``_work`` with it when nothing else is left there."""
    parent = FileSystems.split(scratch)[0]
    try:
        if FileSystems.exists(scratch):
            FileSystems.delete([scratch])
        if FileSystems.exists(parent) and not FileSystems.match([FileSystems.join(parent, "*")])[0].metadata_list:
            FileSystems.delete([parent])
    except Exception as e:  # the store is complete or failed already; scratch only costs disk
        logger.warning("could not remove scratch files in %s: %s; remove them by hand", scratch, e)


def _stop_worker_processes(grace: float = 2.0) -> None:
    """SIGTERM, then SIGKILL, this process's descendants (the DirectRunner's worker processes with
    --workers N), so that none writes into a version being removed. Linux only (/proc); elsewhere a
    leftover is cleared by the next run."""
    def descendants() -> list[int]:
        parent_of = {}
        try:
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        with open(f"/proc/{entry}/stat") as f:
                            parent_of[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
                    except (OSError, IndexError, ValueError):
                        pass
        except OSError:
            return []
        found, frontier = [], [os.getpid()]
        while frontier:
            children = [pid for pid, ppid in parent_of.items() if ppid in frontier]
            found += children
            frontier = children
        return found

    pids = descendants()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.time() + grace
        while pids and time.time() < deadline:
            pids = [pid for pid in pids if not process_ended(pid)]
            time.sleep(0.05)
        if not pids:
            return


# Peak bytes on the store's disk while a version is written (the version's files plus its scratch:
# spilled texts, vectors and rows) per input byte: a fixed part and a part per vector dimension,
# from benchmarks/disk_use.py on the first 1M tokens of en-gutenberg: 47.2 with the static
# embedder's 256 dimensions, 66.2 with MiniLM's 384 (README, "Disk space").
DISK_PER_INPUT_BYTE = 9.2
DISK_PER_INPUT_BYTE_AND_DIMENSION = 0.148


def disk_needed(input_bytes: int, dimension: int) -> int:
    """About the most a run writing ``input_bytes`` of input with vectors of ``dimension`` puts on the disk at once."""
    return int(input_bytes * (DISK_PER_INPUT_BYTE + DISK_PER_INPUT_BYTE_AND_DIMENSION * dimension))


def free_bytes(path: str) -> int | None:
    """Free bytes on the local disk that holds (or will hold) ``path``; None for object stores."""
    import shutil

    if "://" in path:
        return None
    folder = os.path.abspath(path)
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    return shutil.disk_usage(folder).free


def check_free_space(store: str, needed: int) -> None:
    """W005 when the store's disk has less free space than the run's estimated peak (``needed``,
    from :func:`disk_needed`). Only a warning: the estimate is for English prose and the run may
    still fit; the user can stop it now rather than when the disk fills."""
    free = free_bytes(store)
    if free is not None and free < needed:
        logger.warning(Warnings.W005.format(store=store, free=human_bytes(free), needed=human_bytes(needed)))


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n}"


def _disk_full(e: BaseException) -> bool:
    """Whether ``e`` (as it is, or as a stage passed it on) is a write that found the disk full."""
    import errno

    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return True
        if "[Errno 28]" in str(e) or "No space left on device" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


@contextmanager
def writing_version(store: str, version: int, needed: int | None = None):
    """Around the writing of one store version (the writer's lock held): its scratch goes when the
    block ends, and when the block ends without publishing the version (an error, Ctrl-C, SIGTERM),
    its unpublished files go too, now rather than at the next run. A full disk becomes E440,
    saying which folder and about how much the run needs (``needed``, bytes)."""
    from hyperscene.transforms.store.layout import MANIFEST, work_dir

    path, scratch = version_dir(store, version), work_dir(store, version)
    try:
        yield path, scratch
    except BaseException as e:
        if FileSystems.get_scheme(path) is None:
            _stop_worker_processes()
        try:
            if FileSystems.exists(path) and not FileSystems.exists(FileSystems.join(path, MANIFEST)):
                FileSystems.delete([path])
                logger.info("removed the unpublished files of version %d", version)
        except Exception as cleanup:  # the next run clears them, under the lock
            logger.warning("could not remove the unpublished version %s: %s", path, cleanup)
        if isinstance(e, Exception) and _disk_full(e):
            remove_scratch(scratch)  # before the free space is measured for the message
            free = free_bytes(store)
            raise DiskFull(Errors.E440.format(
                store=store, version=version, left=f", leaving {human_bytes(free)} free" if free is not None else "",
                needs=f". This run needs about {human_bytes(needed)} there at its peak" if needed else "")) from None
        raise
    finally:
        remove_scratch(scratch)


def clear_unpublished(store: str, version: int) -> str:
    """The folder of the version to write, cleared of an interrupted run's files (lock held)."""
    path = version_dir(store, version)
    if FileSystems.exists(path):
        logger.info("clearing unpublished files of an interrupted run in %s", path)
        FileSystems.delete([path])
    return path


def write_version(store: str, version: int, build: Callable, beam_args, needed: int | None = None) -> tuple[dict, dict]:
    """Write and publish ``version``: ``build(pipeline, version_path, scratch)`` wires the job's
    graph, which ends in PublishVersion. ``needed``: the run's estimated peak bytes on the store's
    disk (W005 when less is free; named by E440 if the disk fills). Returns the published
    manifest and the stages' timings. On failure or a signal, the version's files and scratch go."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    clear_unpublished(store, version)
    if needed is not None:
        check_free_space(store, needed)
    with writing_version(store, version, needed) as (path, scratch):
        runners.register_options()
        options = PipelineOptions(list(beam_args))
        with runners.cluster_for(options):
            p = beam.Pipeline(runner=cliutil.create_runner(options), options=options)
            build(p, path, scratch)
            with runners.closing_client(p.run()) as result:
                result.wait_until_finish()
                stages = log_stages(result)
    return StoreVersion(store, version).manifest, stages


def print_summary(result: dict) -> None:
    """What compress, refresh and retrain print once a version is published: inspect's summary of
    it, and one line when input records became dead letters."""
    import sys

    from hyperscene.pipelines.inspect_store import render, summarise

    store = StoreVersion(result["config"]["out"], result["version"])  # refresh and retrain record the path they wrote
    print(render(summarise(store)))
    dead = store.manifest["counts"].get("dead_letters", 0)
    if dead:
        first = store.read("dead_letters", ["source", "record", "reason"]).slice(0, 1).to_pylist()[0]
        where = first["source"] + (f":{first['record']}" if first["record"] is not None else "")
        print(f"hyperscene compress: {dead} input record(s) were not stored as documents, e.g. {where}: "
              f"{first['reason']}; see the dead_letters table", file=sys.stderr)
