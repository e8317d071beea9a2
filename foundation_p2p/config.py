"""``NodeConfig``: every setting of a node, validated on construction.

The same keys load from a TOML file (``node run --config node.toml``) and from a
scenario's ``[node]`` tables in the simulator. Addresses are ``"HOST:PORT"`` strings in
TOML; durations are seconds (keys end in ``_s``). Unknown keys, wrong types and values out
of range raise :class:`~foundation_p2p.errors.ConfigError` naming the source, the key and
the problem.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from foundation_p2p.addresses import Address, format_address, parse_address
from foundation_p2p.errors import ConfigError

_ADDRESS_FIELDS = {"bind", "advertise"}
_ADDRESS_LIST_FIELDS = {"join"}


@dataclass(frozen=True)
class NodeConfig:
    """Settings of one node. Construct with keywords; invalid values raise ``ConfigError``."""

    name: str = ""
    """A human-readable name (not an identity: the node id is)."""
    bind: Address = ("127.0.0.1", 7946)
    """UDP address to bind; port 0 picks a free port."""
    advertise: Address | None = None
    """Address peers should use, when ``bind`` is a wildcard such as 0.0.0.0."""
    join: tuple[Address, ...] = ()
    """Peers to contact at start (``--join``)."""
    cluster_key_file: str | None = None
    """Keyring file (``foundation-p2p keygen``)."""
    data_dir: str | None = None
    """Where the identity and boot epoch are kept; ``None`` keeps them in memory only."""
    app: str | None = None
    """Application entry point ``module:callable`` run inside the node."""

    max_packet_bytes: int = 1400
    """Largest gossip datagram this node sends (fits a 1500-byte MTU with headers)."""
    probe_interval_s: float = 1.0
    """How often the static prober (``foundation_p2p.probe``) pings each probe target.
    Not SWIM's probe period: membership takes its timings from the ``[membership]`` table
    (``probe_interval_s`` there, default 1.0 s, or a ``profile``)."""
    probe_timeout_s: float = 0.5
    """How long a static-prober ping waits for its ack before it counts as unanswered (SWIM's
    is ``[membership] probe_timeout_s``)."""
    max_probe_targets: int = 256
    """Most peers the static prober keeps (join targets and peers that pinged us)."""
    max_outstanding_pings: int = 1024
    """Most unanswered pings remembered; the oldest is forgotten first (counted)."""
    max_outgoing_datagrams: int = 4096
    """Most datagrams queued between two ``take_outgoing`` calls; newer ones are dropped."""
    max_events: int = 4096
    """Most application events queued; the oldest is dropped first (counted)."""
    max_tracked_senders: int = 4096
    """Most senders whose replay windows are kept (least recently heard evicted)."""
    replay_window: int = 256
    """Packet numbers remembered below the highest one, per sender."""
    max_pending_release: int = 4096
    """Most datagrams held back until durable writes complete; newer ones are dropped."""
    log_level: str = "INFO"
    """Level for the ``foundation_p2p`` logger when run from the command line."""

    extra: Mapping[str, Any] = field(default_factory=dict)
    """Sections later capabilities read (``[membership]``, ``[raft]``...), validated by them."""

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        if not isinstance(self.name, str) or len(self.name.encode()) > 64:
            raise ConfigError("name: must be a text of at most 64 bytes")
        for fname in ("bind", "advertise"):
            value = getattr(self, fname)
            if value is None and fname == "advertise":
                continue
            _check_address(fname, value)
        if not isinstance(self.join, tuple):
            raise ConfigError("join: must be a tuple of addresses")
        for i, addr in enumerate(self.join):
            _check_address(f"join[{i}]", addr)
        for fname in ("cluster_key_file", "data_dir", "app"):
            value = getattr(self, fname)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"{fname}: must be a non-empty text or absent")
        if self.app is not None and ":" not in self.app:
            raise ConfigError(f"app: {self.app!r} is not module:callable")
        _check_int("max_packet_bytes", self.max_packet_bytes, 256, 65_507)
        _check_float("probe_interval_s", self.probe_interval_s, 0.001, 3600.0)
        _check_float("probe_timeout_s", self.probe_timeout_s, 0.001, 3600.0)
        if self.probe_timeout_s > self.probe_interval_s:
            raise ConfigError(
                f"probe_timeout_s: {self.probe_timeout_s} is longer than probe_interval_s "
                f"{self.probe_interval_s}"
            )
        for fname, low, high in (
            ("max_probe_targets", 1, 100_000),
            ("max_outstanding_pings", 1, 1_000_000),
            ("max_outgoing_datagrams", 1, 10_000_000),
            ("max_events", 1, 10_000_000),
            ("max_tracked_senders", 1, 10_000_000),
            ("replay_window", 32, 65_536),
            ("max_pending_release", 1, 10_000_000),
        ):
            _check_int(fname, getattr(self, fname), low, high)
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"log_level: {self.log_level!r} is not DEBUG, INFO, WARNING or ERROR")
        if not isinstance(self.extra, Mapping):
            raise ConfigError("extra: must be a mapping of section name to table")

    @property
    def advertised(self) -> Address:
        """The address peers should use: ``advertise`` if set, else ``bind``."""
        return self.advertise or self.bind

    def replace(self, **changes: Any) -> NodeConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def with_overrides(
        self, table: Mapping[str, Any], *, source: str = "<overrides>"
    ) -> NodeConfig:
        """A copy with the keys of a TOML-shaped table applied (the scenario ``[node]`` path)."""
        return dataclasses.replace(self, **_convert(table, source, base=self))

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], *, source: str = "<config>") -> NodeConfig:
        """Build from a TOML-shaped mapping: addresses as text, seconds as numbers."""
        return cls(**_convert(table, source, base=None))

    @classmethod
    def from_toml(cls, path: str) -> NodeConfig:
        """Load a TOML file; errors name the file, the key and the problem."""
        try:
            with open(path, "rb") as f:
                table = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        return cls.from_mapping(table, source=path)

    def to_mapping(self) -> dict[str, Any]:
        """The TOML-shaped mapping of this config (inverse of :meth:`from_mapping`)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extra":
                out.update({k: dict(v) if isinstance(v, Mapping) else v for k, v in value.items()})
            elif value is None:
                continue
            elif f.name in _ADDRESS_FIELDS:
                out[f.name] = format_address(value)
            elif f.name in _ADDRESS_LIST_FIELDS:
                out[f.name] = [format_address(a) for a in value]
            else:
                out[f.name] = value
        return out


