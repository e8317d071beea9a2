"""Discovery configuration: the strategy schema and the three modes that produce it.

Pure code: the environment is passed in (:class:`HostFacts`), nothing here reads the
process environment, the clock or the network.

- **mortal** (``discovery = "auto"``): the host is inspected (Kubernetes from
  ``KUBERNETES_SERVICE_HOST``, Consul from ``CONSUL_HTTP_ADDR``, a development machine
  from an interactive terminal outside CI) and a full configuration is chosen, with
  the reasons;
- **apprentice** (``discovery = "dns"``, ``"static"``, ``"mdns"``, ``"multicast"``): one
  strategy named, a few options translated into its full configuration, defaults shown;
- **wizard** (a table ``{"strategies": [...]}``): every field of every strategy given,
  used as given; a missing or unknown field is an error.

:func:`resolve_discovery` does the translation and returns an :class:`Explanation`
(the resolved :class:`DiscoveryConfig` plus the reasons); ``Explanation.text()`` is the
human rendering and ``Explanation.to_mapping()`` the JSON one. Every bad name or option
raises :class:`~foundation_p2p.errors.ConfigError` naming it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from foundation_p2p.addresses import Address, format_address, parse_address
from foundation_p2p.errors import ConfigError

STRATEGY_NAMES = ("static", "dns", "mdns", "multicast")
"""The strategies, in the order ``explain`` lists them."""
MODE_NAMES = ("mortal", "apprentice", "wizard")

MDNS_SERVICE = "_foundation-p2p._udp.local."
"""The DNS-SD service type every node registers and browses."""
DEFAULT_MULTICAST_GROUP = "239.255.77.46"
"""An administratively scoped IPv4 group (RFC 2365, organization-local)."""
DEFAULT_MULTICAST_PORT = 45_946
DEFAULT_CLUSTER_LABEL = "default"
KUBERNETES_SERVICE_NAME = "foundation-p2p"
"""The headless service name auto mode assumes under Kubernetes (override: ``service``)."""
KUBERNETES_PORT_NAME = "gossip"
CONSUL_SERVICE_NAME = "foundation-p2p"
CONSUL_DNS_PORT = 8600
DNS_RECORD_TYPES = ("A", "AAAA", "SRV")


@dataclass(frozen=True)
class StaticConfig:
    """Join a fixed list of seed addresses (re-tried every ``interval_s``)."""

    seeds: tuple[Address, ...]
    """``(host, port)`` seeds; names are resolved by the node at each attempt."""
    interval_s: float = 10.0
    """How often the seeds are offered to the join again (a node that started first)."""

    @property
    def strategy(self) -> str:
        return "static"

    def _check(self) -> None:
        if not isinstance(self.seeds, tuple) or not self.seeds:
            raise ConfigError("discovery.static.seeds: must list at least one HOST:PORT")
        for i, seed in enumerate(self.seeds):
            _check_address(f"discovery.static.seeds[{i}]", seed)
        _check_seconds("discovery.static.interval_s", self.interval_s)

    def __post_init__(self) -> None:
        self._check()


@dataclass(frozen=True)
class DnsConfig:
    """Poll DNS: A/AAAA records of ``name`` (with ``port``), or SRV records (port in them)."""

    name: str
    """The name queried: a headless service, or an SRV name such as ``_gossip._udp.x``."""
    record: str = "SRV"
    """``"A"``, ``"AAAA"`` or ``"SRV"``."""
    port: int | None = None
    """The gossip port of the addresses found (A/AAAA only; SRV records carry theirs)."""
    resolver: Address | None = None
    """The DNS server ``(ip, port)``; ``None`` uses the system's resolvers."""
    timeout_s: float = 2.0
    """How long one query waits for its answer."""
    interval_s: float = 5.0
    """Time between polls."""
    jitter: float = 0.2
    """Each wait is ``interval_s`` times a uniform factor in ``[1 - jitter, 1 + jitter]``."""

    @property
    def strategy(self) -> str:
        return "dns"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip(". ") or len(self.name) > 253:
            raise ConfigError("discovery.dns.name: must be a DNS name of at most 253 characters")
        if self.record not in DNS_RECORD_TYPES:
            raise ConfigError(f"discovery.dns.record: {self.record!r} is not one of A, AAAA, SRV")
        if self.record == "SRV":
            if self.port is not None:
                raise ConfigError(
                    "discovery.dns.port: SRV records carry the port; give port only with A/AAAA"
                )
        else:
            if self.port is None:
                raise ConfigError(
                    f"discovery.dns.port: required with record = {self.record!r} (the gossip "
                    "port of the addresses found)"
                )
            _check_port("discovery.dns.port", self.port)
        if self.resolver is not None:
            _check_address("discovery.dns.resolver", self.resolver)
            try:
                ipaddress.ip_address(self.resolver[0])
            except ValueError:
                raise ConfigError(
                    f"discovery.dns.resolver: {self.resolver[0]!r} is not an IP address"
                ) from None
        _check_seconds("discovery.dns.timeout_s", self.timeout_s)
        _check_seconds("discovery.dns.interval_s", self.interval_s)
        _check_jitter("discovery.dns.jitter", self.jitter)


