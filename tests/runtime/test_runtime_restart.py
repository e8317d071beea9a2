"""Identity and boot epoch across restarts, through ``open_node`` and a real data directory."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.identity import Identity
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.durability import BOOT_EPOCH_KEY, IDENTITY_KEY
from foundation_p2p.errors import StorageError
from foundation_p2p.events import PeerAcked
from foundation_p2p.runtime import MemoryStore, Node, open_node
from foundation_p2p.runtime.udp import MAX_DATAGRAM_BYTES, bind_udp
from foundation_p2p.wire import cbor
from foundation_p2p.wire.packet import parse_packet

WAIT_S = 5.0


async def acks_from(node: Node, peer_id: bytes, count: int) -> None:
    """Until ``node`` has ``count`` PeerAcked events from ``peer_id``."""
    async with node.events(PeerAcked) as events:
        async for ev in events:
            assert isinstance(ev, PeerAcked)
            if ev.node_id == peer_id:
                count -= 1
                if count == 0:
                    return


async def test_restart_keeps_the_node_id_raises_the_epoch_and_never_reuses_a_nonce(
    keyring: Keyring,
    make_config: Callable[..., NodeConfig],
    open_proxy: Callable[[Any], Awaitable[Any]],
    tmp_path: Path,
) -> None:
    data_dir = str(tmp_path / "a")
    async with open_node(make_config(name="b"), keyring=keyring) as b:
        # a -> proxy -> b: the proxy records every datagram a sends, before and after.
        proxy = await open_proxy(b.address)
        a_config = make_config(name="a", data_dir=data_dir, join=(proxy.address,))

        async with open_node(a_config, keyring=keyring) as a1:
            with trio.fail_after(WAIT_S):
                await acks_from(a1, b.node_id, 3)
            first_id, first_epoch = a1.node_id, a1.boot_epoch
        sent_before = len(proxy.to_upstream)

        async with open_node(a_config, keyring=keyring) as a2:
            with trio.fail_after(WAIT_S):
                await acks_from(a2, b.node_id, 3)  # b accepted the new epoch's pings
            assert a2.node_id == first_id
            assert a2.boot_epoch > first_epoch
        second_epoch = a2.boot_epoch

    headers = [parse_packet(d)[0] for d in proxy.to_upstream]
    assert all(h.sender == first_id for h in headers)
    before = [(h.boot_epoch, h.packet_number) for h in headers[:sent_before]]
    after = [(h.boot_epoch, h.packet_number) for h in headers[sent_before:]]
    assert len(before) >= 3 and len(after) >= 3
    assert {e for e, _ in before} == {first_epoch}
    assert {e for e, _ in after} == {second_epoch}
    # The AEAD nonce is the packet number under a subkey bound to (node id, epoch): no
    # (epoch, packet number) pair may ever repeat.
    pairs = before + after
    assert len(set(pairs)) == len(pairs)
    assert after[0][1] == 0  # numbering restarts: safe only because the epoch changed
    assert b.counters["packets.dropped.stale_epoch"] == 0
    assert b.counters["packets.dropped.replay"] == 0
    assert b.counters["packets.dropped.auth_failed"] == 0


async def test_boot_writes_are_on_disk_before_the_first_datagram_leaves(
    keyring: Keyring, make_config: Callable[..., NodeConfig], tmp_path: Path
) -> None:
    data_dir = tmp_path / "node"
    listener = await bind_udp(("127.0.0.1", 0))
    try:
        seen: dict[str, Any] = {}
        got = trio.Event()
        async with trio.open_nursery() as nursery:

            async def first_datagram() -> None:
                data, _ = await listener.recvfrom(MAX_DATAGRAM_BYTES)
                # Checked at once, in the same Trio step as the datagram's arrival.
                seen["identity"] = (data_dir / IDENTITY_KEY).read_bytes()
                seen["epoch"] = cbor.decode((data_dir / BOOT_EPOCH_KEY).read_bytes())
                seen["header"] = parse_packet(data)[0]
                got.set()

            nursery.start_soon(first_datagram)
            config = make_config(data_dir=str(data_dir), join=(listener.getsockname(),))
            async with open_node(config, keyring=keyring) as node:
                with trio.fail_after(WAIT_S):
                    await got.wait()
            node_id, epoch = node.node_id, node.boot_epoch
    finally:
        listener.close()
    assert Identity.from_bytes(seen["identity"]).node_id == node_id
    assert seen["epoch"] == epoch == seen["header"].boot_epoch
    assert seen["header"].sender == node_id


async def test_a_store_that_fails_takes_the_node_down_with_its_error(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    class FullDisk(MemoryStore):
        def write_many(self, items: Any) -> None:
            raise StorageError("node/identity: cannot write: No space left on device")

    with pytest.raises(StorageError, match="No space left"):
        async with open_node(make_config(), keyring=keyring, store=FullDisk()):
            pass


async def test_memory_store_keeps_identity_across_opens_in_one_process(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    store = MemoryStore()
    async with open_node(make_config(), keyring=keyring, store=store) as n1:
        pass
    async with open_node(make_config(), keyring=keyring, store=store) as n2:
        pass
    assert n1.node_id == n2.node_id and n2.boot_epoch > n1.boot_epoch
    assert set(store.data) == {IDENTITY_KEY, BOOT_EPOCH_KEY}


async def test_without_data_dir_the_identity_is_new_each_time_and_a_warning_says_so(
    keyring: Keyring, make_config: Callable[..., NodeConfig], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="foundation_p2p.runtime")
    async with open_node(make_config(), keyring=keyring) as n1:
        pass
    async with open_node(make_config(), keyring=keyring) as n2:
        pass
    assert n1.node_id != n2.node_id
    assert any("identity is in memory only" in r.getMessage() for r in caplog.records)


async def test_data_dir_is_private_and_its_files_are_owner_only(
    keyring: Keyring, make_config: Callable[..., NodeConfig], tmp_path: Path
) -> None:
    data_dir = tmp_path / "deep" / "node"
    async with open_node(make_config(data_dir=str(data_dir)), keyring=keyring):
        pass
    assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
    for key in (IDENTITY_KEY, BOOT_EPOCH_KEY):
        assert stat.S_IMODE(os.stat(data_dir / key).st_mode) == 0o600
    assert not [n for n in os.listdir(data_dir) if n.startswith(".tmp-")]


async def test_two_nodes_cannot_share_one_data_dir(
    keyring: Keyring, make_config: Callable[..., NodeConfig], tmp_path: Path
) -> None:
    config = make_config(data_dir=str(tmp_path / "shared"))
    async with open_node(config, keyring=keyring):
        with pytest.raises(StorageError, match="in use by another running node"):
            async with open_node(config, keyring=keyring):
                pass
    async with open_node(config, keyring=keyring):  # released on close
        pass


async def test_a_corrupt_identity_file_is_refused_naming_it(
    keyring: Keyring, make_config: Callable[..., NodeConfig], tmp_path: Path
) -> None:
    data_dir = tmp_path / "node"
    data_dir.mkdir(mode=0o700)
    (data_dir / IDENTITY_KEY).write_bytes(b"\xa1garbage")
    with pytest.raises(StorageError, match="identity"):
        async with open_node(make_config(data_dir=str(data_dir)), keyring=keyring):
            pass
