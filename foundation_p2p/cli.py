"""The ``foundation-p2p`` command: ``keygen``, ``node run``, ``members``, ``kv``,
``check-history``, ``health``, ``discover`` and ``sim``.

Exit status: 0 success (``node run``: left gracefully on SIGINT/SIGTERM); 1 a runtime
failure (the port is in use, the node crashed; ``members``: no peer answered); 2 bad
usage: unknown flags (argparse), an unreadable or malformed key file, an invalid
configuration or data directory, an ``--app`` that cannot be imported; 130 interrupted by
SIGINT (a command without a graceful stop of its own: ``members``, ``kv``, ``discover``,
``sim``, ``check-history``). Each failure prints one line naming the problem on stderr.
``--seed`` is reserved for random seeds (the simulator) and peers to contact are always
given with ``--join``.

``check-history`` has its own statuses: 0 linearizable, 1 not linearizable, 2 bad input or
usage, 3 unknown (the step or time budget ran out first). ``kv`` exits 3 when its
request timed out after it was sent (it may or may not have been applied).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from foundation_p2p import __version__
from foundation_p2p.addresses import Address, format_address, parse_address
from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring, key_id
from foundation_p2p.discovery.cli import (
    add_discover_parser,
    add_discovery_arguments,
    discovery_from_args,
)
from foundation_p2p.errors import ConfigError, StorageError
from foundation_p2p.health.cli import add_health_parser
from foundation_p2p.history import MODELS, Budget, Verdict, check, load_history
from foundation_p2p.history.checker import DEFAULT_MAX_STEPS
from foundation_p2p.history.model import HistoryFormatError
from foundation_p2p.logs import configure_logging, log_event
from foundation_p2p.membership.config import MembershipConfig
from foundation_p2p.membership.state import Member
from foundation_p2p.runtime import BindError, MemoryStore, open_node

log = logging.getLogger("foundation_p2p.cli")

LEAVE_TIMEOUT_S = 2.0
"""How long ``node run`` may spend leaving after SIGINT/SIGTERM."""


class UsageError(Exception):
    """A problem the user must fix (exit status 2); the message names it."""


def _prog_error(message: str) -> None:
    print(f"foundation-p2p: error: {message}", file=sys.stderr, flush=True)


# -- keygen ----------------------------------------------------------------------------


def cmd_keygen(args: argparse.Namespace) -> int:
    """Write a new keyring (one fresh primary key) to ``--out`` with mode 0600."""
    path: str = args.out
    text = Keyring.generate(os.urandom).to_text()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    if args.force:
        # Write beside it, then rename over it: the old file is never half-overwritten.
        target = path
        path = f"{path}.tmp-{os.getpid()}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        _prog_error(f"{path}: already exists; use --force to replace it")
        return 2
    except OSError as exc:
        _prog_error(f"{path}: cannot create: {exc.strerror}")
        return 2
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(path, 0o600)
        if args.force:
            os.replace(path, target)
            path = target
    except OSError as exc:
        _prog_error(f"{path}: cannot write: {exc.strerror}")
        return 2
    ring = Keyring.from_text(text, source=path)
    print(f"wrote keyring {path} (primary key id {key_id(ring.primary):#010x})", flush=True)
    return 0


# -- node run --------------------------------------------------------------------------


def build_config(args: argparse.Namespace) -> NodeConfig:
    """The node's configuration: ``--config`` file (if any) overridden by the flags."""
    for flag in ("bind", "advertise"):
        if getattr(args, flag) is not None:
            parse_address(getattr(args, flag), what=f"--{flag}")
    for text in args.join or ():
        parse_address(text, what="--join")
    base = NodeConfig.from_toml(args.config) if args.config else NodeConfig()
    table: dict[str, Any] = {}
    for flag in ("bind", "advertise", "cluster_key_file", "data_dir", "name", "app"):
        value = getattr(args, flag)
        if value is not None:
            table[flag] = value
    if args.join:
        table["join"] = list(args.join)
    if args.log_level is not None:
        table["log_level"] = args.log_level.upper()
    discovery = discovery_from_args(args, base.extra.get("discovery"))
    if discovery is not None:
        table["discovery"] = discovery
    config = base.with_overrides(table, source="command line")
    if args.bind is None and not args.config:
        raise UsageError("node run: --bind HOST:PORT is required (or bind in the --config file)")
    if config.cluster_key_file is None:
        raise UsageError(
            "node run: --cluster-key-file F is required (or cluster_key_file in --config); "
            "create one with `foundation-p2p keygen --out F`"
        )
    MembershipConfig.from_node_config(config)  # a bad [membership] table, named, before start
    return config


