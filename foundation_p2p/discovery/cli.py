"""The ``discover`` command and the ``--discovery`` options shared with ``node run``.

``foundation-p2p discover [--discovery S] [strategy options] [--explain] [--json]`` resolves
the discovery choice (flags over the ``discovery`` key of ``--config``, default
``"auto"``), prints the resolved configuration with its reasons (``--explain``), runs the
strategies for ``--listen`` seconds without announcing itself, prints the peers found, and
exits. Equivalent lower-level calls: :func:`discovery_from_args`,
:func:`~foundation_p2p.discovery.config.resolve_discovery_table` with :func:`gather_facts`,
then :func:`~foundation_p2p.runtime.discovery.discover_once`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from foundation_p2p.discovery.config import (
    Explanation,
    HostFacts,
    discovery_table,
    resolve_discovery_table,
    strategy_name,
)
from foundation_p2p.errors import ConfigError

DEFAULT_LISTEN_S = 3.0

# flag dest -> (option key, the choices it applies to)
_FLAGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "dns_name": ("name", ("dns",)),
    "dns_record": ("record", ("dns",)),
    "dns_port": ("port", ("dns",)),
    "dns_resolver": ("resolver", ("dns",)),
    "dns_timeout": ("timeout_s", ("dns",)),
    "cluster": ("cluster", ("mdns", "auto")),
    "multicast_group": ("group", ("multicast",)),
    "multicast_port": ("port", ("multicast",)),
    "interface": ("interface", ("mdns", "multicast")),
    "interval": ("interval_s", ("static", "dns", "mdns", "multicast")),
    "service": ("service", ("auto",)),
    "namespace": ("namespace", ("auto",)),
}


def add_discovery_arguments(parser: argparse.ArgumentParser, *, join: bool = True) -> None:
    """Add ``--discovery`` and the strategy options (``node run`` and ``discover``).

    The static strategy's peers are the ``--join`` addresses (peers to contact are always
    ``--join``; ``--seed`` always means a random seed): ``join=False`` for a parser that
    already has ``--join`` (``node run``)."""
    group = parser.add_argument_group("discovery (spec/discovery.md)")
    group.add_argument(
        "--discovery",
        metavar="S",
        help="auto (detect Kubernetes, Consul, a development machine, else multicast), "
        "static, dns, mdns, multicast or none",
    )
    if join:
        group.add_argument(
            "--join", metavar="HOST:PORT", action="append",
            help="static: a peer to contact (repeatable)",
        )
    group.add_argument("--dns-name", metavar="NAME", help="dns: the name to query")
    group.add_argument(
        "--dns-record", metavar="TYPE", type=str.upper, help="dns: A, AAAA or SRV (default SRV)"
    )
    group.add_argument("--dns-port", metavar="P", type=int, help="dns: gossip port for A/AAAA")
    group.add_argument(
        "--dns-resolver", metavar="IP:PORT", help="dns: the DNS server (default: the system's)"
    )
    group.add_argument("--dns-timeout", metavar="S", type=float, help="dns: query timeout")
    group.add_argument("--cluster", metavar="LABEL", help="mdns/auto: the cluster label")
    group.add_argument("--multicast-group", metavar="IP", help="multicast: the group")
    group.add_argument("--multicast-port", metavar="P", type=int, help="multicast: the port")
    group.add_argument("--interface", metavar="IP", help="mdns/multicast: the interface address")
    group.add_argument("--interval", metavar="S", type=float, help="seconds between polls")
    group.add_argument("--service", metavar="NAME", help="auto: the service name to look up")
    group.add_argument("--namespace", metavar="NS", help="auto: the Kubernetes namespace")


def discovery_from_args(
    args: argparse.Namespace, base: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """The ``discovery`` table from the flags, over ``base`` (the TOML's table, if any).

    ``--discovery`` replaces the base choice (and its options); option flags without
    ``--discovery`` add to the base's ``use``. Returns ``None`` when neither says anything.
    Raises ``ConfigError`` for a flag that does not apply to the choice.
    """
    given = {dest: getattr(args, dest) for dest in _FLAGS if getattr(args, dest, None) is not None}
    joins = getattr(args, "join", None)
    choice = getattr(args, "discovery", None)
    if choice is None and not given:
        return dict(base) if base is not None else None
    if choice is not None:
        table: dict[str, Any] = {"use": choice}
    elif base is not None and "use" in base:
        table = dict(base)
    elif base is not None:
        raise ConfigError(
            "--discovery: the configuration gives explicit strategies; option flags cannot "
            "change them (give --discovery S to replace them)"
        )
    else:
        table = {"use": "auto"}
    use = table["use"]
    for dest, value in given.items():
        key, applies = _FLAGS[dest]
        flag = "--" + dest.replace("_", "-")
        if use not in applies:
            raise ConfigError(f"{flag}: applies to {' or '.join(applies)}, not to {use!r}")
        table[key] = value
    if use == "static" and joins and "seeds" not in table:
        table["seeds"] = list(joins)
    return discovery_table(table, where="--discovery")


def gather_facts() -> HostFacts:
    """What the auto mode looks at, read from this process (environment, terminal)."""
    try:
        interactive = sys.stdin.isatty()
    except (AttributeError, ValueError):
        interactive = False
    return HostFacts(dict(os.environ), interactive)


def explain_discovery(table: Mapping[str, Any] | None, facts: HostFacts) -> Explanation:
    """The :class:`Explanation` of a node's ``discovery`` table (``None`` means auto)."""
    return resolve_discovery_table(table or {"use": "auto"}, facts)


def build_discover_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``discover`` command's arguments to ``parser`` (a fresh one or a subparser)."""
    add_discovery_arguments(parser)
    parser.add_argument("--config", metavar="FILE", help="node TOML (its discovery key)")
    parser.add_argument(
        "--cluster-key-file", metavar="F", help="keyring that opens multicast beacons"
    )
    parser.add_argument(
        "--listen",
        metavar="S",
        type=float,
        default=DEFAULT_LISTEN_S,
        help=f"how long to look for peers (default {DEFAULT_LISTEN_S} s; 0: explain only)",
    )
    parser.add_argument(
        "--explain", action="store_true", help="print the resolved configuration and why"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def add_discover_parser(sub: Any) -> None:
    """Register ``discover`` on the ``foundation-p2p`` subparsers (the one-line wiring)."""
    parser = sub.add_parser(
        "discover",
        help="resolve the discovery configuration, print it and the peers found, then exit",
    )
    build_discover_parser(parser)
    parser.set_defaults(func=discover_command)


def discover_main(argv: list[str]) -> int:
    """``foundation-p2p discover ...``: exit 0 if every strategy answered, 1 if one failed,
    2 for a bad configuration."""
    parser = build_discover_parser(
        argparse.ArgumentParser(prog="foundation-p2p discover", description=__doc__)
    )
    return discover_command(parser.parse_args(argv))


def discover_command(args: argparse.Namespace) -> int:
    """Run ``discover`` for parsed arguments (see :func:`discover_main`)."""
    import trio

    from foundation_p2p.config import NodeConfig
    from foundation_p2p.crypto.keyring import Keyring
    from foundation_p2p.runtime.discovery import discover_once

    try:
        base = None
        key_file = args.cluster_key_file
        if args.config:
            node_config = NodeConfig.from_toml(args.config)
            base = node_config.extra.get("discovery")
            key_file = key_file or node_config.cluster_key_file
        table = discovery_from_args(args, base)
        explained = explain_discovery(table, gather_facts())
        needs_key = any(strategy_name(s) == "multicast" for s in explained.config.strategies)
        keyring = Keyring.from_file(key_file) if key_file else None
        if needs_key and keyring is None and args.listen > 0:
            raise ConfigError(
                "multicast: beacons open only with the cluster key: give --cluster-key-file "
                "(or --listen 0 to explain only)"
            )
    except ConfigError as exc:
        print(f"foundation-p2p discover: {exc}", file=sys.stderr)
        return 2
    runner = None
    if args.listen > 0:
        runner = trio.run(
            lambda: discover_once(explained.config, keyring=keyring, listen_s=args.listen)
        )
    peers = {
        k: sorted(f"{h}:{p}" for h, p in v) for k, v in (runner.found if runner else {}).items()
    }
    errors = dict(runner.last_error) if runner else {}
    if args.json:
        out: dict[str, Any] = {"peers": peers, "errors": errors}
        if args.explain:
            out["explain"] = explained.to_mapping()
        print(json.dumps(out, sort_keys=True))
    else:
        if args.explain:
            print(explained.text())
        if args.listen > 0:
            print(f"peers found in {args.listen:g} s:")
            for strategy, addresses in sorted(peers.items()):
                for address in addresses:
                    print(f"  {strategy} {address}")
            if not any(peers.values()):
                print("  (none)")
            for strategy, message in sorted(errors.items()):
                print(f"  error {strategy}: {message}")
    return 1 if errors else 0
