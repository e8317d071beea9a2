"""Discovery at run time: one Trio task per strategy, feeding what it finds to the join.

``await nursery.start(run_discovery, node, config)`` starts every strategy of a
:class:`~foundation_p2p.discovery.config.DiscoveryConfig` and hands back a
:class:`DiscoveryRunner` (what each strategy found, its last error, attempt counts).
The strategies keep running until cancelled, so a node that starts before its peers, or a
partition that heals, finds the others without a restart: every poll offers the addresses
found that are not already alive members to ``node.join``.

- ``static``: the seeds, every ``interval_s``;
- ``dns``: A/AAAA or SRV records through dnspython (in a worker thread), every
  ``interval_s`` with jitter; NXDOMAIN, timeouts, a dead resolver and malformed answers
  are logged with a clear message, counted and retried at the next poll;
- ``mdns``: zeroconf registers ``<node id>.<service>`` with the node id, cluster label and
  version in TXT and browses the service type; other cluster labels are ignored (counted);
- ``multicast``: beacons sealed with the cluster key (:mod:`foundation_p2p.discovery.beacon`)
  sent to the group every ``interval_s`` with jitter; beacons that do not open are
  dropped and counted by reason.

Counters go to ``node.counters`` under ``discovery.<strategy>.*``. Logger:
``foundation_p2p.discovery``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import socket
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from foundation_p2p import __version__
from foundation_p2p.addresses import Address, NodeId, format_address
from foundation_p2p.counters import Counters
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.discovery.beacon import MAX_BEACON_BYTES, Beacon, open_beacon, seal_beacon
from foundation_p2p.discovery.config import (
    DEFAULT_CLUSTER_LABEL,
    DiscoveryConfig,
    DnsConfig,
    HostFacts,
    MdnsConfig,
    MulticastConfig,
    StaticConfig,
    StrategyConfig,
    resolve_discovery_table,
    strategy_name,
)
from foundation_p2p.errors import FoundationError, WireError
from foundation_p2p.membership.state import MemberState

if TYPE_CHECKING:
    from foundation_p2p.runtime.node import Node

log = logging.getLogger("foundation_p2p.discovery")

MAX_FOUND_PER_STRATEGY = 1024
"""Most addresses one strategy remembers and offers per answer (overflow counted)."""
MDNS_QUERY_TIMEOUT_MS = 1500
MAX_MDNS_SERVICES = 1024
"""Most browsed mDNS service names kept; further ones are ignored (counted ``.overflow``)."""

Sink = Callable[[str, list[Address]], Awaitable[None]]


class DiscoveryError(FoundationError):
    """A strategy could not get an answer (the message names the strategy and the cause)."""


@dataclass(frozen=True)
class Announce:
    """What this node says about itself (mDNS registration, multicast beacons)."""

    node_id: NodeId
    host: str
    port: int
    cluster: str = DEFAULT_CLUSTER_LABEL
    version: str = __version__


@dataclass
class DiscoveryRunner:
    """What the strategies found so far, their errors and attempts (read it freely)."""

    counters: Counters
    recent: dict[str, dict[Address, None]] = field(default_factory=dict)
    """Addresses each strategy found, least recently seen first; at most
    ``MAX_FOUND_PER_STRATEGY`` each (the least recently seen is forgotten, counted
    ``discovery.<strategy>.overflow``)."""
    last_error: dict[str, str] = field(default_factory=dict)
    """The latest error message of each strategy (removed after a success)."""
    attempts: dict[str, int] = field(default_factory=dict)
    """Polls (or beacons sent) per strategy."""
    last_kind: dict[str, str] = field(default_factory=dict)
    """The kind of each strategy's latest error (a repeat is logged at DEBUG only)."""

    @property
    def found(self) -> dict[str, set[Address]]:
        """The addresses each strategy found (a copy of :attr:`recent` as sets)."""
        return {k: set(v) for k, v in self.recent.items()}

    def record(self, strategy: str, addresses: Iterable[Address]) -> list[Address]:
        """Remember ``addresses`` for ``strategy``; return them deduplicated, in order.

        At most ``MAX_FOUND_PER_STRATEGY`` are returned (the rest counted ``.overflow``);
        when the memory is full, the least recently seen address is forgotten, so a
        churning cluster (new pod addresses at each restart) is still followed.
        """
        seen = self.recent.setdefault(strategy, {})
        out: dict[Address, None] = {}
        for addr in addresses:
            if addr in out:
                continue
            if len(out) >= MAX_FOUND_PER_STRATEGY:
                self.counters.inc(f"discovery.{strategy}.overflow")
                continue
            if addr in seen:
                del seen[addr]
            else:
                self.counters.inc(f"discovery.{strategy}.found")
                if len(seen) >= MAX_FOUND_PER_STRATEGY:
                    del seen[next(iter(seen))]
                    self.counters.inc(f"discovery.{strategy}.overflow")
            seen[addr] = None
            out[addr] = None
        return list(out)

    def failed(self, strategy: str, kind: str, message: str) -> None:
        """Note a failed attempt: counted ``discovery.<strategy>.errors.<kind>``, logged
        at WARNING the first time in a row, then at DEBUG (a dead resolver every 5 s would
        otherwise flood the log)."""
        self.counters.inc(f"discovery.{strategy}.errors.{kind}")
        self.last_error[strategy] = message
        repeat = self.last_kind.get(strategy) == kind
        self.last_kind[strategy] = kind
        log.log(logging.DEBUG if repeat else logging.WARNING, "%s", message)

    def succeeded(self, strategy: str) -> None:
        """Note a successful attempt: the strategy's error is cleared (logged if it had one)."""
        if self.last_error.pop(strategy, None) is not None:
            log.info("%s: answering again", strategy)
        self.last_kind.pop(strategy, None)

    def attempted(self, strategy: str) -> None:
        self.attempts[strategy] = self.attempts.get(strategy, 0) + 1
        self.counters.inc(f"discovery.{strategy}.attempts")