def load_app(spec: str) -> Callable[..., Awaitable[Any]]:
    """Import ``module:callable``; :class:`UsageError` names what is wrong."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"--app {spec!r}: expected module:callable")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    if importlib.util.find_spec(module_name) is None:
        raise UsageError(f"--app {spec!r}: no module named {module_name!r}")
    module = importlib.import_module(module_name)
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise UsageError(f"--app {spec!r}: {module_name} has no attribute {attr!r}") from None
    if not callable(target):
        raise UsageError(f"--app {spec!r}: {attr} is not callable")
    return target  # type: ignore[no-any-return]


def _is_wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::")


def parse_admin(text: str | None) -> tuple[str, int] | None:
    """``--admin HOST:PORT`` (``:PORT`` means 127.0.0.1); None when not given."""
    if text is None:
        return None
    if text.startswith(":"):
        text = "127.0.0.1" + text
    return parse_address(text, what="--admin")


async def run_node(
    config: NodeConfig,
    keyring: Keyring,
    app: Callable[..., Awaitable[Any]] | None,
    admin: tuple[str, int] | None = None,
) -> int:
    """Run the node until SIGINT or SIGTERM; print the ready line; log every event.

    The ``join`` peers are contacted only once the event subscription exists, so the
    event lines of the join itself (``MemberJoined`` ...) are not missed.
    """
    join = config.join
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with (
            open_node(
                config.replace(join=()), keyring=keyring, leave_timeout_s=LEAVE_TIMEOUT_S,
                admin=admin,
            ) as node,
            node.events() as events,
            trio.open_nursery() as nursery,
        ):
            if join:
                await node.join(join)

            async def log_events() -> None:
                async for event in events:
                    log_event(event)

            nursery.start_soon(log_events)
            # discovery (the `discovery` key or --discovery) runs inside open_node
            if config.advertise is None and _is_wildcard(node.address[0]):
                log.warning(
                    "bound to the wildcard %s without --advertise: peers cannot use that "
                    "address; pass --advertise HOST:PORT",
                    node.address[0],
                )
            if app is not None:
                node.start_service(app, node, name=config.app)
            print(
                f"ready node_id={node.node_id.hex()} name={node.name} "
                f"address={format_address(node.address)} "
                f"advertise={format_address(node.advertised)} epoch={node.boot_epoch}"
                + (f" admin=http://{admin[0]}:{node.admin_port}" if admin is not None else ""),
                flush=True,
            )
            async for signum in signals:
                log.info("%s: leaving", signal.Signals(signum).name)
                break
            nursery.cancel_scope.cancel()
        counters = " ".join(f"{k}={v}" for k, v in node.counters.snapshot().items())
        log.info("left; counters: %s", counters or "(none)")
    return 0


def cmd_node_run(args: argparse.Namespace) -> int:
    """``node run``: one node over real UDP until SIGINT/SIGTERM."""
    try:
        config = build_config(args)
        assert config.cluster_key_file is not None
        keyring = Keyring.from_file(config.cluster_key_file)
        app = load_app(config.app) if config.app else None
        admin = parse_admin(args.admin)
    except (ConfigError, UsageError) as exc:
        _prog_error(str(exc))
        return 2
    configure_logging(config.log_level)
    try:
        return trio.run(run_node, config, keyring, app, admin)
    except BindError as exc:
        _prog_error(str(exc))
        return 1
    except (ConfigError, StorageError) as exc:
        _prog_error(str(exc))
        return 2


# -- members ---------------------------------------------------------------------------

MEMBERS_TIMEOUT_S = 5.0
"""Default longest wait of ``members`` for the cluster's state."""
MEMBERS_LEAVE_TIMEOUT_S = 0.5
"""How long ``members`` may spend announcing its leave."""


