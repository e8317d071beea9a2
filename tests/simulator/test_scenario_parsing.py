"""The scenario file format: what parses, and the error every invalid file gets."""

from __future__ import annotations

import glob
import os
import textwrap
from typing import Any

import pytest

from foundation_p2p.errors import ConfigError
from simulator import capabilities
from simulator.durations import parse_bandwidth, parse_duration, parse_latency_range
from simulator.model import LatencySpec
from simulator.scenario import (
    CapabilityMissingError,
    ScenarioError,
    load_scenario,
    parse_scenario_text,
)

SCENARIO_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "simulator", "scenarios")

ISSUE_EXAMPLE = """\
name = "partition-heal"
seed = 1                        # default; --seed overrides
duration = "60s"
mode = "bytes"                  # or "messages"
[cluster]
nodes = 5                       # named n1..n5
profile = "lan"
start = "together"
[node]
[node.n5]
[network]
latency = "1ms..10ms"
loss = 0.01
duplicate = 0.0
reorder = 0.0
[[network.link]]
from = "n1"
to = "n2"
latency = "50ms"
[[fault]]
at = "10s"
op = "partition"
groups = [["n1", "n2"], ["n3", "n4", "n5"]]
[[fault]]
at = "20s"
op = "pause"
node = "@leader"
every = "10s"
for = "4s"
until = "50s"
[[fault]]
at = "30s"
op = "heal"
[[workload]]
kind = "kv"
rate = 50
[check]
invariants = ["membership.converged"]
settle = "20s"
"""

BASE = """\
name = "t"
duration = "60s"
[cluster]
nodes = 5
"""


def compose(extra: str, base: str = BASE) -> str:
    """``base`` plus ``extra``: top-level keys go first, ``[cluster]`` keys join the base's."""
    extra = textwrap.dedent(extra).lstrip("\n")
    if base == BASE and extra.startswith("[cluster]\n"):
        return base + extra[len("[cluster]\n") :]
    if extra and not extra.startswith("["):
        return extra + base
    return base + extra


def parse(extra: str, base: str = BASE, **kw: bool) -> Any:
    return parse_scenario_text(compose(extra, base), source="t.toml", **kw)


def refused(extra: str, base: str = BASE) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        parse(extra, base)
    return info.value


def test_issue_example_parses_into_the_model_when_capabilities_are_not_checked() -> None:
    s = parse_scenario_text(ISSUE_EXAMPLE, source="x.toml", check_capabilities=False)
    assert s.name == "partition-heal" and s.seed == 1 and s.duration_s == 60.0
    assert s.mode == "bytes" and s.cluster.nodes == 5 and s.cluster.seeds == ("n1", "n2", "n3")
    assert s.network.latency == LatencySpec(0.001, 0.010)
    assert s.network.loss == 0.01
    (link,) = s.network.links
    assert (link.src, link.dst, link.latency) == ("n1", "n2", LatencySpec(0.05, 0.05))
    part, pause, heal = s.faults
    assert part.groups == (("n1", "n2"), ("n3", "n4", "n5"))
    assert (pause.node, pause.every_s, pause.for_s, pause.until_s) == ("@leader", 10, 4, 50)
    assert heal.op == "heal" and heal.index == 2
    assert s.workloads[0].kind == "kv" and s.workloads[0].params == {"rate": 50}
    assert s.check.invariants == ("membership.converged",) and s.check.settle_s == 20.0
    assert s.text == ISSUE_EXAMPLE


def test_issue_example_parses_now_that_consensus_has_landed() -> None:
    s = parse_scenario_text(ISSUE_EXAMPLE, source="x.toml")
    assert s.faults[1].node == "@leader" and s.workloads[0].kind == "kv"


@pytest.mark.parametrize(
    ("extra", "key", "fragment"),
    [
        ('[check]\ninvariants = ["transport.no_stall"]\n', "check.invariants[0]",
         "transport (issue 5)"),
    ],
)
def test_items_of_later_capabilities_are_refused_naming_the_capability(
    extra: str, key: str, fragment: str
) -> None:
    with pytest.raises(CapabilityMissingError) as info:
        parse(extra)
    assert f"{key}: " in str(info.value) and fragment in str(info.value)


