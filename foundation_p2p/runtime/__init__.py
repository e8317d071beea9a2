"""The Trio runtime: one node over real UDP, real time and real files.

``open_node(config)`` (an async context manager) yields a :class:`Node`; see
:mod:`foundation_p2p.runtime.node` for what it does and in which order. Transport
streams between nodes: ``Node.connect``, ``Node.open_stream`` and ``Node.accept_stream``
give :class:`TransportStream` objects. Publish/subscribe: ``Node.channels``
(:class:`Channels`, :class:`ChannelSubscription`).
"""

from foundation_p2p.runtime.node import (
    MEMBERSHIP_EVENTS,
    Channels,
    ChannelSubscription,
    Node,
    Subscription,
    TransportStream,
    machine_now,
    open_node,
)
from foundation_p2p.runtime.storage import DataDirStore, MemoryStore, Store
from foundation_p2p.runtime.udp import BindError

__all__ = [
    "MEMBERSHIP_EVENTS",
    "BindError",
    "ChannelSubscription",
    "Channels",
    "DataDirStore",
    "MemoryStore",
    "Node",
    "Store",
    "Subscription",
    "TransportStream",
    "machine_now",
    "open_node",
]
