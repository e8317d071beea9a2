"""The write-ahead log's file system on the real disk: one directory, real ``fsync``.

:class:`OsVfs` implements :class:`foundation_p2p.consensus.wal.Vfs` over a directory
(created with mode 0700 and locked with ``flock`` on ``.lock`` while in use, so two
processes never append to one log). Files are appended through an ``O_APPEND`` descriptor;
:meth:`OsFile.sync` is ``fdatasync`` where the platform has it (Linux: it flushes the data
and the size, all an append needs) and ``fsync`` elsewhere; :meth:`OsVfs.sync_dir`
``fsync``\\ s the directory so creations, renames and removals survive a crash.

Every call blocks; the runtime makes them through ``trio.to_thread.run_sync``. Every
``OSError`` becomes a :class:`~foundation_p2p.errors.StorageError` naming the file.
"""

from __future__ import annotations

import logging
import os
import re
from typing import IO

from foundation_p2p.errors import StorageError
from foundation_p2p.runtime.storage import lock_directory

log = logging.getLogger("foundation_p2p.runtime.vfs")

_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,200}\Z")
_LOCK_NAME = ".lock"
_sync_data = getattr(os, "fdatasync", os.fsync)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name) or name in (".", "..", _LOCK_NAME):
        raise StorageError(f"file name {name!r}: must be 1-200 of A-Z a-z 0-9 . _ -")
    return name


class OsFile:
    """A file of an :class:`OsVfs` open for appending."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def _require(self) -> int:
        if self._fd is None:
            raise StorageError(f"{self.path}: the file is closed")
        return self._fd

    def write(self, data: bytes) -> None:
        """Append ``data`` (every byte, retrying short writes)."""
        fd = self._require()
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError as exc:
            raise StorageError(f"{self.path}: cannot write: {exc.strerror}") from None

    def sync(self) -> None:
        """``fdatasync`` (``fsync`` where there is none): the data written is durable."""
        fd = self._require()
        try:
            _sync_data(fd)
        except OSError as exc:
            # After a failed fsync the kernel may have dropped the dirty pages: nothing
            # written since the last good sync can be trusted, so the caller must stop.
            raise StorageError(f"{self.path}: fsync failed: {exc.strerror}") from None

    def close(self) -> None:
        """Close the descriptor (no sync)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError as exc:
                raise StorageError(f"{self.path}: cannot close: {exc.strerror}") from None


class OsVfs:
    """A :class:`~foundation_p2p.consensus.wal.Vfs` in a directory of the real disk."""

    def __init__(self, path: str) -> None:
        """Create ``path`` (mode 0700) if needed and lock it; :class:`StorageError` names
        the problem (not a directory, no permission, locked by another process)."""
        self.path = os.path.abspath(path)
        self._lock_file: IO[bytes] | None = None
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise StorageError(f"wal dir {self.path}: exists and is not a directory")
        try:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"wal dir {self.path}: cannot create it: {exc.strerror}") from None
        self._lock()

    def _lock(self) -> None:
        self._lock_file = lock_directory(
            self.path, _LOCK_NAME, what="wal dir", holder="another process"
        )

    def _full(self, name: str) -> str:
        return os.path.join(self.path, _check_name(name))

    def list(self) -> list[str]:
        """Regular files in the directory (not the lock), sorted."""
        try:
            names = os.listdir(self.path)
        except OSError as exc:
            raise StorageError(f"wal dir {self.path}: cannot list it: {exc.strerror}") from None
        return sorted(
            n
            for n in names
            if n != _LOCK_NAME and _NAME_RE.match(n) and os.path.isfile(os.path.join(self.path, n))
        )

    def open_append(self, name: str, *, create: bool = False) -> OsFile:
        """Open ``name`` for appending (``O_APPEND``); ``create`` makes a new empty file,
        replacing any with that name."""
        full = self._full(name)
        flags = os.O_WRONLY | os.O_APPEND
        if create:
            flags |= os.O_CREAT | os.O_TRUNC
        try:
            fd = os.open(full, flags, 0o600)
        except OSError as exc:
            raise StorageError(f"{full}: cannot open for appending: {exc.strerror}") from None
        return OsFile(full, fd)

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """``length`` bytes from ``offset`` (``pread``), or the rest of the file."""
        full = self._full(name)
        try:
            fd = os.open(full, os.O_RDONLY)
        except OSError as exc:
            raise StorageError(f"{full}: cannot open for reading: {exc.strerror}") from None
        try:
            if length is None:
                length = max(0, os.fstat(fd).st_size - offset)
            chunks: list[bytes] = []
            got = 0
            while got < length:
                chunk = os.pread(fd, length - got, offset + got)
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
            return b"".join(chunks)
        except OSError as exc:
            raise StorageError(f"{full}: cannot read: {exc.strerror}") from None
        finally:
            os.close(fd)

    def truncate(self, name: str, size: int) -> None:
        """Cut ``name`` to ``size`` bytes and ``fsync`` it."""
        full = self._full(name)
        try:
            fd = os.open(full, os.O_WRONLY)
            try:
                os.ftruncate(fd, size)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StorageError(f"{full}: cannot truncate to {size}: {exc.strerror}") from None

    def remove(self, name: str) -> None:
        """Unlink ``name`` (durable after :meth:`sync_dir`)."""
        full = self._full(name)
        try:
            os.unlink(full)
        except OSError as exc:
            raise StorageError(f"{full}: cannot remove: {exc.strerror}") from None

    def rename(self, old: str, new: str) -> None:
        """Atomically rename ``old`` over ``new`` (durable after :meth:`sync_dir`)."""
        src, dst = self._full(old), self._full(new)
        try:
            os.replace(src, dst)
        except OSError as exc:
            raise StorageError(f"{src}: cannot rename to {new}: {exc.strerror}") from None

    def sync_dir(self) -> None:
        """``fsync`` the directory itself."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise StorageError(f"wal dir {self.path}: cannot open: {exc.strerror}") from None
        try:
            os.fsync(fd)
        except OSError as exc:
            raise StorageError(f"wal dir {self.path}: fsync failed: {exc.strerror}") from None
        finally:
            os.close(fd)

    def close(self) -> None:
        """Release the directory lock."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
