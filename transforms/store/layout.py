"""Where a store's files lie, and the few byte-level helpers every part of the store uses.

Layout::

    STORE/v000001/manifest.json            written last: a version without it does not exist
    STORE/v000001/<table>/part-00000.parquet
    STORE/_work/v000001/...                scratch of the run writing v000001, deleted when it ends
    STORE/_lock                            held by the one writer (see lock.py)
"""

from __future__ import annotations

import logging
import posixpath
import re
import warnings

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems


MANIFEST = "manifest.json"


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
    from hyperscene.transforms.inputs import glob_escape

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


def version_files(store: str) -> dict[str, int]:
    """Every file under the store's version folders, named relative to the store
    (``v000001/units/part-00000.parquet``), with its size."""
    from hyperscene.transforms.inputs import glob_escape, match_sizes

    root = store.replace("\\", "/").rstrip("/") + "/"
    found = {p.replace("\\", "/"): size for p, size in match_sizes(FileSystems.join(glob_escape(store), "v*", "**")).items()}
    return {p[len(root):]: size for p, size in found.items() if p.startswith(root)}


def write_bytes(path: str, data: bytes) -> None:
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return f.read()


LOCK = "_lock"


def contained(path: object) -> bool:
    """Whether a manifest's file path stays inside its version's folder: relative, normalised, no ``..``.
    A manifest is data, so a path that leaves the folder (``../../etc/passwd``) marks a damaged store."""
    return (isinstance(path, str) and bool(path) and "\\" not in path and posixpath.normpath(path) == path
            and not path.startswith("/") and ".." not in path.split("/"))