@dataclass(frozen=True)
class MdnsConfig:
    """Register and browse ``service`` through DNS-SD over multicast DNS (zeroconf)."""

    cluster: str = DEFAULT_CLUSTER_LABEL
    """The cluster label in the TXT record; services with another label are ignored."""
    service: str = MDNS_SERVICE
    """The DNS-SD service type."""
    interval_s: float = 5.0
    """How often the browsed services are resolved and offered to the join."""
    interface: str | None = None
    """An IPv4 address to run mDNS on; ``None`` means every interface."""

    @property
    def strategy(self) -> str:
        return "mdns"

    def __post_init__(self) -> None:
        _check_label("discovery.mdns.cluster", self.cluster)
        if (
            not isinstance(self.service, str)
            or not self.service.endswith("._udp.local.")
            or not self.service.startswith("_")
        ):
            raise ConfigError(
                f"discovery.mdns.service: {self.service!r} is not a DNS-SD type such as "
                f"{MDNS_SERVICE!r}"
            )
        _check_seconds("discovery.mdns.interval_s", self.interval_s)
        if self.interface is not None:
            _check_ipv4("discovery.mdns.interface", self.interface)


@dataclass(frozen=True)
class MulticastConfig:
    """Send beacons sealed with the cluster key to a UDP multicast group; join their senders."""

    group: str = DEFAULT_MULTICAST_GROUP
    """The IPv4 multicast group."""
    port: int = DEFAULT_MULTICAST_PORT
    """The UDP port beacons go to."""
    interval_s: float = 5.0
    """Time between two beacons of this node."""
    jitter: float = 0.2
    """Each wait is ``interval_s`` times a uniform factor in ``[1 - jitter, 1 + jitter]``."""
    ttl: int = 1
    """IP multicast TTL: 1 keeps beacons on the local link."""
    interface: str | None = None
    """The IPv4 address of the interface to send and join on; ``None`` lets the OS choose."""

    @property
    def strategy(self) -> str:
        return "multicast"

    def __post_init__(self) -> None:
        _check_ipv4("discovery.multicast.group", self.group)
        if not ipaddress.ip_address(self.group).is_multicast:
            raise ConfigError(f"discovery.multicast.group: {self.group} is not a multicast group")
        _check_port("discovery.multicast.port", self.port)
        _check_seconds("discovery.multicast.interval_s", self.interval_s)
        _check_jitter("discovery.multicast.jitter", self.jitter)
        if not isinstance(self.ttl, int) or isinstance(self.ttl, bool) or not 1 <= self.ttl <= 255:
            raise ConfigError(f"discovery.multicast.ttl: {self.ttl!r} is not an integer 1..255")
        if self.interface is not None:
            _check_ipv4("discovery.multicast.interface", self.interface)


