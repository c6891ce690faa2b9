"""The store's trash: where a deleted session's directory goes (one rename takes the session
out of the store), and where its files are removed afterwards.

Freeing a file's blocks is the slow part of a delete (on a disk mounted with ``discard``,
milliseconds per file, several times a rename); ``cleanup_old_sessions`` leaves it to a
thread that empties the trash after the call, so the call costs a rename per session.

Invariants (what ``delete``, the emptier and every other process rely on):

1. **One rename is the delete.** A session leaves the store when its directory is renamed
   to ``<root>/.trash/<random>``, under its directory lock and its session lock; its lock
   file is unlinked next, still under both (a waiting writer finds no links: gone). A
   SIGKILL before the rename leaves the session whole; after it, nothing of it in the
   store: names starting with ``.`` are never sessions (listings, ``exists`` and the
   catalog skip them), so the id is free for a new session at once.
2. **Nothing being moved is removed.** The emptier removes an entry whose lock file is
   gone (its deleter is done), or whose lock file it can ``flock`` without waiting (its
   deleter died between the rename and the unlink: a live one holds that lock). It
   unlinks that lock file first, holding the flock, as the deleter would have.
3. **Any emptying may stop anywhere.** Each step is a removal of something in the trash;
   whatever a crash (or an error) leaves is removed by the next emptying: after the next
   cleanup, or when the store is next opened.
4. **Space comes back when the last descriptor closes.** A deferred delete keeps a
   descriptor of the unlinked lock file (so closing the session's handle frees nothing
   during the call) and hands it to the emptier, which closes it before removing the rest.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import threading
import weakref
from pathlib import Path

from ._dirs import O_CLOEXEC

TRASH_DIR = ".trash"


def _close_all(fds: list[int]) -> None:
    while fds:
        try:
            os.close(fds.pop())
        except OSError:
            pass


class Trash:
    """One store's trash, as one process sees it: descriptors to close, and the thread that
    empties it (at most one per store object)."""

    def __init__(self, root: Path, dir_mode: int) -> None:
        self.path = root / TRASH_DIR
        self._text = f"{self.path}/"
        self.dir_mode = dir_mode
        self._reset()
        weakref.finalize(self, _close_all, self._keepers)

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._keepers: list[int] = []
        self._thread: threading.Thread | None = None
        self._again = False

    def _mine(self) -> None:
        if os.getpid() != self._pid:  # a forked child: its parent's thread and lock aren't its
            _close_all(self._keepers)
            self._reset()

    def place(self) -> str:
        """A new name in the trash (made by ``rename_into`` when it is missing)."""
        return self._text + os.urandom(16).hex()

    def tidy(self) -> None:
        """Remove the trash directory if it is empty (a store holds none but while a delete
        is under way or its space is being freed)."""
        try:
            os.rmdir(self.path)
        except OSError:
            pass  # not empty (another delete, or something to free later), or gone already

    def keep(self, fd: int) -> None:
        """Close ``fd`` when the trash is next emptied (invariant 4)."""
        self._mine()
        with self._lock:
            self._keepers.append(fd)

    def empty_later(self) -> None:
        """Empty the trash in a thread of this process (one at a time: a call while it runs
        makes it go round once more)."""
        self._mine()
        with self._lock:
            if self._thread is not None:
                self._again = True
                return
            self._thread = threading.Thread(target=self._run, name=f"eventlog trash {self.path}",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                keepers, self._keepers = self._keepers, []
                self._again = False
            _close_all(keepers)
            self.empty()
            self.tidy()
            with self._lock:
                if not self._again:
                    self._thread = None
                    return

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the emptier thread (if any) to finish; whether it has."""
        self._mine()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def waiting(self) -> bool:
        """Whether the trash holds anything (one stat and, if it exists, one listing)."""
        try:
            with os.scandir(self.path) as entries:
                return any(True for _ in entries)
        except OSError:
            return False

    def empty(self) -> int:
        """Remove what the trash holds that nobody is moving (invariant 2); how many entries.
        Errors leave things for the next time (invariant 3)."""
        removed = 0
        try:
            with os.scandir(self.path) as entries:
                names = [entry.name for entry in entries]
        except OSError:
            return 0
        for name in names:
            if remove_entry(self.path / name):
                removed += 1
        return removed


def remove_entry(entry: Path) -> bool:
    """Remove one entry of the trash unless its deleter is still moving it (invariant 2)."""
    try:
        fd = os.open(entry / "lock", os.O_RDONLY | O_CLOEXEC)
    except FileNotFoundError:
        fd = -1  # its deleter is done (or it was never a session's directory)
    except NotADirectoryError:
        fd = -1
    except OSError:
        return False
    if fd >= 0:
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return False  # a deleter is moving it: it is removed next time
            try:
                os.unlink(entry / "lock")
            except FileNotFoundError:
                pass
            except OSError:
                return False
        finally:
            os.close(fd)
    try:
        if entry.is_dir() and not entry.is_symlink():
            # Errors ignored: another process's emptier may be removing the same files.
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink()
    except OSError:
        return False
    return not os.path.lexists(entry)


def rename_into(source: str | Path, target: str | Path, trash: Path, dir_mode: int) -> None:
    """``os.rename(source, target)``, ``target`` a name in ``trash``, which another
    process's ``tidy`` may remove at any moment: make it again and retry. (Path.mkdir's
    exist_ok raised FileExistsError when the directory it found existing was removed before
    it looked again: a soak run saw it.) FileNotFoundError if ``source`` is gone."""
    for _ in range(1000):
        try:
            os.rename(source, target)
            return
        except FileNotFoundError:
            if not os.path.lexists(source):
                raise
        try:
            os.mkdir(trash, dir_mode)
        except FileExistsError:
            pass  # made by another process (and maybe removed again: the loop will see)
    os.rename(source, target)  # a thousand tidies in a row: give up with its error
