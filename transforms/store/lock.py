"""The store's writer lock: one compress, refresh or retrain at a time."""

from __future__ import annotations

import json
import logging
import time

from apache_beam.io.filesystems import FileSystems

from hyperscene.transforms.errors import Errors, StoreBusy
from hyperscene.transforms.store.layout import LOCK, read_bytes, write_bytes


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
        raise StoreBusy(Errors.E431.format(lock=self.path))

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
        write_bytes(self.path, data)
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
            raise StoreBusy(Errors.E432.format(lock=self.path, error=e)) from e
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
                raise StoreBusy(Errors.E430.format(command=holder.get("command", "writer"), pid=holder.get("pid"),
                                                   host=holder.get("host"), since=holder.get("started_at"), lock=self.path))
            return f"taking over the lock of a {holder.get('command', 'writer')} that no longer runs (pid {holder.get('pid')})"
        what = "empty" if not raw.strip() else "not a lock's JSON"
        if age is None:
            raise StoreBusy(Errors.E433.format(lock=self.path, what=what))
        if age < self.GRACE_SECONDS:
            raise StoreBusy(Errors.E434.format(lock=self.path, what=what, age=max(age, 0), grace=self.GRACE_SECONDS,
                                               wait=self.GRACE_SECONDS - max(age, 0)))
        return f"taking over an unreadable lock ({what}), {age:.0f} s old"


def _is_dead(holder: dict) -> bool:
    """Whether the lock's process is known to have ended: only a process of this machine can be checked."""
    import socket

    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False  # 0 and negative numbers name process groups, not a process
    return process_ended(pid)


def process_ended(pid: int) -> bool:
    """Whether process ``pid`` of this machine has ended (a zombie, killed but not yet reaped, has);
    False when that cannot be told (another user's process)."""
    import os

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


def clear_lock_leftovers(store: str, older_than: float = StoreLock.GRACE_SECONDS) -> None:
    """Remove the temporary lock files (``_lock.<pid>.<random>.tmp``) that writers killed while taking
    the lock left in a local store: those of ended processes, older than ``older_than`` seconds (a
    live writer's exists for a moment, and a process on another machine sharing the disk cannot be
    checked, so only age tells). Called with the lock held."""
    import os
    import re

    if FileSystems.get_scheme(store) is not None or not os.path.isdir(store):
        return
    leftover = re.compile(re.escape(LOCK) + r"\.(\d+)\.[0-9a-f]+\.tmp$")
    now = time.time()
    for name in os.listdir(store):
        m = leftover.match(name)
        path = os.path.join(store, name)
        try:
            if m and now - os.stat(path).st_mtime > older_than and process_ended(int(m.group(1))):
                os.unlink(path)
        except OSError:  # gone meanwhile, or not ours to remove: it only costs a few bytes
            pass