@pytest.mark.parametrize(
    ("extra", "key", "fragment"),
    [
        # invalid keys, at every level
        ("colour = 1\n", "colour", "unknown key"),
        ("[network]\nlatenct = \"1ms\"\n", "network.latenct", "did you mean 'latency'"),
        ("[[fault]]\nat = \"1s\"\nop = \"heal\"\nnode = \"n1\"\n", "fault[0].node",
         "unknown key"),
        ("[[network.link]]\nfrom = \"n1\"\nto = \"n2\"\nlatncy = \"1ms\"\n",
         "network.link[0].latncy", "unknown key"),
        ("[check]\nsettel = \"1s\"\n", "check.settel", "did you mean 'settle'"),
        ("[random_faults]\nmax = 1\n", "random_faults.max", "unknown key"),
        ("[node]\nprobe_intervall_s = 1.0\n", "node.probe_intervall_s", "unknown key"),
        # bad durations
        ('[[fault]]\nat = "10 seconds"\nop = "heal"\n', "fault[0].at", "unknown unit"),
        ('[[fault]]\nat = 10\nop = "heal"\n', "fault[0].at", "must be a duration"),
        ('[[fault]]\nat = "-1s"\nop = "heal"\n', "fault[0].at", "negative"),
        ('[network]\nlatency = "10ms..1ms"\n', "network.latency", "low end is above"),
        ('[network]\nlatency = "1ms...10ms"\n', "network.latency", "not a range"),
        ('[check]\nsettle = "1 min"\n', "check.settle", "unknown unit"),
        # unknown node names
        ('[[fault]]\nat = "1s"\nop = "crash"\nnode = "n6"\n', "fault[0].node",
         "unknown node name 'n6'"),
        ('[[fault]]\nat = "1s"\nop = "partition"\ngroups = [["n1"], ["n2", "node3"]]\n',
         "fault[0].groups[1][1]", "unknown node name 'node3'"),
        ('[[network.link]]\nfrom = "n0"\nto = "n2"\nloss = 0.5\n', "network.link[0].from",
         "unknown node name 'n0'"),
        ("[node.n9]\nprobe_interval_s = 2.0\n", "node.n9", "unknown node name 'n9'"),
        ('[cluster]\nlate = ["n7"]\n', "cluster.late[0]", "unknown node name 'n7'"),
        # unknown fault ops and roles
        ('[[fault]]\nat = "1s"\nop = "explode"\n', "fault[0].op", "unknown fault op 'explode'"),
        ('[[fault]]\nat = "1s"\nop = "partiton"\n', "fault[0].op", "did you mean 'partition'"),
        ('[[fault]]\nat = "1s"\nop = "pause"\nnode = "@boss"\n', "fault[0].node",
         "unknown role '@boss'"),
        ('[[fault]]\nat = "1s"\nop = "pause"\nnode = "@singleton"\n', "fault[0].node",
         "needs a name"),
        # wrong types and ranges
        ("seed = \"7\"\n", "seed", "must be an integer"),
        ('mode = "packets"\n', "mode", "not one of bytes, messages"),
        ("[network]\nloss = 1.5\n", "network.loss", "not a probability"),
        ("[network]\nduplicate = -0.1\n", "network.duplicate", "not a probability"),
        ('[network]\nbandwidth = "fast"\n', "network.bandwidth", "not a rate"),
        ('[[fault]]\nat = "1s"\nop = "crash"\nnode = "n1"\ntorn = "yes"\n', "fault[0].torn",
         "true or false"),
        ('[[fault]]\nat = "1s"\nop = "loss"\nvalue = 2\n', "fault[0].value", "not a probability"),
        # timing
        ('[[fault]]\nat = "60s"\nop = "heal"\n', "fault[0].at", "not before the end of the run"),
        ('[[fault]]\nat = "2m"\nop = "heal"\n', "fault[0].at", "not before the end of the run"),
        ('[[fault]]\nat = "1s"\nop = "pause"\nnode = "n1"\nevery = "5s"\nuntil = "90s"\n',
         "fault[0].until", "after the end of the run"),
        ('[[fault]]\nat = "1s"\nop = "pause"\nnode = "n1"\nevery = "5s"\nfor = "5s"\n',
         "fault[0].for", "occurrences would overlap"),
        ('[[fault]]\nat = "50s"\nop = "pause"\nnode = "n1"\nfor = "20s"\n', "fault[0].for",
         "past the end of the run"),
        ('[[fault]]\nat = "1s"\nop = "heal"\nfor = "2s"\n', "fault[0].for", "no inverse"),
        ('[[fault]]\nat = "1s"\nop = "heal"\nuntil = "2s"\n', "fault[0].until",
         "only applies to a periodic fault"),
        ('[check]\nsettle = "60s"\n', "check.settle", "not shorter than the duration"),
        # structure
        ('[[fault]]\nat = "1s"\nop = "partition"\ngroups = [["n1", "n2"], ["n2", "n3"]]\n',
         "fault[0].groups[1]", "groups must not overlap"),
        ('[[fault]]\nat = "1s"\nop = "partition"\n', "fault[0]", "exactly one of groups"),
        ('[[fault]]\nat = "1s"\nop = "partition"\nshape = "ring"\n', "fault[0].shape",
         "not one of majorities-ring"),
        ('[[fault]]\nat = "1s"\nop = "crash"\n', "fault[0].node", "needs node"),
        ('[[fault]]\nop = "crash"\nnode = "n1"\n', "fault[0].at", "missing"),
        ('[[fault]]\nat = "1s"\nop = "join"\nnode = "n2"\n', "fault[0].node",
         "already running"),
        ('[cluster]\nlate = ["n5"]\n', "cluster.late[0]", "no join fault names it"),
        ('[[fault]]\nat = "1s"\nop = "skew"\nnode = "n1"\nkind = "drift"\nvalue = "1s"\n',
         "fault[0].value", "must be a number"),
        ('[[fault]]\nat = "1s"\nop = "clog"\noneway = true\n', "fault[0].oneway", "unknown key"),
        ('[[fault]]\nat = "1s"\nop = "partition"\nfrom = "n1"\nto = "n2"\n', "fault[0].oneway",
         "set oneway = true"),
        ('[[fault]]\nat = "1s"\nop = "partition"\nshape = "majorities-ring"\noneway = true\n',
         "fault[0].oneway", "exactly two groups"),
        ('[[fault]]\nat = "1s"\nop = "loss"\nvalue = 0.5\nfrom = "@random"\nto = "n2"\n',
         "fault[0].from", "unknown node name '@random'"),
        ('[[network.link]]\nfrom = "n1"\nto = "n2"\nloss = 0.1\n'
         '[[network.link]]\nfrom = "n2"\nto = "n1"\nloss = 0.2\n',
         "network.link[1]", "already set by network.link[0]"),
        ('[[workload]]\nkind = "ping"\nrate = 5\n', "workload[0].rate", "unknown key"),
        ('[[workload]]\nkind = "pong"\n', "workload[0].kind", "not one of"),
        ('[check]\ninvariants = ["probe.reachabel"]\n', "check.invariants[0]",
         "did you mean 'probe.reachable'"),
        ('[check]\ninvariants = ["nonsense"]\n', "check.invariants[0]", "unknown invariant"),
        ('[random_faults]\nops = ["heal"]\n', "random_faults.ops[0]", "not one of"),
        ('[random_faults]\nmax_concurrent = 9\n', "random_faults.max_concurrent", "out of range"),
        # [node] tables are checked by NodeConfig itself
        ("[node]\nprobe_interval_s = -1.0\n", "node.probe_interval_s", "out of range"),
        ("[node]\nprobe_interval_s = 0.1\nprobe_timeout_s = 0.5\n", "node.probe_timeout_s",
         "longer than probe_interval_s"),
        ("[node.n2]\nmax_events = 0\n", "node.n2.max_events", "out of range"),
        ('[node]\nbind = "127.0.0.1:1"\n', "node.bind", "set by the simulator"),
        ('[node.n1]\ndata_dir = "/tmp/x"\n', "node.n1.data_dir", "set by the simulator"),
        ("[node]\nmembership = 3\n", "node.membership", "must be a table"),
        # the slow-node model's keys
        ('[[fault]]\nat = "1s"\nop = "slow"\n', "fault[0].node", "needs node"),
        ('[[fault]]\nat = "1s"\nop = "slow"\nnode = "n1"\nrate = -1\n', "fault[0].rate",
         "out of range"),
        ('[[fault]]\nat = "1s"\nop = "slow"\nnode = "n1"\nrate = "fast"\n', "fault[0].rate",
         "must be a number"),
        ('[[fault]]\nat = "1s"\nop = "slow"\nnode = "n1"\ndrain_rate = 0\n',
         "fault[0].drain_rate", "never drains"),
        ('[[fault]]\nat = "1s"\nop = "slow"\nnode = "n1"\nlag = 5\n', "fault[0].lag",
         "must be a duration"),
        ('[[fault]]\nat = "1s"\nop = "slow"\nnode = "n1"\nlag = "2h"\n', "fault[0].lag",
         "longer than an hour"),
        ('[[fault]]\nat = "1s"\nop = "slow"\nnode = "n1"\nqueue = 0\n', "fault[0].queue",
         "out of range"),
        ('[[fault]]\nat = "1s"\nop = "slow"\nnode = "n1"\nqueue = 1.5\n', "fault[0].queue",
         "must be an integer"),
        ('[[fault]]\nat = "1s"\nop = "slow"\nnode = "n1"\nqueue_bytes = 0\n',
         "fault[0].queue_bytes", "out of range"),
        ('[[fault]]\nat = "1s"\nop = "slow"\nnode = "n1"\ntimers = "never"\n',
         "fault[0].timers", "not one of on_time, late"),
        ('[[fault]]\nat = "1s"\nop = "slow"\nnode = "n1"\nquota = 3\n', "fault[0].quota",
         "unknown key"),
        ('[[fault]]\nat = "1s"\nop = "pause"\nnode = "n1"\nrate = 3\n', "fault[0].rate",
         "unknown key"),
    ],
)
def test_invalid_scenarios_are_refused_naming_file_key_and_problem(
    extra: str, key: str, fragment: str
) -> None:
    error = refused(extra)
    assert isinstance(error, ConfigError)
    assert error.key == key, str(error)
    assert fragment in error.problem, str(error)
    assert str(error).startswith("t.toml")
    assert f"{key}: " in str(error)


