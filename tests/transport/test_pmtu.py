"""Path MTU discovery (spec/transport.md section 8.1): the search state machine, probes on a
connection pair whose pipe has an MTU, probe loss kept out of congestion control, black
holes, the PADDING frame and its vectors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pycddl
import pytest
from pair import Pair

from foundation_p2p.errors import ConfigError, WireError
from foundation_p2p.transport.config import TransportConfig
from foundation_p2p.transport.connection import Connection
from foundation_p2p.transport.frames import Padding, Ping, decode_frames, is_ack_eliciting
from foundation_p2p.transport.packet import PacketProtection, parse_one_rtt
from foundation_p2p.transport.pmtu import (
    COMPLETE,
    DISABLED,
    SEARCH_PRECISION_BYTES,
    SEARCHING,
    PathMtuSearch,
)

SPEC = Path(__file__).resolve().parents[2] / "spec"
VECTORS: dict[str, Any] = json.loads((SPEC / "vectors" / "transport.json").read_text())
CDDL = (SPEC / "transport.cddl").read_text()
IPV4_ETHERNET = 1500 - 28  # largest UDP payload under a 1500-byte MTU


# --- the search ---------------------------------------------------------------------------


def _search_on_path(search: PathMtuSearch, path_mtu: int) -> list[int]:
    """Drive the state machine against a path carrying ``path_mtu``; return probe sizes."""
    sizes: list[int] = []
    pn = 0
    t = 0.0
    while True:
        size = search.probe_size(t)
        if size is None:
            return sizes
        sizes.append(size)
        search.on_probe_sent(pn, size)
        if size <= path_mtu:
            search.on_probe_acked(pn, t)
        else:
            search.on_probe_lost(pn, t)
        pn += 1
        t += 0.01
        assert len(sizes) < 200


def test_binary_search_reaches_the_ceiling_on_a_path_that_carries_it() -> None:
    search = PathMtuSearch(1200, 16384)
    sizes = _search_on_path(search, 65507)
    assert search.state == COMPLETE and search.current == 16384
    assert sizes[0] == (1200 + 16385) // 2  # the midpoint first, not the ceiling
    assert sizes == sorted(sizes) and len(sizes) < 16
    assert search.probes_lost == 0 and search.raises == len(sizes)


def test_binary_search_settles_just_under_an_ethernet_path_mtu() -> None:
    search = PathMtuSearch(1200, 16384, max_probes=3)
    _search_on_path(search, IPV4_ETHERNET)
    assert search.state == COMPLETE
    assert IPV4_ETHERNET - SEARCH_PRECISION_BYTES <= search.current <= IPV4_ETHERNET
    assert search.probes_lost % 3 == 0 and search.probes_lost > 0  # 3 tries per failed size


def test_a_path_at_the_base_keeps_the_base_and_stops() -> None:
    search = PathMtuSearch(1200, 16384)
    _search_on_path(search, 1200)
    assert search.state == COMPLETE and search.current == 1200


def test_no_search_when_the_ceiling_is_the_base() -> None:
    search = PathMtuSearch(1200, 1200)
    assert search.state == DISABLED and search.probe_size(0.0) is None


def test_the_raise_timer_starts_a_new_search_from_the_current_size() -> None:
    search = PathMtuSearch(1200, 16384, raise_interval_s=600.0)
    _search_on_path(search, IPV4_ETHERNET)
    settled = search.current
    assert search.probe_size(599.0) is None
    size = search.probe_size(601.0)
    assert search.state == SEARCHING and size == (settled + 16385) // 2


def test_an_ack_of_a_probe_that_is_no_longer_awaited_changes_nothing() -> None:
    search = PathMtuSearch(1200, 16384)
    size = search.probe_size(0.0)
    assert size is not None
    search.on_probe_sent(7, size)
    assert search.on_probe_acked(6, 0.1) is None and search.current == 1200
    assert search.on_probe_acked(7, 0.1) == size


def test_suspicious_losses_fall_back_to_the_base() -> None:
    search = PathMtuSearch(1200, 16384)
    _search_on_path(search, 65507)
    search.on_large_acked(16384, 1.0)
    # a loss of a packet sent before a larger acknowledged one is not suspicious
    assert search.on_large_lost(16384, 0.5, 2.0) is None
    assert search.on_large_lost(16384, 1.1, 2.0) is None
    assert search.on_large_lost(16384, 1.2, 2.0) is None
    assert search.on_large_lost(16384, 1.3, 2.0) == 1200
    assert search.current == 1200 and search.black_holes == 1
    # the new search stays below the size that failed
    assert search.state == SEARCHING and search.probe_size(2.0) == (1200 + 16384) // 2


def test_an_ack_of_a_large_packet_resets_the_suspicion_count() -> None:
    search = PathMtuSearch(1200, 16384)
    _search_on_path(search, 65507)
    search.on_large_lost(16384, 1.0, 2.0)
    search.on_large_lost(16384, 1.1, 2.0)
    search.on_large_acked(16384, 1.2)
    assert search.on_large_lost(16384, 1.3, 2.0) is None
    assert search.black_holes == 0


def test_two_probe_timeouts_in_a_row_above_the_base_fall_back() -> None:
    search = PathMtuSearch(1200, 16384)
    assert search.on_pto(5, 1.0) is None  # at the base: nothing to fall back from
    _search_on_path(search, 65507)
    assert search.on_pto(1, 1.0) is None
    assert search.on_pto(2, 1.5) == 1200


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"pmtu_max_bytes": 1100}, "pmtu_max_bytes"),
        ({"pmtu_max_bytes": 70000}, "65507"),
        ({"max_datagram_bytes": 1400, "pmtu_max_bytes": 1300}, "max_datagram_bytes (1400)"),
        ({"pmtu_probe_tries": 0}, "pmtu_probe_tries"),
        ({"pmtu_raise_interval_s": -1.0}, "pmtu_raise_interval_s"),
        ({"pmtu_max_bytes": "big"}, "pmtu_max_bytes"),
    ],
)
def test_bad_pmtu_settings_are_refused_with_the_field_named(
    kwargs: dict[str, Any], words: str
) -> None:
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        TransportConfig(**kwargs)


# --- on a connection pair -----------------------------------------------------------------


def _mtu_pipe(pair: Pair, payload_limit: Callable[[], int]) -> list[int]:
    """Drop datagrams above ``payload_limit()`` on the pair's pipe; return the sizes of
    the datagrams delivered."""
    delivered: list[int] = []

    def tamper(to_server: bool, data: bytes) -> bytes | None:
        if len(data) > payload_limit():
            return None
        delivered.append(len(data))
        return data

    pair.tamper = tamper
    return delivered


def _established(pair: Pair) -> Connection:
    assert pair.run(pair.established, max_time_s=5)
    assert pair.server is not None
    return pair.server


def _searched(pair: Pair) -> bool:
    server = pair.server
    return (
        server is not None
        and pair.client.pmtu is not None and pair.client.pmtu.state == COMPLETE
        and server.pmtu is not None and server.pmtu.state == COMPLETE
    )


def _transfer(pair: Pair, nbytes: int, max_time_s: float = 60.0) -> None:
    data = pair.rng.randbytes(nbytes)
    sid = pair.client.open_stream()
    sent = 0

    def feed() -> None:
        nonlocal sent
        if sent < len(data):
            sent += pair.client.send(sid, data[sent:], end=True)

    assert pair.run(
        lambda: sid in pair.s.ended, max_time_s=pair.now + max_time_s, on_step=feed
    )
    assert bytes(pair.s.streams[sid]) == data


def test_acknowledged_probes_raise_the_datagram_size_to_the_ceiling() -> None:
    pair = Pair(31, delay_s=0.005)
    sizes = _mtu_pipe(pair, lambda: 65507)
    _established(pair)
    assert pair.client.max_datagram_size == 1200
    assert pair.run(lambda: _searched(pair), max_time_s=5)
    assert pair.client.max_datagram_size == 16384
    stats = pair.client.stats()
    assert stats["pmtu.current_bytes"] == 16384
    assert stats["pmtu.probes_acked"] == stats["pmtu.raises"] >= 1
    assert stats["pmtu.probes_lost"] == 0
    # the congestion controller and the pacer follow the raise
    assert pair.client.cc.max_datagram_size == 16384
    assert pair.client.cc.congestion_window >= 2 * 16384
    before = len(sizes)
    _transfer(pair, 400_000)
    assert max(sizes[before:]) > 16000  # stream data now goes in large datagrams
    assert max(sizes) <= 16384


def test_on_an_ethernet_path_the_size_settles_under_1472_and_data_flows() -> None:
    pair = Pair(32, delay_s=0.005)
    sizes = _mtu_pipe(pair, lambda: IPV4_ETHERNET)
    _established(pair)
    assert pair.run(lambda: _searched(pair), max_time_s=30)
    size = pair.client.max_datagram_size
    assert IPV4_ETHERNET - SEARCH_PRECISION_BYTES <= size <= IPV4_ETHERNET
    stats = pair.client.stats()
    assert stats["pmtu.probes_lost"] > 0
    assert stats["recovery.pmtu_probes_lost"] == stats["pmtu.probes_lost"]
    _transfer(pair, 200_000)
    assert max(sizes) <= IPV4_ETHERNET


def test_lost_probes_keep_the_base_size_and_do_not_shrink_the_window() -> None:
    pair = Pair(33, delay_s=0.005)
    _mtu_pipe(pair, lambda: 1200)
    _established(pair)
    client = pair.client
    window = client.cc.congestion_window
    assert pair.run(lambda: _searched(pair), max_time_s=30)
    stats = client.stats()
    assert client.max_datagram_size == 1200
    assert stats["pmtu.probes_lost"] >= 3 and stats["pmtu.probes_acked"] == 0
    # not a congestion signal: no congestion event, the window untouched, no loss counted
    assert client.cc.congestion_events == 0
    assert client.cc.congestion_window >= window
    assert stats["recovery.packets_lost"] == 0
    assert stats["recovery.persistent_congestion_events"] == 0
    assert client.recovery.bytes_in_flight == 0 and client.cc.bytes_in_flight == 0


def test_the_same_losses_as_data_would_shrink_the_window() -> None:
    """The counterpart of the test above: the pipe drops the 1200-byte data packets a
    transfer sends, and the window does shrink (the test above can tell the difference)."""
    pair = Pair(34, delay_s=0.005, config=TransportConfig(pmtu_max_bytes=1200))
    dropped = {"n": 0}

    def tamper(to_server: bool, data: bytes) -> bytes | None:
        if to_server and len(data) >= 1100 and dropped["n"] < 5:
            dropped["n"] += 1
            return None
        return data

    _established(pair)
    pair.tamper = tamper
    _transfer(pair, 100_000)
    assert pair.client.cc.congestion_events >= 1


def test_a_black_hole_after_a_raise_falls_back_to_the_base_and_recovers() -> None:
    pair = Pair(35, delay_s=0.005)
    limit = {"bytes": 65507}
    sizes = _mtu_pipe(pair, lambda: limit["bytes"])
    _established(pair)
    assert pair.run(lambda: _searched(pair), max_time_s=5)
    assert pair.client.max_datagram_size == 16384
    limit["bytes"] = 1200  # the route changes: large datagrams vanish
    before = len(sizes)
    _transfer(pair, 300_000, max_time_s=60)
    client = pair.client
    stats = client.stats()
    assert stats["pmtu.black_holes"] >= 1
    assert stats.get("pmtu.black_holes_by_loss", 0) + stats.get("pmtu.black_holes_by_pto", 0) \
        == stats["pmtu.black_holes"]
    assert client.max_datagram_size <= 1200 + SEARCH_PRECISION_BYTES
    assert client.is_established
    assert max(sizes[before:]) <= 1200


def test_discovery_off_sends_no_probe() -> None:
    pair = Pair(36, config=TransportConfig(pmtu_max_bytes=1200))
    sizes = _mtu_pipe(pair, lambda: 65507)
    _established(pair)
    _transfer(pair, 100_000)
    assert pair.client.pmtu is None and max(sizes) <= 1200
    assert "pmtu.probes_sent" not in pair.client.stats()
    assert pair.client.stats()["pmtu.current_bytes"] == 1200


# --- the PADDING frame and its vectors ------------------------------------------------------


@pytest.mark.parametrize("entry", VECTORS["padding"]["frames"], ids=lambda e: e["name"])
def test_padding_vectors_decode_encode_and_match_the_cddl(entry: dict[str, Any]) -> None:
    data = bytes.fromhex(entry["hex"])
    assert decode_frames(data) == [Padding(entry["length"])]
    assert Padding(entry["length"]).encode() == data
    pycddl.Schema(f"cddl-vector-root = {entry['cddl']}\n{CDDL}").validate_cbor(data)
    assert not is_ack_eliciting([Padding(entry["length"])])


@pytest.mark.parametrize("entry", VECTORS["padding"]["invalid_frames"], ids=lambda e: e["name"])
def test_bad_padding_is_refused(entry: dict[str, Any]) -> None:
    with pytest.raises(WireError) as info:
        decode_frames(bytes.fromhex(entry["hex"]))
    assert info.value.code == entry["error"]


def test_the_probe_vector_opens_to_ping_and_padding_of_its_size() -> None:
    probe = VECTORS["padding"]["probe"]
    data = bytes.fromhex(probe["hex"])
    assert len(data) == probe["size"]
    key, iv = bytes.fromhex(probe["key"]), bytes.fromhex(probe["iv"])
    receiver = PacketProtection(bytes(32), bytes(12), key, iv)
    dcid, pn, aad, sealed = parse_one_rtt(data)
    assert dcid.hex() == probe["dcid"] and pn == probe["pn"]
    plaintext = receiver.open(pn, aad, sealed)
    assert plaintext.hex() == probe["plaintext"]
    assert decode_frames(plaintext) == [Ping(), Padding(probe["padding_length"])]
    # our sender builds the same bytes
    sender = PacketProtection(key, iv, bytes(32), bytes(12))
    assert sender.seal(dcid, pn, Ping().encode() + Padding(probe["padding_length"]).encode()) \
        == data


def test_probes_on_the_wire_are_exactly_their_candidate_size() -> None:
    pair = Pair(37, delay_s=0.005)
    sizes = _mtu_pipe(pair, lambda: 65507)
    _established(pair)
    assert pair.run(lambda: _searched(pair), max_time_s=5)
    pmtu = pair.client.pmtu
    assert pmtu is not None
    expected = []
    low, high = 1200, 16385
    while True:
        if high - low > SEARCH_PRECISION_BYTES:
            candidate = (low + high) // 2
        elif high == 16385 and low < 16384:
            candidate = 16384
        else:
            break
        expected.append(candidate)
        low = candidate
    for size in expected:
        assert sizes.count(size) >= 1, size