def source_address_for(target: Address) -> str:
    """The local IP this machine would send from to reach ``target`` (no packet is sent).

    Raises :class:`UsageError` if ``target``'s host cannot be resolved or reached.
    """
    host, port = target
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise UsageError(
            f"--join {format_address(target)}: cannot resolve: {exc.strerror}"
        ) from None
    family, _, _, _, sockaddr = infos[0]
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(sockaddr)
        except OSError as exc:
            raise UsageError(
                f"--join {format_address(target)}: no route: {exc.strerror}"
            ) from None
        return str(probe.getsockname()[0])


def build_observer_config(args: argparse.Namespace) -> NodeConfig:
    """The observer's configuration: ``--config`` (if any), ``[membership] observer = true``,
    a free port on the address that reaches the first ``--join`` peer (or ``--bind``)."""
    if not args.join:
        raise UsageError("members: --join HOST:PORT is required")
    joins = [parse_address(text, what="--join") for text in args.join]
    if args.bind is not None:
        parse_address(args.bind, what="--bind")
    if args.timeout <= 0:
        raise UsageError(f"members: --timeout must be positive, got {args.timeout}")
    base = NodeConfig.from_toml(args.config) if args.config else NodeConfig()
    membership = dict(base.extra.get("membership", {}))
    membership["observer"] = True
    MembershipConfig.from_mapping(membership)  # a bad table is reported here, by name
    table: dict[str, Any] = {
        "join": [format_address(a) for a in joins],
        "membership": membership,
        "name": args.name,
    }
    if args.cluster_key_file is not None:
        table["cluster_key_file"] = args.cluster_key_file
    if args.bind is not None:
        table["bind"] = args.bind
    elif args.config is None or base.bind == NodeConfig().bind:
        table["bind"] = format_address((source_address_for(joins[0]), 0))
    config = base.with_overrides(table, source="command line")
    if config.cluster_key_file is None:
        raise UsageError(
            "members: --cluster-key-file F is required (or cluster_key_file in --config)"
        )
    return config


def member_record(member: Member) -> dict[str, Any]:
    """One member as the JSON object ``members --json`` prints."""
    return {
        "node_id": member.node_id.hex(),
        "name": member.name,
        "address": format_address(member.address),
        "state": member.state.name.lower(),
        "incarnation": member.incarnation,
        "metadata_hex": member.metadata.hex(),
        "observer": member.observer,
    }


def format_members_table(records: list[dict[str, Any]]) -> str:
    """The members as an aligned text table (one header line, one line per member)."""
    header = ["NODE_ID", "NAME", "ADDRESS", "STATE", "INCARNATION", "METADATA"]
    rows = [header]
    for r in records:
        meta = r["metadata_hex"]
        meta_text = "-" if not meta else (meta if len(meta) <= 32 else f"{len(meta) // 2} bytes")
        state = r["state"] + (" (observer)" if r["observer"] else "")
        rows.append(
            [r["node_id"], r["name"] or "-", r["address"], state, str(r["incarnation"]), meta_text]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    )


async def observe_members(
    config: NodeConfig, keyring: Keyring, timeout_s: float
) -> list[Member] | None:
    """Join as an observer, wait for the cluster's state (or ``timeout_s``), leave.

    Returns the other members as this observer sees them, or None if no peer answered.
    Equivalent lower-level calls: ``open_node(config)`` with ``[membership] observer =
    true`` (which gives ``Join(config.join)``: a push-pull with each seed, retried at a
    backoff), ``node.wait_until(lambda: core.membership.joined)`` (a seed answered with
    its state), ``core.membership.members()``, then closing the node (a ``Leave``).
    """
    async with open_node(
        config, keyring=keyring, store=MemoryStore(), leave_timeout_s=MEMBERS_LEAVE_TIMEOUT_S
    ) as node:
        membership = node.membership
        with trio.move_on_after(timeout_s):
            await node.wait_until(lambda: membership.joined)
        if not membership.joined:
            return None
        return [m for m in node.members() if m.node_id != node.node_id]