def test_invalid_toml_is_refused_with_its_position() -> None:
    error = refused("[cluster\n")
    assert "not valid TOML" in str(error) and "line" in str(error)


def test_array_table_errors_carry_the_line_of_their_header() -> None:
    text = BASE + '[[fault]]\nat = "1s"\nop = "heal"\n\n[[fault]]\nat = "2s"\nop = "boom"\n'
    with pytest.raises(ScenarioError) as info:
        parse_scenario_text(text, source="t.toml")
    assert info.value.line == 9
    assert str(info.value).startswith("t.toml:9: fault[1].op: unknown fault op 'boom'")


def test_missing_file_and_missing_cluster_are_named() -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario("/nonexistent/x.toml")
    with pytest.raises(ScenarioError, match="cluster: missing"):
        parse_scenario_text('name = "x"\n', source="x.toml")


def test_defaults_and_profiles() -> None:
    s = parse_scenario_text("[cluster]\nnodes = 2\n", source="dir/my-scn.toml")
    assert s.name == "my-scn" and s.seed == 1 and s.duration_s == 60.0 and s.mode == "bytes"
    assert s.cluster.seeds == ("n1", "n2") and s.faults == () and s.workloads == ()
    wan = parse_scenario_text(
        '[cluster]\nnodes = 2\nprofile = "wan"\n[network]\nloss = 0.0\n', source="w.toml"
    )
    assert wan.network.latency == LatencySpec(0.020, 0.150) and wan.network.loss == 0.0


