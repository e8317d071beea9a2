"""Helpers of the discovery tests: a real dnsmasq on 127.0.0.1, network namespaces."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

DNSMASQ = shutil.which("dnsmasq") or (
    "/usr/sbin/dnsmasq" if os.path.exists("/usr/sbin/dnsmasq") else None
)


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Dnsmasq:
    """A dnsmasq serving only the records written by :meth:`serve` on 127.0.0.1:``port``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_udp_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def serve(self, hosts: dict[str, str], srv: list[tuple[str, str, int]]) -> None:
        """(Re)start with these A records (name -> IPv4) and SRV records (name, target, port)."""
        self.stop()
        lines = [
            "no-resolv",
            "no-hosts",
            "bind-interfaces",
            "listen-address=127.0.0.1",
            f"port={self.port}",
            "local=/test/",
        ]
        lines += [f"host-record={name},{ip}" for name, ip in hosts.items()]
        lines += [f"srv-host={name},{target},{port}" for name, target, port in srv]
        conf = self.workdir / "dnsmasq.conf"
        conf.write_text("\n".join(lines) + "\n")
        assert DNSMASQ is not None
        self.proc = subprocess.Popen(
            [
                DNSMASQ,
                "--keep-in-foreground",
                f"--conf-file={conf}",
                "--user=root",
                f"--pid-file={self.workdir / 'dnsmasq.pid'}",
                "--log-facility=-",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        import dns.resolver

        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        resolver.lifetime = 0.2
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"dnsmasq exited: {err}")
            try:
                resolver.resolve("ready-probe.test", "A", search=False)
                return
            except dns.resolver.NXDOMAIN:
                return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("dnsmasq did not answer within 5 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None


@pytest.fixture
def dnsmasq(tmp_path: Path) -> Iterator[Dnsmasq]:
    if DNSMASQ is None:
        pytest.skip("dnsmasq is not installed (apt-get install dnsmasq-base; .ci/run does it)")
    server = Dnsmasq(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def can_make_netns() -> str | None:
    """None if this process can create network namespaces, else the reason it cannot."""
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    name = f"fp2p-probe-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh network namespace with only a loopback that carries multicast.

    Multicast sent inside it (224.0.0.251 for mDNS, the beacon group) cannot leave it: it
    has no other interface.
    """
    reason = can_make_netns()
    if reason is not None:
        pytest.skip(reason)
    name = f"fp2p-disc-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "link", "set", "lo", "multicast", "on"],
            ["ip", "route", "add", "224.0.0.0/4", "dev", "lo"],
        ):
            subprocess.run(["ip", "netns", "exec", name, *cmd], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
