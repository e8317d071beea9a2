"""``MembershipConfig``: the SWIM + Lifeguard settings, validated on construction.

A node reads them from the ``[membership]`` table of its TOML config (a scenario's
``[node.membership]`` likewise) through :meth:`MembershipConfig.from_node_config`. The
``profile`` key picks memberlist's defaults as a starting point (``lan``, ``wan`` or
``local``); every other key overrides one parameter. Errors name the field and the problem.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from foundation_p2p.errors import ConfigError

if TYPE_CHECKING:
    from foundation_p2p.config import NodeConfig

PROFILES: dict[str, dict[str, Any]] = {
    "lan": {
        "probe_interval_s": 1.0,
        "probe_timeout_s": 0.5,
        "indirect_checks": 3,
        "suspicion_mult": 4,
        "suspicion_max_mult": 6,
        "retransmit_mult": 4,
        "gossip_interval_s": 0.2,
        "gossip_nodes": 3,
        "push_pull_interval_s": 30.0,
        "awareness_max": 8,
        "dead_retry_interval_s": 5.0,
        "dead_retry_max_interval_s": 60.0,
        "dead_retry_for_s": 1800.0,
        "reap_after_s": 3600.0,
        "join_retry_s": 1.0,
        "join_retry_max_s": 30.0,
    },
    "wan": {
        "probe_interval_s": 5.0,
        "probe_timeout_s": 3.0,
        "indirect_checks": 3,
        "suspicion_mult": 6,
        "suspicion_max_mult": 6,
        "retransmit_mult": 4,
        "gossip_interval_s": 0.5,
        "gossip_nodes": 4,
        "push_pull_interval_s": 60.0,
        "awareness_max": 8,
        "dead_retry_interval_s": 15.0,
        "dead_retry_max_interval_s": 300.0,
        "dead_retry_for_s": 3600.0,
        "reap_after_s": 7200.0,
        "join_retry_s": 2.0,
        "join_retry_max_s": 60.0,
    },
    "local": {
        "probe_interval_s": 1.0,
        "probe_timeout_s": 0.2,
        "indirect_checks": 1,
        "suspicion_mult": 3,
        "suspicion_max_mult": 6,
        "retransmit_mult": 2,
        "gossip_interval_s": 0.1,
        "gossip_nodes": 3,
        "push_pull_interval_s": 15.0,
        "awareness_max": 8,
        "dead_retry_interval_s": 2.0,
        "dead_retry_max_interval_s": 30.0,
        "dead_retry_for_s": 600.0,
        "reap_after_s": 1200.0,
        "join_retry_s": 0.5,
        "join_retry_max_s": 10.0,
    },
}
"""Starting points: memberlist's DefaultLANConfig / DefaultWANConfig / DefaultLocalConfig
for the SWIM timings, plus this project's partition-healing and join-retry settings."""


