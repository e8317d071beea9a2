"""Fuzz targets of the parsers of outside input that are not wire frames of a subsystem:
files, configuration, discovery answers, the messenger's stream records and the payloads
that travel inside other messages. Same shape as ``fuzz/targets.py``: each takes
arbitrary bytes; the only allowed outcomes are "parsed" (with the target's property) or
the project's own error for that input.

- ``node-config``: the bytes as a node TOML file, ``NodeConfig.from_toml`` then every
  subsystem table the node reads (membership, transport, registry, supervisor, consensus,
  health, discovery): ``ConfigError`` only; a loaded config survives
  ``from_mapping(to_mapping())`` unchanged.
- ``address``: ``parse_address`` of the bytes as text: ``ConfigError``, or an address
  that ``format_address`` writes back to a text parsing to the same address.
- ``scenario``: the bytes as a scenario file, ``load_scenario``: ``ScenarioError`` only
  (``CapabilityMissingError`` is one), and the same text parses to an equal scenario.
- ``history-file``: the bytes as a history file, ``load_history`` (format detected):
  ``HistoryFormatError``/``HistoryLimitError`` (``WireError`` subclasses) only.
- ``beacon-open``: ``open_beacon`` of the bytes (first byte 0), or of a datagram that
  seals the rest of the bytes as its content under the keyring of
  ``spec/vectors/discovery.json`` (first byte not 0, so mutations reach the content
  decoder past the AEAD): ``WireError`` only; an opened beacon has a 16-byte node id, a
  port in 1..65535 and texts within their limits, and seals again to the same beacon.
- ``dns-answer``: ``query_dns`` (the DNS discovery poll) answered with the bytes as the
  DNS server's UDP (and TCP) response, for an A, AAAA or SRV question picked by the first
  byte; the network is replaced by the bytes and the resolver's clock by a virtual one:
  ``DiscoveryError`` only (the project's error naming name, resolver and problem), or
  sorted addresses with an IP host and a port in 1..65535.
- ``mdns-answer``: an mDNS packet parsed by zeroconf, its records cached, then
  ``_MdnsBrowser.resolve_all`` over the service names its PTR records announce (sockets
  replaced by that cache): ``DiscoveryError`` only, or sorted addresses with an IP host and
  a port in 1..65535.
- ``admin-http``: the bytes as one client connection to the admin HTTP endpoint (a memory
  stream, a mock clock): nothing escapes the handler, and it answers HTTP/1.1 or nothing.
- ``raft-bootstrap``: ``decode_bootstrap`` (the Raft service's bootstrap messages from
  peers): ``MalformedError`` or a message that re-encodes.
- ``data-dir``: ``NodeCore`` booting from a data directory whose ``boot_epoch`` or
  ``identity`` file holds the bytes: ``StorageError`` only; the boot epoch fits a header.
- ``messenger-record``: the messenger's uni-stream records (``parse_record_head`` then
  ``decode_message``, as ``messaging.py`` reads them): ``WireError`` only; a decoded
  message re-encodes byte-exact.
- ``raft-envelope``: ``decode_envelope`` of a Raft entry's data: ``MalformedError`` or a
  tuple that re-encodes byte-exact.
- ``raft-snapshot``: ``dedup.decode_snapshot`` of a Raft snapshot's data (proposal
  windows and the machine snapshot, installed from a leader or read from the WAL):
  ``MalformedError`` or windows that re-encode, and decide like the decoded table.
- ``consensus-client``: the bytes as a messenger message, ``decode_request`` and
  ``decode_response``: ``MalformedError`` or a request/response whose encoding gives the
  same message back.

``fuzz/targets.py`` lists these in ``TARGETS`` (from :data:`INPUT_TARGETS`) and seeds them
with :func:`input_seeds`.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import random
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import dns.resolver
import dns.rrset

from foundation_p2p import messaging
from foundation_p2p.addresses import format_address, parse_address
from foundation_p2p.clock import Now
from foundation_p2p.config import NodeConfig
from foundation_p2p.consensus import client as consensus_client
from foundation_p2p.consensus.bootstrap import BootstrapMessage, decode_bootstrap
from foundation_p2p.consensus.dedup import (
    ProposalWindows,
    decode_snapshot,
    encode_snapshot,
)
from foundation_p2p.consensus.subsystem import (
    ConsensusConfig,
    decode_envelope,
    encode_envelope,
)
from foundation_p2p.counters import Counters
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.discovery import beacon as beacon_mod
from foundation_p2p.discovery.config import (
    MDNS_SERVICE,
    DnsConfig,
    HostFacts,
    MdnsConfig,
    resolve_discovery_table,
)
from foundation_p2p.durability import BOOT_EPOCH_KEY, IDENTITY_KEY
from foundation_p2p.errors import ConfigError, MalformedError, StorageError, WireError
from foundation_p2p.health.gossip import HealthGossipConfig
from foundation_p2p.history.files import load_history
from foundation_p2p.membership.config import MembershipConfig
from foundation_p2p.registry.config import RegistryConfig
from foundation_p2p.registry.supervisor import SupervisorConfig
from foundation_p2p.runtime.admin import AdminServer
from foundation_p2p.runtime.discovery import (
    MAX_MDNS_SERVICES,
    DiscoveryError,
    DiscoveryRunner,
    _MdnsBrowser,
    query_dns,
)
from foundation_p2p.transport.endpoint import EndpointConfig
from foundation_p2p.wire import cbor
from foundation_p2p.wire.limits import DEFAULT_LIMITS
from simulator.scenario import ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "spec" / "vectors"

# One scratch directory per process: the file parsers read a real file, as in use.
_SCRATCH = Path(tempfile.mkdtemp(prefix="fuzz-inputs-"))


def _as_file(name: str, data: bytes) -> str:
    path = _SCRATCH / name
    path.write_bytes(data)
    return str(path)


# -- configuration ---------------------------------------------------------------------


def fuzz_node_config(data: bytes) -> None:
    """``NodeConfig.from_toml`` and each subsystem's table: ``ConfigError`` only."""
    path = _as_file("node.toml", data)
    try:
        config = NodeConfig.from_toml(path)
    except ConfigError as exc:
        assert path in str(exc), "a config error must name the file"
        return
    assert NodeConfig.from_mapping(config.to_mapping()) == config, "config does not round-trip"
    checks: list[Callable[[], object]] = [
        lambda: MembershipConfig.from_node_config(config),
        lambda: EndpointConfig.from_mapping(config.extra.get("transport", {})),
        lambda: RegistryConfig.from_node_config(config),
        lambda: SupervisorConfig.from_node_config(config),
        lambda: ConsensusConfig.from_node_config(config),
        lambda: HealthGossipConfig.from_mapping(config.extra.get("health", {})),
    ]
    if config.extra.get("discovery") is not None:
        table = config.extra["discovery"]
        checks.append(lambda: resolve_discovery_table(table, HostFacts()))
    for check in checks:
        try:
            check()
        except ConfigError:
            continue