def cmd_members(args: argparse.Namespace) -> int:
    """``members``: print the cluster's membership as an observer sees it."""
    try:
        config = build_observer_config(args)
        assert config.cluster_key_file is not None
        keyring = Keyring.from_file(config.cluster_key_file)
    except (ConfigError, UsageError) as exc:
        _prog_error(str(exc))
        return 2
    configure_logging(args.log_level or "WARNING")
    try:
        members = trio.run(observe_members, config, keyring, args.timeout)
    except BindError as exc:
        _prog_error(str(exc))
        return 1
    except (ConfigError, StorageError) as exc:
        _prog_error(str(exc))
        return 2
    if members is None:
        joined = ", ".join(format_address(a) for a in config.join)
        _prog_error(
            f"members: no peer answered within {args.timeout:g} s ({joined}); is a node "
            "running there, with this cluster key?"
        )
        return 1
    records = [member_record(m) for m in members]
    if args.json:
        print(json.dumps(records, indent=None), flush=True)
    else:
        print(format_members_table(records), flush=True)
    return 0


# -- kv ------------------------------------------------------------------------------

KV_EXIT_INDETERMINATE = 3
"""``kv``'s exit status when the request timed out after it was sent (it may or may not
have been applied)."""


async def kv_request(
    config: NodeConfig, keyring: Keyring, op: str, payload: bytes, timeout_s: float
) -> tuple[str, bytes | None]:
    """Join as an observer, send one request to the Raft group, leave; ``(status, value)``.

    ``status`` is ``ok`` (``value`` is the KV result), ``no_members`` (no peer answered,
    or none announces itself a Raft member), ``indeterminate`` or a definite failure.
    Equivalent lower-level calls: ``open_node`` with ``[membership] observer = true``,
    ``eligible_members(core.membership.members())``, ``ConsensusClient(node_id,
    messenger=core.messenger, ...)``, ``client.request(now, op, payload)`` then
    ``client.take_outcomes()`` (``client.handle_timer`` at the deadline).
    """
    from foundation_p2p.consensus.client import ConsensusClient
    from foundation_p2p.consensus.subsystem import eligible_members
    from foundation_p2p.runtime.node import machine_now

    async with open_node(
        config, keyring=keyring, store=MemoryStore(), leave_timeout_s=MEMBERS_LEAVE_TIMEOUT_S
    ) as node:
        core = node.core
        with trio.move_on_after(timeout_s):
            await node.wait_until(lambda: bool(eligible_members(core.membership.members())))
        members = eligible_members(core.membership.members())
        if not members:
            return "no_members", None
        # the member it joined through answered just now: ask it first (a member that
        # failed a moment ago may still be listed alive and would cost the whole timeout)
        by_address = {m.address: m.node_id for m in core.membership.members()}
        first = [by_address[a] for a in config.join if by_address.get(a) in members]
        members = first + [m for m in members if m not in first]
        client = ConsensusClient(
            core.node_id, messenger=core.messenger, members=members,
            counters=core.counters, timeout_s=timeout_s,
        )
        rid = client.request(machine_now(), op, payload)
        node.wake()
        got: list[Any] = []

        def answered() -> bool:
            got.extend(o for o in client.take_outcomes() if o.request_id == rid)
            return bool(got)

        with trio.move_on_after(timeout_s + 0.1):
            await node.wait_until(answered)
        if not got:
            # the client's own deadline has passed: as client.handle_timer would report it
            return ("indeterminate" if op == "propose" else "dropped"), None
        outcome = got[0]
        return outcome.status, outcome.value


def kv_command(args: argparse.Namespace) -> tuple[str, bytes]:
    """The op (``propose``/``read``) and KV command of ``kv get|put|cas|delete``."""
    from foundation_p2p.consensus import kv

    key = args.key.encode()
    if args.kv_command == "get":
        return "read", kv.encode_get(key)
    if args.kv_command == "put":
        return "propose", kv.encode_put(key, args.value.encode())
    if args.kv_command == "delete":
        return "propose", kv.encode_delete(key)
    expected = None if args.expected == "-" else args.expected.encode()
    new = None if args.new == "-" else args.new.encode()
    return "propose", kv.encode_cas(key, expected, new)


