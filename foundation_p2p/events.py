"""Events a node reports to its application, and commands the application gives it.

Events are small frozen dataclasses; every subsystem's events derive from :class:`Event`.
Commands enter through ``NodeCore.handle_command`` and derive from :class:`Command`.
"""

from __future__ import annotations

from dataclasses import dataclass

from foundation_p2p.addresses import Address, NodeId


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event a core reports."""


@dataclass(frozen=True, slots=True)
class Started(Event):
    """The node booted: its identity and boot epoch are chosen and being made durable."""

    node_id: NodeId
    """This node's id."""
    boot_epoch: int
    """This start's boot epoch (strictly larger than any earlier one of this identity)."""
    new_identity: bool
    """True if the identity was generated at this start."""


@dataclass(frozen=True, slots=True)
class PeerAcked(Event):
    """A peer answered one of our pings (the static prober)."""

    node_id: NodeId
    """The peer's node id, authenticated by the packet's AEAD."""
    address: Address
    """Where the ack came from."""
    rtt_s: float
    """Round-trip time of this ping, in seconds."""


@dataclass(frozen=True, slots=True)
class PeerUnanswered(Event):
    """A ping to ``address`` got no ack within the probe timeout."""

    address: Address
    """The address that did not answer."""
    seq: int
    """The ping's sequence number."""


@dataclass(frozen=True, slots=True)
class Command:
    """Base of every command the application gives a node."""


@dataclass(frozen=True, slots=True)
class Join(Command):
    """Contact these addresses (``--join``)."""

    addresses: tuple[Address, ...]
    """Peers to contact."""


@dataclass(frozen=True, slots=True)
class Leave(Command):
    """Stop taking part: no more probes; later capabilities announce a graceful leave."""