def fuzz_address(data: bytes) -> None:
    """``parse_address``: ``ConfigError``, or an address that formats and parses back."""
    text = data.decode("utf-8", "replace")
    try:
        address = parse_address(text, what="fuzz")
    except ConfigError as exc:
        assert "fuzz" in str(exc), "an address error must say what the address was"
        return
    assert parse_address(format_address(address)) == address, "address does not round-trip"


# -- files -------------------------------------------------------------------------------


def fuzz_scenario(data: bytes) -> None:
    """``load_scenario``: ``ScenarioError`` only; parsing is a function of the text."""
    path = _as_file("scenario.toml", data)
    try:
        scenario = load_scenario(path)
    except ScenarioError as exc:
        assert path in str(exc), "a scenario error must name the file"
        return
    assert load_scenario(path) == scenario, "the same scenario text parsed differently"


def fuzz_history_file(data: bytes) -> None:
    """``load_history``: the history errors (``WireError`` subclasses) only."""
    path = _as_file("history.log", data)
    try:
        fmt, ops = load_history(path)
    except WireError:
        return
    assert fmt in ("jepsen", "jsonl")
    assert [op.index for op in ops] == list(range(len(ops)))


# -- discovery ---------------------------------------------------------------------------

_DISCOVERY = json.loads((VECTORS / "discovery.json").read_text(encoding="utf-8"))
_BEACON_RING = Keyring(
    bytes.fromhex(_DISCOVERY["keyring"]["primary"]),
    [bytes.fromhex(k) for k in _DISCOVERY["keyring"]["accepted"]],
)
_NONCE = bytes(range(0xC0, 0xCC))


