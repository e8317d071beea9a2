"""``TransportConfig``: the settings of one connection, validated on construction.

Every bound a connection keeps (buffers, windows, queues, tracked ranges) is a field here,
so that a reader finds in one place how much memory a peer can make us hold. Errors are
:class:`~foundation_p2p.errors.ConfigError` naming the field and the problem.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from foundation_p2p.errors import ConfigError

# Protocol version 1's floor for the peer's initial limits (spec/transport.md section 6):
# what a sender may use before it has read the peer's PARAMETERS frame. A receiver's own
# initial windows must be at least these, so a sender that trusts the floor never exceeds
# the window the receiver enforces.
FLOOR_MAX_DATA = 256 * 1024
FLOOR_MAX_STREAM_DATA = 64 * 1024
FLOOR_MAX_STREAMS = 16


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """How one connection behaves and how much it may hold; every field is checked."""

    max_datagram_bytes: int = 1200
    """The base datagram size: the largest UDP payload a connection sends until path MTU
    discovery confirms a larger one, and what it falls back to on a black hole (QUIC's
    1200: fits any IPv6 path)."""
    pmtu_max_bytes: int = 16384
    """Path MTU discovery's ceiling: the largest UDP payload a connection probes for and
    may use (RFC 8899 DPLPMTUD, :mod:`~foundation_p2p.transport.pmtu`). Equal to
    ``max_datagram_bytes``: no discovery. On Ethernet the search settles near 1472 bytes
    (IPv4) or 1452 (IPv6); on loopback it reaches this ceiling. Why 16384: on loopback
    ``bench/transport_core.py --quick`` moves 207 MB per CPU second at 16384 against 23 at
    1200, and 295/350 at 32768/65507; but the pacer's burst of 10 datagrams is 160 KiB at
    16384, within Linux's default 208 KiB socket receive buffer, and 640 KiB at 65507,
    which would overflow it, and a lost datagram costs its whole size to resend."""
    pmtu_probe_tries: int = 3
    """Probes of one size declared lost before that size counts as too large (RFC 8899's
    MAX_PROBES)."""
    pmtu_raise_interval_s: float = 600.0
    """After a search ended below the ceiling, search again this long after (RFC 8899's
    PMTU_RAISE_TIMER), in case the path grew."""
    idle_timeout_s: float = 30.0
    """Close silently after this long without receiving an authenticated packet."""
    max_probe_timeouts: int = 6
    """Close silently after this many probe timeouts in a row with no acknowledgement: the
    peer stopped answering (crashed, or restarted and dropping packets for connection ids
    it no longer knows), so waiting out ``idle_timeout_s`` only delays the fresh
    connection. With PTO doubling, 6 is about 63 PTOs: ~2.5 s at a 6 ms RTT."""
    keep_alive_s: float | None = 10.0
    """Send a PING after this long without sending anything ack-eliciting (None: never).
    Must be below ``idle_timeout_s`` to keep a quiet connection open."""
    max_ack_delay_s: float = 0.025
    """Longest we delay an ACK for an ack-eliciting packet (RFC 9000 section 13.2.1)."""
    ack_eliciting_threshold: int = 2
    """Acknowledge at once after this many ack-eliciting packets (RFC 9000: every 2nd)."""
    initial_max_data: int = 4 * 1024 * 1024
    """Connection receive window we advertise at first (bytes across all streams)."""
    max_data_window: int = 16 * 1024 * 1024
    """Largest connection receive window we ever advertise (the window never grows above)."""
    initial_max_stream_data: int = 1024 * 1024
    """Per-stream receive window we advertise at first."""
    max_stream_data_window: int = 4 * 1024 * 1024
    """Largest per-stream receive window."""
    max_streams_bidi: int = 100
    """Bidirectional streams the peer may have open at once (we raise the cumulative limit
    as they close)."""
    max_streams_uni: int = 100
    """Unidirectional streams the peer may have open at once."""
    stream_send_buffer_bytes: int = 1024 * 1024
    """Bytes one send stream buffers (unsent plus sent-but-unacknowledged); ``send``
    accepts only what fits and returns that count."""
    max_handshake_bytes: int = 4096
    """Largest handshake message accepted; a larger one is dropped and counted."""
    max_ack_ranges_tracked: int = 256
    """Received packet-number ranges remembered; beyond, the oldest range is forgotten
    (its numbers then count as too old) and counted."""
    max_ack_ranges_sent: int = 32
    """Most ranges one ACK frame reports (the newest ones)."""
    max_datagram_queue: int = 256
    """Unreliable DATAGRAM payloads queued for sending; beyond, the oldest is dropped and
    counted (DATAGRAMs are lossy by contract; the newest is the useful one)."""
    max_datagram_frame_bytes: int = 1100
    """Largest DATAGRAM payload accepted from the application (must fit in one packet)."""
    max_received_datagrams: int = 256
    """DATAGRAM frames received and not yet taken with ``take_events``; beyond, the
    newest is dropped and counted."""
    handshake_timeout_s: float = 0.3
    """First handshake retransmission after this long; it doubles on each try."""
    handshake_max_tries: int = 8
    """Handshake messages sent at most this many times before the connection gives up."""
    max_sent_packets_tracked: int = 8192
    """Sent packets awaiting acknowledgement; when reached, no new data is sent (only
    ACKs, probes and control frames) until some are acknowledged or declared lost."""
    pacing: bool = True
    """Pace packets over the RTT (RFC 9002 section 7.7) instead of sending bursts."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "pacing":
                if type(value) is not bool:
                    raise ConfigError(f"TransportConfig.pacing: must be a boolean, got {value!r}")
                continue
            if f.name == "keep_alive_s" and value is None:
                continue
            if type(value) is bool or not isinstance(value, (int, float)):
                raise ConfigError(f"TransportConfig.{f.name}: must be a number, got {value!r}")
            if f.name.endswith("_s"):
                if not value > 0 or value != value or value == float("inf"):
                    raise ConfigError(
                        f"TransportConfig.{f.name}: must be a positive finite number of "
                        f"seconds, got {value!r}"
                    )
            elif type(value) is not int or value <= 0:
                raise ConfigError(
                    f"TransportConfig.{f.name}: must be a positive integer, got {value!r}"
                )
        if not 1200 <= self.max_datagram_bytes <= 65507:
            raise ConfigError(
                f"TransportConfig.max_datagram_bytes: must be in 1200..65507, got "
                f"{self.max_datagram_bytes}"
            )
        if not self.max_datagram_bytes <= self.pmtu_max_bytes <= 65507:
            raise ConfigError(
                f"TransportConfig.pmtu_max_bytes: must be in max_datagram_bytes "
                f"({self.max_datagram_bytes})..65507 (the largest UDP payload), got "
                f"{self.pmtu_max_bytes}"
            )
        if self.keep_alive_s is not None and self.keep_alive_s >= self.idle_timeout_s:
            raise ConfigError(
                f"TransportConfig.keep_alive_s: {self.keep_alive_s} must be below "
                f"idle_timeout_s ({self.idle_timeout_s})"
            )
        for name, floor in (
            ("initial_max_data", FLOOR_MAX_DATA),
            ("initial_max_stream_data", FLOOR_MAX_STREAM_DATA),
            ("max_streams_bidi", FLOOR_MAX_STREAMS),
            ("max_streams_uni", FLOOR_MAX_STREAMS),
        ):
            if getattr(self, name) < floor:
                raise ConfigError(
                    f"TransportConfig.{name}: must be at least the protocol floor {floor} "
                    f"(spec/transport.md section 6), got {getattr(self, name)}"
                )
        if self.max_data_window < self.initial_max_data:
            raise ConfigError(
                "TransportConfig.max_data_window: must be at least initial_max_data"
            )
        if self.max_stream_data_window < self.initial_max_stream_data:
            raise ConfigError(
                "TransportConfig.max_stream_data_window: must be at least initial_max_stream_data"
            )
        if self.max_datagram_frame_bytes > self.max_datagram_bytes - 64:
            raise ConfigError(
                "TransportConfig.max_datagram_frame_bytes: must leave 64 bytes of packet "
                f"overhead within max_datagram_bytes ({self.max_datagram_bytes})"
            )
        if self.max_ack_ranges_sent > self.max_ack_ranges_tracked:
            raise ConfigError(
                "TransportConfig.max_ack_ranges_sent: must not exceed max_ack_ranges_tracked"
            )
        if self.max_ack_ranges_sent > 1000:
            raise ConfigError("TransportConfig.max_ack_ranges_sent: at most 1000 (frame limit)")