StrategyConfig = StaticConfig | DnsConfig | MdnsConfig | MulticastConfig
_CLASSES: dict[str, type[Any]] = {
    "static": StaticConfig,
    "dns": DnsConfig,
    "mdns": MdnsConfig,
    "multicast": MulticastConfig,
}


def strategy_name(strategy: StrategyConfig) -> str:
    """The name of a strategy configuration (``"static"``, ``"dns"``, ``"mdns"``...)."""
    for name, cls in _CLASSES.items():
        if isinstance(strategy, cls):
            return name
    raise ConfigError(f"discovery: {type(strategy).__name__} is not a strategy configuration")


@dataclass(frozen=True)
class DiscoveryConfig:
    """The resolved discovery configuration: the strategies a node runs, all at once."""

    strategies: tuple[StrategyConfig, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.strategies, tuple):
            raise ConfigError("discovery.strategies: must be a tuple")
        for s in self.strategies:
            strategy_name(s)

    def to_mapping(self) -> dict[str, Any]:
        """The wizard-mode table of this config (``resolve_discovery`` of it gives it back)."""
        return {"strategies": [strategy_to_mapping(s) for s in self.strategies]}


@dataclass(frozen=True)
class HostFacts:
    """What the auto mode may look at, gathered by the caller (never read here)."""

    environ: Mapping[str, str] = field(default_factory=dict)
    """The process environment (``os.environ``)."""
    interactive: bool = False
    """Whether standard input is a terminal (a person at a development machine)."""


@dataclass(frozen=True)
class Explanation:
    """The result of :func:`resolve_discovery`: the config, its mode and the reasons."""

    mode: str
    """``"mortal"``, ``"apprentice"`` or ``"wizard"``."""
    choice: str
    """What was asked for: ``"auto"``, a strategy name, or ``"explicit"``."""
    config: DiscoveryConfig
    """The full configuration the node runs."""
    reasons: tuple[str, ...]
    """Why each part was chosen, one sentence each, in order."""

    def to_mapping(self) -> dict[str, Any]:
        """A JSON-ready rendering (``discover --explain --json``)."""
        return {
            "mode": self.mode,
            "choice": self.choice,
            "reasons": list(self.reasons),
            **self.config.to_mapping(),
        }

    def text(self) -> str:
        """A human rendering: mode, reasons, then each strategy's every field."""
        lines = [f"discovery: {self.choice} ({self.mode} mode)"]
        lines += [f"  because: {r}" for r in self.reasons]
        if not self.config.strategies:
            lines.append("  no strategy: the node only joins its configured seeds")
        for s in self.config.strategies:
            lines.append(f"  strategy {strategy_name(s)}:")
            for key, value in strategy_to_mapping(s).items():
                if key != "strategy":
                    lines.append(f"    {key} = {value!r}")
        return "\n".join(lines)


def strategy_to_mapping(strategy: StrategyConfig) -> dict[str, Any]:
    """A TOML/JSON-shaped table of one strategy (addresses as ``HOST:PORT`` text)."""
    out: dict[str, Any] = {"strategy": strategy_name(strategy)}
    for f in fields(strategy):
        value = getattr(strategy, f.name)
        if f.name == "seeds":
            value = [format_address(a) for a in value]
        elif f.name == "resolver" and value is not None:
            value = format_address(value)
        out[f.name] = value
    return out


# -- the three modes ----------------------------------------------------------------------

_APPRENTICE_OPTIONS: dict[str, tuple[str, ...]] = {
    "static": ("seeds", "interval_s"),
    "dns": ("name", "record", "port", "resolver", "interval_s", "timeout_s"),
    "mdns": ("cluster", "interval_s", "interface"),
    "multicast": ("group", "port", "interval_s", "interface"),
}
_AUTO_OPTIONS = ("service", "namespace", "port_name", "cluster")


