"""The Trio runtime through ``open_node`` on 127.0.0.1: probes, events, services, lifecycle."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.errors import ConfigError
from foundation_p2p.events import Event, Join, PeerAcked, PeerUnanswered
from foundation_p2p.runtime import BindError, Node, machine_now, open_node
from foundation_p2p.runtime.rawpeer import RawPeer, is_ipv6_loopback_available

WAIT_S = 5.0


async def first_ack(node: Node, *, from_node: Node | None = None) -> PeerAcked:
    """The next PeerAcked at ``node`` (from ``from_node`` if given)."""
    async with node.events(PeerAcked) as events:
        async for ev in events:
            assert isinstance(ev, PeerAcked)
            if from_node is None or ev.node_id == from_node.node_id:
                return ev
    raise AssertionError("the node closed before any PeerAcked")


async def test_two_nodes_ping_each_other_and_report_peer_acked(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    async with (
        open_node(make_config(name="a"), keyring=keyring) as a,
        open_node(make_config(name="b", join=(a.address,)), keyring=keyring) as b,
    ):
        got: dict[str, PeerAcked] = {}

        async def wait(node: Node, peer: Node) -> None:
            got[node.name] = await first_ack(node, from_node=peer)

        with trio.fail_after(WAIT_S):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait, a, b)
                nursery.start_soon(wait, b, a)
        assert got["b"].node_id == a.node_id
        assert got["b"].address == a.address
        assert got["a"].node_id == b.node_id
        assert got["a"].address == b.address
        assert 0 < got["a"].rtt_s < WAIT_S and 0 < got["b"].rtt_s < WAIT_S
        assert a.counters["udp.datagrams_sent"] >= 1
        assert b.counters["udp.datagrams_received"] >= 1
        assert not any(k.startswith("packets.dropped.") for k in a.counters)


async def test_node_reports_its_bound_address_identity_and_epoch(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    async with open_node(make_config(), keyring=keyring) as node:
        host, port = node.address
        assert host == "127.0.0.1" and port != 0
        assert node.advertised == node.address
        assert node.node_id == node.core.node_id and len(node.node_id) == 16
        assert node.boot_epoch == node.core.boot_epoch > 0
        assert node.name == node.node_id.hex()[:8]
        assert node.counters is node.core.counters


async def test_advertise_overrides_the_advertised_address(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    async with open_node(
        make_config(advertise=("192.0.2.7", 7000), name="x"), keyring=keyring
    ) as node:
        assert node.advertised == ("192.0.2.7", 7000)
        assert node.name == "x"


async def test_join_resolves_host_names_so_acks_match(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    async with open_node(make_config(), keyring=keyring) as a, open_node(
        make_config(), keyring=keyring
    ) as b:
        await b.join([f"localhost:{a.address[1]}"])
        with trio.fail_after(WAIT_S):
            ack = await first_ack(b, from_node=a)
        assert ack.address == ("127.0.0.1", a.address[1])


async def test_join_refuses_a_single_address_not_in_a_list(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    async with open_node(make_config(), keyring=keyring) as node:
        with pytest.raises(ConfigError, match="single address"):
            await node.join(("127.0.0.1", 9))  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="not HOST:PORT"):
            await node.join(["nonsense"])


async def test_leave_stops_probing_but_the_node_still_answers(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    async with open_node(make_config(), keyring=keyring) as a:
        peer = await RawPeer.open(keyring)
        try:
            async with open_node(make_config(join=(peer.address,)), keyring=keyring) as b:
                with trio.fail_after(WAIT_S):
                    await peer.receive()  # b probes the raw peer
                b.leave()
                assert b.core.prober.active is False
                with trio.fail_after(WAIT_S):
                    assert await peer.ping(b.address) > 0
                    assert await peer.ping(a.address) > 0
        finally:
            peer.close()


async def test_events_subscription_filters_by_type_and_drains_when_the_node_closes(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()  # nobody listens there once closed: pings go unanswered
    everything: list[Event] = []
    acks_only: list[Event] = []
    async with open_node(make_config(), keyring=keyring) as a, trio.open_nursery() as nursery:
        b_config = make_config(join=(a.address, dead))
        async with open_node(b_config, keyring=keyring) as b:

            async def collect(
                into: list[Event], *types: type[Event], task_status: Any = trio.TASK_STATUS_IGNORED
            ) -> None:
                async with b.events(*types) as events:
                    task_status.started()  # subscribed before the first event can go by
                    async for ev in events:
                        into.append(ev)

            await nursery.start(collect, acks_only, PeerAcked)
            async with b.events() as events:
                kinds: set[type[Event]] = set()
                with trio.fail_after(WAIT_S):
                    async for ev in events:
                        everything.append(ev)
                        kinds.add(type(ev))
                        if kinds >= {PeerAcked, PeerUnanswered}:
                            break
        # b is closed: the collector's iteration ends by itself and the nursery exits.
    assert any(isinstance(ev, PeerUnanswered) and ev.address == dead for ev in everything)
    assert acks_only and all(isinstance(ev, PeerAcked) for ev in acks_only)


async def test_subscription_iteration_ends_when_node_closes(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    ended = trio.Event()
    async with trio.open_nursery() as nursery:
        async with open_node(make_config(), keyring=keyring) as node:
            subscribed = trio.Event()

            async def consume() -> None:
                async with node.events() as events:
                    subscribed.set()
                    async for _ in events:
                        pass
                ended.set()

            nursery.start_soon(consume)
            await subscribed.wait()
        with trio.fail_after(WAIT_S):
            await ended.wait()


async def test_subscription_must_be_entered_before_iterating(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    async with open_node(make_config(), keyring=keyring) as node:
        with pytest.raises(RuntimeError, match="async with"):
            node.events().__aiter__()
        with pytest.raises(ConfigError, match="max_buffered"):
            node.events(max_buffered=0)


async def test_a_full_subscriber_loses_events_and_they_are_counted(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    async with (
        open_node(make_config(), keyring=keyring) as a,
        open_node(make_config(join=(a.address,)), keyring=keyring) as b,
        b.events(PeerAcked, max_buffered=1) as slow,
        b.events(PeerAcked) as fast,
    ):
        with trio.fail_after(WAIT_S):
            for _ in range(3):
                await fast.receive()
        # The slow subscriber never read: one event buffered, the rest dropped.
        assert slow.dropped >= 2
        assert b.counters["events.dropped_subscriber_full"] == slow.dropped
        first = await slow.receive()
        assert isinstance(first, PeerAcked)


async def test_a_crashing_service_is_logged_and_counted_and_the_node_keeps_running(
    keyring: Keyring, make_config: Callable[..., NodeConfig], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="foundation_p2p.runtime.services")

    async def broken(tag: str) -> None:
        raise RuntimeError(f"boom {tag}")

    async with open_node(make_config(), keyring=keyring) as node:
        node.start_service(broken, "x", name="broken-service")
        await trio.testing.wait_all_tasks_blocked()
        assert node.counters["services.crashed"] == 1
        assert node.counters["services.started"] == 1
        records = [r for r in caplog.records if "broken-service crashed" in r.getMessage()]
        assert records and records[0].exc_info is not None
        assert "boom x" in str(records[0].exc_info[1])
        peer = await RawPeer.open(keyring)
        try:
            with trio.fail_after(WAIT_S):
                assert await peer.ping(node.address) > 0
        finally:
            peer.close()


async def test_services_run_inside_the_node_and_are_cancelled_when_it_closes(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    log: list[str] = []

    async def service(node: Node) -> None:
        log.append(f"started {node.node_id.hex()}")
        try:
            await trio.sleep_forever()
        finally:
            log.append("cancelled")

    async def short() -> None:
        log.append("short")

    async with open_node(make_config(), keyring=keyring) as node:
        node.start_service(service, node)
        node.start_service(short)
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(log) == sorted([f"started {node.node_id.hex()}", "short"])
        assert node.counters["services.finished"] == 1
        assert node._services is not None
        assert [n.rsplit(".", 1)[-1] for n in node._services.running.values()] == ["service"]
    assert log[-1] == "cancelled"
    with pytest.raises(trio.ClosedResourceError):
        node.start_service(short)


async def test_cancellation_closes_the_node_and_its_socket(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    holder: dict[str, Any] = {}
    with trio.move_on_after(0.2) as scope:
        async with open_node(make_config(), keyring=keyring) as node:
            holder["node"] = node
            await trio.sleep_forever()
    assert scope.cancelled_caught
    node = holder["node"]
    assert node._sock.fileno() == -1
    assert node.core.prober.active is False  # the Leave command was given
    with pytest.raises(trio.ClosedResourceError):
        await node.join([("127.0.0.1", 9)])


async def test_an_error_in_the_body_propagates_and_the_node_still_closes(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    holder: dict[str, Node] = {}
    with pytest.raises(KeyError, match="from the body"):
        async with open_node(make_config(), keyring=keyring) as node:
            holder["node"] = node
            raise KeyError("from the body")
    assert holder["node"]._sock.fileno() == -1


async def test_no_keyring_is_a_config_error_naming_the_setting(
    make_config: Callable[..., NodeConfig],
) -> None:
    with pytest.raises(ConfigError, match="cluster_key_file"):
        async with open_node(make_config()):
            pass


async def test_unreadable_key_file_is_a_config_error_naming_the_file(
    make_config: Callable[..., NodeConfig], tmp_path: Any
) -> None:
    missing = str(tmp_path / "missing.key")
    with pytest.raises(ConfigError, match=r"missing\.key"):
        async with open_node(make_config(cluster_key_file=missing)):
            pass


async def test_key_file_from_the_config_is_used(
    make_config: Callable[..., NodeConfig], tmp_path: Any, keyring: Keyring
) -> None:
    path = tmp_path / "cluster.key"
    path.write_text(keyring.to_text())
    async with open_node(make_config(cluster_key_file=str(path))) as node:
        peer = await RawPeer.open(keyring)  # the same key opens and seals
        try:
            with trio.fail_after(WAIT_S):
                assert await peer.ping(node.address) > 0
        finally:
            peer.close()


async def test_a_port_in_use_raises_bind_error(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(BindError, match="address already in use") as info:
            async with open_node(make_config(bind=("127.0.0.1", port)), keyring=keyring):
                pass
        assert info.value.address_in_use
        assert str(port) in str(info.value)


@pytest.mark.skipif(not is_ipv6_loopback_available(), reason="no IPv6 loopback (::1) here")
async def test_ipv6_loopback_nodes_ping_each_other(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    async with open_node(make_config(bind=("::1", 0)), keyring=keyring) as a:
        assert a.address[0] == "::1" and a.address[1] != 0
        async with open_node(make_config(bind=("::1", 0), join=(a.address,)), keyring=keyring) as b:
            with trio.fail_after(WAIT_S):
                ack = await first_ack(b, from_node=a)
            assert ack.address == a.address


async def test_core_commands_given_directly_take_effect_after_wake(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    # The leaky facade: node.join() is core.handle_command(Join) plus wake().
    async with (
        open_node(make_config(), keyring=keyring) as a,
        open_node(make_config(), keyring=keyring) as b,
    ):
        b.core.handle_command(machine_now(), Join((a.address,)))
        b.wake()
        with trio.fail_after(WAIT_S):
            ack = await first_ack(b, from_node=a)
        assert ack.address == a.address


async def test_a_service_cannot_rejoin_while_the_node_is_closing(
    keyring: Keyring, make_config: Callable[..., NodeConfig]
) -> None:
    outcome: list[str] = []

    async def stubborn(node: Node) -> None:
        try:
            await trio.sleep_forever()
        finally:
            try:
                await node.join([("127.0.0.1", 9)])
                outcome.append("joined")
            except trio.ClosedResourceError:
                outcome.append("refused")

    async with open_node(make_config(), keyring=keyring) as node:
        node.start_service(stubborn, node)
        await trio.testing.wait_all_tasks_blocked()
    assert outcome == ["refused"]
    assert node.core.prober.active is False