def _seal_content(content: bytes) -> bytes:
    """A beacon datagram sealing ``content`` (any bytes) under the ring's primary key."""
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    kid = _BEACON_RING.primary_id
    aad = cbor.encode([beacon_mod.BEACON_VERSION, kid])
    key = beacon_mod.beacon_subkey(_BEACON_RING.primary)
    sealed = ChaCha20Poly1305(key).encrypt(_NONCE, content, aad)
    return cbor.encode([beacon_mod.BEACON_VERSION, kid, _NONCE, sealed])


def fuzz_beacon_open(data: bytes) -> None:
    """``open_beacon`` of the datagram (or of a sealed content): ``WireError`` only."""
    if not data:
        return
    datagram = data[1:] if data[0] == 0 else _seal_content(data[1:])
    try:
        found = beacon_mod.open_beacon(datagram, _BEACON_RING)
    except WireError:
        return
    assert len(found.node_id) == 16 and 1 <= found.port <= 65_535
    assert len(found.cluster.encode()) <= beacon_mod.MAX_LABEL_BYTES
    assert len(found.host.encode()) <= beacon_mod.MAX_HOST_BYTES
    assert len(found.version.encode()) <= beacon_mod.MAX_VERSION_BYTES
    try:
        again = beacon_mod.seal_beacon(found, _BEACON_RING, lambda n: _NONCE)
    except WireError:
        return  # a beacon that opens but is too long to seal again (an open-side limit)
    assert beacon_mod.open_beacon(again, _BEACON_RING) == found


_DNS_QUESTIONS = (
    DnsConfig(name="nodes.fuzz.test", record="A", port=7946, resolver=("127.0.0.1", 53)),
    DnsConfig(name="nodes.fuzz.test", record="AAAA", port=7946, resolver=("127.0.0.1", 53)),
    DnsConfig(name="_gossip._udp.fuzz.test", record="SRV", resolver=("127.0.0.1", 53)),
)