def resolve_discovery(
    choice: str | Mapping[str, Any] | None,
    options: Mapping[str, Any] | None = None,
    facts: HostFacts | None = None,
) -> Explanation:
    """Translate a discovery choice into its full configuration and the reasons.

    ``choice`` is ``"auto"`` (mortal mode; ``facts`` are inspected), a strategy name
    (apprentice mode; ``options`` holds the few options of that strategy), a table with
    ``strategies`` (wizard mode; every field given), ``"none"`` or ``None`` (no discovery).
    """
    options = dict(options or {})
    facts = facts or HostFacts()
    if choice is None or choice == "none":
        _no_options("none", options)
        return Explanation(
            "wizard", "none", DiscoveryConfig(()), ('discovery is off (discovery = "none")',)
        )
    if isinstance(choice, Mapping):
        _no_options("an explicit table", options)
        return _wizard(choice)
    if not isinstance(choice, str):
        raise ConfigError(f"discovery: {choice!r} is not a text or a table")
    if choice == "auto":
        return _mortal(options, facts)
    if choice in STRATEGY_NAMES:
        return _apprentice(choice, options)
    raise ConfigError(
        f"discovery: unknown strategy {choice!r}; expected auto, none, " + ", ".join(STRATEGY_NAMES)
    )


def discovery_table(value: Any, *, where: str = "discovery") -> dict[str, Any]:
    """The table form of a node's ``discovery`` setting, checked; raises ``ConfigError``.

    ``"dns"`` becomes ``{"use": "dns"}``; a table with ``use`` (a mode or strategy name,
    plus that choice's options) or with ``strategies`` (the explicit form) is kept. The
    choice is resolved once against an empty environment, so a bad name or option is
    refused here, when the configuration is loaded.
    """
    if isinstance(value, str):
        table: dict[str, Any] = {"use": value}
    elif isinstance(value, Mapping):
        table = dict(value)
    else:
        raise ConfigError(f"{where}: must be a strategy name or a table, got {value!r}")
    try:
        resolve_discovery_table(table, HostFacts())
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return table


def resolve_discovery_table(table: Mapping[str, Any], facts: HostFacts) -> Explanation:
    """Resolve the table form of :func:`discovery_table` (``use`` + options, or explicit)."""
    if "strategies" in table:
        if "use" in table:
            raise ConfigError("discovery: give either use (a name and options) or strategies")
        return resolve_discovery(table, facts=facts)
    if "use" not in table:
        raise ConfigError(
            'discovery: a table needs use = "auto" (or a strategy name) or strategies = [...]'
        )
    options = {k: v for k, v in table.items() if k != "use"}
    return resolve_discovery(table["use"], options, facts)


def _no_options(what: str, options: Mapping[str, Any]) -> None:
    if options:
        raise ConfigError(f"discovery: options {sorted(options)} make no sense with {what}")


