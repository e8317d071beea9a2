"""The quorum lease of quorum-mode singletons, and the bounded clock drift it assumes.

A singleton started with ``quorum=True`` runs only on a node that holds the *quorum
lease*: a majority of the configured member set (static, or the last-known-stable set the
integration hands in — it changes only through an explicit call, never because membership
changed) was heard from directly within the last ``lease_s`` seconds of this node's
monotonic clock. The node itself counts as heard now when it is in the configured set.

Safety argument ("at no moment two instances"), written out in ``spec/supervisor.md``:

Assumptions.

* **D (drift).** Every node's monotonic clock runs at a rate within ``[1 - rho, 1 + rho]``
  of real time, ``rho = max_drift`` (default 0.01, i.e. 1 %; quartz is ~1e-4, virtual
  machines under load are worse). Nothing is assumed about wall clocks or offsets.
* **T (timely stop).** Once the lease runs out, the owner's ``StopService`` is emitted by
  the next ``handle_timer`` call (``next_deadline`` names the expiry) and the service has
  stopped within ``stop_margin_s`` real seconds of the expiry (driver timer lateness plus
  the service's cancellation time).
* **C (clean cut).** From the moment ``t_e`` at which the successor last had evidence that
  the old owner was alive (the owner was in its live member set, was heard from directly,
  or held a visible registry entry) until the successor starts, the old owner hears
  directly from no member the successor counts toward its own lease. True for crashes and
  for a partition that keeps its shape for ``successor_wait_s``; *not* for a partition that
  changes shape sooner (the owner regains a majority without the successor while the
  successor still holds a lease from older acks — a strict xfail test shows it), nor for
  partial connectivity that the successor's failure detector misreads as a crash. SWIM
  acks are not votes: a member acks everyone, so nothing stronger holds without consensus.
* **S (sync).** A claim registered by a lease holder reaches every node that holds the
  lease in the same majority within ``successor_wait_s`` (the registry's sync interval is
  1 s by default; the wait is about 5 s).

Argument. Let the owner O be cut off from the majority side at real time ``T0 <= t_e``
(C). O's side is a minority of the configured set, so every majority O can count includes
a member of the other side, last heard at or before ``T0``: O's lease runs out at the
latest ``lease_s`` of O's clock after ``T0``, at most ``lease_s / (1 - rho)`` real seconds
(D), and O's service has stopped ``stop_margin_s`` later (T). A successor S starts only
when it holds the lease itself (so it is on the majority side) and ``successor_wait_s``
of its own clock have passed since ``t_e``: ``(lease_s / (1 - rho) + stop_margin_s) *
(1 + rho)`` local seconds are at least ``lease_s / (1 - rho) + stop_margin_s`` real
seconds (D). So S starts after O stopped. Two majorities of one configured set always
intersect, so two partitions never both hold the lease at one instant.

No wait is needed when O gave the name up *after* its service exited (a handoff entry, or
O still alive and its claim gone) — provided S saw O's claim while holding the lease
without a break: evidence gathered before S's current lease began is not trusted, and a
node that (re)gains the lease waits ``successor_wait_s`` before starting anything whose
name looks free, so claims made on the majority side while it was cut off reach it
first (S). The first start of a quorum singleton waits likewise.

The functions here are pure: the supervisor passes the clocks and views in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from foundation_p2p.addresses import NodeId
from foundation_p2p.errors import ConfigError


@dataclass(frozen=True, slots=True)
class QuorumView:
    """What membership tells the supervisor for quorum mode."""

    last_heard: Mapping[NodeId, float] = field(default_factory=dict)
    """Per member, the monotonic time (this node's clock) it was last heard from directly
    (a probe ack). Members never heard from are absent."""
    configured: frozenset[NodeId] | None = None
    """The configured member set majorities are counted over: static, or the
    last-known-stable set. ``None`` keeps the set the supervisor already has; a different
    set replaces it (an explicit reconfiguration, counted and logged)."""


@dataclass(frozen=True, slots=True)
class LeasePolicy:
    """The lease length and the drift and stop bounds its safety assumes."""

    lease_s: float = 4.0
    """How long a majority's direct acks keep the lease."""
    max_drift: float = 0.01
    """Bound ``rho`` on every monotonic clock's rate error (0.01 = 1 %)."""
    stop_margin_s: float = 1.0
    """Real seconds allowed between lease expiry and the service having stopped."""

    def __post_init__(self) -> None:
        if not self.lease_s > 0:
            raise ConfigError(f"lease_s: {self.lease_s} must be > 0")
        if not 0.0 <= self.max_drift < 0.5:
            raise ConfigError(f"max_drift: {self.max_drift} must be in [0, 0.5)")
        if not self.stop_margin_s >= 0:
            raise ConfigError(f"stop_margin_s: {self.stop_margin_s} must be >= 0")

    @property
    def successor_wait_s(self) -> float:
        """Local seconds a successor waits after its last evidence the old owner was alive."""
        rho = self.max_drift
        return (self.lease_s / (1.0 - rho) + self.stop_margin_s) * (1.0 + rho)


def majority(configured: Iterable[NodeId]) -> int:
    """How many members of ``configured`` make a majority (0 for an empty set)."""
    n = len(set(configured))
    return 0 if n == 0 else n // 2 + 1


def lease_expiry(
    self_id: NodeId,
    configured: frozenset[NodeId],
    last_heard: Mapping[NodeId, float],
    now_mono: float,
    lease_s: float,
) -> float | None:
    """The monotonic time until which this node holds the lease; None if it does not now.

    The expiry is the heard time of the majority-th most recently heard configured member
    plus ``lease_s``. An empty configured set never grants a lease.
    """
    need = majority(configured)
    if need == 0:
        return None
    times: list[float] = []
    for m in configured:
        if m == self_id:
            times.append(now_mono)
        else:
            t = last_heard.get(m)
            if t is not None:
                times.append(min(t, now_mono))
    if len(times) < need:
        return None
    times.sort(reverse=True)
    expiry = times[need - 1] + lease_s
    return expiry if expiry > now_mono else None
