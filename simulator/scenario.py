"""Read a scenario TOML file into a validated :class:`~simulator.model.Scenario`.

Every problem is found before anything runs and raised as :class:`ScenarioError`, whose
message names the file, the key path (``fault[2].op``, 0-based like the arrays in TOML
tooling, with the line of its ``[[fault]]`` header) and the problem. Items whose capability
has not landed yet raise :class:`CapabilityMissingError`, naming the capability.
``simulator/README.md`` documents every key.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

from foundation_p2p.config import NodeConfig
from foundation_p2p.errors import ConfigError
from simulator import capabilities
from simulator.durations import (
    format_duration,
    parse_bandwidth,
    parse_duration,
    parse_latency_range,
)
from simulator.host import TIMER_MODES, SlowParams
from simulator.model import FAULT_OPS as MODEL_FAULT_OPS
from simulator.model import (
    WORKLOAD_KINDS,
    CheckSpec,
    ClusterSpec,
    FaultSpec,
    LatencySpec,
    LinkSpec,
    NetworkSpec,
    RandomFaultLimits,
    Scenario,
    WorkloadSpec,
)
from simulator.nemesis import SlowFaultSpec
from simulator.network import DEFAULT_MTU_BYTES, check_mtu

FAULT_OPS = (*MODEL_FAULT_OPS, "slow")
"""Every fault op the parser knows: the model's and ``slow`` (the slow-node model)."""
MAX_SLOW_RATE = 1_000_000.0
"""Largest ``rate``/``drain_rate`` of a ``slow`` fault (datagrams per second)."""
MAX_SLOW_QUEUE = 1_000_000
"""Largest ``queue`` (datagrams) of a ``slow`` fault."""
MAX_SLOW_QUEUE_BYTES = 1 << 30
"""Largest ``queue_bytes`` of a ``slow`` fault."""
MAX_SLOW_LAG_S = 3600.0
"""Longest ``lag`` of a ``slow`` fault."""

MAX_NODES = 100_000
"""Largest cluster a scenario may ask for."""
MAX_DURATION_S = 30 * 86_400.0
"""Longest virtual duration a scenario may ask for (30 days)."""
MODES = ("bytes", "messages")
START_MODES = ("together", "staggered")
PARTITION_SHAPES = ("majorities-ring",)
SKEW_KINDS = ("offset", "drift", "step")

PROFILES: dict[str, dict[str, Any]] = {
    "lan": {"latency": LatencySpec(0.0001, 0.001), "loss": 0.0},
    "datacenter": {"latency": LatencySpec(0.0002, 0.002), "loss": 0.0},
    "wan": {"latency": LatencySpec(0.020, 0.150), "loss": 0.001},
}
"""``[cluster] profile``: network defaults used where ``[network]`` does not set a key."""

RESERVED_NODE_KEYS = ("name", "bind", "advertise", "join", "cluster_key_file", "data_dir", "app")
"""NodeConfig keys the simulator sets itself (names, addresses, keys, disks, services)."""

ROLE_HELP = "@leader, @random or @singleton:NAME"

_TOP_KEYS = (
    "name", "seed", "duration", "mode", "cluster", "node", "network", "fault", "workload",
    "check", "random_faults",
)
_CLUSTER_KEYS = ("nodes", "profile", "start", "start_interval", "late", "seeds")
_NETWORK_KEYS = ("latency", "loss", "duplicate", "reorder", "bandwidth", "link", "mtu")
_LINK_KEYS = ("from", "to", "latency", "loss", "duplicate", "reorder", "bandwidth", "symmetric")
_CHECK_KEYS = ("invariants", "settle")
_RANDOM_KEYS = ("max_concurrent", "mean_interval", "max_duration", "ops", "end_before")

_TIMING_KEYS = ("at", "op", "every", "for", "until")
FAULT_KEYS: dict[str, tuple[str, ...]] = {
    "partition": ("groups", "shape", "oneway", "from", "to"),
    "heal": (),
    "isolate": ("node", "nodes"),
    "crash": ("node", "nodes", "torn"),
    "restart": ("node", "nodes"),
    "pause": ("node", "nodes"),
    "slow": ("node", "nodes", "rate", "drain_rate", "lag", "queue", "queue_bytes", "timers"),
    "resume": ("node", "nodes"),
    "skew": ("node", "nodes", "kind", "value"),
    "loss": ("value", "node", "nodes", "from", "to"),
    "latency": ("latency", "node", "nodes", "from", "to"),
    "clog": ("node", "nodes", "from", "to"),
    "swizzle": ("nodes",),
    "join": ("node", "nodes"),
    "leave": ("node", "nodes"),
    "transfer-leader": ("node",),
}
"""The keys each fault op takes besides ``at``, ``op``, ``every``, ``for`` and ``until``."""