def _mortal(options: dict[str, Any], facts: HostFacts) -> Explanation:
    unknown = sorted(set(options) - set(_AUTO_OPTIONS))
    if unknown:
        raise ConfigError(
            f"discovery: unknown option(s) {unknown} for auto; expected " + ", ".join(_AUTO_OPTIONS)
        )
    env = facts.environ
    k8s = env.get("KUBERNETES_SERVICE_HOST", "").strip()
    consul = env.get("CONSUL_HTTP_ADDR", "").strip()
    if k8s:
        service = _text_option(options, "service", KUBERNETES_SERVICE_NAME)
        namespace = _text_option(
            options, "namespace", env.get("POD_NAMESPACE", "").strip() or "default"
        )
        port_name = _text_option(options, "port_name", KUBERNETES_PORT_NAME)
        name = f"_{port_name}._udp.{service}.{namespace}.svc.cluster.local"
        ns_reason = (
            "namespace from option 'namespace'"
            if "namespace" in options
            else "namespace from POD_NAMESPACE"
            if env.get("POD_NAMESPACE", "").strip()
            else "no POD_NAMESPACE: namespace 'default'"
        )
        return Explanation(
            "mortal",
            "auto",
            DiscoveryConfig((DnsConfig(name=name, record="SRV"),)),
            (
                f"KUBERNETES_SERVICE_HOST is set ({k8s}): running under Kubernetes",
                f"SRV records of the headless service {service!r}, port {port_name!r}, "
                f"through the cluster DNS ({ns_reason})",
            ),
        )
    if consul:
        host = _consul_host(consul)
        service = _text_option(options, "service", CONSUL_SERVICE_NAME)
        return Explanation(
            "mortal",
            "auto",
            DiscoveryConfig(
                (
                    DnsConfig(
                        name=f"{service}.service.consul",
                        record="SRV",
                        resolver=(host, CONSUL_DNS_PORT),
                    ),
                )
            ),
            (
                f"CONSUL_HTTP_ADDR is set ({consul}): a Consul agent runs on {host}",
                f"SRV records of the Consul service {service!r} through the agent's DNS "
                f"interface at {host}:{CONSUL_DNS_PORT}",
            ),
        )
    cluster = _text_option(options, "cluster", DEFAULT_CLUSTER_LABEL)
    if facts.interactive and not env.get("CI"):
        return Explanation(
            "mortal",
            "auto",
            DiscoveryConfig((MdnsConfig(cluster=cluster),)),
            (
                "no KUBERNETES_SERVICE_HOST, no CONSUL_HTTP_ADDR",
                "an interactive terminal and no CI variable: a development machine",
                f"mDNS service {MDNS_SERVICE!r} with cluster label {cluster!r} (finds nodes "
                "on this machine and the local network)",
            ),
        )
    return Explanation(
        "mortal",
        "auto",
        DiscoveryConfig((MulticastConfig(),)),
        (
            "no KUBERNETES_SERVICE_HOST, no CONSUL_HTTP_ADDR, not a development machine",
            f"multicast beacons sealed with the cluster key to {DEFAULT_MULTICAST_GROUP}:"
            f"{DEFAULT_MULTICAST_PORT} (TTL 1: the local link)",
        ),
    )


def _consul_host(addr: str) -> str:
    text = addr.split("://", 1)[-1].split("/", 1)[0]
    if text.startswith("["):
        host = text[1:].partition("]")[0]
    else:
        host = text.rpartition(":")[0] if text.count(":") == 1 else text
    if host in ("", "localhost"):
        return "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(
            f"discovery: CONSUL_HTTP_ADDR {addr!r} does not name the agent by IP address; "
            "give a dns strategy with an explicit resolver"
        ) from None
    return host


def _apprentice(name: str, options: dict[str, Any]) -> Explanation:
    allowed = _APPRENTICE_OPTIONS[name]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"discovery: unknown option(s) {unknown} for {name}; expected " + ", ".join(allowed)
        )
    table = dict(options)
    defaulted = [k for k in allowed if k not in options]
    if name == "dns" and "record" not in table and "port" in table:
        table["record"] = "A"
    strategy = _strategy_from_table(name, table, f"discovery ({name})", strict=False)
    given = ", ".join(f"{k}={options[k]!r}" for k in allowed if k in options) or "none"
    reasons = [
        f"discovery = {name!r}: the {name} strategy alone",
        f"options given: {given}",
    ]
    if defaulted:
        reasons.append("defaults for everything else (listed below)")
    return Explanation("apprentice", name, DiscoveryConfig((strategy,)), tuple(reasons))