def test_node_tables_split_into_defaults_and_per_node_overrides() -> None:
    s = parse(
        """
        [node]
        probe_interval_s = 2.0
        [node.membership]
        suspicion_mult = 4
        [node.n3]
        probe_timeout_s = 1.5
        """
    )
    assert s.node_defaults == {"probe_interval_s": 2.0, "membership": {"suspicion_mult": 4}}
    assert s.node_overrides == {"n3": {"probe_timeout_s": 1.5}}


def test_fault_forms_parse_into_their_fields() -> None:
    s = parse(
        """
        [cluster]
        nodes = 5
        late = ["n5"]
        start = "staggered"
        start_interval = "250ms"
        [[fault]]
        at = "1s"
        op = "partition"
        oneway = true
        from = "n1"
        to = "n4"
        for = "2s"
        [[fault]]
        at = "2s"
        op = "partition"
        shape = "majorities-ring"
        [[fault]]
        at = "3s"
        op = "skew"
        node = "n2"
        value = "-1.5s"
        [[fault]]
        at = "4s"
        op = "latency"
        latency = "100ms..200ms"
        from = "n1"
        to = "n2"
        [[fault]]
        at = "5s"
        op = "crash"
        nodes = ["n1", "n2"]
        torn = true
        every = "10s"
        for = "2s"
        [[fault]]
        at = "6s"
        op = "join"
        node = "n5"
        [[fault]]
        at = "7s"
        op = "swizzle"
        for = "5s"
        """,
        base='name = "t"\n',
    )
    oneway, ring, skew, latency, crash, join, swizzle = s.faults
    assert (oneway.oneway, oneway.src, oneway.dst, oneway.for_s) == (True, "n1", "n4", 2)
    assert ring.shape == "majorities-ring"
    assert (skew.kind, skew.value) == ("offset", -1.5)
    assert latency.latency == LatencySpec(0.1, 0.2)
    assert (crash.nodes, crash.torn, crash.until_s) == (("n1", "n2"), True, 60.0)
    assert join.node == "n5" and swizzle.for_s == 5.0
    assert s.cluster.late == ("n5",) and s.cluster.start_interval_s == 0.25
    assert s.cluster.seeds == ("n1", "n2", "n3")


