"""An in-memory file system for the write-ahead log, with crashes that lose unsynced data.

:class:`MemoryVfs` implements :class:`foundation_p2p.consensus.wal.Vfs` the way a strict
POSIX disk behaves:

- a file's bytes are readable at once but survive a crash only up to the last
  ``sync`` of that file;
- creating, renaming and removing a file changes the directory, which survives a crash
  only as of the last ``sync_dir`` (a file synced but never made durable in the
  directory is lost, as on a file system that does not order the two);
- :meth:`MemoryVfs.crash` throws away everything not durable. With ``torn``, the file
  written last keeps a random part of its unsynced appended bytes (a prefix: the OS wrote
  back some dirty pages); with ``zero_tail`` as well, the kept part's end is replaced by
  zero bytes (metadata — the file size — reached the disk before the data).

For testing recovery at every point, ``crash_at`` makes the n-th mutating operation
(write, sync, sync_dir, create, truncate, remove, rename; counted from 1) raise
:class:`SimulatedCrash` instead of running; the test then calls :meth:`crash`. Open file
handles from before a crash refuse further use.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from foundation_p2p.errors import StorageError


class SimulatedCrash(Exception):
    """Raised by the operation ``crash_at`` named: the process died before it ran."""


class _Inode:
    __slots__ = ("data", "durable_len")

    def __init__(self) -> None:
        self.data = bytearray()
        """What reads see."""
        self.durable_len = 0
        """``data[:durable_len]`` survives a crash. Files only grow by appends and are cut
        by (durable) truncation, so the durable contents are always a prefix of ``data``."""


@dataclass(frozen=True)
class CrashReport:
    """What a :meth:`MemoryVfs.crash` lost."""

    lost_bytes: int
    """Unsynced bytes thrown away over all files (after tearing)."""
    lost_names: tuple[str, ...]
    """Names that disappeared (created or renamed without a directory sync)."""
    torn_file: str | None
    """The file that kept part of its unsynced bytes, if any."""
    kept_bytes: int
    """How many unsynced bytes it kept."""


class MemoryFile:
    """A :class:`MemoryVfs` file open for appending."""

    def __init__(self, vfs: MemoryVfs, name: str, inode: _Inode) -> None:
        self._vfs = vfs
        self._name = name
        self._inode = inode
        self._generation = vfs.generation
        self._closed = False

    def _check(self) -> None:
        if self._closed:
            raise StorageError(f"{self._vfs.path}/{self._name}: the file is closed")
        if self._generation != self._vfs.generation:
            raise StorageError(f"{self._vfs.path}/{self._name}: opened before a crash")

    def write(self, data: bytes) -> None:
        """Append ``data`` (readable now, durable after :meth:`sync`)."""
        self._check()
        self._vfs._op()
        self._inode.data += data
        self._vfs.last_written = self._inode
        self._vfs.bytes_written += len(data)

    def sync(self) -> None:
        """Make this file's bytes durable."""
        self._check()
        self._vfs._op()
        self._inode.durable_len = len(self._inode.data)
        self._vfs.file_syncs += 1

    def close(self) -> None:
        """Close the handle."""
        self._closed = True


class MemoryVfs:
    """A strict in-memory :class:`~foundation_p2p.consensus.wal.Vfs`; see the module
    docstring."""

    def __init__(self, path: str = "mem") -> None:
        self.path = path
        """A label for error messages."""
        self._files: dict[str, _Inode] = {}
        self._durable_dir: dict[str, _Inode] = {}
        self.generation = 0
        self.last_written: _Inode | None = None
        self.ops = 0
        """Mutating operations so far."""
        self.crash_at: int | None = None
        """Raise :class:`SimulatedCrash` at this operation number instead of running it."""
        self.file_syncs = 0
        self.dir_syncs = 0
        self.bytes_written = 0
        self.crashes = 0

    def _op(self) -> None:
        self.ops += 1
        if self.crash_at is not None and self.ops >= self.crash_at:
            raise SimulatedCrash(f"crash at operation {self.ops}")

    def _inode(self, name: str) -> _Inode:
        inode = self._files.get(name)
        if inode is None:
            raise StorageError(f"{self.path}/{name}: no such file")
        return inode

    def list(self) -> list[str]:
        """The names in the directory, sorted."""
        return sorted(self._files)

    def open_append(self, name: str, *, create: bool = False) -> MemoryFile:
        """Open ``name`` for appending; ``create`` makes it new and empty."""
        if create:
            self._op()
            self._files[name] = _Inode()
        return MemoryFile(self, name, self._inode(name))

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Visible bytes of ``name``."""
        data = self._inode(name).data
        end = len(data) if length is None else offset + length
        return bytes(data[offset:end])

    def truncate(self, name: str, size: int) -> None:
        """Cut ``name`` to ``size`` bytes, durably."""
        inode = self._inode(name)
        self._op()
        del inode.data[size:]
        inode.durable_len = len(inode.data)

    def remove(self, name: str) -> None:
        """Remove ``name`` from the directory."""
        self._inode(name)
        self._op()
        del self._files[name]

    def rename(self, old: str, new: str) -> None:
        """Move ``old`` to ``new``."""
        inode = self._inode(old)
        self._op()
        del self._files[old]
        self._files[new] = inode

    def sync_dir(self) -> None:
        """Make the directory's current names durable."""
        self._op()
        self._durable_dir = dict(self._files)
        self.dir_syncs += 1

    # -- inspection and faults --------------------------------------------------------

    def durable_bytes(self, name: str) -> bytes | None:
        """What ``name`` would hold after a crash now (None if the name would be gone)."""
        inode = self._durable_dir.get(name)
        return None if inode is None else bytes(inode.data[: inode.durable_len])

    def crash(
        self, rng: random.Random | None = None, *, torn: bool = False, zero_tail: bool = False
    ) -> CrashReport:
        """Lose everything not durable (see the module docstring); open handles die."""
        self.crashes += 1
        self.generation += 1
        self.crash_at = None
        torn_file: str | None = None
        kept = 0
        victim = self.last_written
        if torn and victim is not None and rng is not None:
            pending = len(victim.data) - victim.durable_len
            if pending > 0:
                kept = rng.randrange(0, pending + 1)
                end = victim.durable_len + kept
                if zero_tail and kept:
                    zeros = rng.randrange(1, kept + 1)
                    victim.data[end - zeros : end] = bytes(zeros)
                victim.durable_len = end
                for name, inode in self._durable_dir.items():
                    if inode is victim:
                        torn_file = name
        lost = 0
        for inode in set(self._files.values()) | set(self._durable_dir.values()):
            lost += len(inode.data) - inode.durable_len
            del inode.data[inode.durable_len :]
        lost_names = tuple(sorted(set(self._files) - set(self._durable_dir)))
        self._files = dict(self._durable_dir)
        self.last_written = None
        return CrashReport(lost, lost_names, torn_file, kept)

    def corrupt(self, name: str, offset: int, xor: int = 0x01) -> None:
        """Flip bits of one durable and visible byte (a media error), for tests."""
        inode = self._inode(name)
        inode.data[offset] ^= xor