class _VirtualTime:
    """The resolver's ``time`` module: its backoff sleeps advance a virtual clock, so a
    poll that times out ends at once (after the retries the real one would make)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@contextlib.contextmanager
def _dns_answers(wire: bytes) -> Iterator[None]:
    """Every DNS query made inside is answered with ``wire`` (its id set to the query's),
    through dnspython's own receive path; a response it ignores is a timeout."""

    def answer_for(q: dns.message.Message) -> bytes:
        return q.id.to_bytes(2, "big") + wire[2:] if len(wire) >= 2 else wire

    def fake_udp(q: dns.message.Message, where: str, timeout: float | None = None,
                 *args: Any, **kwargs: Any) -> dns.message.Message:
        # As dns.query.receive_udp with ignore_errors=True (the resolver's setting):
        # a truncated response that answers q is raised, any other bad datagram ignored.
        try:
            r = dns.message.from_wire(
                answer_for(q), keyring=q.keyring, request_mac=q.mac, raise_on_truncation=True
            )
        except dns.message.Truncated as exc:
            if q.is_response(exc.message()):
                raise
            raise dns.exception.Timeout(timeout=timeout or 0.0) from None
        except Exception:
            raise dns.exception.Timeout(timeout=timeout or 0.0) from None
        if not q.is_response(r):
            raise dns.exception.Timeout(timeout=timeout or 0.0)
        return r

    def fake_tcp(q: dns.message.Message, where: str, timeout: float | None = None,
                 *args: Any, **kwargs: Any) -> dns.message.Message:
        # As dns.query.tcp: the message parsed (errors raised), then checked as a response.
        r = dns.message.from_wire(answer_for(q), keyring=q.keyring, request_mac=q.mac)
        if not q.is_response(r):
            raise dns.query.BadResponse
        return r

    saved = (dns.query.udp, dns.query.tcp, dns.resolver.time)
    dns.query.udp = fake_udp  # type: ignore[assignment]
    dns.query.tcp = fake_tcp  # type: ignore[assignment]
    dns.resolver.time = _VirtualTime()  # type: ignore[assignment]
    try:
        yield
    finally:
        dns.query.udp, dns.query.tcp, dns.resolver.time = saved  # type: ignore[assignment]


def fuzz_dns_answer(data: bytes) -> None:
    """``query_dns`` answered with the bytes: ``DiscoveryError`` or good addresses."""
    if not data:
        return
    config = _DNS_QUESTIONS[data[0] % len(_DNS_QUESTIONS)]
    with _dns_answers(data[1:]):
        try:
            found = query_dns(config)
        except DiscoveryError as exc:
            assert str(exc).startswith("dns: "), "a DNS error must say it is one"
            return
    assert found == sorted(set(found))
    for host, port in found:
        ipaddress.ip_address(host)
        assert 1 <= port <= 65_535, f"port {port} out of range"


def _dns_seeds() -> list[bytes]:
    """Answers to the three questions, as a DNS server would send them."""
    out = []
    specs: list[tuple[int, str, str, list[str], list[tuple[str, str, str]]]] = [
        (0, "nodes.fuzz.test.", "A", ["10.0.0.1", "10.0.0.2"], []),
        (1, "nodes.fuzz.test.", "AAAA", ["fd00::1"], []),
        (
            2,
            "_gossip._udp.fuzz.test.",
            "SRV",
            ["0 0 7946 n1.fuzz.test.", "0 0 7947 10.0.0.9.", "0 0 0 n2.fuzz.test."],
            [("n1.fuzz.test.", "A", "10.0.0.3"), ("n2.fuzz.test.", "AAAA", "fd00::2")],
        ),
        (2, "_gossip._udp.fuzz.test.", "SRV", ["0 0 7946 10.0.0.9.", "1 0 7000 ."], []),
    ]
    for which, name, rdtype, texts, extra in specs:
        query = dns.message.make_query(name, rdtype)
        response = dns.message.make_response(query)
        response.answer.append(dns.rrset.from_text_list(name, 60, "IN", rdtype, texts))
        for host, kind, text in extra:
            response.additional.append(dns.rrset.from_text(host, 60, "IN", kind, text))
        out.append(bytes([which]) + response.to_wire())
        cname = dns.message.make_response(query)
        cname.answer.append(dns.rrset.from_text(name, 60, "IN", "CNAME", "alias.fuzz.test."))
        out.append(bytes([which]) + cname.to_wire())
    return out


class _CacheOnlyZeroconf:
    """The part of ``zeroconf.Zeroconf`` that ``_MdnsBrowser.resolve_all`` uses, answering
    from a cache filled with one received mDNS packet (no sockets, no threads):
    ``get_service_info`` builds the ``ServiceInfo`` as zeroconf does and completes it
    from the cache, as its ``request`` would when no further answer arrives."""

    def __init__(self, cache: object) -> None:
        self.cache = cache

    def get_service_info(self, type_: str, name: str, timeout: int = 3000) -> object:
        from zeroconf import ServiceInfo
        from zeroconf._utils.time import current_time_millis

        info = ServiceInfo(type_, name)
        return info if info.load_from_cache(self, current_time_millis()) else None  # type: ignore[arg-type]


def mdns_announced_names(answers: list[Any]) -> set[str]:
    """The names ``ServiceBrowser`` reports for :data:`MDNS_SERVICE`: its PTR targets."""
    return {r.alias for r in answers if r.type == 12 and r.name.lower() == MDNS_SERVICE}


def fuzz_mdns_answer(data: bytes) -> None:
    """An mDNS packet as zeroconf receives it, then ``_MdnsBrowser.resolve_all``: the
    service names its PTR records point at (as ``ServiceBrowser`` reports them) resolved
    from the packet's records: ``DiscoveryError`` only, or good addresses."""
    from zeroconf import DNSIncoming
    from zeroconf._cache import DNSCache

    incoming = DNSIncoming(data)
    if not incoming.valid:
        return  # zeroconf drops the packet
    answers = incoming.answers()
    cache = DNSCache()
    cache.async_add_records(answers)
    names = mdns_announced_names(answers)
    import zeroconf

    browser = object.__new__(_MdnsBrowser)
    browser._zc_mod = zeroconf
    browser.zc = _CacheOnlyZeroconf(cache)
    browser.config = MdnsConfig(cluster="fuzz")
    browser.runner = DiscoveryRunner(Counters())
    browser._lock = threading.Lock()
    browser._names = set(sorted(names)[:MAX_MDNS_SERVICES])
    browser.info = None
    try:
        found = browser.resolve_all(bytes(16))
    except DiscoveryError:
        return
    assert found == sorted(set(found))
    for host, port in found:
        ipaddress.ip_address(host)
        assert 1 <= port <= 65_535, f"mdns: port {port} out of range"


def _mdns_seeds() -> list[bytes]:
    """Answers as a peer's zeroconf sends them: PTR, SRV, TXT and A/AAAA records."""
    from zeroconf import ServiceInfo
    from zeroconf._protocol.outgoing import DNSOutgoing

    out = []
    for cluster, port, addrs in (
        ("fuzz", 7946, [bytes([10, 0, 0, 5])]),
        ("fuzz", 7000, [bytes([10, 0, 0, 6]), bytes(15) + b"\x01"]),
        ("other", 7946, [bytes([10, 0, 0, 7])]),
    ):
        name = f"{port}x{cluster}.{MDNS_SERVICE}"
        info = ServiceInfo(
            MDNS_SERVICE, name, addresses=addrs, port=port, server=f"h{port}.local.",
            properties={"id": "00" * 16 if port == 7000 else "ab" * 16, "cluster": cluster,
                        "version": "0.1.0"},
        )
        packet = DNSOutgoing(0x8400)
        for record in (info.dns_pointer(), info.dns_service(), info.dns_text(),
                       *info.dns_addresses()):
            packet.add_answer_at_time(record, 0)
        out.append(packet.packets()[0])
    return out


# -- the admin endpoint ------------------------------------------------------------------

_ADMIN = AdminServer(
    report=lambda: {"status": "ok"}, metrics=lambda: "up 1\n", max_request_bytes=512,
    counters=Counters(),
)


def fuzz_admin_http(data: bytes) -> None:
    """The bytes as one client connection to the admin endpoint (then end of stream):
    nothing escapes the connection handler, and what it writes back is HTTP/1.1
    responses (or nothing)."""
    import trio
    import trio.testing

    received = bytearray()

    async def main() -> None:
        client, server = trio.testing.memory_stream_pair()
        await client.send_all(data)
        await client.send_eof()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_ADMIN._handle, server)
            while chunk := await client.receive_some(65_536):
                received.extend(chunk)
                assert len(received) < 1 << 20, "the admin endpoint answers without bound"

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    if received:
        assert received.startswith(b"HTTP/1.1 "), f"not an HTTP response: {bytes(received[:40])!r}"
    assert _ADMIN.active == 0


