"""WalStorage on the real disk (runtime/vfs.py OsVfs) in a temporary directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from foundation_p2p.consensus.types import ConfState, Entry, HardState, SnapshotMeta
from foundation_p2p.consensus.wal import WalOptions, WalStorage, segment_name
from foundation_p2p.errors import StorageError
from foundation_p2p.runtime.vfs import OsVfs

VOTE = bytes(range(16))


def test_save_sync_reopen_on_disk(tmp_path: Path) -> None:
    vfs = OsVfs(str(tmp_path / "wal"))
    wal = WalStorage.open(vfs, WalOptions(segment_bytes=4096))
    for i in range(1, 301):
        wal.save(HardState(2, VOTE, i - 1), [Entry(2, i, data=b"v%d" % i * 8)])
    wal.sync()
    wal.create_snapshot(200, ConfState(), b"snap")
    wal.close()
    vfs.close()
    assert (tmp_path / "wal").stat().st_mode & 0o777 == 0o700
    vfs2 = OsVfs(str(tmp_path / "wal"))
    again = WalStorage.open(vfs2, WalOptions(segment_bytes=4096))
    assert (again.first_index(), again.last_index()) == (201, 300)
    assert again.entries(299, 301) == [Entry(2, i, data=b"v%d" % i * 8) for i in (299, 300)]
    assert again.snapshot() == (SnapshotMeta(200, 2), b"snap")
    assert again.initial_state()[0] == HardState(2, VOTE, 299)
    vfs2.close()


def test_the_directory_is_locked_while_in_use(tmp_path: Path) -> None:
    vfs = OsVfs(str(tmp_path))
    with pytest.raises(StorageError, match="in use by another process"):
        OsVfs(str(tmp_path))
    vfs.close()
    OsVfs(str(tmp_path)).close()


def test_a_torn_tail_on_disk_is_cut(tmp_path: Path) -> None:
    vfs = OsVfs(str(tmp_path))
    wal = WalStorage.open(vfs)
    wal.save(HardState(1, None, 0), [Entry(1, i, data=b"x" * 50) for i in range(1, 11)])
    wal.sync()
    wal.close()
    path = tmp_path / segment_name(0)
    size = path.stat().st_size
    os.truncate(path, size - 30)  # the hard state record and part of entry 10 are gone
    again = WalStorage.open(vfs)
    assert again.last_index() == 9
    assert again.counters["wal.torn_tails"] == 1
    assert path.stat().st_size < size - 30


def test_corruption_on_disk_names_the_file(tmp_path: Path) -> None:
    vfs = OsVfs(str(tmp_path))
    wal = WalStorage.open(vfs)
    wal.save(None, [Entry(1, i, data=b"y" * 50) for i in range(1, 11)])
    wal.sync()
    wal.close()
    path = tmp_path / segment_name(0)
    data = bytearray(path.read_bytes())
    data[200] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(StorageError, match=rf"{tmp_path}/{segment_name(0)}: corrupt at offset"):
        WalStorage.open(vfs)


def test_os_vfs_refuses_names_with_separators(tmp_path: Path) -> None:
    vfs = OsVfs(str(tmp_path))
    with pytest.raises(StorageError, match="file name"):
        vfs.read("../etc/passwd")
    with pytest.raises(StorageError, match=r"cannot open"):
        vfs.read("absent")


def test_os_vfs_read_ranges_and_rename(tmp_path: Path) -> None:
    vfs = OsVfs(str(tmp_path))
    f = vfs.open_append("a", create=True)
    f.write(b"hello world")
    f.sync()
    f.close()
    assert vfs.read("a", 6, 5) == b"world"
    assert vfs.read("a", 6) == b"world"
    vfs.rename("a", "b")
    vfs.sync_dir()
    assert vfs.list() == ["b"]
    vfs.truncate("b", 5)
    assert vfs.read("b") == b"hello"
    vfs.remove("b")
    assert vfs.list() == []
    with pytest.raises(StorageError, match="closed"):
        f.write(b"x")


_WRITER = """
import sys
from foundation_p2p.consensus.types import Entry, HardState
from foundation_p2p.consensus.wal import WalOptions, WalStorage
from foundation_p2p.runtime.vfs import OsVfs

wal = WalStorage.open(OsVfs(sys.argv[1]), WalOptions(segment_bytes=64 * 1024))
i = 0
while True:
    batch = [Entry(1, i + k, data=b"%d" % (i + k) * 20) for k in range(1, 11)]
    wal.save(HardState(1, None, i), batch)
    wal.sync()
    i += 10
    print(i, flush=True)
"""


def test_every_synced_entry_survives_a_sigkill_of_the_writer(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    path = str(tmp_path / "wal")
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, path], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    acknowledged = 0
    for line in child.stdout:
        acknowledged = int(line)
        if acknowledged >= 3000:
            break
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    vfs = OsVfs(path)
    wal = WalStorage.open(vfs, WalOptions(segment_bytes=64 * 1024))
    assert wal.last_index() >= acknowledged
    got = wal.entries(1, wal.last_index() + 1)
    assert [e.data for e in got] == [b"%d" % i * 20 for i in range(1, wal.last_index() + 1)]
    assert len(wal.segment_names) >= 4  # it rolled over while being killed at random
    vfs.close()
