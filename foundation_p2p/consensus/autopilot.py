"""Autopilot: the leader's decisions about the group's membership (sans-I/O, pure).

Run by the leader only, on its timer (:func:`plan`), one change at a time (Raft refuses a
second configuration change while one is not applied; the caller also waits for that):

1. **Learners.** An eligible member that is alive and not in the group is added as a
   learner (it catches up without voting).
2. **Grow to the target.** While there are fewer voters than ``target_voters`` (the
   ``bootstrap_expect``), a caught-up learner is promoted.
3. **Replace a failed voter.** A voter that membership reports not alive for at least
   ``stabilization_s`` is replaced by a caught-up learner in one joint change
   (add the learner as voter, remove the failed voter): the voter count never drops.
4. **Remove without replacement** only while more than ``min_voters`` voters remain after
   the removal: the group never shrinks below ``min_voters`` on its own.
5. **Learner cleanup.** A learner not alive for ``stabilization_s`` is removed.

"Caught up": the leader's progress for the learner matches at least
``commit - max_lag_entries``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from foundation_p2p.addresses import NodeId
from foundation_p2p.consensus.confchange import ConfChange, ConfChangeOp
from foundation_p2p.consensus.rawnode import Status
from foundation_p2p.errors import ConfigError


@dataclass(frozen=True, slots=True)
class AutopilotConfig:
    """Settings of :func:`plan`."""

    target_voters: int = 3
    min_voters: int = 3
    stabilization_s: float = 10.0
    max_lag_entries: int = 64
    enabled: bool = True

    def __post_init__(self) -> None:
        if type(self.target_voters) is not int or self.target_voters < 1:
            raise ConfigError("autopilot.target_voters: must be a positive integer")
        if type(self.min_voters) is not int or self.min_voters < 1:
            raise ConfigError("autopilot.min_voters: must be a positive integer")
        if not self.stabilization_s >= 0:
            raise ConfigError("autopilot.stabilization_s: must be >= 0")
        if type(self.max_lag_entries) is not int or self.max_lag_entries < 0:
            raise ConfigError("autopilot.max_lag_entries: must be a non-negative integer")


def caught_up(status: Status, node: NodeId, max_lag: int) -> bool:
    """True if the leader's progress says ``node`` matches within ``max_lag`` of commit."""
    prog = status.progress.get(node)
    return prog is not None and prog[0] + max_lag >= status.commit


def plan(
    status: Status,
    alive: frozenset[NodeId],
    down_since: Mapping[NodeId, float],
    now_mono: float,
    config: AutopilotConfig,
) -> tuple[str, ConfChange] | None:
    """The next change for the leader to propose (with a reason for logs), or ``None``.

    ``alive``: eligible members alive in membership (the leader included);
    ``down_since``: for group members not alive, when they were first seen not alive.
    """
    if not config.enabled or status.voters_outgoing:
        return None
    voters, learners = status.voters, status.learners
    wait = config.stabilization_s
    stable = {n for n, t in down_since.items() if n not in alive and now_mono - t >= wait}
    ready_learners = sorted(
        n for n in learners if n in alive and caught_up(status, n, config.max_lag_entries)
    )
    failed_voters = sorted(n for n in voters if n in stable and n != status.id)
    if failed_voters and ready_learners:
        dead, fresh = failed_voters[0], ready_learners[0]
        return (
            "replace failed voter",
            ConfChange(((ConfChangeOp.ADD_VOTER, fresh), (ConfChangeOp.REMOVE, dead))),
        )
    if len(voters) < config.target_voters and ready_learners:
        return "grow to target", ConfChange(((ConfChangeOp.ADD_VOTER, ready_learners[0]),))
    if failed_voters and len(voters) - 1 >= max(config.min_voters, config.target_voters):
        return "remove failed voter", ConfChange(((ConfChangeOp.REMOVE, failed_voters[0]),))
    new = sorted(alive - voters - learners)
    if new:
        return "add learner", ConfChange(((ConfChangeOp.ADD_LEARNER, new[0]),))
    gone = sorted(n for n in learners if n in stable)
    if gone:
        return "remove failed learner", ConfChange(((ConfChangeOp.REMOVE, gone[0]),))
    return None
