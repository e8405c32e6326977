"""The folder where derived models are kept (converted, distilled, exported), their fingerprint, and
the atomic move that publishes a finished one, so that concurrent runs never see half a model."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def fingerprint(folder: str) -> str:
    digest = hashlib.sha256()
    for f in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        rel = f.relative_to(folder).as_posix()
        digest.update(f"{rel}\0{f.stat().st_size}\n".encode())
        if f.suffix in (".safetensors", ".bin", ".onnx"):
            with open(f, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def default_cache_dir() -> str:
    return os.environ.get("HYPERSCENE_CACHE") or str(Path.home() / ".cache" / "hyperscene")


def publish_folder(staging: Path, target: Path) -> None:
    """Move a finished model folder into the cache: a concurrent run sees all of it or none."""
    try:
        os.replace(staging, target)
    except OSError:  # another run published the same model first (a non-empty folder is not replaced)
        shutil.rmtree(staging, ignore_errors=True)
        if not target.is_dir():
            raise
