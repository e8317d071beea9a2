"""Publish/subscribe channels (``spec/channels.md``): sans-I/O parts.

- :mod:`~foundation_p2p.channels.names`: the four standard channels (stream urgency and
  incremental flag), topic names, the topic -> channel map;
- :mod:`~foundation_p2p.channels.routing`: ``route_message`` and ``explain``;
- :mod:`~foundation_p2p.channels.codec`: records on a channel stream, the incremental
  decoder;
- :mod:`~foundation_p2p.channels.gossip`: a node's topic set, as it rides its membership
  record (announcement extension 1);
- :mod:`~foundation_p2p.channels.core`: ``ChannelsCore``, local subscriptions, fan-out,
  per-publisher ordering;
- :mod:`~foundation_p2p.channels.subsystem`: ``ChannelsSubsystem``, the NodeCore
  subsystem (``core.channels``) that drives ``ChannelsCore`` over the node's connections
  and announces topic sets through the membership. Not imported here (it depends on the
  transport and membership); the Trio facade is ``Node.channels`` in ``foundation_p2p.runtime``.
"""

from foundation_p2p.channels.codec import (
    ChannelLimits,
    ChannelMessage,
    RecordDecoder,
    decode_record,
    encode_record,
)
from foundation_p2p.channels.core import ChannelsCore, Delivery, OutgoingRecord, Subscription
from foundation_p2p.channels.gossip import TopicSet, decode_topics, encode_topics
from foundation_p2p.channels.names import (
    CONTROL,
    DATA,
    EVENTS,
    STANDARD_CHANNELS,
    TELEMETRY,
    Channel,
    TopicMap,
)
from foundation_p2p.channels.routing import RoutingDecision, explain, route_message

__all__ = [
    "CONTROL",
    "DATA",
    "EVENTS",
    "STANDARD_CHANNELS",
    "TELEMETRY",
    "Channel",
    "ChannelLimits",
    "ChannelMessage",
    "ChannelsCore",
    "Delivery",
    "OutgoingRecord",
    "RecordDecoder",
    "RoutingDecision",
    "Subscription",
    "TopicMap",
    "TopicSet",
    "decode_record",
    "decode_topics",
    "encode_record",
    "encode_topics",
    "explain",
    "route_message",
]