# -- messages inside other messages ------------------------------------------------------


def fuzz_messenger_record(data: bytes) -> None:
    """Records as the messenger reads a uni stream: heads, then one CBOR message each."""
    pos = 0
    while pos < len(data):
        try:
            head = messaging.parse_record_head(data, pos)
        except WireError:
            return
        if head is None:
            return  # an incomplete head: the reader waits for more bytes
        start, length = head
        assert start > pos
        if start + length > len(data):
            return
        payload = bytes(data[start : start + length])
        try:
            message = messaging.decode_message(payload, DEFAULT_LIMITS)
        except WireError:
            return
        assert messaging.encode_record(message) == messaging.record_head(length) + payload
        pos = start + length


def fuzz_raft_envelope(data: bytes) -> None:
    """``decode_envelope``: ``MalformedError``, or a tuple that encodes back to the input
    (when the input is deterministic CBOR)."""
    try:
        proposer, boot, ticket, command, floor = decode_envelope(data)
    except MalformedError:
        return
    again = encode_envelope(proposer, boot, ticket, command, floor)
    assert decode_envelope(again) == (proposer, boot, ticket, command, floor)


def fuzz_raft_snapshot(data: bytes) -> None:
    """``decode_snapshot``: ``MalformedError``, or windows whose encoding decodes to the
    same table (and, for tagged input, re-encodes to a snapshot that decodes the same)."""
    try:
        windows, machine = decode_snapshot(data)
    except MalformedError:
        return
    again = encode_snapshot(windows, machine)
    w2, m2 = decode_snapshot(again)
    assert m2 == machine and w2.encode() == windows.encode()
    for (proposer, boot), w in list(windows.windows.items())[:4]:
        # a ticket at or below the run's floor is a copy
        assert not windows.admit(w.last_index + 1, proposer, boot, w.floor, 0)