INVERSE_OPS: dict[str, str] = {
    "partition": "heal",
    "isolate": "heal",
    "clog": "heal",
    "swizzle": "heal",
    "crash": "restart",
    "pause": "resume",
    "slow": "full speed (the backlog then drains at drain_rate)",
    "loss": "loss back to the [network] setting",
    "latency": "latency back to the [network] setting",
    "skew": "skew back to zero",
}
"""Ops that may take ``for``: what undoes each occurrence when its ``for`` is over."""

_NEEDS_TARGET = ("isolate", "crash", "restart", "pause", "slow", "resume", "join", "leave")
RANDOM_FAULT_OPS = (
    "partition", "isolate", "crash", "pause", "slow", "loss", "latency", "clog", "swizzle", "skew",
    "transfer-leader",
)
"""Ops ``--random-faults`` can draw (the ones that need no hand-written arguments)."""

_NODE_RE = re.compile(r"^n[1-9][0-9]*$")


class ScenarioError(ConfigError):
    """A scenario is invalid; the message names the file, the key path and the problem."""

    def __init__(self, source: str, key: str, problem: str, *, line: int | None = None) -> None:
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")
        self.source = source
        self.key = key
        self.problem = problem
        self.line = line


class CapabilityMissingError(ScenarioError):
    """A scenario uses an item whose capability has not landed; names each and the capability."""

    def __init__(self, source: str, missing: list[tuple[str, str, str]]) -> None:
        parts = [f"{key}: {what} needs {cap}, which has not landed" for key, what, cap in missing]
        super().__init__(source, "", "; ".join(parts))
        self.missing = missing
        self.capabilities = tuple(dict.fromkeys(cap for _, _, cap in missing))