def _wizard(table: Mapping[str, Any]) -> Explanation:
    extra = sorted(set(table) - {"strategies"})
    if extra:
        raise ConfigError(f"discovery: unknown key(s) {extra}; an explicit table has strategies")
    items = table.get("strategies")
    if not isinstance(items, Sequence) or isinstance(items, str | bytes):
        raise ConfigError("discovery.strategies: must be a list of strategy tables")
    strategies = []
    for i, item in enumerate(items):
        where = f"discovery.strategies[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{where}: must be a table")
        name = item.get("strategy")
        if name not in STRATEGY_NAMES:
            raise ConfigError(
                f"{where}.strategy: {name!r} is not one of " + ", ".join(STRATEGY_NAMES)
            )
        rest = {k: v for k, v in item.items() if k != "strategy"}
        strategies.append(_strategy_from_table(name, rest, where, strict=True))
    names = [strategy_name(s) for s in strategies]
    return Explanation(
        "wizard",
        "explicit",
        DiscoveryConfig(tuple(strategies)),
        (f"an explicit configuration, used as given: {', '.join(names) or 'no strategy'}",),
    )


def _strategy_from_table(
    name: str, table: Mapping[str, Any], where: str, *, strict: bool
) -> StrategyConfig:
    cls = _CLASSES[name]
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {unknown} for {name}")
    if strict:
        missing = [n for n in names if n not in table]
        if missing:
            raise ConfigError(
                f"{where}: an explicit {name} strategy gives every field; missing {missing}"
            )
    required = [
        f.name
        for f in fields(cls)
        if f.default is MISSING and f.default_factory is MISSING and f.name not in table
    ]
    if required:
        raise ConfigError(f"{where}: option {required[0]!r} is required for {name}")
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key == "seeds":
            kwargs[key] = _addresses(f"{where}.seeds", value)
        elif key == "resolver" and value is not None:
            kwargs[key] = _one_address(f"{where}.resolver", value)
        elif (
            key in ("interval_s", "timeout_s", "jitter")
            and isinstance(value, int)
            and not (isinstance(value, bool))
        ):
            kwargs[key] = float(value)
        else:
            kwargs[key] = value
    try:
        return cls(**kwargs)  # type: ignore[no-any-return]
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _addresses(where: str, value: Any) -> tuple[Address, ...]:
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, Sequence):
        raise ConfigError(f"{where}: must be a list of HOST:PORT texts")
    return tuple(_one_address(f"{where}[{i}]", v) for i, v in enumerate(value))


def _one_address(where: str, value: Any) -> Address:
    if isinstance(value, str):
        return parse_address(value, what=where)
    if isinstance(value, tuple | list) and len(value) == 2:
        addr = (value[0], value[1])
        _check_address(where, addr)
        return addr
    raise ConfigError(f"{where}: {value!r} is not HOST:PORT")


def _text_option(options: Mapping[str, Any], key: str, default: str) -> str:
    value = options.get(key, default)
    _check_label(f"discovery.{key}", value)
    return str(value)


# -- checks -------------------------------------------------------------------------------


def _check_address(where: str, value: Any) -> None:
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not isinstance(value[0], str)
        or not value[0]
    ):
        raise ConfigError(f"{where}: {value!r} is not a (host, port) address")
    _check_port(where, value[1])


def _check_port(where: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65_535:
        raise ConfigError(f"{where}: port {value!r} is not an integer 1..65535")


def _check_seconds(where: str, value: Any) -> None:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not (0.01 <= value <= 86_400)
    ):
        raise ConfigError(f"{where}: {value!r} is not a number of seconds in 0.01..86400")


def _check_jitter(where: str, value: Any) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 1:
        raise ConfigError(f"{where}: {value!r} is not a fraction in [0, 1)")


def _check_label(where: str, value: Any) -> None:
    if (
        not isinstance(value, str)
        or not value
        or len(value) > 63
        or not all(c.isalnum() or c in "-_." for c in value)
    ):
        raise ConfigError(
            f"{where}: {value!r} is not a label of 1..63 letters, digits, '-', '_' or '.'"
        )


def _check_ipv4(where: str, value: Any) -> None:
    try:
        ok = isinstance(value, str) and ipaddress.ip_address(value).version == 4
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(f"{where}: {value!r} is not an IPv4 address")