def fuzz_consensus_client(data: bytes) -> None:
    """``decode_request``/``decode_response`` of a decoded messenger message."""
    try:
        message = messaging.decode_message(data, DEFAULT_LIMITS)
    except WireError:
        return
    try:
        request = consensus_client.decode_request(message)
    except MalformedError:
        pass
    else:
        again = consensus_client.encode_request(request.request_id, request.op, request.payload)
        assert again == message, "a client request does not re-encode"
    try:
        response = consensus_client.decode_response(message)
    except MalformedError:
        return
    again = consensus_client.encode_response(
        response.request_id, response.status, response.value, response.leader
    )
    assert again == message, "a client response does not re-encode"


def fuzz_raft_bootstrap(data: bytes) -> None:
    """``decode_bootstrap`` of a decoded messenger message: ``MalformedError`` or a
    message that encodes back to the same value."""
    try:
        message = messaging.decode_message(data, DEFAULT_LIMITS)
    except WireError:
        return
    try:
        decoded = decode_bootstrap(message)
    except MalformedError:
        return
    assert isinstance(decoded, BootstrapMessage)
    assert decoded.encode() == message, "a bootstrap message does not re-encode"


# -- the data directory ------------------------------------------------------------------

_STORED_IDENTITY = bytes(range(0x40, 0x60))


def fuzz_data_dir(data: bytes) -> None:
    """``NodeCore`` booting from a data directory whose ``boot_epoch`` (first byte even)
    or ``identity`` file (odd) holds the rest of the bytes: ``StorageError`` only, and a
    booted node's epoch is above the stored one and fits a packet header."""
    from foundation_p2p.crypto.identity import Identity
    from foundation_p2p.node import NodeCore

    if not data:
        return
    good_identity = Identity(_STORED_IDENTITY).to_bytes()
    stored = (
        {IDENTITY_KEY: good_identity, BOOT_EPOCH_KEY: data[1:]}
        if data[0] % 2 == 0
        else {IDENTITY_KEY: data[1:], BOOT_EPOCH_KEY: cbor.encode(7)}
    )
    try:
        core = NodeCore(
            NodeConfig(),
            now=Now(100.0, 1_790_000_000.0),
            keyring=_BEACON_RING,
            stored=stored,
            rng=random.Random(0),
            secret_bytes=lambda n: bytes(n),
        )
    except StorageError:
        return
    assert 0 < core.boot_epoch < 1 << 64, f"boot epoch {core.boot_epoch} does not fit a header"


INPUT_TARGETS: dict[str, Callable[[bytes], None]] = {
    "node-config": fuzz_node_config,
    "address": fuzz_address,
    "scenario": fuzz_scenario,
    "history-file": fuzz_history_file,
    "beacon-open": fuzz_beacon_open,
    "dns-answer": fuzz_dns_answer,
    "mdns-answer": fuzz_mdns_answer,
    "admin-http": fuzz_admin_http,
    "messenger-record": fuzz_messenger_record,
    "raft-envelope": fuzz_raft_envelope,
    "raft-snapshot": fuzz_raft_snapshot,
    "consensus-client": fuzz_consensus_client,
    "raft-bootstrap": fuzz_raft_bootstrap,
    "data-dir": fuzz_data_dir,
}
"""Target name -> function, merged into ``fuzz/targets.py``'s ``TARGETS``."""


_TOML_BLOCK = re.compile(r"```toml\n(.*?)```", re.S)

_NODE_TOML = b"""name = "alpha"
bind = "127.0.0.1:7946"
advertise = "10.0.0.7:7946"
join = ["127.0.0.1:7947", "[::1]:7948"]
cluster_key_file = "cluster.key"
data_dir = "data"
log_level = "INFO"
probe_interval_s = 1.0

[membership]
profile = "lan"

[transport]
max_connections = 64

[registry]

[supervisor]

[consensus]
bootstrap_expect = 3

[health]
fanout = 3

[discovery]
use = "static"
seeds = ["127.0.0.1:7946"]
"""