def _text(value: Any) -> str | None:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else None


def cmd_kv(args: argparse.Namespace) -> int:
    """``kv``: one KV operation against the cluster's Raft group, as an observer."""
    from foundation_p2p.consensus import kv

    try:
        config = build_observer_config(args)
        assert config.cluster_key_file is not None
        keyring = Keyring.from_file(config.cluster_key_file)
        op, payload = kv_command(args)
    except (ConfigError, UsageError) as exc:
        _prog_error(str(exc))
        return 2
    configure_logging(args.log_level or "WARNING")
    try:
        status, value = trio.run(kv_request, config, keyring, op, payload, args.timeout)
    except BindError as exc:
        _prog_error(str(exc))
        return 1
    except (ConfigError, StorageError) as exc:
        _prog_error(str(exc))
        return 2
    if status == "no_members":
        _prog_error(
            f"kv: no Raft member found within {args.timeout:g} s (is a node with a "
            "[consensus] table running there, with this cluster key?)"
        )
        return 1
    if status == "indeterminate":
        _prog_error("kv: timed out: the operation may or may not have been applied")
        return KV_EXIT_INDETERMINATE
    if status != "ok" or value is None:
        _prog_error(f"kv: failed: {status}")
        return 1
    result = kv.decode_result(value)
    if not result.ok:
        _prog_error(f"kv: refused: {result.status.name}")
        return 1
    record: dict[str, Any] = {"op": args.kv_command, "key": args.key}
    if args.kv_command == "cas":
        swapped, current = result.value
        record.update(swapped=bool(swapped), value=_text(current))
        text = ("swapped" if swapped else "not swapped") + f" (value: {_text(current)})"
    elif args.kv_command == "get":
        record["value"] = _text(result.value)
        text = "(absent)" if result.value is None else str(_text(result.value))
    else:
        record["previous"] = _text(result.value)
        text = f"ok (previous: {_text(result.value)})"
    print(json.dumps(record) if args.json else text, flush=True)
    return 0


# -- check-history ---------------------------------------------------------------------

CHECK_EXIT = {Verdict.LINEARIZABLE: 0, Verdict.NOT_LINEARIZABLE: 1, Verdict.UNKNOWN: 3}
"""``check-history``'s exit status per verdict (2 is bad input or usage)."""
DEFAULT_MODEL_BY_FORMAT = {"jepsen": "register", "jsonl": "kv"}


def cmd_check_history(args: argparse.Namespace) -> int:
    """``check-history``: decide whether the history in FILE is linearizable.

    Equivalent lower-level calls: ``read_history(path, format=...)``, then
    ``check(ops, RegisterModel() or KvModel(), budget=Budget(max_steps, timeout, clock))``,
    then ``result.summary()`` or ``result.to_json()``.
    """
    if args.max_steps is not None and args.max_steps <= 0:
        _prog_error(f"check-history: --max-steps must be positive, got {args.max_steps}")
        return 2
    if args.timeout is not None and args.timeout <= 0:
        _prog_error(f"check-history: --timeout must be positive, got {args.timeout:g}")
        return 2
    try:
        fmt, ops = load_history(args.file, format=args.format)
        model = MODELS[args.model or DEFAULT_MODEL_BY_FORMAT[fmt]]()
        budget = Budget(max_steps=args.max_steps, time_limit_s=args.timeout, clock=time.monotonic)
        result = check(ops, model, budget=budget, source=args.file)
    except HistoryFormatError as exc:
        _prog_error(str(exc))
        return 2
    if args.json:
        print(json.dumps(result.to_json(), separators=(",", ":")), flush=True)
    else:
        print(result.summary(), flush=True)
    return CHECK_EXIT[result.verdict]


# -- parser ----------------------------------------------------------------------------


def _add_sim(subparsers: Any) -> None:
    # The simulator's CLI is optional while it is being built: no module, no `sim`.
    # A module that exists but fails to import is a real error and propagates.
    if importlib.util.find_spec("simulator") is None:
        return
    if importlib.util.find_spec("simulator.cli") is None:
        return
    module = importlib.import_module("simulator.cli")
    module.register(subparsers)


