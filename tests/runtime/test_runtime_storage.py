"""The data-directory store: atomic durable writes, one file per key, a lock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from foundation_p2p.errors import StorageError
from foundation_p2p.runtime import storage
from foundation_p2p.runtime.storage import DataDirStore, MemoryStore, check_key


def test_written_values_read_back_and_replace_old_ones(tmp_path: Path) -> None:
    store = DataDirStore(str(tmp_path / "d"))
    try:
        store.write_many([("identity", b"one"), ("boot_epoch", b"\x01")])
        store.write_many([("boot_epoch", b"\x02")])
        assert store.read_all() == {"identity": b"one", "boot_epoch": b"\x02"}
    finally:
        store.close()
    reopened = DataDirStore(str(tmp_path / "d"))
    try:
        assert reopened.read_all() == {"identity": b"one", "boot_epoch": b"\x02"}
    finally:
        reopened.close()


def test_a_leftover_temporary_file_from_a_crash_is_ignored_and_removed(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "boot_epoch").write_bytes(b"old")
    (d / ".tmp-boot_epoch").write_bytes(b"half-writ")  # a crash before the rename
    store = DataDirStore(str(d))
    try:
        assert store.read_all() == {"boot_epoch": b"old"}
        assert not (d / ".tmp-boot_epoch").exists()
    finally:
        store.close()


def test_files_that_are_not_keys_are_ignored(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "README.txt").write_text("notes")
    (d / "sub").mkdir()
    store = DataDirStore(str(d))
    try:
        assert store.read_all() == {}
    finally:
        store.close()


def test_an_oversized_file_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "MAX_STORED_FILE_BYTES", 8)
    d = tmp_path / "d"
    d.mkdir()
    (d / "identity").write_bytes(b"x" * 9)
    store = DataDirStore(str(d))
    try:
        with pytest.raises(StorageError, match="identity: larger than 8 bytes"):
            store.read_all()
    finally:
        store.close()


def test_a_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(StorageError, match="not a directory"):
        DataDirStore(str(f))


def test_a_group_readable_data_dir_gets_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = tmp_path / "d"
    d.mkdir()
    os.chmod(d, 0o755)
    DataDirStore(str(d)).close()
    assert any("readable by other users" in r.getMessage() for r in caplog.records)


def test_keys_must_be_plain_names() -> None:
    for bad in ("", "../x", ".lock", "_x", "A", "a/b", "x" * 65):
        with pytest.raises(StorageError):
            check_key(bad)
    assert check_key("raft_log_0") == "raft_log_0"
    with pytest.raises(StorageError):
        MemoryStore().write_many([("../escape", b"")])


def test_a_closed_store_refuses_writes(tmp_path: Path) -> None:
    store = DataDirStore(str(tmp_path / "d"))
    store.close()
    with pytest.raises(StorageError, match="closed"):
        store.write_many([("identity", b"x")])
