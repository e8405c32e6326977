"""Run a ``hyperscene`` command in a subprocess and SIGKILL it at a chosen moment.

The moment is observed from outside, by polling the store's files, so the product code is run as
users run it and holds no test hooks. The child starts in a new session and the kill goes to its
whole process group (Beam's worker processes included), as an out-of-memory killer or a preempted
machine would stop it: no handler, no ``finally``, no flush.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

POLL_SECONDS = 0.01
TIMEOUT_SECONDS = 600.0


def scan(store: Path) -> dict[str, tuple[int, int] | None]:
    """Every file and folder under ``store``, as posix paths relative to it; a file with its inode and
    mtime, so one deleted and written again (a leftover a re-run clears and rewrites) reads as new."""
    if not store.exists():
        return {}
    found: dict[str, tuple[int, int] | None] = {}
    for root, dirs, files in os.walk(store):
        rel = Path(root).relative_to(store).as_posix()
        prefix = "" if rel == "." else rel + "/"
        found.update((prefix + name, None) for name in dirs)
        for name in files:
            try:
                st = os.stat(os.path.join(root, name))
            except FileNotFoundError:  # deleted while we looked
                continue
            found[prefix + name] = (st.st_ino, st.st_mtime_ns)
    return found


def snapshot(store: Path) -> frozenset[str]:
    return frozenset(scan(store))


@dataclass
class View:
    """What the poller knows at one tick."""

    elapsed: float  # seconds since the child started
    paths: frozenset[str]  # the store now
    new: frozenset[str]  # paths the store did not hold before the child started, or files since rewritten
    first_write_at: float | None  # when the first new file of the version's folder or scratch was seen


@dataclass(frozen=True)
class Point:
    """A moment of a run that writes store version ``version``, recognised from a View."""

    name: str
    about: str
    reached: Callable[[View, int], bool]


def vdir(version: int) -> str:
    return f"v{version:06d}"


def wdir(version: int) -> str:
    return f"_work/v{version:06d}"


def spilled_vectors(view: View, version: int) -> bool:
    return any(p.startswith(wdir(version) + "/") and p.endswith(".npy") for p in view.new)


def table_files_without_manifest(view: View, version: int) -> bool:
    v = vdir(version)
    return f"{v}/manifest.json" not in view.paths and any(p.startswith(v + "/") and p.endswith(".parquet") for p in view.new)


def published(view: View, version: int) -> bool:
    return f"{vdir(version)}/manifest.json" in view.paths


def before_publish(data_files: frozenset[str]) -> Callable[[View, int], bool]:
    """The manifest's temporary file exists, or every data file with rows that a complete run's
    manifest lists (``data_files``, relative to the store: those it shares with earlier versions are
    there already) is there and the manifest is not: what is left is writing the empty tables and
    the manifest."""

    def reached(view: View, version: int) -> bool:
        v = vdir(version)
        if f"{v}/manifest.json" in view.paths:
            return False
        return f"{v}/manifest.json.tmp" in view.paths or all(f in view.paths for f in data_files)

    return reached


def after_start(seconds: float) -> Callable[[View, int], bool]:
    return lambda view, version: view.elapsed >= seconds


def after_first_write(seconds: float) -> Callable[[View, int], bool]:
    """``seconds`` after the run wrote its first file into the version's folder or scratch."""
    return lambda view, version: view.first_write_at is not None and view.elapsed - view.first_write_at >= seconds


@dataclass
class Outcome:
    """How a run ended: killed at ``point`` (``killed``) or exited on its own first."""

    point: str
    killed: bool
    returncode: int | None
    elapsed: float
    left: frozenset[str]  # the store after the child was gone
    new: frozenset[str]  # of those, the paths the run created or rewrote
    stderr: str = ""
    timeline: dict[str, float] = field(default_factory=dict)  # path -> when first seen (seconds)
    first_write_at: float | None = None  # when its first file of the version's folder or scratch appeared

    def describe(self, version: int) -> str:
        """A short account of what the store holds of version ``version`` after the run."""
        v, w = vdir(version), wdir(version)
        tables = sorted({p.split("/")[1] for p in self.left if p.startswith(v + "/") and p.endswith(".parquet")})
        vectors = sum(1 for p in self.left if p.startswith(w + "/") and p.endswith(".npy"))
        parts = []
        if vectors:
            parts.append(f"{vectors} spilled vector file(s)")
        if tables:
            parts.append(f"{len(tables)} table(s): {','.join(tables)}")
        if f"{v}/manifest.json.tmp" in self.left:
            parts.append("manifest.json.tmp")
        if f"{v}/manifest.json" in self.left:
            parts.append("manifest.json")
        if w in self.left and not vectors:
            parts.append("empty scratch folder")
        others = sorted(p for p in self.new if not p.startswith((v + "/", "_work/")) and p not in (v, "_work"))
        if others:
            parts.append("other: " + ", ".join(others))
        state = "nothing" if not parts else "; ".join(parts)
        how = f"killed at {self.elapsed:.2f} s" if self.killed else f"exited {self.returncode} at {self.elapsed:.2f} s"
        return f"{how}: {state}"


