"""Path MTU discovery for one connection: DPLPMTUD (RFC 8899, RFC 9000 section 14.3).

A connection starts at the base datagram size (``TransportConfig.max_datagram_bytes``,
1200: every IPv6 path carries it) and searches upward, up to ``pmtu_max_bytes``, by
sending *probes*: a PING padded with a PADDING frame to exactly the candidate size. An
acknowledged probe proves the path carries that size, and the connection raises its
datagram size (congestion controller, pacer, packet budget) to it. A probe declared lost
counts against the candidate: after ``max_probes`` lost probes of one size, the size is
taken as too large. Probe losses are not congestion signals (loss recovery keeps them
away from the controller): a too-large probe is dropped by the path, not by a queue.

This module holds the state machine only; the connection
(:class:`~foundation_p2p.transport.connection.Connection`) builds and sends the probes and
reports what happens to them. No clock: ``now`` is passed in.

States (RFC 8899 section 5.2, without its separate BASE and ERROR states: the base size
is confirmed by the handshake, and a path below 1200 bytes cannot carry a connection):

- ``searching``: one probe at a time, sizes chosen by binary search between the largest
  size known to pass (``low``) and the smallest known or assumed to fail (``high``,
  starting at ``ceiling + 1``); the search ends when they are at most
  ``SEARCH_PRECISION_BYTES`` apart, after one probe of the ceiling itself if it never
  failed (binary search as quinn does; msquic steps up by fixed increments, which takes
  longer to reach 16 KiB on loopback);
- ``complete``: the size is settled; after ``raise_interval_s`` (RFC 8899's
  PMTU_RAISE_TIMER, 600 s) a new search starts from the current size, in case the path
  grew (only when the current size is below the ceiling);
- ``disabled``: ``ceiling == base``, nothing is probed.

Black-hole detection (RFC 8899 section 4.3): after a raise, the path may stop carrying
the larger size (a route change). The connection reports every non-probe packet larger
than the base that is declared lost, and the newest such packet of each acknowledgement.
A lost one is *suspicious* when no
packet at least as large and sent after it has been acknowledged; ``BLACK_HOLE_LOSSES``
suspicious losses in a row (an acknowledgement of a large packet resets the count), or
``BLACK_HOLE_PTOS`` probe timeouts in a row (nothing comes back at all), drop the size
back to the base and start a new search below the size that failed.
"""

from __future__ import annotations

import logging

log = logging.getLogger("foundation_p2p.transport.pmtu")

SEARCH_PRECISION_BYTES = 16
"""The search stops when the passing and failing sizes are at most this far apart."""
BLACK_HOLE_LOSSES = 3
"""Suspicious losses of large packets in a row that mean the path no longer carries them."""
BLACK_HOLE_PTOS = 2
"""Probe timeouts in a row (nothing acknowledged) that mean the same while above the base."""

DISABLED = "disabled"
SEARCHING = "searching"
COMPLETE = "complete"


