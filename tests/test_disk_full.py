"""A full disk (issue 14, item 13): the run says it is the disk, which folder and about how much the
run needs ([E440]), removes what it wrote, and warned at the start ([W005]) when it saw too little
free space."""

from __future__ import annotations

import errno
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import SAMPLE_CORPUS
from hyperscene.pipelines.cli import main


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MB filesystem (tmpfs), where this machine lets the tests mount one (as root)."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:8]}"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.decode(errors='replace').strip()}); "
                    "test_a_write_that_finds_the_disk_full_is_one_coded_line covers the error path")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _assert_disk_full(err: str, store: Path) -> None:
    line = [l for l in err.splitlines() if "error:" in l]
    assert len(line) == 1 and "[E440] the disk holding" in line[0] and str(store) in line[0], err
    assert "This run needs about" in line[0] and "--out" in line[0] and "Traceback" not in err, err
    assert not store.exists() or not any(store.iterdir()), sorted(store.iterdir())  # no version, scratch or lock


def test_a_full_disk_stops_the_run_in_one_coded_line(small_disk, capsys):
    store = small_disk / "store"
    assert main(["compress", str(SAMPLE_CORPUS), "--out", str(store), "--embedder", "static"]) == 2
    err = capsys.readouterr().err
    assert "[W005] the disk of" in err and "may need about" in err, err
    _assert_disk_full(err, store)


def test_a_write_that_finds_the_disk_full_is_one_coded_line(tmp_path, capsys, monkeypatch):
    """The same error path wherever a mount is not allowed: the store's writer gets ENOSPC, as from a full disk."""
    from hyperscene.transforms.store import writer

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer, "write_sorted_file", full)
    store = tmp_path / "store"
    assert main(["compress", str(SAMPLE_CORPUS), "--out", str(store), "--embedder", "static"]) == 2
    _assert_disk_full(capsys.readouterr().err, store)
