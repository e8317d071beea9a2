"""The QUIC-like transport: one encrypted connection per peer over UDP, many streams.

Sans-I/O, modelled on RFC 9000 (streams, flow control, frames) and RFC 9002 (loss
recovery, congestion control). Connections are set up by the Noise ``XXpsk3`` handshake
of :mod:`foundation_p2p.crypto.noise` and carry channels, registry sync, Raft and
coordination; membership gossip stays on cluster-key packets (``spec/wire.md``).

Modules, one concept each:

- :mod:`~foundation_p2p.transport.errors`: the connection error codes;
- :mod:`~foundation_p2p.transport.recovery`: RTT estimation, loss detection, probe timeout;
- :mod:`~foundation_p2p.transport.congestion`: the congestion controller interface, NewReno,
  and the pacer;
- :mod:`~foundation_p2p.transport.streams`: send and receive streams;
- :mod:`~foundation_p2p.transport.flow`: connection- and stream-level flow control credit;
- :mod:`~foundation_p2p.transport.scheduler`: the stream scheduler (RFC 9218 urgencies);
- :mod:`~foundation_p2p.transport.frames` and :mod:`~foundation_p2p.transport.packet`: the
  wire (``spec/transport.md``);
- :mod:`~foundation_p2p.transport.connection`: one connection, composing the above.
"""