def command(*args: str) -> list[str]:
    """The ``hyperscene`` command line, through this interpreter: the installed package, whatever the
    working directory and PATH."""
    return [sys.executable, "-m", "hyperscene.pipelines.cli", *args]


class Run:
    """One child run of a command that writes store ``version``; a context manager that leaves no
    child behind. Its output goes to ``log_dir/NAME.stdout|stderr``, its working directory is
    ``log_dir``."""

    def __init__(self, argv: list[str], store: Path, version: int, log_dir: Path, name: str):
        self.store, self.version, self.name = store, version, name
        self.before = scan(store)
        self.timeline: dict[str, float] = {}
        self.first_write_at: float | None = None
        self.killed = False
        log_dir.mkdir(parents=True, exist_ok=True)
        self._err_path = log_dir / f"{name}.stderr"
        with open(log_dir / f"{name}.stdout", "wb") as out, open(self._err_path, "wb") as err:
            self.started = time.monotonic()
            self.child = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=log_dir,
                                          start_new_session=True)

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc) -> None:
        if self.child.poll() is None:
            self.kill()

    def _tick(self) -> View:
        elapsed = time.monotonic() - self.started
        now = scan(self.store)
        new = frozenset(p for p, sig in now.items() if p not in self.before or (sig is not None and sig != self.before[p]))
        for p in new:
            self.timeline.setdefault(p, elapsed)
        if self.first_write_at is None:
            mine = (vdir(self.version) + "/", wdir(self.version) + "/")
            if any(p.startswith(mine) and now[p] is not None for p in new):
                self.first_write_at = elapsed
        return View(elapsed, frozenset(now), new, self.first_write_at)

    def wait_for(self, point: Point, timeout: float = TIMEOUT_SECONDS) -> bool:
        """Poll until ``point`` is reached (True) or the child exits first (False)."""
        while True:
            view = self._tick()
            if point.reached(view, self.version):
                return True
            if self.child.poll() is not None:
                self._tick()
                return False
            if view.elapsed > timeout:
                raise TimeoutError(f"{self.name}: {point.about} not reached in {timeout:.0f} s")
            time.sleep(POLL_SECONDS)

    def kill(self) -> "Outcome":
        """SIGKILL the whole process group, and wait until none of it is alive."""
        try:
            os.killpg(self.child.pid, signal.SIGKILL)
            self.killed = True
        except ProcessLookupError:
            pass
        self.child.wait()
        _reap_group(self.child.pid)
        return self.outcome()

    def stop(self, sig: int) -> "Outcome":
        """Stop the run as a user or a scheduler does, and wait for it: SIGTERM to the process alone
        (``kill PID``), SIGINT to its whole group (Ctrl-C in a terminal)."""
        if sig == signal.SIGINT:
            os.killpg(self.child.pid, sig)
        else:
            os.kill(self.child.pid, sig)
        return self.wait()

    def pause(self) -> None:
        os.killpg(self.child.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.child.pid, signal.SIGCONT)

    def wait(self, timeout: float = TIMEOUT_SECONDS) -> "Outcome":
        deadline = time.monotonic() + timeout
        while self.child.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} still running after {timeout:.0f} s")
            self._tick()
            time.sleep(POLL_SECONDS)
        return self.outcome()

    def outcome(self) -> "Outcome":
        view = self._tick()
        killed = self.killed and self.child.returncode == -signal.SIGKILL
        return Outcome(self.name, killed, None if killed else self.child.returncode, view.elapsed, view.paths, view.new,
                       self._err_path.read_text(errors="replace"), dict(self.timeline), self.first_write_at)


def run_until(argv: list[str], store: Path, point: Point, version: int, log_dir: Path,
              timeout: float = TIMEOUT_SECONDS) -> "Outcome":
    """Start ``argv`` and SIGKILL its process group as soon as ``point`` is reached for store
    ``version``; if the child exits first, its Outcome says so (``killed`` false)."""
    with Run(argv, store, version, log_dir, point.name) as run:
        if run.wait_for(point, timeout):
            return run.kill()
        return run.wait()


def _reap_group(pgid: int) -> None:
    """Wait until no live process of the killed group is left, so none writes after the kill is
    over. Zombies do not count: in a container the process that inherits orphans may never reap them."""
    deadline = time.monotonic() + 10
    while _live_members(pgid):
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes of group {pgid} survived SIGKILL for 10 s: {_live_members(pgid)}")
        time.sleep(0.01)


def _live_members(pgid: int) -> list[int]:
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: SIGKILL to the group is all there is
        return []
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members