async def run_discovery(
    node: Node,
    config: DiscoveryConfig,
    *,
    keyring: Keyring | None = None,
    cluster: str | None = None,
    rng: random.Random | None = None,
    task_status: trio.TaskStatus[DiscoveryRunner] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run every strategy of ``config`` for ``node`` until cancelled, joining what they find.

    ``keyring`` seals and opens multicast beacons (default: the node's own keyring);
    ``cluster`` is the label announced by mDNS and beacons (default: the first mdns
    strategy's label, else ``"default"``). ``task_status.started`` receives the
    :class:`DiscoveryRunner`. Equivalent lower-level calls: each strategy computes a list
    of addresses, then ``node.join(new_addresses)``.
    """
    runner = DiscoveryRunner(node.counters)
    rng = rng or random.Random(int.from_bytes(os.urandom(16), "big"))
    keyring = keyring or node.core.protection.keyring
    if cluster is None:
        labels = [s.cluster for s in config.strategies if isinstance(s, MdnsConfig)]
        cluster = labels[0] if labels else DEFAULT_CLUSTER_LABEL
    host, port = node.advertised
    announce = Announce(node.node_id, host, port, cluster)

    async def sink(strategy: str, addresses: list[Address]) -> None:
        await _join_new(node, runner, strategy, addresses)

    log.info("discovery: %s", ", ".join(strategy_name(s) for s in config.strategies) or "none")
    async with trio.open_nursery() as nursery:
        for strategy in config.strategies:
            nursery.start_soon(run_strategy, strategy, runner, sink, announce, keyring, rng)
        task_status.started(runner)


async def run_strategy(
    strategy: StrategyConfig,
    runner: DiscoveryRunner,
    sink: Sink,
    announce: Announce | None,
    keyring: Keyring | None,
    rng: random.Random,
) -> None:
    """Run one strategy until cancelled, handing each result to ``sink(name, addresses)``.

    ``announce`` is ``None`` to only listen (``discover`` command): mDNS does not register
    and multicast sends no beacon. ``keyring`` is required by multicast.
    """
    if isinstance(strategy, StaticConfig):
        await _run_static(strategy, runner, sink)
    elif isinstance(strategy, DnsConfig):
        await _run_dns(strategy, runner, sink, rng)
    elif isinstance(strategy, MdnsConfig):
        await _run_mdns(strategy, runner, sink, announce)
    elif isinstance(strategy, MulticastConfig):
        if keyring is None:
            raise DiscoveryError("multicast: a keyring is needed to open beacons")
        await _run_multicast(strategy, runner, sink, announce, keyring, rng)
    else:  # pragma: no cover - DiscoveryConfig checks the types
        raise DiscoveryError(f"unknown strategy {strategy!r}")


async def _join_new(
    node: Node, runner: DiscoveryRunner, strategy: str, addresses: list[Address]
) -> None:
    own = {node.advertised, node.address}
    alive = {
        m.address for m in node.members() if m.state in (MemberState.ALIVE, MemberState.SUSPECT)
    }
    new = [a for a in addresses if a not in own and a not in alive]
    if not new:
        return
    try:
        await node.join(new)
    except (FoundationError, OSError, trio.ClosedResourceError) as exc:
        runner.failed(strategy, "join", f"{strategy}: join {_fmt(new)} failed: {exc}")
        return
    runner.counters.inc(f"discovery.{strategy}.joins")
    log.debug("%s: join %s", strategy, _fmt(new))


def _fmt(addresses: Iterable[Address]) -> str:
    return ", ".join(format_address(a) for a in addresses)


def jittered(interval_s: float, jitter: float, rng: random.Random) -> float:
    """``interval_s`` times a uniform factor in ``[1 - jitter, 1 + jitter]``."""
    return interval_s * rng.uniform(1.0 - jitter, 1.0 + jitter)


# -- static ------------------------------------------------------------------------------


async def _run_static(config: StaticConfig, runner: DiscoveryRunner, sink: Sink) -> None:
    while True:
        runner.attempted("static")
        await sink("static", runner.record("static", config.seeds))
        await trio.sleep(config.interval_s)


# -- dns ---------------------------------------------------------------------------------


def query_dns(config: DnsConfig) -> list[Address]:
    """One blocking DNS poll: the addresses ``config`` names, sorted.

    Raises :class:`DiscoveryError` whose message says which name, which resolver and
    what went wrong (NXDOMAIN, no records, timeout, dead resolver, malformed answer).
    """
    import dns.exception
    import dns.rdatatype
    import dns.resolver

    where = f"resolver {format_address(config.resolver)}" if config.resolver else "system resolver"
    if config.resolver is not None:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [config.resolver[0]]
        resolver.port = config.resolver[1]
    else:
        resolver = dns.resolver.Resolver()
    resolver.lifetime = config.timeout_s
    resolver.timeout = config.timeout_s

    def ask(name: str, rdtype: str) -> Any:
        try:
            return resolver.resolve(name, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            raise DiscoveryError(f"dns: {name} does not exist (NXDOMAIN from {where})") from None
        except dns.resolver.NoAnswer:
            raise DiscoveryError(f"dns: {name} has no {rdtype} records ({where})") from None
        except dns.resolver.LifetimeTimeout:
            raise DiscoveryError(
                f"dns: no answer for {name} {rdtype} from {where} within {config.timeout_s} s "
                "(timeout: is the resolver running?)"
            ) from None
        except dns.resolver.NoNameservers as exc:
            raise DiscoveryError(
                f"dns: {where} failed to answer {name} {rdtype} (dead or refusing resolver: {exc})"
            ) from None
        except (dns.exception.FormError, dns.exception.SyntaxError) as exc:
            raise DiscoveryError(
                f"dns: malformed answer for {name} {rdtype} from {where}: {exc}"
            ) from None
        except dns.exception.DNSException as exc:
            raise DiscoveryError(f"dns: {name} {rdtype} from {where}: {exc}") from None

    def addresses_of(host: str, port: int) -> list[Address]:
        try:
            ipaddress.ip_address(host)
            return [(host, port)]
        except ValueError:
            pass
        if config.record == "AAAA":
            return [(r.address, port) for r in ask(host, "AAAA")]
        # an SRV target: its A records, else its AAAA records (an IPv6-only target)
        try:
            return [(r.address, port) for r in ask(host, "A")]
        except DiscoveryError as first:
            try:
                return [(r.address, port) for r in ask(host, "AAAA")]
            except DiscoveryError:
                raise first from None

    out: list[Address] = []
    if config.record == "SRV":
        answer = ask(config.name, "SRV")
        for rr in answer:
            target = rr.target.to_text(omit_final_dot=True)
            if not target or target == ".":
                continue
            if not 1 <= rr.port <= 65_535:
                raise DiscoveryError(
                    f"dns: malformed answer: SRV {config.name} -> {target} port {rr.port}"
                )
            out.extend(addresses_of(target, rr.port))
    else:
        assert config.port is not None
        for rr in ask(config.name, config.record):
            out.append((rr.address, config.port))
    return sorted(set(out))


async def _run_dns(
    config: DnsConfig, runner: DiscoveryRunner, sink: Sink, rng: random.Random
) -> None:
    while True:
        runner.attempted("dns")
        try:
            found = await trio.to_thread.run_sync(query_dns, config, abandon_on_cancel=True)
        except DiscoveryError as exc:
            kind = _dns_error_kind(str(exc))
            wait = jittered(config.interval_s, config.jitter, rng)
            runner.failed("dns", kind, f"{exc}; retrying in {wait:.1f} s")
        else:
            runner.succeeded("dns")
            await sink("dns", runner.record("dns", found))
            wait = jittered(config.interval_s, config.jitter, rng)
        await trio.sleep(wait)


def _dns_error_kind(message: str) -> str:
    for needle, kind in (
        ("NXDOMAIN", "nxdomain"),
        ("has no", "no_records"),
        ("timeout", "timeout"),
        ("dead or refusing", "resolver"),
        ("malformed", "malformed"),
    ):
        if needle in message:
            return kind
    return "other"


# -- mdns --------------------------------------------------------------------------------


class _MdnsBrowser:
    """Zeroconf in its own threads: registers this node, collects browsed names."""

    def __init__(self, config: MdnsConfig, runner: DiscoveryRunner) -> None:
        import zeroconf

        self._zc_mod = zeroconf
        interfaces: Any = [config.interface] if config.interface else zeroconf.InterfaceChoice.All
        self.zc = zeroconf.Zeroconf(interfaces=interfaces, ip_version=zeroconf.IPVersion.V4Only)
        self.config = config
        self.runner = runner
        self._lock = threading.Lock()
        self._names: set[str] = set()
        self.info: Any = None
        self.browser = zeroconf.ServiceBrowser(self.zc, config.service, handlers=[self._on_change])

    def _on_change(self, zeroconf: Any, service_type: str, name: str, state_change: Any) -> None:
        with self._lock:
            if state_change is self._zc_mod.ServiceStateChange.Removed:
                self._names.discard(name)
            elif len(self._names) < MAX_MDNS_SERVICES:
                self._names.add(name)
            else:
                self.runner.counters.inc("discovery.mdns.overflow")

    def register(self, announce: Announce) -> None:
        info = self._zc_mod.ServiceInfo(
            self.config.service,
            f"{announce.node_id.hex()}.{self.config.service}",
            addresses=[socket.inet_aton(_announce_ipv4(announce, self.config))],
            port=announce.port,
            properties={
                "id": announce.node_id.hex(),
                "cluster": self.config.cluster,
                "version": announce.version,
            },
        )
        self.zc.register_service(info, allow_name_change=False)
        self.info = info

    def resolve_all(self, own: NodeId | None) -> list[Address]:
        with self._lock:
            names = sorted(self._names)
        out: list[Address] = []
        for name in names:
            try:
                info = self.zc.get_service_info(
                    self.config.service, name, timeout=MDNS_QUERY_TIMEOUT_MS
                )
            except self._zc_mod.BadTypeInNameException:
                # a PTR of our type naming an instance of another type (anyone on the LAN
                # can send one): skipped, never the end of discovery
                self.runner.counters.inc("discovery.mdns.bad_name")
                log.debug("mdns: %r is not a %s instance: ignored", name, self.config.service)
                continue
            if info is None:
                continue
            props = {
                k.decode(errors="replace"): (v or b"").decode(errors="replace")
                for k, v in info.properties.items()
            }
            if props.get("cluster") != self.config.cluster:
                self.runner.counters.inc("discovery.mdns.ignored_cluster")
                log.debug("mdns: %s has cluster %r: ignored", name, props.get("cluster"))
                continue
            if own is not None and props.get("id") == own.hex():
                continue
            if info.port is None or not 1 <= info.port <= 65_535:
                self.runner.counters.inc("discovery.mdns.bad_port")
                log.debug("mdns: %s announces port %r: ignored", name, info.port)
                continue
            for host in info.parsed_addresses():
                out.append((host, info.port))
        return sorted(set(out))

    def close(self) -> None:
        try:
            self.browser.cancel()
            if self.info is not None:
                self.zc.unregister_service(self.info)
        finally:
            self.zc.close()


def _announce_ipv4(announce: Announce, config: MdnsConfig) -> str:
    host = announce.host
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is None or ip.version != 4 or ip.is_unspecified:
        if config.interface:
            return config.interface
        raise DiscoveryError(
            f"mdns: cannot announce {host!r}: set the node's advertise address to an IPv4 "
            "address, or mdns interface"
        )
    return host


async def _register_mdns(
    browser: _MdnsBrowser, announce: Announce, runner: DiscoveryRunner
) -> None:
    try:
        await trio.to_thread.run_sync(browser.register, announce)
    except Exception as exc:  # zeroconf raises its own tree (NonUniqueNameException...)
        runner.failed("mdns", "register", f"mdns: cannot register this node: {exc!r}")
        raise DiscoveryError(f"mdns: cannot register this node: {exc!r}") from exc
    runner.counters.inc("discovery.mdns.registered")


async def _run_mdns(
    config: MdnsConfig, runner: DiscoveryRunner, sink: Sink, announce: Announce | None
) -> None:
    try:
        browser = await trio.to_thread.run_sync(_MdnsBrowser, config, runner)
    except OSError as exc:
        runner.failed("mdns", "socket", f"mdns: cannot open multicast DNS sockets: {exc}")
        raise DiscoveryError(f"mdns: cannot open multicast DNS sockets: {exc}") from exc
    try:
        async with trio.open_nursery() as nursery:
            if announce is not None:
                # Registration probes the name for about a second: browse meanwhile.
                nursery.start_soon(_register_mdns, browser, announce, runner)
            own = announce.node_id if announce else None
            while True:
                runner.attempted("mdns")
                found = await trio.to_thread.run_sync(
                    browser.resolve_all, own, abandon_on_cancel=True
                )
                await sink("mdns", runner.record("mdns", found))
                await trio.sleep(config.interval_s)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(browser.close)


# -- multicast ---------------------------------------------------------------------------


def open_multicast_socket(config: MulticastConfig) -> trio.socket.SocketType:
    """A UDP socket bound to the group's port, member of the group, sending to it."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        iface = socket.inet_aton(config.interface or "0.0.0.0")
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, config.ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        if config.interface:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, iface)
        mreq = socket.inet_aton(config.group) + iface
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    except OSError:
        sock.close()
        raise
    return sock


async def _run_multicast(
    config: MulticastConfig,
    runner: DiscoveryRunner,
    sink: Sink,
    announce: Announce | None,
    keyring: Keyring,
    rng: random.Random,
) -> None:
    try:
        sock = open_multicast_socket(config)
        await sock.bind((config.group, config.port))
    except OSError as exc:
        message = (
            f"multicast: cannot join {config.group}:{config.port}: {exc.strerror or exc} "
            "(no multicast route? set multicast interface)"
        )
        runner.failed("multicast", "socket", message)
        raise DiscoveryError(message) from exc
    with sock:
        async with trio.open_nursery() as nursery:
            if announce is not None:
                nursery.start_soon(_send_beacons, sock, config, runner, announce, keyring, rng)
            await _receive_beacons(sock, runner, sink, announce, keyring)


async def _send_beacons(
    sock: trio.socket.SocketType,
    config: MulticastConfig,
    runner: DiscoveryRunner,
    announce: Announce,
    keyring: Keyring,
    rng: random.Random,
) -> None:
    beacon = Beacon(
        announce.node_id, announce.cluster, announce.host, announce.port, announce.version
    )
    while True:
        runner.attempted("multicast")
        data = seal_beacon(beacon, keyring, os.urandom)
        try:
            await sock.sendto(data, (config.group, config.port))
            runner.counters.inc("discovery.multicast.beacons_sent")
        except OSError as exc:
            runner.failed("multicast", "send", f"multicast: beacon not sent: {exc}")
        await trio.sleep(jittered(config.interval_s, config.jitter, rng))


async def _receive_beacons(
    sock: trio.socket.SocketType,
    runner: DiscoveryRunner,
    sink: Sink,
    announce: Announce | None,
    keyring: Keyring,
) -> None:
    while True:
        data, source = await sock.recvfrom(MAX_BEACON_BYTES + 1)
        try:
            beacon = open_beacon(data, keyring)
        except WireError as exc:
            runner.counters.inc(f"discovery.multicast.dropped.{exc.code}")
            log.debug("multicast: beacon from %s dropped: %s", source[0], exc)
            continue
        if announce is not None and beacon.node_id == announce.node_id:
            continue
        if announce is not None and beacon.cluster != announce.cluster:
            runner.counters.inc("discovery.multicast.ignored_cluster")
            continue
        runner.counters.inc("discovery.multicast.beacons_accepted")
        host = beacon.host
        try:
            if not host or ipaddress.ip_address(host).is_unspecified:
                host = source[0]
        except ValueError:
            pass
        await sink("multicast", runner.record("multicast", [(host, beacon.port)]))


# -- the discover command ----------------------------------------------------------------


async def discover_once(
    config: DiscoveryConfig, *, keyring: Keyring | None, listen_s: float
) -> DiscoveryRunner:
    """Run each strategy without announcing for ``listen_s`` seconds; return what it found.

    Static and DNS strategies poll at once (then every interval); mDNS browses; multicast
    listens for beacons (``keyring`` opens them). Errors stay in ``runner.last_error``.
    """
    runner = DiscoveryRunner(Counters())
    rng = random.Random(int.from_bytes(os.urandom(16), "big"))

    async def sink(strategy: str, addresses: list[Address]) -> None:
        return None

    async def one(strategy: StrategyConfig) -> None:
        try:
            await run_strategy(strategy, runner, sink, None, keyring, rng)
        except DiscoveryError as exc:
            runner.last_error[strategy_name(strategy)] = str(exc)

    with trio.move_on_after(listen_s):
        async with trio.open_nursery() as nursery:
            for strategy in config.strategies:
                nursery.start_soon(one, strategy)
    return runner


# -- the node's own configuration ------------------------------------------------------


async def run_configured_discovery(
    node: Node,
    *,
    facts: HostFacts | None = None,
    task_status: trio.TaskStatus[DiscoveryRunner | None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the discovery named by ``node.config.extra["discovery"]`` (nothing if absent).

    The choice is resolved with ``facts`` (default: this process's environment and
    terminal), the explanation is logged line by line at INFO, then :func:`run_discovery`
    runs until cancelled. ``task_status.started`` receives its runner (``None`` when the
    node has no ``discovery`` key). Equivalent lower-level calls:
    ``resolve_discovery_table(table, facts)`` then ``run_discovery(node, explained.config)``.
    """
    table = node.config.extra.get("discovery")
    if table is None:
        task_status.started(None)
        return
    if facts is None:
        from foundation_p2p.discovery.cli import gather_facts

        facts = gather_facts()
    explained = resolve_discovery_table(table, facts)
    for line in explained.text().splitlines():
        log.info("%s", line)
    await run_discovery(node, explained.config, task_status=task_status)