def _client_seeds() -> list[bytes]:
    return [
        cbor.encode(consensus_client.encode_request(7, "propose", b"\x01put")),
        cbor.encode(consensus_client.encode_request(8, "read", b"")),
        cbor.encode(consensus_client.encode_response(7, "ok", b"v", None)),
        cbor.encode(consensus_client.encode_response(9, "no_leader", None, bytes(range(16)))),
    ]


def input_seeds(target: str) -> list[bytes]:
    """Seed inputs for ``target``: sample files of the repository, vectors, and a few
    messages built with the encoders."""
    out: list[bytes] = []
    if target == "node-config":
        out.append(_NODE_TOML)
        for block in _TOML_BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8")):
            out.append(block.encode())
    elif target == "address":
        out += [b"127.0.0.1:7946", b"[::1]:7946", b"localhost:1", b"[fe80::1%eth0]:65535"]
    elif target == "scenario":
        out += [p.read_bytes() for p in sorted((ROOT / "simulator" / "scenarios").glob("*.toml"))]
        text = (ROOT / "simulator" / "README.md").read_text(encoding="utf-8")
        out += [block.encode() for block in _TOML_BLOCK.findall(text)]
    elif target == "history-file":
        import targets_history

        out += targets_history.history_seeds("history-jepsen")
        out += targets_history.history_seeds("history-jsonl")
    elif target == "beacon-open":
        for entry in _DISCOVERY["beacon"]:
            out.append(b"\x00" + bytes.fromhex(entry["hex"]))
            out.append(b"\x01" + bytes.fromhex(entry["content_hex"]))
        for entry in _DISCOVERY["invalid_beacon"]:
            out.append(b"\x00" + bytes.fromhex(entry["hex"]))
    elif target == "dns-answer":
        out += _dns_seeds()
    elif target == "mdns-answer":
        out += _mdns_seeds()
    elif target == "admin-http":
        out += [
            b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
            b"HEAD /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
            b"GET /metrics HTTP/1.0\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n",
        ]
    elif target == "messenger-record":
        out.append(b"".join(messaging.encode_record(m) for m in ([1, b"x"], {"a": 1}, "t")))
        out += [messaging.encode_record(m) for m in _client_messages()]
    elif target == "raft-envelope":
        out.append(encode_envelope(bytes(range(16)), 3, 42, b"\x01k\x01v"))  # type: ignore[arg-type]
    elif target == "raft-snapshot":
        w = ProposalWindows()
        for i, (p, t, f) in enumerate([(1, 1, 0), (1, 3, 1), (2, 1, 0), (1, 3, 2)], start=1):
            w.admit(i, bytes([p]) * 16, 7, t, f)
        out.append(encode_snapshot(w, b"\x85\x01\x00\x00\x80\x80"))
        out.append(encode_snapshot(ProposalWindows(), b""))
        out.append(b"\x85\x01\x00\x00\x80\x80")
    elif target == "consensus-client":
        out += _client_seeds()
    elif target == "raft-bootstrap":
        voters = frozenset(bytes([n]) * 16 for n in (1, 2, 3))
        for op in range(4):
            ids = voters if op in (0, 3) else frozenset()
            out.append(cbor.encode(BootstrapMessage(op, 99, 2, ids).encode()))
    elif target == "data-dir":
        from foundation_p2p.crypto.identity import Identity

        out += [b"\x00" + cbor.encode(1_790_000_000_500), b"\x00" + cbor.encode(0)]
        out.append(b"\x01" + Identity(_STORED_IDENTITY).to_bytes())
    return out


def _client_messages() -> list[Any]:
    return [
        consensus_client.encode_request(1, "propose", b"cmd"),
        consensus_client.encode_response(1, "ok", None, None),
    ]


def _cleanup() -> None:
    """Remove the scratch directory when the process ends."""
    for p in _SCRATCH.iterdir():
        p.unlink()
    _SCRATCH.rmdir()


atexit.register(_cleanup)