@dataclass(frozen=True)
class MembershipConfig:
    """SWIM + Lifeguard parameters of one node. Construct with keywords; checked at once."""

    profile: str = "lan"
    """Which :data:`PROFILES` entry supplied the defaults (``lan``, ``wan``, ``local``)."""
    probe_interval_s: float = 1.0
    """One probe (ping) of one member per interval, scaled by ``awareness + 1``."""
    probe_timeout_s: float = 0.5
    """Wait for a direct ack before asking relays (ping-req); scaled by ``awareness + 1``."""
    indirect_checks: int = 3
    """k: relays asked to ping a target that missed its direct ack."""
    suspicion_mult: int = 4
    """Suspicion timeout minimum = suspicion_mult * max(1, log10 N) * probe_interval_s."""
    suspicion_max_mult: int = 6
    """Suspicion timeout maximum = suspicion_max_mult * minimum (Lifeguard)."""
    retransmit_mult: int = 4
    """Each update is sent at most retransmit_mult * ceil(log10(N + 1)) times."""
    gossip_interval_s: float = 0.2
    """A gossip round (queued updates to ``gossip_nodes`` random members) every interval."""
    gossip_nodes: int = 3
    """Members each gossip round sends to."""
    push_pull_interval_s: float = 30.0
    """Full-state sync with one random member every interval (scaled up above 32 members)."""
    awareness_max: int = 8
    """Upper bound of the Lifeguard local health score (0 = healthy)."""
    enabled: bool = True
    """Run SWIM at all. Off, ``core.membership`` is built (its record is this node alone)
    but not driven: no frames routed to it, no timers, no gossip. For measurements of the
    rest of the node (the simulator engine benchmark) and static-prober-only setups."""
    lifeguard: bool = True
    """Lifeguard on; off = classic SWIM (fixed suspicion timeout = minimum, no awareness,
    no nacks), for the ablation."""
    observer: bool = False
    """Join as an observer: receive state, never probed, never counted, never a relay."""
    dead_retry_interval_s: float = 5.0
    """First gap before a failed member is pinged again (dead retry, to heal partitions);
    the gap doubles after each retry up to ``dead_retry_max_interval_s``."""
    dead_retry_max_interval_s: float = 60.0
    """Largest gap between two dead-retry pings of one failed member."""
    dead_retry_for_s: float = 1800.0
    """How long after its failure a member keeps being retried."""
    reap_after_s: float = 3600.0
    """Failed and left members are forgotten this long after the transition."""
    join_retry_s: float = 1.0
    """First backoff between join attempts; doubles up to ``join_retry_max_s``."""
    join_retry_max_s: float = 30.0
    """Largest backoff between join attempts (retries go on until a seed answers)."""
    max_metadata_bytes: int = 1024
    """Largest metadata byte string a member may carry."""
    max_extension_bytes: int = 768
    """Largest total of announcement extension values (sum of their lengths) a member may
    carry; this node's own are refused beyond it (``LimitError``), a peer's announcement
    beyond it is dropped (counted ``membership.announcement.extensions_too_large``)."""
    extension_min_interval_s: float = 0.5
    """Extension changes are announced at most once per this interval (the latest value of
    each key wins; a change inside the interval waits for its end)."""
    user_payload_share: float = 0.25
    """Share of every packet piggybacked membership updates leave free for other frames."""
    max_members: int = 10_000
    """Most members known (self included); further new members are refused and counted."""
    max_broadcasts: int = 1024
    """Most queued updates; when full, the most-sent one is dropped (counted)."""
    max_relayed_probes: int = 256
    """Most ping-reqs being relayed at once; the oldest is forgotten (counted)."""
    push_pull_chunk_bytes: int = 1100
    """Target size of one push-pull chunk frame (a single larger entry still goes alone)."""
    push_pull_max_bytes: int = 262_144
    """Most state bytes sent in one push-pull exchange; beyond it, a random subset goes."""
    max_join_addresses: int = 16
    """Most seed addresses a Join command may carry."""
    observer_expiry_s: float = 120.0
    """An observer not heard from (push-pull) this long is forgotten by members."""

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ConfigError(
                f"membership.profile: {self.profile!r} is not one of {', '.join(PROFILES)}"
            )
        for name, low, high in (
            ("probe_interval_s", 0.001, 3600.0),
            ("probe_timeout_s", 0.001, 3600.0),
            ("gossip_interval_s", 0.001, 3600.0),
            ("push_pull_interval_s", 0.01, 86_400.0),
            ("dead_retry_interval_s", 0.01, 86_400.0),
            ("dead_retry_max_interval_s", 0.01, 86_400.0),
            ("dead_retry_for_s", 0.0, 30 * 86_400.0),
            ("reap_after_s", 0.0, 365 * 86_400.0),
            ("join_retry_s", 0.001, 3600.0),
            ("join_retry_max_s", 0.001, 86_400.0),
            ("user_payload_share", 0.0, 0.9),
            ("observer_expiry_s", 1.0, 30 * 86_400.0),
            ("extension_min_interval_s", 0.0, 3600.0),
        ):
            _check_float(name, getattr(self, name), low, high)
        for name, low, high in (
            ("indirect_checks", 0, 16),
            ("suspicion_mult", 1, 100),
            ("suspicion_max_mult", 1, 100),
            ("retransmit_mult", 1, 100),
            ("gossip_nodes", 1, 64),
            ("awareness_max", 0, 64),
            ("max_metadata_bytes", 0, 60_000),
            ("max_extension_bytes", 0, 60_000),
            ("max_members", 2, 1_000_000),
            ("max_broadcasts", 1, 1_000_000),
            ("max_relayed_probes", 1, 1_000_000),
            ("push_pull_chunk_bytes", 200, 60_000),
            ("push_pull_max_bytes", 1_000, 1 << 30),
            ("max_join_addresses", 1, 1024),
        ):
            _check_int(name, getattr(self, name), low, high)
        for name in ("enabled", "lifeguard", "observer"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"membership.{name}: must be true or false")
        if self.probe_timeout_s > self.probe_interval_s:
            raise ConfigError(
                f"membership.probe_timeout_s: {self.probe_timeout_s} is longer than "
                f"probe_interval_s {self.probe_interval_s}"
            )
        if self.dead_retry_max_interval_s < self.dead_retry_interval_s:
            raise ConfigError(
                "membership.dead_retry_max_interval_s: shorter than dead_retry_interval_s"
            )
        if self.join_retry_max_s < self.join_retry_s:
            raise ConfigError("membership.join_retry_max_s: shorter than join_retry_s")

    @classmethod
    def from_mapping(
        cls, table: Mapping[str, Any], *, source: str = "membership"
    ) -> MembershipConfig:
        """Build from a ``[membership]`` table: ``profile`` first, then each override."""
        if not isinstance(table, Mapping):
            raise ConfigError(f"{source}: must be a table")
        profile = table.get("profile", "lan")
        if profile not in PROFILES:
            raise ConfigError(f"{source}.profile: {profile!r} is not one of {', '.join(PROFILES)}")
        values: dict[str, Any] = dict(PROFILES[profile])
        values["profile"] = profile
        for key, value in table.items():
            if key not in _FIELDS:
                raise ConfigError(
                    f"{source}.{key}: unknown key (known: {', '.join(sorted(_FIELDS))})"
                )
            if key.endswith("_s") or key == "user_payload_share":
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ConfigError(f"{source}.{key}: must be a number, got {value!r}")
                value = float(value)
            values[key] = value
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_node_config(cls, config: NodeConfig) -> MembershipConfig:
        """The membership settings of a node: its ``[membership]`` table (``extra``)."""
        return cls.from_mapping(config.extra.get("membership", {}))

    def replace(self, **changes: Any) -> MembershipConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # -- formulas (Lifeguard / SWIM / memberlist) ----------------------------------------

    def suspicion_min_s(self, n: int) -> float:
        """Minimum suspicion timeout: suspicion_mult * max(1, log10 n) * probe_interval_s."""
        return self.suspicion_mult * max(1.0, math.log10(max(n, 1))) * self.probe_interval_s

    def suspicion_max_s(self, n: int) -> float:
        """Maximum suspicion timeout: suspicion_max_mult * minimum (= minimum without Lifeguard)."""
        low = self.suspicion_min_s(n)
        return self.suspicion_max_mult * low if self.lifeguard else low

    def retransmit_limit(self, n: int) -> int:
        """How many times one update is sent: retransmit_mult * ceil(log10(n + 1))."""
        return self.retransmit_mult * max(1, math.ceil(math.log10(n + 1)))

    def hot_window_s(self, n: int) -> float:
        """How long a new update stays hot (taken first): the gossip rounds it needs to be
        sent ``retransmit_limit(n)`` times to ``gossip_nodes`` members a round, plus one."""
        rounds = -(-self.retransmit_limit(n) // self.gossip_nodes) + 1
        return rounds * self.gossip_interval_s

    def dead_retry_gaps_s(self, count: int) -> list[float]:
        """The first ``count`` dead-retry gaps before jitter: ``dead_retry_interval_s``
        doubling up to ``dead_retry_max_interval_s`` (each is then multiplied by a random
        factor in [0.5, 1.5))."""
        gaps: list[float] = []
        gap = self.dead_retry_interval_s
        for _ in range(count):
            gaps.append(gap)
            gap = min(gap * 2, self.dead_retry_max_interval_s)
        return gaps

    def push_pull_interval(self, n: int) -> float:
        """memberlist's pushPullScale: the interval grows with log2 above 32 members."""
        if n <= 32:
            return self.push_pull_interval_s
        mult = math.ceil(math.log2(n) - math.log2(32)) + 1
        return self.push_pull_interval_s * mult


def suspicion_timeout(low: float, high: float, confirmations: int, expected: int) -> float:
    """Lifeguard: max(low, high - (high - low) * ln(n + 1) / ln(k + 1)); ``low`` when k = 0.

    ``k`` (``expected``) is the number of independent confirmations that would bring the
    timeout down to ``low``; with none expected (tiny clusters) the timeout is ``low``.
    """
    if expected < 1:
        return low
    frac = math.log(confirmations + 1) / math.log(expected + 1)
    return max(low, high - (high - low) * frac)


_FIELDS = {f.name for f in dataclasses.fields(MembershipConfig)}


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"membership.{name}: must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"membership.{name}: {value} is out of range {low}..{high}")


def _check_float(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"membership.{name}: must be a number, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"membership.{name}: {value} is out of range {low}..{high}")
