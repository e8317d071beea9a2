"""Durable storage for the Trio runtime: one file per key in the node's data directory.

``NodeCore`` asks for durable writes (:class:`~foundation_p2p.durability.DurableWrite`);
the runtime makes each one durable with :meth:`DataDirStore.write_many` before it calls
``writes_done``. A write replaces the whole file atomically: write a temporary file,
``fsync`` it, ``rename`` it over the old one, then ``fsync`` the directory, so a crash
leaves either the old contents or the new ones, never a mix.

The directory is created with mode 0700 and locked (``flock`` on ``.lock``) while a node
uses it: two processes sharing one identity would confuse their peers. Files are named
by their key (``identity``, ``boot_epoch``, ...); names starting with a dot are the
store's own (the lock, leftover temporary files).

:class:`MemoryStore` keeps the same interface in memory, for nodes without a data
directory: their identity is new at every start.

Every method here blocks on the file system; the runtime calls them through
``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Sequence
from typing import IO, Protocol

from foundation_p2p.errors import StorageError

log = logging.getLogger("foundation_p2p.runtime.storage")

MAX_STORED_FILE_BYTES = 16 * 1024 * 1024
"""Largest file read back from a data directory; a larger one is refused as corrupt."""

_KEY_RE = re.compile(r"[a-z0-9][a-z0-9_]{0,63}\Z")
_LOCK_NAME = ".lock"
_TMP_PREFIX = ".tmp-"


def check_key(key: str) -> str:
    """Return ``key`` if it is a valid stored-file name, else raise :class:`StorageError`."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise StorageError(f"storage key {key!r}: must be 1-64 of a-z, 0-9, _ (not leading _)")
    return key


class Store(Protocol):
    """What the runtime needs from durable storage (blocking calls, run in a thread)."""

    def read_all(self) -> dict[str, bytes]:
        """Every stored key and its contents."""
        ...

    def write_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Replace each key's contents durably, in order; return only once all are durable."""
        ...

    def close(self) -> None:
        """Release the store (its lock); further calls are errors."""
        ...


def lock_directory(path: str, lock_name: str, *, what: str, holder: str) -> IO[bytes]:
    """Take an exclusive advisory lock (``flock``) on ``path/lock_name`` and return the open
    lock file (keep it open: closing it releases the lock). :class:`StorageError` names
    ``what`` and ``path`` when the lock cannot be opened or is held (by ``holder``). Where
    ``fcntl`` does not exist (not POSIX) the file is returned unlocked."""
    lock_path = os.path.join(path, lock_name)
    try:
        f = os.fdopen(os.open(lock_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
    except OSError as exc:
        raise StorageError(f"{what} {path}: cannot open the lock: {exc.strerror}") from None
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no advisory lock available
        return f
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise StorageError(f"{what} {path}: in use by {holder} (locked)") from None
    return f


class MemoryStore:
    """A :class:`Store` in memory: nothing survives the process (an ephemeral identity)."""

    def __init__(self, initial: dict[str, bytes] | None = None) -> None:
        self.data: dict[str, bytes] = dict(initial or {})
        """The stored values by key."""
        self.writes = 0
        """How many values were written (for tests and diagnostics)."""

    def read_all(self) -> dict[str, bytes]:
        """A copy of every stored value."""
        return dict(self.data)

    def write_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Replace each key's value."""
        for key, data in items:
            self.data[check_key(key)] = bytes(data)
            self.writes += 1

    def close(self) -> None:
        """Nothing to release."""


class DataDirStore:
    """A :class:`Store` in a directory: one file per key, written atomically and durably."""

    def __init__(self, path: str) -> None:
        """Create (mode 0700) and lock ``path``; :class:`StorageError` names any problem."""
        self.path = os.path.abspath(path)
        self._lock_file: IO[bytes] | None = None
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise StorageError(f"data dir {path}: exists and is not a directory")
        try:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
            st = os.stat(self.path)
        except OSError as exc:
            raise StorageError(f"data dir {path}: cannot create it: {exc.strerror}") from None
        if st.st_mode & 0o077:
            log.warning(
                "data dir %s is readable by other users (mode %o); it holds the node's "
                "private identity key: chmod 700 it",
                self.path,
                stat.S_IMODE(st.st_mode),
            )
        self._lock()
        self._remove_leftovers()

    def _lock(self) -> None:
        self._lock_file = lock_directory(
            self.path, _LOCK_NAME, what="data dir", holder="another running node"
        )

    def _remove_leftovers(self) -> None:
        # A temporary file left by a crash mid-write was never renamed: its key still holds
        # the previous contents, so the leftover is garbage.
        for name in os.listdir(self.path):
            if name.startswith(_TMP_PREFIX):
                try:
                    os.unlink(os.path.join(self.path, name))
                except OSError as exc:
                    log.warning("cannot remove leftover %s: %s", name, exc.strerror)

    def read_all(self) -> dict[str, bytes]:
        """Every key-named regular file and its contents."""
        out: dict[str, bytes] = {}
        try:
            names = sorted(os.listdir(self.path))
        except OSError as exc:
            raise StorageError(f"data dir {self.path}: cannot list it: {exc.strerror}") from None
        for name in names:
            if not _KEY_RE.match(name):
                continue
            full = os.path.join(self.path, name)
            try:
                if not stat.S_ISREG(os.stat(full).st_mode):
                    continue
                with open(full, "rb") as f:
                    data = f.read(MAX_STORED_FILE_BYTES + 1)
            except OSError as exc:
                raise StorageError(f"{full}: cannot read: {exc.strerror}") from None
            if len(data) > MAX_STORED_FILE_BYTES:
                raise StorageError(f"{full}: larger than {MAX_STORED_FILE_BYTES} bytes")
            out[name] = data
        return out

    def write_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Write each file (temp, fsync, rename), then fsync the directory once."""
        if self._lock_file is None:
            raise StorageError(f"data dir {self.path}: the store is closed")
        for key, data in items:
            check_key(key)
            final = os.path.join(self.path, key)
            tmp = os.path.join(self.path, f"{_TMP_PREFIX}{key}")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, final)
            except OSError as exc:
                raise StorageError(f"{final}: cannot write: {exc.strerror}") from None
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise StorageError(f"data dir {self.path}: cannot open: {exc.strerror}") from None
        try:
            os.fsync(fd)
        except OSError as exc:
            raise StorageError(f"data dir {self.path}: fsync failed: {exc.strerror}") from None
        finally:
            os.close(fd)

    def close(self) -> None:
        """Release the lock."""
        if self._lock_file is not None:
            self._lock_file.close()  # closing the descriptor releases the flock
            self._lock_file = None
