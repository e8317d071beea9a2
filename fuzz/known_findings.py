"""Findings of the fuzz targets that are open (the fix is in code this directory does not
own), each with a predicate recognising the inputs that hit it.

``fuzz/atheris_main.py`` and ``tests/fuzz/test_fuzz_targets.py`` skip an input that
matches an open finding, so that a long run keeps looking for *other* findings instead of
stopping at the known one again. The finding itself stays visible: its minimized input is
in ``tests/fuzz/regressions/`` and ``tests/fuzz/test_regressions.py`` replays it against
the unguarded target as a strict xfail naming the finding; once the code is fixed that
test passes unexpectedly (and fails), and the entry here must go.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """One open finding: its id, the target, what goes wrong, and which inputs hit it."""

    id: str
    target: str
    problem: str
    hits: Callable[[bytes], bool]


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _bracketed_non_ipv6(data: bytes) -> bool:
    text = data.decode("utf-8", "replace").strip()
    if not text.startswith("["):
        return False
    host = text[1:].partition("]")[0]
    try:
        return ipaddress.ip_address(host).version != 6
    except ValueError:
        return True


def _mdns_foreign_instance(data: bytes) -> bool:
    from zeroconf import BadTypeInNameException, DNSIncoming, ServiceInfo

    from foundation_p2p.discovery.config import MDNS_SERVICE

    incoming = DNSIncoming(data)
    if not incoming.valid:
        return False
    for r in incoming.answers():
        if r.type == 12 and r.name.lower() == MDNS_SERVICE:
            try:
                ServiceInfo(MDNS_SERVICE, r.alias)  # type: ignore[attr-defined]
            except BadTypeInNameException:
                return True
    return False


def _mdns_srv_port_zero(data: bytes) -> bool:
    from zeroconf import DNSIncoming

    incoming = DNSIncoming(data)
    return incoming.valid and any(
        r.type == 33 and r.port == 0 for r in incoming.answers()  # type: ignore[attr-defined]
    )


def _boot_epoch_at_u64_max(data: bytes) -> bool:
    from foundation_p2p.errors import WireError
    from foundation_p2p.wire import cbor

    if not data or data[0] % 2:
        return False
    try:
        value = cbor.decode(data[1:])
    except WireError:
        return False
    return type(value) is int and value >= (1 << 64) - 1


def _cbor_deeper_than_16(data: bytes) -> bool:
    from foundation_p2p.errors import LimitError, WireError
    from foundation_p2p.wire import cbor

    try:
        cbor.decode(data)
    except LimitError as exc:
        return "nesting" in str(exc)
    except WireError:
        return False
    return False


OPEN: list[Finding] = [
    Finding(
        "config-not-utf8",
        "node-config",
        "NodeConfig.from_toml lets UnicodeDecodeError out of tomllib for a file that is "
        "not UTF-8 (node run --config prints a traceback instead of a ConfigError)",
        _not_utf8,
    ),
    Finding(
        "address-bracketed-host",
        "address",
        "parse_address accepts any text in brackets ('[3:1]:7946', '[]:1') as a host; "
        "format_address cannot write it back and a node would gossip an unusable address",
        _bracketed_non_ipv6,
    ),
    Finding(
        "mdns-foreign-instance",
        "mdns-answer",
        "one mDNS packet whose PTR for _foundation-p2p._udp.local. names an instance of "
        "another type makes zeroconf's BadTypeInNameException escape "
        "_MdnsBrowser.resolve_all, which ends the node's discovery (run_strategy catches "
        "only FoundationError/OSError)",
        _mdns_foreign_instance,
    ),
    Finding(
        "mdns-port-zero",
        "mdns-answer",
        "_MdnsBrowser.resolve_all returns (host, 0) for a peer whose SRV record says port 0 "
        "(the DNS strategy refuses such an answer as malformed; mDNS passes it on to join)",
        _mdns_srv_port_zero,
    ),
    Finding(
        "boot-epoch-overflow",
        "data-dir",
        "a data directory whose boot_epoch file holds 2**64-1 makes NodeCore raise "
        "OverflowError (epoch + 1 does not fit 8 bytes in derive_subkey) instead of a "
        "StorageError naming the file",
        _boot_epoch_at_u64_max,
    ),
    Finding(
        "conf-change-nested-keys",
        "raft-conf-change",
        "decode_conf_change calls cbor2.loads without max_depth, then re-encodes canonically: "
        "a 3 KB entry of maps nested ~100 deep as map keys takes exponential time (a "
        "conf-change entry from the leader stalls every node that applies it)",
        _cbor_deeper_than_16,
    ),
]
"""The open findings (see the module docstring)."""


def known(target: str, data: bytes) -> str | None:
    """The id of the open finding ``data`` hits in ``target``, or None."""
    for finding in OPEN:
        if finding.target == target and finding.hits(data):
            return finding.id
    return None


def guarded(target: str, function: Callable[[bytes], None]) -> Callable[[bytes], None]:
    """``function`` skipping the inputs of ``target``'s open findings."""
    if not any(f.target == target for f in OPEN):
        return function

    def run(data: bytes) -> None:
        if known(target, data) is None:
            function(data)

    run.__name__ = getattr(function, "__name__", target)
    run.__doc__ = function.__doc__
    return run
