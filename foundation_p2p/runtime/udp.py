"""The runtime's UDP socket: binding (IPv4 or IPv6) and address resolution.

The address family follows the bind host: an IPv6 literal (``[::1]:7946``) gives an IPv6
socket, an IPv4 literal an IPv4 one, and a name is resolved and its first address used.
Peer addresses are resolved to numeric form once, before ``NodeCore`` sees them, so
that the address a ping is sent to is the address its answer comes from (``recvfrom``
always reports numeric addresses).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket as stdlib_socket

import trio

from foundation_p2p.addresses import Address, format_address
from foundation_p2p.errors import ConfigError, FoundationError

log = logging.getLogger("foundation_p2p.runtime.udp")

MAX_DATAGRAM_BYTES = 65_535
"""Receive buffer size: the largest UDP payload (larger packets are refused by the core)."""


class BindError(FoundationError):
    """The UDP socket could not be bound; the message names the address and the reason."""

    def __init__(self, message: str, address: Address, errno_value: int | None) -> None:
        super().__init__(message)
        self.address = address
        """The address that could not be bound."""
        self.errno = errno_value
        """The operating system's error number, if any (``errno.EADDRINUSE``...)."""

    @property
    def address_in_use(self) -> bool:
        """True if another socket already holds the address."""
        return self.errno == errno.EADDRINUSE


def _literal_family(host: str) -> int | None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return stdlib_socket.AF_INET6 if ip.version == 6 else stdlib_socket.AF_INET


def _family_version(family: int | None) -> int:
    if family == stdlib_socket.AF_INET:
        return 4
    if family == stdlib_socket.AF_INET6:
        return 6
    return 0


async def resolve(address: Address, family: int | None = None) -> tuple[int, Address]:
    """Resolve ``(host, port)`` to ``(family, numeric address)``; ConfigError names a failure.

    With ``family`` given, only addresses of that family are accepted.
    """
    host, port = address
    lit = _literal_family(host)
    if lit is not None and (family is None or lit == family):
        return lit, (str(ipaddress.ip_address(host)), port)
    try:
        infos = await trio.socket.getaddrinfo(
            host, port, family=family or 0, type=stdlib_socket.SOCK_DGRAM
        )
    except OSError as exc:
        fam = {4: " (IPv4)", 6: " (IPv6)"}.get(_family_version(family), "")
        raise ConfigError(
            f"address {format_address(address)}: cannot resolve{fam}: {exc}"
        ) from None
    fam_found, _, _, _, sockaddr = infos[0]
    return int(fam_found), (str(sockaddr[0]), int(sockaddr[1]))


SOCKET_BUFFER_BYTES = 4 << 20
"""SO_RCVBUF/SO_SNDBUF asked for the node's socket: bursts of datagrams wait there while the
pump is busy (the usual default of ~208 KiB overflowed under bulk Raft traffic on a loaded
machine). The kernel caps it at ``net.core.rmem_max``/``wmem_max``; it is fixed, never
grown by what peers send."""


def grow_buffers(sock: trio.socket.SocketType, size: int) -> None:
    """Ask for ``size``-byte receive and send buffers; what the kernel refuses or caps stays
    as the kernel allows (best effort: never an error)."""
    for opt in (stdlib_socket.SO_RCVBUF, stdlib_socket.SO_SNDBUF):
        try:
            sock.setsockopt(stdlib_socket.SOL_SOCKET, opt, size)
        except OSError:
            log.debug("setsockopt(%s, %d) refused: the kernel's default stays", opt, size)


async def bind_udp(address: Address) -> trio.socket.SocketType:
    """A UDP socket bound to ``address`` (port 0 picks a free port).

    Raises :class:`BindError` (``address_in_use`` when the port is taken) or
    :class:`ConfigError` if the host cannot be resolved.
    """
    family, numeric = await resolve(address)
    sock = trio.socket.socket(family, stdlib_socket.SOCK_DGRAM)
    try:
        if family == stdlib_socket.AF_INET6:
            # An explicit IPv6 bind means IPv6 only; "::" would otherwise also take IPv4.
            sock.setsockopt(stdlib_socket.IPPROTO_IPV6, stdlib_socket.IPV6_V6ONLY, 1)
        await sock.bind(numeric)
        grow_buffers(sock, SOCKET_BUFFER_BYTES)
    except OSError as exc:
        sock.close()
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise BindError(
            f"cannot bind UDP {format_address(address)}: {reason}", address, exc.errno
        ) from None
    return sock


def bound_address(sock: trio.socket.SocketType) -> Address:
    """The address the socket is bound to, as ``(host, port)``."""
    name = sock.getsockname()
    return (str(name[0]), int(name[1]))
