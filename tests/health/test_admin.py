"""The admin endpoint over real 127.0.0.1 sockets: /health, /metrics, 404, 405,
oversized requests, the connection bound, keep-alive and errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from foundation_p2p.counters import Counters
from foundation_p2p.errors import ConfigError
from foundation_p2p.health.prometheus import render
from foundation_p2p.runtime.admin import AdminServer, is_loopback


class Client:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""

    async def request(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        await self.stream.send_all(raw)
        return await self.response(is_head=raw.startswith(b"HEAD "))

    async def response(self, *, is_head: bool = False) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
        n = 0 if is_head else int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    async def closed(self) -> bool:
        with trio.fail_after(5):
            try:
                return await self.stream.receive_some(1) == b""
            except trio.BrokenResourceError:  # reset: the server closed with data unread
                return True


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nhost: localhost\r\n\r\n".encode()


@pytest.fixture
async def server() -> AsyncIterator[AdminServer]:
    calls = {"n": 0}

    def report() -> dict[str, Any]:
        calls["n"] += 1
        return {"status": "healthy", "nodes": [{"name": "n1"}], "calls": calls["n"]}

    srv = AdminServer(report, lambda: render({"packets.received": 7}),
                      max_request_bytes=1024, max_connections=2, request_timeout_s=1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        yield srv
        nursery.cancel_scope.cancel()


async def connect(srv: AdminServer) -> Client:
    return Client(await trio.open_tcp_stream("127.0.0.1", srv.port))


async def test_health_and_metrics_on_one_kept_alive_connection(server: AdminServer) -> None:
    c = await connect(server)
    status, headers, body = await c.request(get("/health"))
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"status": "healthy", "nodes": [{"name": "n1"}], "calls": 1}
    status, headers, body = await c.request(get("/metrics?x=1"))
    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert b"foundation_p2p_packets_received_total 7\n" in body
    status, headers, body = await c.request(get("/health", "HEAD"))
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    assert server.counters["admin.requests"] == 3


async def test_unknown_path_is_404_and_other_methods_405(server: AdminServer) -> None:
    c = await connect(server)
    status, _, body = await c.request(get("/nope"))
    assert status == 404 and b"/health" in body
    status, headers, _ = await c.request(
        b"POST /health HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert server.counters["admin.not_found"] == 1
    assert server.counters["admin.method_not_allowed"] == 1


async def test_oversized_headers_are_refused_431_and_closed(server: AdminServer) -> None:
    c = await connect(server)
    big = b"GET /health HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * 4000 + b"\r\n\r\n"
    status, headers, _ = await c.request(big)
    assert status == 431 and headers["connection"] == "close"
    assert await c.closed()
    assert server.counters["admin.refused_too_large"] == 1


async def test_oversized_body_is_refused_413(server: AdminServer) -> None:
    c = await connect(server)
    status, _, _ = await c.request(
        b"GET /health HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\n\r\n" + b"b" * 5000)
    assert status == 413
    assert await c.closed()


async def test_garbage_is_400(server: AdminServer) -> None:
    c = await connect(server)
    status, _, _ = await c.request(b"HELLO\r\n\r\n")
    assert status == 400
    assert server.counters["admin.bad_request"] == 1


async def test_connections_beyond_the_bound_get_503(server: AdminServer) -> None:
    held = [await connect(server), await connect(server)]
    # both held connections are being served (each is waiting for its request)
    with trio.fail_after(5):
        while server.active < 2:
            await trio.sleep(0.01)
    extra = await connect(server)
    status, _, _ = await extra.response()
    assert status == 503
    assert server.counters["admin.refused_busy"] == 1
    status, _, _ = await held[0].request(get("/health"))
    assert status == 200


async def test_idle_connection_times_out(server: AdminServer) -> None:
    c = await connect(server)
    await c.stream.send_all(b"GET /health HTTP/1.1\r\n")  # never finished
    assert await c.closed()
    assert server.counters["admin.timeouts"] == 1


async def test_a_failing_report_is_500() -> None:
    def boom() -> dict[str, Any]:
        raise RuntimeError("broken")

    counters = Counters()
    srv = AdminServer(boom, lambda: "", counters=counters)
    async with trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        c = await connect(srv)
        status, _, _ = await c.request(get("/health"))
        assert status == 500 and counters["admin.errors"] == 1
        nursery.cancel_scope.cancel()


def test_settings_are_checked_and_loopback_is_recognised() -> None:
    with pytest.raises(ConfigError, match="max_connections"):
        AdminServer(dict, str, max_connections=0)
    with pytest.raises(ConfigError, match="port"):
        AdminServer(dict, str, port=70000)
    assert AdminServer(dict, str).host == "127.0.0.1"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
