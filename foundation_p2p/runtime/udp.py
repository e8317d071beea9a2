"""The runtime's UDP socket: binding (IPv4 or IPv6) and address resolution.

The address family follows the bind host: an IPv6 literal (``[::1]:7946``) gives an IPv6
socket, an IPv4 literal an IPv4 one, and a name is resolved and its first address used.
Peer addresses are resolved to numeric form once, before ``NodeCore`` sees them, so
that the address a ping is sent to is the address its answer comes from (``recvfrom``
always reports numeric addresses).

The socket is created non-blocking with big buffers and "don't fragment, probe" set
(:func:`bind_udp_socket`): an oversize datagram is refused (``EMSGSIZE``, counted by the
runtime) or lost, never fragmented, which the transport's path-MTU probing needs.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket as stdlib_socket
import sys

import trio

from foundation_p2p.addresses import Address, format_address
from foundation_p2p.errors import ConfigError, FoundationError

log = logging.getLogger("foundation_p2p.runtime.udp")

MAX_DATAGRAM_BYTES = 65_535
"""Size asked of each ``recvfrom``: every UDP datagram fits whole (IPv4 payloads are at most
65,507 bytes; what the core does not accept it drops and counts), so nothing is truncated."""


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


def grow_buffers(sock: stdlib_socket.socket | trio.socket.SocketType, size: int) -> None:
    """Ask for ``size``-byte receive and send buffers; what the kernel refuses or caps stays
    as the kernel allows (best effort: never an error)."""
    for opt in (stdlib_socket.SO_RCVBUF, stdlib_socket.SO_SNDBUF):
        try:
            sock.setsockopt(stdlib_socket.SOL_SOCKET, opt, size)
        except OSError:
            log.debug("setsockopt(%s, %d) refused: the kernel's default stays", opt, size)


IP_MTU_DISCOVER = getattr(
    stdlib_socket, "IP_MTU_DISCOVER", 10 if sys.platform.startswith("linux") else None
)
"""The IPv4 socket option choosing the "don't fragment" policy (Linux ``<linux/in.h>``:
10; Python 3.11 does not export it). ``None`` where unknown: the option is skipped."""
IPV6_MTU_DISCOVER = getattr(
    stdlib_socket, "IPV6_MTU_DISCOVER", 23 if sys.platform.startswith("linux") else None
)
"""The IPv6 counterpart (Linux ``<linux/in6.h>``: 23); ``None`` where unknown."""
PMTUDISC_PROBE = getattr(
    stdlib_socket, "IP_PMTUDISC_PROBE", 3 if sys.platform.startswith("linux") else None
)
"""``IP_PMTUDISC_PROBE``/``IPV6_PMTUDISC_PROBE`` (3 on Linux for both): the kernel sets
"don't fragment" and ignores its path-MTU cache, so an oversize datagram is refused at once
(``sendto`` raises ``EMSGSIZE``, above the interface MTU) or dropped on the path, never
fragmented. The transport's path-MTU probing (DPLPMTUD) relies on that."""


def set_dont_fragment(sock: stdlib_socket.socket | trio.socket.SocketType) -> bool:
    """Set "don't fragment, probe" (``IP_MTU_DISCOVER`` / ``IPV6_MTU_DISCOVER`` =
    ``PMTUDISC_PROBE``) on a UDP socket; False (and a debug line) where the platform lacks
    the option or refuses it. Best effort: never an error."""
    if sock.family == stdlib_socket.AF_INET6:
        level, opt = stdlib_socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER
    else:
        level, opt = stdlib_socket.IPPROTO_IP, IP_MTU_DISCOVER
    if opt is None or PMTUDISC_PROBE is None:
        log.debug("no MTU_DISCOVER option on %s: datagrams may be fragmented", sys.platform)
        return False
    try:
        sock.setsockopt(level, opt, PMTUDISC_PROBE)
    except OSError as exc:
        log.debug("setsockopt(%d, %d, %d) refused: %s", level, opt, PMTUDISC_PROBE, exc)
        return False
    return True


SOL_UDP = getattr(stdlib_socket, "SOL_UDP", 17)
"""The UDP protocol level of socket options (``IPPROTO_UDP``)."""
UDP_SEGMENT = getattr(
    stdlib_socket, "UDP_SEGMENT", 103 if sys.platform.startswith("linux") else None
)
"""Linux UDP generic segmentation offload (``<linux/udp.h>``: 103, Linux 4.18+): one
``sendmsg`` carries several datagrams of one size to one address, the kernel (or the
network card) cuts them apart. ``None`` where unknown."""
GSO_MAX_SEGMENTS = 64
"""Datagrams one segmentation-offload send carries at most (the kernel's
``UDP_MAX_SEGMENTS``)."""
GSO_MAX_BYTES = 65_507
"""Bytes one segmentation-offload send carries at most (one IPv4 UDP payload)."""


def supports_gso(sock: stdlib_socket.socket | trio.socket.SocketType) -> bool:
    """True if the kernel knows UDP segmentation offload (``UDP_SEGMENT``) on ``sock``:
    reading the option works (Linux 4.18+). Best effort: never an error."""
    if UDP_SEGMENT is None:
        return False
    try:
        sock.getsockopt(SOL_UDP, UDP_SEGMENT)
    except OSError:
        return False
    return True


async def bind_udp_socket(address: Address) -> stdlib_socket.socket:
    """A non-blocking standard-library UDP socket bound to ``address`` (port 0 picks a free
    port), with big buffers (:data:`SOCKET_BUFFER_BYTES`) and "don't fragment"
    (:func:`set_dont_fragment`).

    The runtime's pump reads and writes it directly (``recvfrom``/``sendto`` until
    ``BlockingIOError``) and waits with ``trio.lowlevel.wait_readable``/``wait_writable``;
    ``trio.socket.from_stdlib_socket`` wraps the same object for Trio code. Raises
    :class:`BindError` (``address_in_use`` when the port is taken) or :class:`ConfigError`
    if the host cannot be resolved.
    """
    family, numeric = await resolve(address)
    sock = stdlib_socket.socket(family, stdlib_socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if family == stdlib_socket.AF_INET6:
            # An explicit IPv6 bind means IPv6 only; "::" would otherwise also take IPv4.
            sock.setsockopt(stdlib_socket.IPPROTO_IPV6, stdlib_socket.IPV6_V6ONLY, 1)
        sock.bind(numeric)
        grow_buffers(sock, SOCKET_BUFFER_BYTES)
        set_dont_fragment(sock)
    except OSError as exc:
        sock.close()
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise BindError(
            f"cannot bind UDP {format_address(address)}: {reason}", address, exc.errno
        ) from None
    return sock


async def bind_udp(address: Address) -> trio.socket.SocketType:
    """A Trio UDP socket bound to ``address``: :func:`bind_udp_socket` wrapped by
    ``trio.socket.from_stdlib_socket``. Same errors."""
    return trio.socket.from_stdlib_socket(await bind_udp_socket(address))


def is_numeric_host(host: str) -> bool:
    """True if ``host`` is an IPv4 or IPv6 literal (sending to it needs no name lookup)."""
    return _literal_family(host) is not None


def bound_address(sock: trio.socket.SocketType) -> Address:
    """The address the socket is bound to, as ``(host, port)``."""
    name = sock.getsockname()
    return (str(name[0]), int(name[1]))
