"""Deleting what no kept version uses: the manifests of older versions, then every file under a
version folder that no kept version's manifest lists.

Crash safety comes from the order. A kept version's manifest and files are never touched, so a
vacuum killed at any moment leaves every kept version as it was. An older version stops existing
when its manifest goes (first, oldest first, each deletion atomic); its files go after, and a
vacuum killed between the two leaves only files that the next vacuum deletes.
"""

from __future__ import annotations

from dataclasses import dataclass

from apache_beam.io.filesystems import FileSystems

from hyperscene.transforms.errors import Errors, StoreDamaged, StoreError
from hyperscene.transforms.store.layout import MANIFEST, published_versions, version_dir, version_files
from hyperscene.transforms.store.reader import StoreVersion, entry_name


@dataclass(frozen=True)
class VacuumPlan:
    kept: tuple[int, ...]  # versions that stay, ascending
    dropped: tuple[int, ...]  # versions whose manifests go, ascending
    files: tuple[str, ...]  # files to delete, relative to the store (the dropped manifests excluded)
    freed_bytes: int  # of those files and manifests together


def used_files(store: str, versions: list[int]) -> set[str]:
    """Every file that ``versions`` consist of (manifests included), relative to the store. A version
    whose manifest cannot be read is an error: what it uses is unknown, so nothing may be deleted."""
    used = set()
    for version in versions:
        try:
            stored = StoreVersion(store, version)
            entries = stored.entries()
        except StoreDamaged as e:
            raise StoreError(Errors.E441.format(version=version, store=store, problem=e)) from None
        used.add(f"v{version:06d}/{MANIFEST}")
        used.update(entry_name(e, version) for e in entries)
    return used


def plan_vacuum(store: str, keep: int) -> VacuumPlan:
    """What ``vacuum --keep keep`` deletes, without deleting anything."""
    versions = published_versions(store)
    if not versions:
        raise StoreError(Errors.E401.format(store=store))
    kept, dropped = versions[-keep:], versions[:-keep]
    used = used_files(store, kept)
    present = version_files(store)
    manifests = {f"v{v:06d}/{MANIFEST}" for v in dropped}
    files = sorted(name for name in present if name not in used and name not in manifests)
    return VacuumPlan(tuple(kept), tuple(dropped), tuple(files),
                      sum(present[n] for n in files) + sum(present.get(m, 0) for m in manifests))


def apply_vacuum(store: str, plan: VacuumPlan, progress=None) -> None:
    """Delete what ``plan`` names, in the crash-safe order; the writer's lock must be held, so that
    no writer is adding files meanwhile."""
    for version in plan.dropped:
        manifest = FileSystems.join(version_dir(store, version), MANIFEST)
        if FileSystems.exists(manifest):
            FileSystems.delete([manifest])
    for start in range(0, len(plan.files), 256):
        batch = plan.files[start:start + 256]
        FileSystems.delete([FileSystems.join(store, *name.split("/")) for name in batch])
        if progress is not None:
            progress.add(len(batch))
    _remove_empty_folders(store, {name.split("/")[0] for name in plan.files} | {f"v{v:06d}" for v in plan.dropped})


def _remove_empty_folders(store: str, folders: set[str]) -> None:
    """Folders left empty under the given version folders, and those themselves (local disks:
    object stores have no folders)."""
    import os

    if FileSystems.get_scheme(store) is not None:
        return
    for folder in sorted(folders):
        for root, _, _ in os.walk(os.path.join(store, folder), topdown=False):
            if not os.listdir(root):
                os.rmdir(root)