def load_scenario(path: str, *, check_capabilities: bool = True) -> Scenario:
    """Read and validate the scenario file at ``path``; ``ScenarioError`` names any problem."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ScenarioError(path, "", f"cannot read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(path, "", f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    return parse_scenario_text(text, source=path, check_capabilities=check_capabilities)


def parse_scenario_text(
    text: str, *, source: str, check_capabilities: bool = True
) -> Scenario:
    """Validate a scenario given as TOML text; ``source`` names it in error messages.

    With ``check_capabilities`` (the default) a scenario that uses an item whose capability
    has not landed raises :class:`CapabilityMissingError` after every other check passed.
    """
    scenario = _Parser(text, source).parse()
    if check_capabilities:
        missing = find_missing_capabilities(scenario)
        if missing:
            raise CapabilityMissingError(source, missing)
    return scenario


def find_missing_capabilities(scenario: Scenario) -> list[tuple[str, str, str]]:
    """Each ``(key path, item, capability)`` of ``scenario`` whose capability has not landed."""
    C = capabilities
    out: list[tuple[str, str, str]] = []

    def note(key: str, category: str, name: str) -> None:
        cap = C.missing_capability(category, name)
        if cap is not None:
            out.append((key, f"{category} {name!r}", cap))

    for i, fault in enumerate(scenario.faults):
        note(f"fault[{i}].op", C.FAULT_OP, fault.op)
        for key, value in (("node", fault.node), ("from", fault.src), ("to", fault.dst)):
            if value is not None and value.startswith("@"):
                note(f"fault[{i}].{key}", C.ROLE, value)
    for i, workload in enumerate(scenario.workloads):
        note(f"workload[{i}].kind", C.WORKLOAD, workload.kind)
    for i, name in enumerate(scenario.check.invariants):
        note(f"check.invariants[{i}]", C.INVARIANT, name)
    for i, op in enumerate(scenario.random_faults.ops):
        note(f"random_faults.ops[{i}]", C.FAULT_OP, op)
    return out


def known_invariants() -> list[str]:
    """Invariant names a scenario may list today: the registered checkers (importing
    ``simulator.workloads`` first, which registers the workloads' own checkers)."""
    import simulator.workloads  # noqa: F401  (registers kv, auction, health checkers)
    from simulator.checkers import CHECKERS

    return list(CHECKERS)


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Parser:
    """One pass over one file; holds the source name and the header lines for messages."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.array_lines: dict[str, list[int]] = {}
        for lineno, line in enumerate(text.splitlines(), start=1):
            m = re.match(r"^\s*\[\[\s*([A-Za-z0-9_.-]+)\s*\]\]", line)
            if m:
                self.array_lines.setdefault(m.group(1).replace(" ", ""), []).append(lineno)
        self.nodes: tuple[str, ...] = ()

    # -- errors ------------------------------------------------------------------------

    def fail(self, key: str, problem: str) -> NoReturn:
        raise ScenarioError(self.source, key, problem, line=self._line_of(key))

    def _line_of(self, key: str) -> int | None:
        """The line of the ``[[array]]`` header the key path is inside, when it can be told."""
        m = re.match(r"^([A-Za-z_.]+)\[(\d+)\]", key)
        if not m:
            return None
        lines = self.array_lines.get(m.group(1))
        index = int(m.group(2))
        if lines is None or index >= len(lines):
            return None
        return lines[index]

    def check_keys(self, table: Mapping[str, Any], allowed: Iterable[str], path: str) -> None:
        allowed = tuple(allowed)
        for key in table:
            if key not in allowed:
                where = f"{path}.{key}" if path else key
                known = ", ".join(allowed) if allowed else "none"
                self.fail(where, f"unknown key (known: {known}){_suggest(key, allowed)}")

    def table(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(path, f"must be a table, got {_kind(value)}")
        return value

    # -- scalar readers ------------------------------------------------------------------

    def text_value(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            self.fail(path, f"must be a text, got {_kind(value)}")
        return value

    def choice(self, value: Any, path: str, options: Iterable[str]) -> str:
        options = tuple(options)
        text = self.text_value(value, path)
        if text not in options:
            self.fail(
                path,
                f"{text!r} is not one of {', '.join(options)}{_suggest(text, options)}",
            )
        return text

    def integer(self, value: Any, path: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"must be an integer, got {_kind(value)}")
        if not low <= value <= high:
            self.fail(path, f"{value} is out of range {low}..{high}")
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            self.fail(path, f"must be true or false, got {_kind(value)}")
        return value

    def probability(self, value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(path, f"must be a probability between 0 and 1, got {_kind(value)}")
        if not 0.0 <= float(value) <= 1.0:
            self.fail(path, f"{value} is not a probability between 0 and 1")
        return float(value)

    def number(self, value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(path, f"must be a number, got {_kind(value)}")
        if value != value or value in (float("inf"), float("-inf")):
            self.fail(path, f"{value} is not a finite number")
        return float(value)

    def convert(self, value: Any, path: str, parse: Callable[[Any], Any]) -> Any:
        try:
            return parse(value)
        except ValueError as exc:
            self.fail(path, str(exc))

    def duration(self, value: Any, path: str, *, signed: bool = False) -> float:
        seconds: float = self.convert(value, path, lambda v: parse_duration(v, signed=signed))
        if abs(seconds) > MAX_DURATION_S:
            self.fail(path, f"{value!r} is longer than {format_duration(MAX_DURATION_S)}")
        return seconds

    def latency(self, value: Any, path: str) -> LatencySpec:
        low, high = self.convert(value, path, parse_latency_range)
        if high > 3600.0:
            self.fail(path, f"{value!r} is longer than an hour")
        return LatencySpec(low, high)

    def bandwidth(self, value: Any, path: str) -> float:
        rate: float = self.convert(value, path, parse_bandwidth)
        return rate

    def node_name(self, value: Any, path: str, *, roles: bool = False) -> str:
        name = self.text_value(value, path)
        if name.startswith("@") and roles:
            role, sep, arg = name.partition(":")
            if role in ("@leader", "@random") and not sep:
                return name
            if role == "@singleton" and sep and arg:
                return name
            if role == "@singleton":
                self.fail(path, f"{name!r}: @singleton needs a name, as in @singleton:web")
            self.fail(path, f"unknown role {name!r} (roles: {ROLE_HELP})")
        if name not in self.nodes:
            extra = f"; roles: {ROLE_HELP}" if roles else ""
            self.fail(
                path,
                f"unknown node name {name!r} (this cluster has {_node_range(self.nodes)}{extra})",
            )
        return name

    def node_list(self, value: Any, path: str, *, min_len: int = 0) -> tuple[str, ...]:
        if not isinstance(value, list):
            self.fail(path, f"must be a list of node names, got {_kind(value)}")
        names = tuple(self.node_name(v, f"{path}[{i}]") for i, v in enumerate(value))
        for i, name in enumerate(names):
            if name in names[:i]:
                self.fail(f"{path}[{i}]", f"{name!r} is listed twice")
        if len(names) < min_len:
            self.fail(path, f"must list at least {min_len} node(s)")
        return names

    # -- the file ------------------------------------------------------------------------

    def parse(self) -> Scenario:
        try:
            doc = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError(self.source, "", f"not valid TOML: {exc}") from None
        self.check_keys(doc, _TOP_KEYS, "")

        name = self._name(doc.get("name"))
        seed = self.integer(doc.get("seed", 1), "seed", 0, 2**64 - 1)
        duration_s = self.duration(doc.get("duration", "60s"), "duration")
        if duration_s <= 0:
            self.fail("duration", "must be longer than zero")
        mode = self.choice(doc.get("mode", "bytes"), "mode", MODES)

        if "cluster" not in doc:
            self.fail("cluster", "missing: a scenario needs a [cluster] table with nodes = N")
        cluster_table = self.table(doc["cluster"], "cluster")
        self.check_keys(cluster_table, _CLUSTER_KEYS, "cluster")
        if "nodes" not in cluster_table:
            self.fail("cluster.nodes", "missing: how many nodes (named n1..nN)")
        count = self.integer(cluster_table["nodes"], "cluster.nodes", 1, MAX_NODES)
        self.nodes = tuple(f"n{i}" for i in range(1, count + 1))
        profile = self.choice(cluster_table.get("profile", "lan"), "cluster.profile", PROFILES)

        node_defaults, node_overrides = self._node(doc.get("node", {}))
        network = self._network(doc.get("network", {}), profile)
        check = self._check(doc.get("check", {}), duration_s)
        cluster = self._cluster(cluster_table, count, profile)
        faults = self._faults(doc.get("fault", []), duration_s)
        self._check_joins(cluster, faults)
        workloads = self._workloads(doc.get("workload", []))
        random_faults = self._random_faults(
            doc.get("random_faults", {}), duration_s, check.settle_s
        )
        return Scenario(
            name=name,
            text=self.text,
            seed=seed,
            duration_s=duration_s,
            mode=mode,
            cluster=cluster,
            node_defaults=node_defaults,
            node_overrides=node_overrides,
            network=network,
            faults=faults,
            workloads=workloads,
            check=check,
            random_faults=random_faults,
        )

    def _name(self, value: Any) -> str:
        if value is None:
            stem = re.sub(r"\.toml$", "", self.source.replace("\\", "/").rsplit("/", 1)[-1])
            if not stem or stem.startswith("<"):
                self.fail("name", "missing: give the scenario a name")
            return stem
        name = self.text_value(value, "name")
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", name):
            self.fail(
                "name",
                f"{name!r}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a "
                "letter or digit",
            )
        return name

    def _cluster(self, table: dict[str, Any], count: int, profile: str) -> ClusterSpec:
        start = self.choice(table.get("start", "together"), "cluster.start", START_MODES)
        interval = 0.0
        if "start_interval" in table:
            if start != "staggered":
                self.fail(
                    "cluster.start_interval", 'only applies with start = "staggered"'
                )
            interval = self.duration(table["start_interval"], "cluster.start_interval")
        if start == "staggered" and interval <= 0:
            self.fail(
                "cluster.start_interval",
                'start = "staggered" needs start_interval, a duration longer than zero',
            )
        late = self.node_list(table.get("late", []), "cluster.late")
        if len(late) >= count:
            self.fail("cluster.late", "at least one node must start at time zero")
        if "seeds" in table:
            seeds = self.node_list(table["seeds"], "cluster.seeds", min_len=1)
            for i, name in enumerate(seeds):
                if name in late:
                    self.fail(f"cluster.seeds[{i}]", f"{name!r} starts late; a seed must not")
        else:
            seeds = tuple(n for n in self.nodes if n not in late)[:3]
        return ClusterSpec(
            nodes=count,
            profile=profile,
            start=start,
            start_interval_s=interval,
            late=late,
            seeds=seeds,
        )

    def _node(self, value: Any) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        table = self.table(value, "node")
        defaults: dict[str, Any] = {}
        overrides: dict[str, dict[str, Any]] = {}
        for key, item in table.items():
            if _NODE_RE.match(key):
                if key not in self.nodes:
                    self.fail(
                        f"node.{key}",
                        f"unknown node name {key!r} (this cluster has {_node_range(self.nodes)})",
                    )
                overrides[key] = self.table(item, f"node.{key}")
            else:
                defaults[key] = item
        self._reserved(defaults, "node")
        base = self._node_config(NodeConfig(), defaults, "node")
        for name, override in overrides.items():
            self._reserved(override, f"node.{name}")
            self._node_config(base, override, f"node.{name}")
        return defaults, overrides

    def _reserved(self, table: Mapping[str, Any], path: str) -> None:
        for key in table:
            if key in RESERVED_NODE_KEYS:
                self.fail(
                    f"{path}.{key}",
                    "set by the simulator (nodes are named n1..nN, addressed, keyed and given "
                    "a virtual disk by it)",
                )

    def _node_config(self, base: NodeConfig, table: Mapping[str, Any], path: str) -> NodeConfig:
        try:
            return base.with_overrides(table, source=path)
        except ConfigError as exc:
            message = str(exc)
            rest = message[len(path) + 2 :] if message.startswith(f"{path}: ") else message
            key, sep, problem = rest.partition(": ")
            if sep and re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                self.fail(f"{path}.{key}", problem)
            self.fail(path, rest)

    def _network(self, value: Any, profile: str) -> NetworkSpec:
        table = self.table(value, "network")
        self.check_keys(table, _NETWORK_KEYS, "network")
        preset = PROFILES[profile]
        latency = preset["latency"]
        if "latency" in table:
            latency = self.latency(table["latency"], "network.latency")
        loss = preset["loss"]
        if "loss" in table:
            loss = self.probability(table["loss"], "network.loss")
        duplicate = self.probability(table.get("duplicate", 0.0), "network.duplicate")
        reorder = self.probability(table.get("reorder", 0.0), "network.reorder")
        bandwidth = None
        if "bandwidth" in table:
            bandwidth = self.bandwidth(table["bandwidth"], "network.bandwidth")
        mtu = table.get("mtu", DEFAULT_MTU_BYTES)
        try:
            check_mtu(mtu, "network.mtu")
        except ValueError as exc:
            self.fail("network.mtu", str(exc).split(": ", 1)[1])
        links_value = table.get("link", [])
        if not isinstance(links_value, list):
            self.fail("network.link", "must be an array of tables ([[network.link]])")
        links: list[LinkSpec] = []
        claimed: dict[tuple[str, str], int] = {}
        for i, item in enumerate(links_value):
            link = self._link(item, f"network.link[{i}]")
            pairs = [(link.src, link.dst)]
            if link.symmetric:
                pairs.append((link.dst, link.src))
            for pair in pairs:
                if pair in claimed:
                    self.fail(
                        f"network.link[{i}]",
                        f"the link {pair[0]} -> {pair[1]} is already set by "
                        f"network.link[{claimed[pair]}]",
                    )
                claimed[pair] = i
            links.append(link)
        return NetworkSpec(
            latency=latency,
            loss=loss,
            duplicate=duplicate,
            reorder=reorder,
            bandwidth_bytes_per_s=bandwidth,
            links=tuple(links),
            mtu=mtu,
        )

    def _link(self, value: Any, path: str) -> LinkSpec:
        table = self.table(value, path)
        self.check_keys(table, _LINK_KEYS, path)
        for key in ("from", "to"):
            if key not in table:
                self.fail(f"{path}.{key}", "missing: a link names both ends, from and to")
        src = self.node_name(table["from"], f"{path}.from")
        dst = self.node_name(table["to"], f"{path}.to")
        if src == dst:
            self.fail(f"{path}.to", f"a link joins two different nodes, both are {src!r}")
        if not set(table) - {"from", "to", "symmetric"}:
            self.fail(path, "sets nothing (latency, loss, duplicate, reorder or bandwidth)")
        return LinkSpec(
            src=src,
            dst=dst,
            latency=self.latency(table["latency"], f"{path}.latency")
            if "latency" in table
            else None,
            loss=self.probability(table["loss"], f"{path}.loss") if "loss" in table else None,
            duplicate=self.probability(table["duplicate"], f"{path}.duplicate")
            if "duplicate" in table
            else None,
            reorder=self.probability(table["reorder"], f"{path}.reorder")
            if "reorder" in table
            else None,
            bandwidth_bytes_per_s=self.bandwidth(table["bandwidth"], f"{path}.bandwidth")
            if "bandwidth" in table
            else None,
            symmetric=self.boolean(table.get("symmetric", True), f"{path}.symmetric"),
        )

    def _faults(self, value: Any, duration_s: float) -> tuple[FaultSpec, ...]:
        if not isinstance(value, list):
            self.fail("fault", "must be an array of tables ([[fault]])")
        return tuple(self._fault(item, i, duration_s) for i, item in enumerate(value))

    def _fault(self, value: Any, index: int, duration_s: float) -> FaultSpec:
        path = f"fault[{index}]"
        table = self.table(value, path)
        if "op" not in table:
            self.fail(f"{path}.op", f"missing: what the fault does ({', '.join(FAULT_OPS)})")
        op = self.text_value(table["op"], f"{path}.op")
        if op not in FAULT_OPS:
            self.fail(
                f"{path}.op",
                f"unknown fault op {op!r} (known: {', '.join(FAULT_OPS)}){_suggest(op, FAULT_OPS)}",
            )
        self.check_keys(table, _TIMING_KEYS + FAULT_KEYS[op], path)
        if "at" not in table:
            self.fail(f"{path}.at", 'missing: when the fault fires, as a duration ("10s")')
        at_s = self.duration(table["at"], f"{path}.at")
        if at_s >= duration_s:
            self.fail(
                f"{path}.at",
                f"{format_duration(at_s)} is not before the end of the run "
                f"(duration {format_duration(duration_s)})",
            )
        every_s = for_s = until_s = None
        if "for" in table:
            if op not in INVERSE_OPS:
                self.fail(
                    f"{path}.for",
                    f"{op!r} has no inverse to end it; 'for' applies to "
                    f"{', '.join(INVERSE_OPS)}",
                )
            for_s = self.duration(table["for"], f"{path}.for")
            if for_s <= 0:
                self.fail(f"{path}.for", "must be longer than zero")
        if "every" in table:
            every_s = self.duration(table["every"], f"{path}.every")
            if every_s <= 0:
                self.fail(f"{path}.every", "must be longer than zero")
            if for_s is not None and for_s >= every_s:
                self.fail(
                    f"{path}.for",
                    f"{format_duration(for_s)} is not shorter than every "
                    f"{format_duration(every_s)}, so occurrences would overlap",
                )
            until_s = duration_s
            if "until" in table:
                until_s = self.duration(table["until"], f"{path}.until")
                if until_s <= at_s:
                    self.fail(f"{path}.until", f"{format_duration(until_s)} is not after at")
                if until_s > duration_s:
                    self.fail(
                        f"{path}.until",
                        f"{format_duration(until_s)} is after the end of the run "
                        f"(duration {format_duration(duration_s)})",
                    )
        elif "until" in table:
            self.fail(f"{path}.until", "only applies to a periodic fault (with 'every')")
        if for_s is not None:
            last_start = at_s
            if every_s is not None and until_s is not None:
                last_start = at_s + every_s * int((until_s - at_s) / every_s)
                if last_start >= until_s:
                    last_start -= every_s
            if last_start + for_s > duration_s:
                self.fail(
                    f"{path}.for",
                    f"an occurrence starting at {format_duration(last_start)} would last past "
                    f"the end of the run (duration {format_duration(duration_s)})",
                )

        node = None
        nodes: tuple[str, ...] = ()
        if "node" in table and "nodes" in table:
            self.fail(f"{path}.nodes", "give either node or nodes, not both")
        if "node" in table:
            node = self.node_name(table["node"], f"{path}.node", roles=True)
        if "nodes" in table:
            nodes = self.node_list(table["nodes"], f"{path}.nodes", min_len=1)
        if op in _NEEDS_TARGET and node is None and not nodes:
            self.fail(f"{path}.node", f"missing: {op!r} needs node (a name or a role) or nodes")
        if op == "join" and node is not None and node.startswith("@"):
            self.fail(f"{path}.node", "join names the node that joins, not a role")

        src = dst = None
        if "from" in table or "to" in table:
            for key in ("from", "to"):
                if key not in table:
                    self.fail(f"{path}.{key}", "from and to go together (they name one link)")
            src = self.node_name(table["from"], f"{path}.from")
            dst = self.node_name(table["to"], f"{path}.to")
            if src == dst:
                self.fail(f"{path}.to", f"from and to are both {src!r}")
            if node is not None or nodes:
                self.fail(f"{path}.from", "give either node/nodes or from/to, not both")
        oneway = self.boolean(table.get("oneway", False), f"{path}.oneway")

        groups: tuple[tuple[str, ...], ...] = ()
        shape = None
        if op == "partition":
            groups, shape = self._partition_shape(table, path, src is not None)
            if src is not None and not oneway:
                self.fail(
                    f"{path}.oneway",
                    "from/to cut one direction: set oneway = true (to cut both ways between "
                    'two nodes, use groups = [["n1"], ["n2"]])',
                )
            if oneway and src is None and len(groups) != 2:
                self.fail(
                    f"{path}.oneway",
                    "oneway needs from/to, or exactly two groups (the first cannot reach the "
                    "second)",
                )

        torn = self.boolean(table.get("torn", False), f"{path}.torn")
        kind = None
        value_f = None
        latency = None
        if op == "skew":
            kind = self.choice(table.get("kind", "offset"), f"{path}.kind", SKEW_KINDS)
            if "value" not in table:
                self.fail(
                    f"{path}.value",
                    'missing: the offset or step as a signed duration ("-2s"), or the drift '
                    "in ppm (a number)",
                )
            if kind == "drift":
                value_f = self.number(table["value"], f"{path}.value")
                if abs(value_f) > 1_000_000:
                    self.fail(f"{path}.value", f"{value_f} ppm is beyond +-1000000")
            else:
                value_f = self.duration(table["value"], f"{path}.value", signed=True)
        elif op == "loss":
            if "value" not in table:
                self.fail(f"{path}.value", "missing: the loss probability, 0..1")
            value_f = self.probability(table["value"], f"{path}.value")
        elif op == "latency":
            if "latency" not in table:
                self.fail(f"{path}.latency", 'missing: the latency ("50ms" or "10ms..200ms")')
            latency = self.latency(table["latency"], f"{path}.latency")
        elif op == "clog" and node is None and not nodes and src is None:
            self.fail(f"{path}.node", "missing: clog needs node, nodes, or from/to")
        elif op == "swizzle" and nodes and len(nodes) < 2:
            self.fail(f"{path}.nodes", "swizzle clogs nodes one after another: list two or more")

        fault_cls = FaultSpec
        extra: dict[str, Any] = {}
        if op == "slow":
            fault_cls = SlowFaultSpec
            extra["slow"] = self._slow_params(table, path)

        return fault_cls(
            at_s=at_s,
            op=op,
            node=node,
            nodes=nodes,
            groups=groups,
            shape=shape,
            oneway=oneway,
            src=src,
            dst=dst,
            every_s=every_s,
            for_s=for_s,
            until_s=until_s,
            value=value_f,
            latency=latency,
            kind=kind,
            torn=torn,
            index=index,
            **extra,
        )

    def _slow_params(self, table: dict[str, Any], path: str) -> SlowParams:
        """The ``slow`` fault's handler parameters (defaults: :class:`SlowParams`)."""
        d = SlowParams()
        rate = d.rate
        if "rate" in table:
            rate = self.number(table["rate"], f"{path}.rate")
            if not 0.0 <= rate <= MAX_SLOW_RATE:
                self.fail(
                    f"{path}.rate",
                    f"{rate} is out of range 0..{MAX_SLOW_RATE:g} datagrams per second "
                    "handled while starved (0: none)",
                )
        drain = d.drain_rate
        if "drain_rate" in table:
            drain = self.number(table["drain_rate"], f"{path}.drain_rate")
            if not 0.0 < drain <= MAX_SLOW_RATE:
                self.fail(
                    f"{path}.drain_rate",
                    f"{drain} is out of range: datagrams per second handled after the starved "
                    f"phase, above 0 (or the backlog never drains) and at most "
                    f"{MAX_SLOW_RATE:g}",
                )
        lag = d.lag_s
        if "lag" in table:
            lag = self.duration(table["lag"], f"{path}.lag")
            if lag > MAX_SLOW_LAG_S:
                self.fail(f"{path}.lag", f"{table['lag']!r} is longer than an hour")
        queue = d.queue_packets
        if "queue" in table:
            queue = self.integer(table["queue"], f"{path}.queue", 1, MAX_SLOW_QUEUE)
        queue_bytes = d.queue_bytes
        if "queue_bytes" in table:
            queue_bytes = self.integer(
                table["queue_bytes"], f"{path}.queue_bytes", 1, MAX_SLOW_QUEUE_BYTES
            )
        timers = d.timers
        if "timers" in table:
            timers = self.choice(table["timers"], f"{path}.timers", TIMER_MODES)
        return SlowParams(
            rate=rate, drain_rate=drain, lag_s=lag, queue_packets=queue,
            queue_bytes=queue_bytes, timers=timers,
        )

    def _partition_shape(
        self, table: dict[str, Any], path: str, has_link: bool
    ) -> tuple[tuple[tuple[str, ...], ...], str | None]:
        given = [k for k in ("groups", "shape") if k in table] + (["from/to"] if has_link else [])
        if len(given) != 1:
            self.fail(
                path,
                "a partition needs exactly one of groups, shape or from/to (with oneway = true "
                f"for one direction); got {', '.join(given) if given else 'none'}",
            )
        if "shape" in table:
            shape = self.choice(table["shape"], f"{path}.shape", PARTITION_SHAPES)
            if len(self.nodes) < 3:
                self.fail(f"{path}.shape", f"{shape} needs at least 3 nodes")
            return (), shape
        if "groups" not in table:
            return (), None
        raw = table["groups"]
        if not isinstance(raw, list) or len(raw) < 2:
            self.fail(f"{path}.groups", "must be a list of two or more lists of node names")
        groups = tuple(
            self.node_list(g, f"{path}.groups[{i}]", min_len=1) for i, g in enumerate(raw)
        )
        seen: dict[str, int] = {}
        for i, group in enumerate(groups):
            for name in group:
                if name in seen:
                    self.fail(
                        f"{path}.groups[{i}]",
                        f"{name!r} is also in groups[{seen[name]}]; groups must not overlap",
                    )
                seen[name] = i
        return groups, None

    def _check_joins(self, cluster: ClusterSpec, faults: tuple[FaultSpec, ...]) -> None:
        """Each late node has a join; each join names a late node or one that left before."""
        joined = {n for f in faults if f.op == "join" for n in _targets(f)}
        for i, name in enumerate(cluster.late):
            if name not in joined:
                self.fail(
                    f"cluster.late[{i}]",
                    f"{name!r} starts late but no join fault names it, so it would never start",
                )
        for fault in faults:
            if fault.op != "join" or fault.every_s is not None:
                continue
            earlier = [f for f in faults if f.op == "leave" and f.at_s < fault.at_s]
            if any(f.every_s is not None or any(n.startswith("@") for n in _targets(f))
                   for f in earlier):
                continue  # which node left is only known when the run gets there
            left = {n for f in earlier for n in _targets(f)}
            for name in _targets(fault):
                if name not in cluster.late and name not in left:
                    key = "node" if fault.node else "nodes"
                    self.fail(
                        f"fault[{fault.index}].{key}",
                        f"{name!r} is already running at {format_duration(fault.at_s)}: a join "
                        "names a node listed in cluster.late or one an earlier leave removed",
                    )

    def _workloads(self, value: Any) -> tuple[WorkloadSpec, ...]:
        if not isinstance(value, list):
            self.fail("workload", "must be an array of tables ([[workload]])")
        out = []
        for i, item in enumerate(value):
            path = f"workload[{i}]"
            table = self.table(item, path)
            if "kind" not in table:
                self.fail(f"{path}.kind", f"missing: one of {', '.join(WORKLOAD_KINDS)}")
            kind = self.choice(table["kind"], f"{path}.kind", WORKLOAD_KINDS)
            params = {k: v for k, v in table.items() if k != "kind"}
            # Kinds available now have their keys checked here; a later kind is refused by
            # the capability check, and its issue adds its keys to WORKLOAD_PARAMS.
            if kind in WORKLOAD_PARAMS:
                self.check_keys(params, WORKLOAD_PARAMS[kind], path)
            if kind == "membership":
                params = self._membership_params(params, path)
            out.append(WorkloadSpec(kind=kind, params=params))
        return tuple(out)

    def _membership_params(self, params: dict[str, Any], path: str) -> dict[str, Any]:
        """The ``membership`` workload's keys, durations in seconds (``update_every_s``...)."""
        out: dict[str, Any] = {}
        if "update_every" in params:
            every = self.duration(params["update_every"], f"{path}.update_every")
            if every <= 0:
                self.fail(f"{path}.update_every", "must be longer than zero")
            out["update_every_s"] = every
        for key in ("update_from", "update_until"):
            if key in params:
                if "update_every" not in params:
                    self.fail(f"{path}.{key}", "only with update_every")
                out[f"{key}_s"] = self.duration(params[key], f"{path}.{key}")
        if "metadata_bytes" in params:
            out["metadata_bytes"] = self.integer(
                params["metadata_bytes"], f"{path}.metadata_bytes", 0, 65536
            )
        if "static_prober" in params:
            out["static_prober"] = self.boolean(params["static_prober"], f"{path}.static_prober")
        return out

    def _check(self, value: Any, duration_s: float) -> CheckSpec:
        table = self.table(value, "check")
        self.check_keys(table, _CHECK_KEYS, "check")
        raw = table.get("invariants", [])
        if not isinstance(raw, list):
            self.fail("check.invariants", f"must be a list of dotted names, got {_kind(raw)}")
        known = known_invariants()
        names: list[str] = []
        for i, item in enumerate(raw):
            key = f"check.invariants[{i}]"
            name = self.text_value(item, key)
            if name in names:
                self.fail(key, f"{name!r} is listed twice")
            if name not in known and not capabilities.is_pending_invariant(name):
                self.fail(
                    key,
                    f"unknown invariant {name!r} (known: {', '.join(known)}; later capabilities "
                    f"bring raft.*, kv.*, membership.*, registry.*, channels.*...)"
                    f"{_suggest(name, known)}",
                )
            names.append(name)
        settle_s = 0.0
        if "settle" in table:
            settle_s = self.duration(table["settle"], "check.settle")
            if settle_s >= duration_s:
                self.fail(
                    "check.settle",
                    f"{format_duration(settle_s)} is not shorter than the duration "
                    f"{format_duration(duration_s)}",
                )
        return CheckSpec(invariants=tuple(names), settle_s=settle_s)

    def _random_faults(self, value: Any, duration_s: float, settle_s: float) -> RandomFaultLimits:
        table = self.table(value, "random_faults")
        self.check_keys(table, _RANDOM_KEYS, "random_faults")
        defaults = RandomFaultLimits()
        max_concurrent = self.integer(
            table.get("max_concurrent", defaults.max_concurrent),
            "random_faults.max_concurrent",
            1,
            max(1, len(self.nodes)),
        )
        mean_interval = defaults.mean_interval_s
        if "mean_interval" in table:
            mean_interval = self.duration(table["mean_interval"], "random_faults.mean_interval")
            if mean_interval <= 0:
                self.fail("random_faults.mean_interval", "must be longer than zero")
        max_duration = defaults.max_duration_s
        if "max_duration" in table:
            max_duration = self.duration(table["max_duration"], "random_faults.max_duration")
            if max_duration <= 0:
                self.fail("random_faults.max_duration", "must be longer than zero")
        ops = defaults.ops
        if "ops" in table:
            raw = table["ops"]
            if not isinstance(raw, list) or not raw:
                self.fail("random_faults.ops", "must be a non-empty list of fault ops")
            ops = tuple(
                self.choice(v, f"random_faults.ops[{i}]", RANDOM_FAULT_OPS)
                for i, v in enumerate(raw)
            )
            for i, op in enumerate(ops):
                if op in ops[:i]:
                    self.fail(f"random_faults.ops[{i}]", f"{op!r} is listed twice")
        end_before = None
        if "end_before" in table:
            end_before = self.duration(table["end_before"], "random_faults.end_before")
            if end_before <= 0 or end_before > duration_s - settle_s:
                self.fail(
                    "random_faults.end_before",
                    f"{format_duration(end_before)} must be within the run before the settle "
                    f"period (0s < end_before <= {format_duration(duration_s - settle_s)})",
                )
        return RandomFaultLimits(
            max_concurrent=max_concurrent,
            mean_interval_s=mean_interval,
            max_duration_s=max_duration,
            ops=ops,
            end_before_s=end_before,
        )


WORKLOAD_PARAMS: dict[str, tuple[str, ...]] = {
    "ping": (),
    "membership": (
        "update_every", "update_from", "update_until", "metadata_bytes", "static_prober",
    ),
}
"""Keys each available workload kind takes besides ``kind``."""


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a text ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _targets(fault: FaultSpec) -> tuple[str, ...]:
    return (fault.node,) if fault.node is not None else fault.nodes


def _node_range(nodes: tuple[str, ...]) -> str:
    if not nodes:
        return "no nodes"
    if len(nodes) == 1:
        return nodes[0]
    return f"{nodes[0]}..{nodes[-1]}"
