"""Addresses and node ids, and their parsing from ``HOST:PORT`` text."""

from __future__ import annotations

import ipaddress

from foundation_p2p.errors import ConfigError

Address = tuple[str, int]
"""A UDP address as ``(host, port)``; IPv6 hosts are written without brackets."""

NodeId = bytes
"""A node id: 16 bytes derived from the node's Ed25519 public key (``spec/wire.md``)."""

NODE_ID_BYTES = 16


def parse_address(text: str, *, what: str = "address") -> Address:
    """Parse ``HOST:PORT`` or ``[V6HOST]:PORT`` into an :data:`Address`.

    Raises :class:`ConfigError` naming ``what`` and the problem.
    """
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ConfigError(f"{what}: {text!r} is not [HOST]:PORT")
        try:
            if ipaddress.ip_address(host).version != 6:
                raise ValueError(host)
        except ValueError:
            raise ConfigError(f"{what}: {text!r}: only an IPv6 address goes in brackets") from None
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ConfigError(f"{what}: {text!r} is not HOST:PORT")
        if ":" in host:
            raise ConfigError(f"{what}: {text!r}: write IPv6 hosts as [HOST]:PORT")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{what}: port {port_text!r} in {text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{what}: port {port} in {text!r} is out of range 0..65535")
    return (host, port)


def format_address(addr: Address) -> str:
    """Format an :data:`Address` as ``HOST:PORT`` (``[HOST]:PORT`` for IPv6)."""
    host, port = addr
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def short_id(node_id: NodeId) -> str:
    """The first 8 hex digits of a node id, for logs."""
    return node_id.hex()[:8]
