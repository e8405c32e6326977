"""The store's writer lock (StoreLock): an unreadable lock younger than the grace period holds, an
older one or one of a dead process is taken over, and writers racing for it never both hold it."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import socket
import subprocess
import sys
import time

import pytest

from hyperscene.transforms.store import lock as lock_module
from hyperscene.transforms.errors import StoreBusy
from hyperscene.transforms.store.layout import LOCK
from hyperscene.transforms.store.lock import StoreLock


def test_an_empty_lock_of_just_now_holds(tmp_path):
    # What an older hyperscene leaves between creating the lock and writing it: not stale yet.
    lock = tmp_path / LOCK
    lock.write_bytes(b"")
    before = os.stat(lock)
    with pytest.raises(StoreBusy, match=r"\[E434\] the lock .* cannot be read \(empty\) and is \d+ s old.*retry in \d+ s"):
        with StoreLock(str(tmp_path), "refresh"):
            pass
    after = os.stat(lock)
    assert lock.read_bytes() == b"" and (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK]  # no temporary file left

    lock.write_bytes(b'{"pid": 12')  # cut short
    with pytest.raises(StoreBusy, match=r"cannot be read \(not a lock's JSON\)"):
        with StoreLock(str(tmp_path), "refresh"):
            pass
    assert lock.read_bytes() == b'{"pid": 12'


def test_an_unreadable_lock_older_than_the_grace_is_taken_over(tmp_path):
    lock = tmp_path / LOCK
    lock.write_bytes(b"")
    young = time.time() - StoreLock.GRACE_SECONDS + 10
    os.utime(lock, (young, young))
    with pytest.raises(StoreBusy, match=r"cannot be read \(empty\).*retry in (9|10) s"):
        with StoreLock(str(tmp_path), "compress"):
            pass
    old = time.time() - StoreLock.GRACE_SECONDS - 5
    os.utime(lock, (old, old))
    with StoreLock(str(tmp_path), "compress"):
        holder = json.loads(lock.read_text())
        assert (holder["pid"], holder["command"]) == (os.getpid(), "compress")
    assert list(tmp_path.iterdir()) == []


def test_a_readable_lock_of_a_dead_process_is_taken_over_and_a_live_one_holds(tmp_path):
    lock = tmp_path / LOCK
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "command": "refresh"}))
    with StoreLock(str(tmp_path), "refresh"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()
    for holder in ({"pid": os.getpid(), "host": socket.gethostname(), "command": "compress"},  # alive, however old
                   {"pid": 1, "host": "elsewhere", "command": "compress"}):  # cannot be checked
        lock.write_text(json.dumps(holder))
        os.utime(lock, (0, 0))
        with pytest.raises(StoreBusy, match=r"another compress is writing this store \(pid \d+"):
            with StoreLock(str(tmp_path), "refresh"):
                pass
        assert json.loads(lock.read_text()) == holder


def test_a_lock_replaced_while_held_is_left_to_its_new_holder(tmp_path):
    lock = tmp_path / LOCK
    with StoreLock(str(tmp_path), "refresh"):
        lock.unlink()  # removed by hand, and taken by another writer
        lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "command": "compress"}))
    assert json.loads(lock.read_text())["command"] == "compress"


# --- racing writers ------------------------------------------------------------------------------

_HOLD = 0.2  # seconds each writer holds the lock
_WRITERS = 8


def _writer(store: str, log: str, start: float, deadline: float, slow: bool) -> None:
    """Wait for the common start, then try for the lock until holding it once; note entering and leaving.
    ``slow``: judging whether a holder is dead takes up to 50 ms (a loaded machine), which widens the
    race between two writers taking over the same stale lock."""
    def note(line: str) -> None:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, f"{line} {os.getpid()}\n".encode())
        finally:
            os.close(fd)

    random.seed(os.getpid())
    if slow:
        is_dead = lock_module._is_dead

        def slow_is_dead(holder):
            time.sleep(random.uniform(0, 0.05))
            return is_dead(holder)

        lock_module._is_dead = slow_is_dead  # this process only (forked)
    while time.time() < start:
        time.sleep(0.001)
    while time.time() < deadline:
        try:
            with StoreLock(store, "x"):
                note("enter")
                time.sleep(_HOLD)
                if json.loads(open(os.path.join(store, LOCK)).read())["pid"] != os.getpid():
                    note("stolen")
                note("exit")
            return
        except StoreBusy as e:
            if "another x is writing" not in str(e):  # anything else means an unreadable lock was seen
                note(f"busy:{str(e)[:60].replace(' ', '_')}")
            time.sleep(random.uniform(0, 0.02))
    note("gave-up")


def _reader(store: str, log: str, done) -> None:
    """Read the lock in a tight loop: whenever it exists it must name its holder in full (once the lock
    left before the start, unreadable on purpose, has been replaced)."""
    path, seen_one, bad = os.path.join(store, LOCK), False, 0
    while not done.is_set():
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            continue
        try:
            json.loads(raw)["pid"]
            seen_one = True
        except (ValueError, KeyError, TypeError):
            bad += seen_one
    if bad:
        with open(log, "a") as f:
            f.write(f"unreadable {bad}\n")


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
@pytest.mark.parametrize("left", ["none", "dead", "dead-slowly", "unreadable"])
def test_racing_writers_hold_the_lock_one_at_a_time(tmp_path, left):
    store, log = tmp_path / "store", tmp_path / "log"
    store.mkdir()
    log.write_text("")
    if left.startswith("dead"):  # all writers find a stale lock at once and race to take it over
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        (store / LOCK).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "command": "x"}))
    elif left == "unreadable":
        (store / LOCK).write_bytes(b"")
        os.utime(store / LOCK, (0, 0))
    ctx = multiprocessing.get_context("fork")
    start = time.time() + 0.5
    deadline = start + _WRITERS * _HOLD + 8  # room for a loaded machine: writers stop once they held it
    args = (str(store), str(log), start, deadline, left == "dead-slowly")
    procs = [ctx.Process(target=_writer, args=args) for _ in range(_WRITERS)]
    done = ctx.Event()
    reader = ctx.Process(target=_reader, args=(str(store), str(log), done))
    for p in [*procs, reader]:
        p.start()
    for p in procs:
        p.join(deadline - time.time() + 5)
    done.set()
    reader.join(5)
    procs.append(reader)
    assert [p.exitcode for p in procs] == [0] * len(procs)

    lines = [line.split(" ", 1) for line in log.read_text().splitlines()]
    assert [line for line in lines if line[0] not in ("enter", "exit")] == []  # no unreadable lock, none stolen
    entered = [pid for kind, pid in lines[0::2]]
    assert [kind for kind, _ in lines] == ["enter", "exit"] * _WRITERS, lines  # never two inside at once
    assert [pid for _, pid in lines[1::2]] == entered and len(set(entered)) == _WRITERS
    assert list(store.iterdir()) == []  # no lock, no temporary file left
