"""Publishing a version: its manifest, written last and renamed into place, lists every data file
with its rows, bytes and sha256, with the run's counts, the bytes of each table and the job's own
sections. A file the version shares with an earlier one is listed with that version's number."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Callable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from hyperscene.schemas import FORMAT_VERSION, TABLES
from hyperscene.transforms.store.layout import MANIFEST, write_bytes
from hyperscene.transforms.store.writer import write_table_file


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
    manifest["counts"].update(version_bytes(files))
    manifest["table_bytes"] = table_bytes(files)
    tmp = FileSystems.join(version_path, MANIFEST + ".tmp")
    write_bytes(tmp, json.dumps(manifest, indent=2, sort_keys=False).encode("utf-8"))
    FileSystems.rename([tmp], [FileSystems.join(version_path, MANIFEST)])
    return manifest


def table_bytes(files: list[dict]) -> dict[str, int]:
    """Bytes of each table's files, largest first."""
    totals: dict[str, int] = {}
    for f in files:
        totals[f["table"]] = totals.get(f["table"], 0) + f["bytes"]
    return dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))


def version_bytes(files: list[dict]) -> dict[str, int]:
    """``store_bytes``: every file the version consists of; ``written_bytes``: those it wrote itself
    (the others it shares with earlier versions); ``vector_bytes``: the vectors table's and its quantizer's."""
    return {
        "store_bytes": sum(f["bytes"] for f in files),
        "written_bytes": sum(f["bytes"] for f in files if "version" not in f),
        "vector_bytes": sum(f["bytes"] for f in files if f["table"] in ("vectors", "quantizer")),
    }


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