def test_slow_fault_parses_its_parameters_and_defaults() -> None:
    from simulator.host import SlowParams
    from simulator.nemesis import SlowFaultSpec

    s = parse(
        """
        [[fault]]
        at = "1s"
        op = "slow"
        node = "n2"
        every = "10s"
        for = "4s"
        rate = 2.5
        drain_rate = 40
        lag = "30ms"
        queue = 64
        queue_bytes = 65536
        timers = "late"
        [[fault]]
        at = "2s"
        op = "slow"
        nodes = ["n1", "n3"]
        """
    )
    first, second = s.faults
    assert isinstance(first, SlowFaultSpec) and isinstance(second, SlowFaultSpec)
    assert first.op == "slow" and first.node == "n2" and first.for_s == 4.0
    assert first.slow == SlowParams(
        rate=2.5, drain_rate=40.0, lag_s=0.03, queue_packets=64, queue_bytes=65536,
        timers="late",
    )
    assert second.slow == SlowParams() and second.for_s is None
    assert SlowParams().queue_bytes == 212_992 and SlowParams().timers == "on_time"


def test_a_node_that_left_may_join_again() -> None:
    s = parse(
        '[[fault]]\nat = "1s"\nop = "leave"\nnode = "n2"\n'
        '[[fault]]\nat = "5s"\nop = "join"\nnode = "n2"\n'
    )
    assert [f.op for f in s.faults] == ["leave", "join"]