_FIELDS = {f.name: f for f in dataclasses.fields(NodeConfig)}
EXTRA_SECTIONS: set[str] = {
    "membership",
    "transport",
    "registry",
    "supervisor",
    "raft",
    "consensus",
    "channels",
    "discovery",
    "health",
    "coordination",
}
"""Section names later capabilities own; each validates its own table."""


def _convert(table: Mapping[str, Any], source: str, base: NodeConfig | None) -> dict[str, Any]:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: expected a table of settings")
    out: dict[str, Any] = {}
    extra: dict[str, Any] = dict(base.extra) if base is not None else {}
    for key, value in table.items():
        where = f"{source}: {key}"
        if key == "discovery":
            # A name ("auto", "dns"...) or a table; kept as a table in extra["discovery"]
            # (spec/discovery.md section 1), replaced whole by an override.
            from foundation_p2p.discovery.config import discovery_table

            extra[key] = discovery_table(value, where=where)
            continue
        if key in EXTRA_SECTIONS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: must be a table")
            extra[key] = {**extra.get(key, {}), **value}
            continue
        if key not in _FIELDS or key == "extra":
            raise ConfigError(f"{where}: unknown key (known: {', '.join(sorted(_known_keys()))})")
        try:
            if key in _ADDRESS_FIELDS:
                if not isinstance(value, str):
                    raise ConfigError('must be a "HOST:PORT" text')
                out[key] = parse_address(value, what=key)
            elif key in _ADDRESS_LIST_FIELDS:
                if not isinstance(value, list):
                    raise ConfigError('must be a list of "HOST:PORT" texts')
                out[key] = tuple(parse_address(str(v), what=key) for v in value)
            elif key.endswith("_s"):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ConfigError(f"must be a number of seconds, got {value!r}")
                out[key] = float(value)
            else:
                out[key] = value
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    out["extra"] = extra
    try:
        if base is not None:
            dataclasses.replace(base, **out)
        else:
            NodeConfig(**out)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return out


def _known_keys() -> list[str]:
    return [k for k in _FIELDS if k != "extra"] + sorted(EXTRA_SECTIONS)


def _check_address(fname: str, value: Any) -> None:
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not isinstance(value[0], str)
        or not value[0]
        or isinstance(value[1], bool)
        or not isinstance(value[1], int)
        or not 0 <= value[1] <= 65535
    ):
        raise ConfigError(f"{fname}: must be (host, port) with port 0..65535, got {value!r}")


def _check_int(fname: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{fname}: must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{fname}: {value} is out of range {low}..{high}")


def _check_float(fname: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{fname}: must be a number, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{fname}: {value} is out of range {low}..{high}")
