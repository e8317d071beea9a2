"""Membership events a node reports to its application (``take_events``).

Each carries the member's snapshot after the change. Events are about other members; a
node's own record is ``SwimMembership.local``.
"""

from __future__ import annotations

from dataclasses import dataclass

from foundation_p2p.addresses import NodeId
from foundation_p2p.events import Event
from foundation_p2p.membership.state import Member


@dataclass(frozen=True, slots=True)
class MemberJoined(Event):
    """A member became known alive: first heard of, or back after failing or leaving."""

    member: Member
    """The member as now known (state ALIVE)."""


@dataclass(frozen=True, slots=True)
class MemberUpdated(Event):
    """An alive member's metadata, name or address changed (a newer signed announcement)."""

    member: Member
    """The member as now known."""


@dataclass(frozen=True, slots=True)
class MemberSuspect(Event):
    """A member is suspected (a missed probe, here or at ``accuser``)."""

    member: Member
    """The member as now known (state SUSPECT)."""
    accuser: NodeId
    """The node that first suspected it (this node's id if it was our probe)."""


@dataclass(frozen=True, slots=True)
class MemberAlive(Event):
    """A suspect member refuted the suspicion (a higher incarnation)."""

    member: Member
    """The member as now known (state ALIVE)."""


@dataclass(frozen=True, slots=True)
class MemberFailed(Event):
    """A member was declared failed (its suspicion timed out, here or elsewhere)."""

    member: Member
    """The member as now known (state FAILED)."""


@dataclass(frozen=True, slots=True)
class MemberLeft(Event):
    """A member left gracefully (its own signed LEFT announcement)."""

    member: Member
    """The member as now known (state LEFT)."""


@dataclass(frozen=True, slots=True)
class MemberReaped(Event):
    """A failed or left member (or a silent observer) was forgotten."""

    node_id: NodeId
    """The forgotten member's id."""