class PathMtuSearch:
    """The DPLPMTUD state machine of one connection; see the module docstring.

    The connection calls :meth:`probe_size` when it could send, :meth:`on_probe_sent`
    with the probe's packet number, then :meth:`on_probe_acked` or :meth:`on_probe_lost`;
    :meth:`on_large_acked`, :meth:`on_large_lost` and :meth:`on_pto` feed the black-hole
    detector. Methods that change the size return the new size (else ``None``).

    Counters (plain ints): ``probes_sent``, ``probes_acked``, ``probes_lost``, ``raises``,
    ``black_holes``, ``searches``.
    """

    __slots__ = (
        "_candidate",
        "_high",
        "_low",
        "_ok_size",
        "_ok_time",
        "_probe_pn",
        "_raise_at",
        "_suspects",
        "_tries",
        "base",
        "black_holes",
        "ceiling",
        "current",
        "max_probes",
        "probes_acked",
        "probes_lost",
        "probes_sent",
        "raise_interval_s",
        "raises",
        "searches",
        "state",
    )

    def __init__(self, base: int, ceiling: int, *, max_probes: int = 3,
                 raise_interval_s: float = 600.0) -> None:
        if base < 1200:
            raise ValueError(f"base datagram size must be at least 1200, got {base}")
        if ceiling < base:
            raise ValueError(f"ceiling {ceiling} is below the base size {base}")
        if max_probes < 1:
            raise ValueError(f"max_probes must be at least 1, got {max_probes}")
        if not raise_interval_s > 0:
            raise ValueError(f"raise_interval_s must be positive, got {raise_interval_s}")
        self.base = base
        self.ceiling = ceiling
        self.max_probes = max_probes
        self.raise_interval_s = raise_interval_s
        self.current = base
        """The datagram size in use: the largest one confirmed by an acknowledged probe."""
        self._low = base
        self._high = ceiling + 1
        self._candidate = 0
        self._tries = 0
        self._probe_pn: int | None = None
        self._raise_at: float | None = None
        self._ok_time = float("-inf")  # send time of the newest acked large packet
        self._ok_size = 0  # and its size
        self._suspects = 0
        self.probes_sent = 0
        self.probes_acked = 0
        self.probes_lost = 0
        self.raises = 0
        self.black_holes = 0
        self.searches = 0
        self.state = DISABLED
        if ceiling > base:
            self._start_search(base, ceiling + 1, 0.0)

    # -- queries ---------------------------------------------------------------------------

    @property
    def probe_pn(self) -> int | None:
        """The packet number of the probe awaiting a verdict (None: none in flight)."""
        return self._probe_pn

    def probe_size(self, now: float) -> int | None:
        """The size of the probe to send now, or None (no search, or a probe in flight)."""
        if self._probe_pn is not None:
            return None
        state = self.state
        if state == SEARCHING:
            return self._candidate
        if state == COMPLETE and self._raise_at is not None and now >= self._raise_at:
            log.debug("pmtu: raise timer: searching again above %d bytes", self.current)
            self._start_search(self.current, self.ceiling + 1, now)
            return self._candidate if self.state == SEARCHING else None
        return None

    def stats(self) -> dict[str, int]:
        """The counters and the current size, by name (``pmtu.*``)."""
        return {
            "pmtu.probes_sent": self.probes_sent,
            "pmtu.probes_acked": self.probes_acked,
            "pmtu.probes_lost": self.probes_lost,
            "pmtu.raises": self.raises,
            "pmtu.black_holes": self.black_holes,
            "pmtu.searches": self.searches,
        }

    # -- probes ----------------------------------------------------------------------------

    def on_probe_sent(self, pn: int, size: int) -> None:
        """A probe of ``size`` bytes went out as packet ``pn``."""
        self._probe_pn = pn
        self._tries += 1
        self.probes_sent += 1
        log.debug("pmtu: probe pn=%d of %d bytes (try %d)", pn, size, self._tries)

    def on_probe_acked(self, pn: int, now: float) -> int | None:
        """Packet ``pn`` (a probe) was acknowledged; returns the raised size, or None when
        it was not the probe awaited (one sent before a fall back)."""
        if pn != self._probe_pn:
            return None
        self._probe_pn = None
        self.probes_acked += 1
        size = self._candidate
        self._low = size
        self.current = size
        self.raises += 1
        log.debug("pmtu: probe pn=%d acknowledged: datagram size now %d bytes", pn, size)
        self._next(now)
        return size

    def on_probe_lost(self, pn: int, now: float) -> None:
        """Packet ``pn`` (a probe) was declared lost."""
        if pn != self._probe_pn:
            return
        self._probe_pn = None
        self.probes_lost += 1
        if self._tries < self.max_probes:
            log.debug("pmtu: probe pn=%d of %d bytes lost, retrying", pn, self._candidate)
            return
        log.debug("pmtu: %d bytes failed %d probes", self._candidate, self._tries)
        self._high = self._candidate
        self._next(now)

    # -- black holes -----------------------------------------------------------------------

    def on_large_acked(self, size: int, time_sent: float) -> None:
        """A non-probe packet larger than the base, sent at ``time_sent``, was
        acknowledged (the newest such packet of an acknowledgement)."""
        if time_sent >= self._ok_time:
            self._ok_time = time_sent
            self._ok_size = size
        self._suspects = 0

    def on_large_lost(self, size: int, time_sent: float, now: float) -> int | None:
        """A non-probe packet larger than the base was declared lost; returns the base
        size when this makes a black hole (the caller falls back to it)."""
        if self.current <= self.base:
            return None
        if time_sent <= self._ok_time and size <= self._ok_size:
            return None  # a packet at least as large, sent later, got through
        self._suspects += 1
        if self._suspects < BLACK_HOLE_LOSSES:
            return None
        return self._fall_back(now, f"{self._suspects} packets of up to {size} bytes lost")

    def on_pto(self, pto_count: int, now: float) -> int | None:
        """A probe timeout expired, the ``pto_count``-th in a row; returns the base size
        when this makes a black hole."""
        if self.current <= self.base or pto_count < BLACK_HOLE_PTOS:
            return None
        return self._fall_back(now, f"{pto_count} probe timeouts in a row")

    # -- internals -------------------------------------------------------------------------

    def _fall_back(self, now: float, why: str) -> int:
        failed = self.current
        self.black_holes += 1
        self._suspects = 0
        self._ok_time = float("-inf")
        self._ok_size = 0
        self.current = self.base
        log.debug("pmtu: black hole at %d bytes (%s): back to %d", failed, why, self.base)
        self._start_search(self.base, failed, now)
        return self.base

    def _start_search(self, low: int, high: int, now: float) -> None:
        self._low = low
        self._high = high
        self._probe_pn = None
        self._raise_at = None
        self.searches += 1
        self.state = SEARCHING
        self._next(now)

    def _next(self, now: float) -> None:
        """Pick the next candidate, or end the search."""
        self._tries = 0
        low, high = self._low, self._high
        if high - low > SEARCH_PRECISION_BYTES:
            self._candidate = (low + high) // 2
            return
        if high == self.ceiling + 1 and low < self.ceiling:
            # the ceiling itself never failed: try it last rather than stop just below it
            self._candidate = self.ceiling
            return
        self.state = COMPLETE
        self._raise_at = now + self.raise_interval_s if self.current < self.ceiling else None
        log.debug("pmtu: search complete at %d bytes", self.current)
