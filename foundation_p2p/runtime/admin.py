"""The admin HTTP endpoint: ``GET /health`` (JSON report) and ``GET /metrics`` (Prometheus).

Off unless started; loopback (``127.0.0.1``) by default. Served from Trio with ``h11``
(the HTTP/1.1 state machine) doing all parsing; this module only routes and bounds.

:class:`AdminServer` is built from two callables, so wiring it into a node is one line::

    AdminServer(report=lambda: node.health.report().to_json(), metrics=node.metrics_text)

:class:`RuntimeProbe` measures what only the runtime can (event-loop lag, resident
memory, CPU use) into a node's ``health.local_figures``.

The equivalent lower-level calls: ``trio.open_tcp_listeners(port, host=host)`` then, per
connection, an ``h11.Connection(h11.SERVER)`` fed from ``stream.receive_some``.

Routes: ``GET`` (and ``HEAD``) on ``/health`` and ``/metrics``; another method on those
paths is ``405`` with ``Allow: GET, HEAD``; any other path ``404``. A query string is
ignored.

Bounds and their policies (each counted in ``counters`` under ``admin.``):

- **Request size**: the request line and headers at most ``max_request_bytes`` (what h11
  consumed for the request's head, and h11's ``max_incomplete_event_size``; more
  is ``431``), a body at most ``max_request_bytes``
  too (``413``); the connection is closed after either (``admin.refused_too_large``).
- **Concurrency**: at most ``max_connections`` connections are served at once; one more is
  answered ``503`` and closed at once (``admin.refused_busy``).
- **Time**: a request must arrive whole within ``request_timeout_s`` of the previous
  response (or of the connection), else the connection is closed (``admin.timeouts``).
- A malformed request is ``400`` and closed (``admin.bad_request``); an exception in
  ``report()``/``metrics()`` is ``500`` (``admin.errors``), logged with its traceback.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

import h11
import trio

from foundation_p2p.clock import Now
from foundation_p2p.counters import Counters
from foundation_p2p.errors import ConfigError

if TYPE_CHECKING:
    from foundation_p2p.health.monitor import HealthReport
    from foundation_p2p.health.service import HealthService
    from foundation_p2p.health.summary import HealthSummary

log = logging.getLogger("foundation_p2p.admin")

PROMETHEUS_CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
_RECV = 4096


def is_loopback(host: str) -> bool:
    """True for a loopback literal (``127.0.0.0/8``, ``::1``) or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class AdminServer:
    """Serves ``/health`` and ``/metrics``; see the module docstring for routes and bounds.

    ``report()`` returns JSON-ready values; ``metrics()`` returns the exposition text.
    After :meth:`serve` started (``await nursery.start(server.serve)``), :attr:`port`
    holds the bound port (useful with ``port=0``).
    """

    def __init__(
        self,
        report: Callable[[], Mapping[str, Any]],
        metrics: Callable[[], str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_request_bytes: int = 8192,
        max_connections: int = 16,
        request_timeout_s: float = 10.0,
        counters: Counters | None = None,
    ) -> None:
        if max_request_bytes < 256 or max_connections < 1 or not request_timeout_s > 0:
            raise ConfigError(
                "admin: max_request_bytes >= 256, max_connections >= 1 and "
                "request_timeout_s > 0 are required"
            )
        if not 0 <= port <= 65535:
            raise ConfigError(f"admin: port {port} out of range")
        self.report = report
        self.metrics = metrics
        self.host = host
        self.port = port
        self.max_request_bytes = max_request_bytes
        self.max_connections = max_connections
        self.request_timeout_s = request_timeout_s
        self.counters = counters if counters is not None else Counters()
        self.active = 0
        """Connections being served now."""

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled; ``task_status.started(port)`` once bound."""
        if not is_loopback(self.host):
            log.warning("admin endpoint on non-loopback address %s: anyone who reaches it "
                        "can read the node's health and metrics", self.host)
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        log.info("admin endpoint on %s:%d", self.host, self.port)
        async with trio.open_nursery() as nursery:
            task_status.started(self.port)
            await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

    # -- one connection --------------------------------------------------------------

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            if self.active >= self.max_connections:
                self.counters.inc("admin.refused_busy")
                await self._reply_raw(stream, 503, b"busy: too many admin connections\n")
                return
            self.active += 1
            try:
                await self._serve_connection(stream)
            except trio.BrokenResourceError:
                self.counters.inc("admin.disconnected")
            finally:
                self.active -= 1

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_request_bytes)
        while True:
            try:
                with trio.fail_after(self.request_timeout_s):
                    request = await self._read_request(conn, stream)
            except trio.TooSlowError:
                self.counters.inc("admin.timeouts")
                return
            except _Refused as refused:
                await self._send(conn, stream, refused.status, refused.reason.encode() + b"\n",
                                 b"text/plain; charset=utf-8", close=True)
                return
            if request is None:  # the client closed
                return
            method, target = request
            await self._respond(conn, stream, method, target)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _read_request(
        self, conn: h11.Connection, stream: trio.SocketStream
    ) -> tuple[bytes, bytes] | None:
        request: tuple[bytes, bytes] | None = None
        body = 0
        fed = len(conn.trailing_data[0])  # bytes of this request already buffered
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                if status == 431:
                    self.counters.inc("admin.refused_too_large")
                    raise _Refused(431, "request header fields too large") from exc
                self.counters.inc("admin.bad_request")
                raise _Refused(status, f"bad request: {exc}") from exc
            if event is h11.NEED_DATA:
                data = await stream.receive_some(_RECV)
                fed += len(data)
                conn.receive_data(data)  # b"" marks the end of the client's stream
                continue
            if isinstance(event, h11.Request):
                # h11 bounds an incomplete head only; a whole one may arrive in one read
                if fed - len(conn.trailing_data[0]) > self.max_request_bytes:
                    self.counters.inc("admin.refused_too_large")
                    raise _Refused(431, "request header fields too large")
                request = (event.method, event.target)
            elif isinstance(event, h11.Data):
                body += len(event.data)
                if body > self.max_request_bytes:
                    self.counters.inc("admin.refused_too_large")
                    raise _Refused(413, "request body too large")
            elif isinstance(event, h11.EndOfMessage):
                return request
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None

    async def _respond(
        self, conn: h11.Connection, stream: trio.SocketStream, method: bytes, target: bytes
    ) -> None:
        path = target.split(b"?", 1)[0]
        self.counters.inc("admin.requests")
        if path not in (b"/health", b"/metrics"):
            self.counters.inc("admin.not_found")
            await self._send(conn, stream, 404, b"not found: try /health or /metrics\n",
                             b"text/plain; charset=utf-8")
            return
        if method not in (b"GET", b"HEAD"):
            self.counters.inc("admin.method_not_allowed")
            await self._send(conn, stream, 405, b"method not allowed\n",
                             b"text/plain; charset=utf-8", extra=[(b"allow", b"GET, HEAD")])
            return
        try:
            if path == b"/health":
                body = (json.dumps(self.report(), sort_keys=True) + "\n").encode()
                ctype = b"application/json"
            else:
                body = self.metrics().encode()
                ctype = PROMETHEUS_CONTENT_TYPE
        except Exception:
            self.counters.inc("admin.errors")
            log.exception("admin %s failed", path.decode(errors="replace"))
            await self._send(conn, stream, 500, b"internal error\n", b"text/plain; charset=utf-8")
            return
        await self._send(conn, stream, 200, body, ctype, head=method == b"HEAD")

    async def _send(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        status: int,
        body: bytes,
        ctype: bytes,
        *,
        extra: list[tuple[bytes, bytes]] | None = None,
        close: bool = False,
        head: bool = False,
    ) -> None:
        headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
        if close:
            headers.append((b"connection", b"close"))
        headers += extra or []
        try:
            out = conn.send(h11.Response(status_code=status, headers=headers))
            if not head:
                out = (out or b"") + (conn.send(h11.Data(data=body)) or b"")
            out = (out or b"") + (conn.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:
            # h11 cannot answer in this state (e.g. the request was unparseable): raw reply
            await self._reply_raw(stream, status, body)
            return
        await stream.send_all(out)

    async def _reply_raw(self, stream: trio.SocketStream, status: int, body: bytes) -> None:
        """A complete ``connection: close`` response written without h11 (a refusal before
        any request was read, or one h11's state no longer allows)."""
        reason = _REASONS.get(status, b"Error")
        head = b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n" \
            b"content-length: %d\r\nconnection: close\r\n\r\n" % (status, reason, len(body))
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(head + body)


_REASONS = {400: b"Bad Request", 413: b"Content Too Large",
            431: b"Request Header Fields Too Large", 500: b"Internal Server Error",
            503: b"Service Unavailable"}


def resident_kib() -> int | None:
    """Resident memory of this process in KiB (Linux ``/proc/self/statm``), else None."""
    try:
        with open("/proc/self/statm", "rb") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


class RuntimeProbe:
    """Measures event-loop lag, resident memory and CPU use into ``figures``.

    Every ``interval_s`` it sleeps and measures how late it woke (the lag any task on the
    loop suffers); ``figures["loop_lag_ms"]`` is the largest lag of the last ``window``
    wake-ups (a bounded deque), so a spike stays visible for about ``window *
    interval_s``. ``figures["rss_kib"]`` is the resident memory when the platform tells it;
    ``figures["cpu_permille"]`` the process's CPU time per 1000 of wall time since the
    previous wake-up. Pass a node's ``health.local_figures`` as ``figures``.
    """

    def __init__(
        self, figures: MutableMapping[str, int], *, interval_s: float = 0.25, window: int = 4
    ) -> None:
        if not interval_s > 0 or window < 1:
            raise ConfigError("runtime probe: interval_s > 0 and window >= 1 are required")
        self.figures = figures
        self.interval_s = interval_s
        self.lags: deque[float] = deque(maxlen=window)

    def sample(self, lag_s: float, cpu_s: float, wall_s: float) -> None:
        """Record one wake-up: its lag, and the CPU and wall time since the previous."""
        self.lags.append(max(0.0, lag_s))
        self.figures["loop_lag_ms"] = round(max(self.lags) * 1000)
        if wall_s > 0:
            self.figures["cpu_permille"] = round(1000 * cpu_s / wall_s)
        rss = resident_kib()
        if rss is not None:
            self.figures["rss_kib"] = rss

    async def run(self) -> None:
        """Measure until cancelled."""
        cpu0, wall0 = time.process_time(), trio.current_time()
        while True:
            due = trio.current_time() + self.interval_s
            await trio.sleep_until(due)
            now = trio.current_time()
            cpu = time.process_time()
            self.sample(now - due, cpu - cpu0, now - wall0)
            cpu0, wall0 = cpu, now


class RuntimeHealth:
    """``node.health`` of the Trio runtime: the core's
    :class:`~foundation_p2p.health.service.HealthService` read at the machine's clock.

    Equivalent lower-level calls: ``core.health.report(machine_now())``,
    ``core.health.metrics_text(machine_now())``, ``core.health.gossip.summaries()``.
    """

    def __init__(self, service: HealthService, clock: Callable[[], Now]) -> None:
        self.service = service
        self.clock = clock
        self.local_figures = service.local_figures
        """The runtime's figures (what :class:`RuntimeProbe` writes)."""

    def report(self) -> HealthReport:
        """The typed health report now (no network round trip)."""
        return self.service.report(self.clock())

    def report_json(self) -> dict[str, Any]:
        """:meth:`report` as JSON-ready values (what ``GET /health`` answers)."""
        return self.service.report(self.clock()).to_json()

    def metrics_text(self) -> str:
        """The Prometheus exposition (what ``GET /metrics`` answers)."""
        return self.service.metrics_text(self.clock())

    def summaries(self) -> dict[bytes, HealthSummary]:
        """The latest gossiped summary of every node held (ours included)."""
        return self.service.gossip.summaries()

    def admin_server(self, host: str = "127.0.0.1", port: int = 0, **bounds: Any) -> AdminServer:
        """An :class:`AdminServer` answering this node's /health and /metrics."""
        return AdminServer(self.report_json, self.metrics_text, host=host, port=port,
                           counters=self.service.core.counters, **bounds)