def test_durations_latency_ranges_and_bandwidths() -> None:
    assert parse_duration("60s") == 60.0
    assert parse_duration("500ms") == 0.5
    assert parse_duration("2m") == 120.0
    assert parse_duration("1h") == 3600.0
    assert parse_duration("250us") == pytest.approx(0.00025)
    assert parse_duration("1.5s") == 1.5
    assert parse_duration("-2s", signed=True) == -2.0
    for bad in ("", "s", "10", "1.2.3s", "10 sec", "1e3s", "ten s"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert parse_latency_range("1ms..10ms") == (0.001, 0.01)
    assert parse_latency_range("50ms") == (0.05, 0.05)
    assert parse_bandwidth("1MB/s") == 1e6
    assert parse_bandwidth("10Mbit/s") == 1.25e6
    assert parse_bandwidth("64KiB/s") == 65536.0
    assert parse_bandwidth(125_000) == 125_000.0
    for bad_rate in ("1MB", "1 parsec/s", 0, -5, True, 1.5):
        with pytest.raises(ValueError):
            parse_bandwidth(bad_rate)


def test_capability_table_matches_areas_and_role_arguments() -> None:
    C = capabilities
    # consensus (issue 7) has landed, leader transfer as a fault op included
    assert C.missing_capability(C.INVARIANT, "raft.log_matching") is None
    assert C.missing_capability(C.ROLE, "@leader") is None
    assert C.missing_capability(C.FAULT_OP, "transfer-leader") is None
    assert C.missing_capability(C.INVARIANT, "raftish.x") is None
    # the registry (issue 6) has landed: its role is known
    assert C.missing_capability(C.ROLE, "@singleton:web") is None
    assert C.missing_capability(C.ROLE, "@random") is None
    assert C.missing_capability(C.FAULT_OP, "crash") is None
    assert C.missing_capability(C.WORKLOAD, "ping") is None
    with pytest.raises(ValueError):
        C.missing_capability("colour", "red")


SHIPPED = sorted(glob.glob(os.path.join(SCENARIO_DIR, "*.toml")))


def test_scenarios_are_shipped() -> None:
    names = {os.path.basename(p) for p in SHIPPED}
    for required in ("ping-basic.toml", "partition-heal.toml", "crash-restart.toml",
                     "pause-periodic.toml", "clog-swizzle.toml", "skew.toml",
                     "join-wave.toml", "random-faults.toml"):
        assert required in names


@pytest.mark.parametrize("path", SHIPPED, ids=os.path.basename)
def test_every_shipped_scenario_parses_and_documents_itself(path: str) -> None:
    s = load_scenario(path)
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    assert first.startswith(f"# {s.name}:"), "each scenario opens with a comment naming it"
    assert os.path.basename(path) == f"{s.name}.toml"


def test_readme_documents_every_key_op_kind_and_invariant() -> None:
    from simulator import scenario as scn
    from simulator.checkers import CHECKERS
    from simulator.model import WORKLOAD_KINDS
    from simulator.scenario import FAULT_OPS

    with open(os.path.join(SCENARIO_DIR, "..", "README.md"), encoding="utf-8") as f:
        readme = f.read()
    keys = (
        scn._TOP_KEYS + scn._CLUSTER_KEYS + scn._NETWORK_KEYS + scn._LINK_KEYS
        + scn._CHECK_KEYS + scn._RANDOM_KEYS + scn._TIMING_KEYS
        + tuple(k for keys in scn.FAULT_KEYS.values() for k in keys)
    )
    names = set(keys) | set(FAULT_OPS) | set(WORKLOAD_KINDS) | set(CHECKERS)
    names |= set(scn.PROFILES) | set(scn.RESERVED_NODE_KEYS)
    forms = ("`{}`", '"{}"', "[{}]", "[network.{}]")
    missing = sorted(n for n in names if not any(f.format(n) in readme for f in forms))
    assert not missing, f"simulator/README.md does not document: {missing}"
    for item in capabilities.PENDING:
        assert item.capability in readme and item.name.rstrip("*") in readme


def test_network_mtu_is_parsed_defaulted_and_checked() -> None:
    assert parse("").network.mtu == 1500
    assert parse("[network]\nmtu = 9000\n").network.mtu == 9000
    for bad in ("1000", '"big"', "70000", "1500.5"):
        error = refused(f"[network]\nmtu = {bad}\n")
        assert error.key == "network.mtu", str(error)
        assert "1228..65535" in error.problem, str(error)