def add_observer_arguments(
    parser: argparse.ArgumentParser,
    *,
    name: str,
    timeout_s: float,
    json_help: str,
    timeout_help: str,
    bind_help: str = "UDP address to bind",
) -> None:
    """The flags of a command that joins as an observer (``members``, ``kv``, ``health``):
    ``--join``, ``--cluster-key-file``, ``--json``, ``--timeout``, ``--bind``, ``--name``,
    ``--config``, ``--log-level`` (read by :func:`build_observer_config`)."""
    parser.add_argument(
        "--join", metavar="HOST:PORT", action="append", help="a member to ask (repeatable)"
    )
    parser.add_argument(
        "--cluster-key-file", metavar="F", help="keyring file (foundation-p2p keygen)"
    )
    parser.add_argument("--json", action="store_true", help=json_help)
    parser.add_argument(
        "--timeout", metavar="S", type=float, default=timeout_s,
        help=f"{timeout_help}, in seconds (default {timeout_s:g})",
    )
    parser.add_argument("--bind", metavar="HOST:PORT", help=bind_help)
    parser.add_argument("--name", metavar="N", default=name, help="the observer's name")
    parser.add_argument("--config", metavar="FILE", help="node TOML config (flags override it)")
    parser.add_argument(
        "--log-level", metavar="L", type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="diagnostics on stderr (default WARNING)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand; each leaf sets ``func(args) -> int``."""
    parser = argparse.ArgumentParser(
        prog="foundation-p2p",
        description="A peer-to-peer node for Trio applications, and its simulator.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    keygen = sub.add_parser("keygen", help="write a new cluster keyring file")
    keygen.add_argument("--out", required=True, metavar="FILE", help="where to write it")
    keygen.add_argument("--force", action="store_true", help="replace an existing file")
    keygen.set_defaults(func=cmd_keygen)

    node = sub.add_parser("node", help="run a node")
    node_sub = node.add_subparsers(dest="node_command", metavar="NODE_COMMAND", required=True)
    run = node_sub.add_parser(
        "run",
        help="one node over real UDP; prints a ready line; SIGINT/SIGTERM leaves gracefully",
        description=(
            "Run one node over UDP. Flags override the --config TOML file. Prints one line "
            "'ready node_id=... name=... address=... advertise=... epoch=...' on stdout when "
            "serving, then one 'event ...' line per application event on stderr."
        ),
    )
    run.add_argument("--bind", metavar="HOST:PORT", help="UDP address to bind (port 0: any)")
    run.add_argument(
        "--advertise", metavar="HOST:PORT", help="address peers should use (for 0.0.0.0 binds)"
    )
    run.add_argument(
        "--join", metavar="HOST:PORT", action="append", help="a peer to contact (repeatable)"
    )
    run.add_argument(
        "--cluster-key-file", metavar="F", help="keyring file (foundation-p2p keygen)"
    )
    run.add_argument("--data-dir", metavar="D", help="where the identity and boot epoch live")
    run.add_argument("--name", metavar="N", help="a human-readable node name")
    run.add_argument("--config", metavar="FILE", help="node TOML config (flags override it)")
    run.add_argument(
        "--app", metavar="module:callable", help="run `await callable(node)` inside the node"
    )
    run.add_argument(
        "--log-level",
        metavar="L",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="DEBUG, INFO (default), WARNING or ERROR",
    )
    run.add_argument(
        "--admin", metavar="HOST:PORT",
        help="serve GET /health and GET /metrics over HTTP there (off by default; "
        "':PORT' means 127.0.0.1:PORT)",
    )
    run.set_defaults(func=cmd_node_run)
    add_discovery_arguments(run, join=False)

    members = sub.add_parser(
        "members",
        help="print the cluster's membership (joins as an observer, then leaves)",
        description=(
            "Join the cluster as an observer (never probed, never counted), wait until a "
            "peer has sent the cluster's state, print every member (a table, or with "
            "--json a JSON list of {node_id, name, address, state, incarnation, "
            "metadata_hex, observer}), leave. Exit status 1 if no peer answered."
        ),
    )
    add_observer_arguments(
        members, name="members", timeout_s=MEMBERS_TIMEOUT_S, json_help="print a JSON list",
        timeout_help="longest wait for an answer",
        bind_help="UDP address to bind (default: a free port on the address that reaches "
        "the first --join peer)",
    )
    members.set_defaults(func=cmd_members)

    kvp = sub.add_parser(
        "kv",
        help="one operation on the cluster's replicated KV store (as an observer)",
        description=(
            "Join the cluster as an observer, send one KV operation to its Raft group "
            "(members announcing themselves in membership; the client follows the leader "
            "hint), print the result, leave. Exit status 0 done, 1 no member or a "
            "definite failure, 2 usage, 3 timed out (may or may not have applied)."
        ),
    )
    kv_sub = kvp.add_subparsers(dest="kv_command", metavar="{get,put,cas,delete}")
    kv_sub.required = True
    kv_get = kv_sub.add_parser("get", help="read KEY (linearizable)")
    kv_put = kv_sub.add_parser("put", help="set KEY to VALUE")
    kv_del = kv_sub.add_parser("delete", help="delete KEY")
    kv_cas = kv_sub.add_parser("cas", help="set KEY to NEW if it holds EXPECTED ('-': absent)")
    for p in (kv_get, kv_put, kv_del, kv_cas):
        p.add_argument("key", metavar="KEY")
    kv_put.add_argument("value", metavar="VALUE")
    kv_cas.add_argument("expected", metavar="EXPECTED")
    kv_cas.add_argument("new", metavar="NEW")
    for p in (kv_get, kv_put, kv_del, kv_cas):
        add_observer_arguments(
            p, name="kv", timeout_s=MEMBERS_TIMEOUT_S, json_help="print a JSON object",
            timeout_help="longest wait for each step",
        )
        p.set_defaults(func=cmd_kv)

    history = sub.add_parser(
        "check-history",
        help="decide whether a recorded history is linearizable (exit 0 yes, 1 no, 3 unknown)",
        description=(
            "Check a history of client operations for linearizability (spec/history.md): "
            "a Jepsen log (lines like 'INFO  jepsen.util - 3 :ok :read 2') or our JSON-lines "
            "format, against a compare-and-set register or the KV store, one key at a time. "
            "Operations that timed out (info) or never completed may take effect at any time "
            "after their invoke, or never; fail means not applied. On a violation it prints "
            "the longest linearizable prefix found and the operation that could not be "
            "placed. Exit status 0 linearizable, 1 not, 2 bad input or usage, 3 unknown "
            "(the budget ran out)."
        ),
    )
    history.add_argument("file", metavar="FILE", help="the history file")
    history.add_argument(
        "--format",
        choices=["jepsen", "jsonl"],
        help="the file's format (default: jsonl for *.jsonl/*.json or a first line "
        "starting with '{', else jepsen)",
    )
    history.add_argument(
        "--model",
        choices=sorted(MODELS),
        help="register (read/write/cas; default for jepsen) or kv (get/put/delete/cas/range; "
        "default for jsonl)",
    )
    history.add_argument("--json", action="store_true", help="print one JSON object")
    history.add_argument(
        "--max-steps",
        metavar="N",
        type=int,
        default=DEFAULT_MAX_STEPS,
        help=f"search budget in model steps (default {DEFAULT_MAX_STEPS})",
    )
    history.add_argument(
        "--timeout", metavar="S", type=float, help="give up (exit 3) after S seconds"
    )
    history.set_defaults(func=cmd_check_history)

    _add_sim(sub)
    add_discover_parser(sub)
    add_health_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``foundation-p2p`` and ``python -m foundation_p2p``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return _interrupted()
    except BaseExceptionGroup as group:
        # Trio raises an interrupt inside whichever task was running; out of a nursery it
        # comes wrapped in an exception group. Only a group of interrupts alone is one.
        _, rest = group.split(KeyboardInterrupt)
        if rest is not None:
            raise
        return _interrupted()


EXIT_INTERRUPTED = 130
"""Exit status after SIGINT (128 + 2, the shell's convention) for a command that has no
graceful stop of its own (``node run`` and ``health --watch`` leave and exit 0)."""


def _interrupted() -> int:
    _prog_error("interrupted")
    return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
