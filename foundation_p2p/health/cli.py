"""``foundation-p2p health``: the cluster's health as an observer reads it from gossip.

The command joins as an observer (never probed, never counted), waits about two health
gossip rounds for every member's summary (members send theirs to one alive observer each
round, ``[health] observer_fanout``), prints the monitor's report and leaves. No RPC is
made: the report is ``node.health.report()`` over what gossip brought.

Equivalent lower-level calls: ``open_node(config)`` with ``[membership] observer = true``,
``node.wait_until(lambda: core.membership.joined)``, ``trio.sleep`` for the rounds, then
``core.health.report(now)`` (``foundation_p2p.health.monitor.HealthMonitor.report``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
from typing import TYPE_CHECKING, Any

import trio

from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.errors import ConfigError, StorageError
from foundation_p2p.health.gossip import HealthGossipConfig
from foundation_p2p.health.monitor import HealthReport
from foundation_p2p.membership.state import MemberState

if TYPE_CHECKING:
    from foundation_p2p.runtime.node import Node

log = logging.getLogger("foundation_p2p.health.cli")

HEALTH_TIMEOUT_S = 5.0
"""Default longest wait for a member to answer the observer's join."""
HEALTH_ROUNDS = 2.5
"""How many health gossip rounds (``interval_s``) the observer listens before printing."""
WATCH_LIMIT = 100_000
"""``--watch`` prints at most this many reports (about a day at one per second)."""


def format_health_table(report: dict[str, Any]) -> str:
    """The report as text: the cluster status, one line per node, then recommendations."""
    rows = [("NAME", "ADDRESS", "STATE", "STATUS", "REASONS")]
    for node in report["nodes"]:
        rows.append((
            node["name"] or node["node_id"][:8], node["address"], node["state"],
            node["status"], "; ".join(node["reasons"]) or "-",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"cluster: {report['status']}" + (
        f" ({'; '.join(report['reasons'])})" if report["reasons"] else "")]
    for row in rows:
        cells = (c.ljust(w) for c, w in zip(row[:4], widths, strict=True))
        lines.append("  ".join(cells) + "  " + row[4])
    for text in report["recommendations"]:
        lines.append(f"recommendation: {text}")
    return "\n".join(lines)


class Observation:
    """What ``observe_health`` saw: the last report (None if no peer answered in time)
    and whether SIGINT/SIGTERM ended it."""

    __slots__ = ("interrupted", "report")

    def __init__(self) -> None:
        self.report: HealthReport | None = None
        self.interrupted = False


async def observe_health(
    config: NodeConfig, keyring: Keyring, timeout_s: float, watch: bool, as_json: bool
) -> Observation:
    """Join as an observer, wait for the summaries, print one report (or one per second
    with ``watch``), then leave.

    SIGINT and SIGTERM are read through ``trio.open_signal_receiver`` for the whole run: a
    signal cancels the observation and the observer still leaves (``open_node``'s exit,
    at most ``leave_timeout_s``). A ``KeyboardInterrupt`` is never raised, so it cannot
    surface inside a task of ``open_node``'s nursery wrapped in an exception group (which
    once made ``health --watch`` exit 1 on SIGINT).
    """
    from foundation_p2p.runtime.node import open_node

    seen = Observation()
    interval = HealthGossipConfig.from_mapping(config.extra.get("health", {})).interval_s
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with (
            open_node(config, keyring=keyring, leave_timeout_s=0.5) as node,
            trio.open_nursery() as nursery,
        ):

            async def stop_on_signal() -> None:
                async for signum in signals:
                    log.info("%s: leaving", signal.Signals(signum).name)
                    seen.interrupted = True
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_signal)
            await _observe(node, seen, interval, timeout_s, watch, as_json)
            nursery.cancel_scope.cancel()
    return seen


async def _observe(
    node: Node, seen: Observation, interval: float, timeout_s: float, watch: bool,
    as_json: bool,
) -> None:
    """The observation itself: join, wait for the summaries, print; ``seen.report``
    holds the last report printed."""
    membership = node.membership
    with trio.move_on_after(timeout_s):
        await node.wait_until(lambda: membership.joined)
    if not membership.joined:
        return

    def every_summary_heard() -> bool:
        heard = node.health.summaries()
        return all(
            m.node_id in heard for m in membership.members()
            if not m.observer and m.node_id != node.node_id and m.state is MemberState.ALIVE
        )

    # members send their summary to one alive observer per round: wait until every
    # alive member's has arrived, for at most HEALTH_ROUNDS rounds (a member whose
    # summary never comes is then reported as such by the monitor)
    log.debug("health: waiting up to %.1f gossip rounds of %.1f s (health.summaries())",
              HEALTH_ROUNDS, interval)
    with trio.move_on_after(HEALTH_ROUNDS * interval):
        await node.wait_until(every_summary_heard)
    for _ in range(WATCH_LIMIT if watch else 1):
        report = node.health.report()
        seen.report = report
        data = report.to_json()
        data["nodes"] = [n for n in data["nodes"] if n["node_id"] != node.node_id.hex()]
        print(json.dumps(data) if as_json else format_health_table(data), flush=True)
        if not watch:
            break
        await trio.sleep(1.0)


def cmd_health(args: argparse.Namespace) -> int:
    """``health``: print the cluster's health as an observer reads it from gossip."""
    from foundation_p2p.cli import UsageError, _prog_error, build_observer_config
    from foundation_p2p.logs import configure_logging
    from foundation_p2p.runtime.udp import BindError

    try:
        if not math.isfinite(args.timeout):
            raise UsageError(f"health: --timeout must be finite, got {args.timeout}")
        config = build_observer_config(args)
        assert config.cluster_key_file is not None
        keyring = Keyring.from_file(config.cluster_key_file)
    except (ConfigError, UsageError) as exc:
        _prog_error(str(exc).replace("members:", "health:", 1))
        return 2
    configure_logging(args.log_level or "WARNING")
    try:
        seen = trio.run(observe_health, config, keyring, args.timeout, args.watch, args.json)
    except KeyboardInterrupt:  # a SIGINT before the signal receiver was installed
        return 0
    except BindError as exc:
        _prog_error(str(exc))
        return 1
    except (ConfigError, StorageError) as exc:
        _prog_error(str(exc))
        return 2
    if seen.interrupted:
        return 0
    if seen.report is None:
        _prog_error(
            f"health: no peer answered within {args.timeout:g} s; is a node running there, "
            "with this cluster key?"
        )
        return 1
    return 0


def add_health_parser(sub: Any) -> None:
    """Register ``foundation-p2p health`` on the top-level subparsers."""
    health = sub.add_parser(
        "health",
        help="print the cluster's health read from gossip (joins as an observer)",
        description=(
            "Join the cluster as an observer, listen to about two health gossip rounds, "
            "print every node with its status (healthy, degraded, critical) and the reasons, "
            "then recommendations. --json prints {status, nodes: [{node_id, name, address, "
            "status, reasons, ...}], recommendations, ...}; --watch repeats every second "
            "until interrupted. Exit status 1 if no peer answered, 2 usage."
        ),
    )
    from foundation_p2p.cli import add_observer_arguments

    add_observer_arguments(
        health, name="health", timeout_s=HEALTH_TIMEOUT_S, json_help="print one JSON object",
        timeout_help="longest wait for a member to answer",
    )
    health.add_argument("--watch", action="store_true", help="print a report every second")
    health.set_defaults(func=cmd_health)
