"""Real faults between real node processes, one network namespace each (``netns_harness``).

Every scenario first verifies that its fault is applied (plain UDP probes between the
namespaces; the loss rule's own counters), then judges the protocol from what the nodes
report (``netns_app``) and, for the KV store, from a client's recorded history checked by
``foundation-p2p check-history``:

- partition and heal: membership and the registry split, then converge; exactly one
  singleton afterwards;
- SIGKILL of the Raft leader under KV load, restart from the same data directory: the
  history is linearizable (no acknowledged write lost);
- 5 % loss (nft) under bulk data and control messages on channels: every control message
  arrives; p50/p99 of its latency are reported, bounded only loosely;
- SIGSTOP shorter than the minimum suspicion timeout: suspected, never declared failed
  (Lifeguard); longer: declared failed, and alive again after SIGCONT.

They run as root (``make test`` in CI) and skip with the reason elsewhere. Timings and
measured rates are printed (``pytest -s`` shows them) and kept in the JUnit properties.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netns_harness import HERE, NetnsCluster, NodeProc

pytestmark = pytest.mark.usefixtures("netns_ready")

FAST = """
[membership]
probe_interval_s = 0.2
probe_timeout_s = 0.1
suspicion_mult = 4
suspicion_max_mult = 3
gossip_interval_s = 0.05
dead_retry_interval_s = 0.3
dead_retry_max_interval_s = 1.0
push_pull_interval_s = 2.0
"""


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Any]:
    """``cluster_factory(config, env)`` -> an entered :class:`NetnsCluster`, closed after."""
    made: list[NetnsCluster] = []

    def make(config: str, env: dict[str, str] | None = None) -> NetnsCluster:
        c = NetnsCluster(tmp_path, config, env)
        made.append(c)
        return c.__enter__()

    try:
        yield make
    finally:
        for c in made:
            c.close()


def note(record: Any, name: str, value: Any) -> None:
    """Print a figure and keep it in the test's JUnit properties."""
    print(f"[netns] {name} = {value}")
    record(name, value)


def views_agree(nodes: list[NodeProc], expect: dict[str, str]) -> bool:
    return all(all(n.states().get(k) == v for k, v in expect.items()) for n in nodes)


def wait_views(nodes: list[NodeProc], expect: dict[str, str], timeout: float, what: str) -> None:
    """Wait until every node in ``nodes`` reports ``expect`` (name -> state) for each name."""
    end = time.monotonic() + timeout
    for n in nodes:
        left = max(0.0, end - time.monotonic())
        n.wait_for(lambda _obs, n=n: all(n.states().get(k) == v for k, v in expect.items()),
                   left, what)


def last_of(node: NodeProc, kind: str) -> dict[str, Any] | None:
    for item in reversed(node.obs):
        if item["kind"] == kind and item["life"] == node.lives - 1:
            return item
    return None


def running_singletons(nodes: list[NodeProc]) -> list[str]:
    """Nodes where ``ticker`` runs now (a ``running`` with no later ``exited``, this life)."""
    out = []
    for n in nodes:
        state = False
        for item in n.obs:
            if item["kind"] == "singleton" and item["life"] == n.lives - 1:
                state = item["event"] == "running"
        if state:
            out.append(n.name)
    return out


# -- partition and heal ------------------------------------------------------------------


def test_partition_and_heal_converge_with_exactly_one_singleton(
    cluster_factory: Any, record_property: Any
) -> None:
    env = {"NETNS_APP_FEATURES": "singleton,registry", "NETNS_APP_EXPECT": "5"}
    c = cluster_factory(FAST, env)
    t0 = time.monotonic()
    nodes = c.add_nodes(5)
    names = [n.name for n in nodes]
    all_alive = {n: "ALIVE" for n in names}
    wait_views(nodes, all_alive, 30, "5 members alive")
    regs = [f"node/{n}" for n in names]

    def settled(_obs: Any, n: NodeProc) -> bool:
        reg, look = last_of(n, "registry"), last_of(n, "lookup")
        return bool(reg and reg["names"] == regs and look and look["owner"])

    for n in nodes:
        n.wait_for(lambda obs, n=n: settled(obs, n), 30, "registry and singleton settled")
    owners = {last_of(n, "lookup")["owner"] for n in nodes}  # type: ignore[index]
    assert len(owners) == 1, owners
    note(record_property, "partition.formed_s", round(time.monotonic() - t0, 2))

    major, minor = names[:3], names[3:]
    t_cut = time.monotonic()
    c.partition(major, minor)
    matrix = c.check_partition(major, minor)
    note(record_property, "partition.probe_matrix", json.dumps(matrix))
    wait_views([c.nodes[n] for n in major], {m: "FAILED" for m in minor}, 30,
               "the minority declared failed")
    wait_views([c.nodes[n] for n in minor], {m: "FAILED" for m in major}, 30,
               "the majority declared failed")
    note(record_property, "partition.detected_s", round(time.monotonic() - t_cut, 2))
    # each side's registry forgets the other side's names
    for side, other in ((major, minor), (minor, major)):
        for name in side:
            n = c.nodes[name]
            n.wait_for(
                lambda _o, n=n, other=other: not set(
                    (last_of(n, "registry") or {"names": []})["names"]
                ) & {f"node/{m}" for m in other},
                30, "the other side's registrations removed",
            )
    during = running_singletons(nodes)
    note(record_property, "partition.singletons_during", during)

    t_heal = time.monotonic()
    c.heal()
    c.check_partition(names)  # every pair answers again
    wait_views(nodes, all_alive, 30, "5 members alive after the heal")
    note(record_property, "partition.membership_healed_s", round(time.monotonic() - t_heal, 2))
    for n in nodes:
        n.wait_for(lambda obs, n=n: settled(obs, n), 30, "registry converged after the heal")

    def one_owner() -> bool:
        looks = {(last_of(n, "lookup") or {}).get("owner") for n in nodes}
        return len(looks) == 1 and None not in looks and len(running_singletons(nodes)) == 1

    c.wait_until(one_owner, 30, "one singleton, agreed by every node")
    note(record_property, "partition.converged_s", round(time.monotonic() - t_heal, 2))
    owner = last_of(nodes[0], "lookup")["owner"]  # type: ignore[index]
    [runner] = running_singletons(nodes)
    assert c.node_ids()[owner] == runner
    # the CLI sees the same cluster from inside a namespace
    cli = subprocess.run(
        ["ip", "netns", "exec", c.ns_name("n4"), sys.executable, "-m", "foundation_p2p",
         "members", "--json", "--join", nodes[1].gossip, "--cluster-key-file",
         str(c.key_path), "--timeout", "10"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert cli.returncode == 0, cli.stderr
    seen = {m["name"]: m["state"].upper() for m in json.loads(cli.stdout) if not m["observer"]}
    assert seen == all_alive, seen


# -- leader kill under KV load -----------------------------------------------------------

KV_CONFIG = FAST + """
[consensus]
tick_interval_s = 0.05
election_tick = 10
bootstrap_expect = 3
request_timeout_s = 3.0
"""


def raft_view(n: NodeProc) -> tuple[str | None, str | None]:
    item = last_of(n, "raft")
    return (item["role"], item["leader"]) if item else (None, None)


def agreed_leader(nodes: list[NodeProc]) -> str | None:
    views = [raft_view(n) for n in nodes]
    leaders = {v[1] for v in views}
    if len(leaders) == 1 and None not in leaders and any(v[0] == "leader" for v in views):
        return leaders.pop()
    return None


def wait_leader(
    c: NetnsCluster, nodes: list[NodeProc], timeout: float, exclude: str | None = None
) -> str:
    """The leader every node of ``nodes`` reports (one of them as itself), not ``exclude``."""

    def found() -> str | None:
        leader = agreed_leader(nodes)
        return leader if leader != exclude else None

    leader: str = c.wait_until(found, timeout, f"an agreed leader other than {exclude}")
    return leader


def test_leader_sigkill_under_kv_load_keeps_the_history_linearizable(
    cluster_factory: Any, record_property: Any, tmp_path: Path
) -> None:
    c = cluster_factory(KV_CONFIG, {"NETNS_APP_FEATURES": "raft"})
    nodes = c.add_nodes(3)
    client_addr = c.add_host("client")
    c.check_partition([*c.nodes, "client"])  # no fault yet: every pair answers
    leader = wait_leader(c, nodes, 40)
    history = tmp_path / "history.jsonl"
    spec = {
        "join": [n.gossip for n in nodes], "bind": f"{client_addr}:0",
        "key_file": str(c.key_path), "out": str(history), "procs": 4, "keys": 3,
        "timeout_s": 1.5, "limit_s": 90, "seed": 1,
    }
    client_log = tmp_path / "client.log"
    with open(client_log, "w", encoding="utf-8") as log:
        client = c.popen_in("client", [sys.executable, str(HERE / "netns_kv_client.py"),
                                       json.dumps(spec)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
    assert client.stdin is not None
    lines = c.lines_of(client)

    def oks() -> int:
        done = [int(x.split()[1]) for x in lines if x.startswith("progress ")]
        return done[-1] if done else 0

    def more_ok(count: int, timeout: float, what: str) -> None:
        """Wait for ``count`` more acknowledged operations (the load runs meanwhile)."""
        start = oks()
        c.wait_until(lambda: oks() >= start + count or "" in lines, timeout, what)
        assert "" not in lines, f"the client ended: {client_log.read_text()[-3000:]}"

    c.wait_until(lambda: "ready" in lines or "" in lines, 90, "the client ready")
    more_ok(100, 60, "100 acknowledged operations before the fault")
    victim = next(n for n in nodes if n.node_id == leader)
    killed_at = time.monotonic()
    ok_at_kill = oks()
    victim.kill()
    assert not victim.running
    survivors = [n for n in nodes if n is not victim]
    new_leader = wait_leader(c, survivors, 20, exclude=leader)
    failover = time.monotonic() - killed_at
    note(record_property, "kv.failover_s", round(failover, 2))
    more_ok(100, 60, "100 acknowledged operations on the new leader")
    note(record_property, "kv.ok_while_down", oks() - ok_at_kill)
    c.start_node(victim)  # same data directory
    victim.wait_for(lambda _o: raft_view(victim)[1] is not None, 30, "the restarted node "
                    "follows a leader")
    note(record_property, "kv.rejoin_s", round(time.monotonic() - killed_at, 2))
    more_ok(50, 60, "50 acknowledged operations with the old leader back")
    client.stdin.write("stop\n")
    client.stdin.flush()
    client.stdin.close()
    client.wait(120)
    assert client.returncode == 0, client_log.read_text()[-3000:]
    summary = json.loads([x for x in lines if x.startswith("{")][-1])
    note(record_property, "kv.client", json.dumps(summary))
    assert summary["final_reads_complete"], summary
    assert summary["ok_writes"] >= 10, summary
    check = subprocess.run(
        [sys.executable, "-m", "foundation_p2p", "check-history", str(history), "--json",
         "--timeout", "60"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    note(record_property, "kv.check", check.stdout.strip()[-500:])
    assert check.returncode == 0, check.stdout + check.stderr
    assert new_leader != leader


# -- loss with bulk and control on channels ----------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def test_five_percent_loss_bulk_and_control_on_channels(
    cluster_factory: Any, record_property: Any
) -> None:
    # bulk offered at 3.3 MB/s: more than the connection carries under 5 % loss
    c = cluster_factory(FAST, {"NETNS_APP_PUB_S": "6", "NETNS_APP_CTL_S": "0.05",
                               "NETNS_APP_BULK_S": "0.02", "NETNS_APP_BULK_BYTES": "65536"})
    sub, pub = c.add_nodes(2, start=False)
    sub.env["NETNS_APP_FEATURES"] = "sub"
    pub.env["NETNS_APP_FEATURES"] = "pub"
    c.set_loss(5, ["n0", "n1"])
    rate = c.measure_loss("n1", "n0", 2000)
    note(record_property, "loss.probe_rate", round(rate, 4))
    assert 0.025 <= rate <= 0.08, f"the 5 % loss rule measured {rate:.3%} with probes"
    c.start_node(sub)
    c.start_node(pub)
    started = pub.wait_for(lambda obs: next((o for o in obs if o["kind"] == "pub_start"), None),
                           30, "the publisher found its subscriber")
    done = pub.wait_for(lambda obs: next((o for o in obs if o["kind"] == "pub_done"), None),
                        60, "the publisher finished")
    want = int(done["ctl"])

    def controls(obs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [o for o in obs if o["kind"] == "ctl"]

    sub.wait_for(lambda obs: len(controls(obs)) >= want, 30, f"{want} control messages")
    ctl = controls(sub.obs)
    assert sorted(o["seq"] for o in ctl) == list(range(want))
    lat = [o["lat"] * 1000 for o in ctl]
    span = done["t"] - started["t"]
    bulk = [o for o in sub.obs if o["kind"] == "data" and o["t"] <= done["t"]]
    for host in ("n0", "n1"):
        seen, lost = c.loss_counters(host)
        note(record_property, f"loss.{host}.rule_rate", f"{lost}/{seen} = {lost / seen:.4f}")
        assert 0.02 <= lost / seen <= 0.09
    note(record_property, "loss.control_p50_ms", round(statistics.median(lat), 2))
    note(record_property, "loss.control_p99_ms", round(percentile(lat, 0.99), 2))
    note(record_property, "loss.control_max_ms", round(max(lat), 2))
    note(record_property, "loss.bulk_delivered_while_publishing", f"{len(bulk)}/{done['bulk']}")
    note(record_property, "loss.bulk_mb_per_s",
         round(sum(o["bytes"] for o in bulk) / span / 1e6, 3))
    note(record_property, "loss.pub_counters", json.dumps(done["counters"]))
    assert bulk, "no bulk message arrived"
    # functional bound only (a control message is not stuck behind bulk data for seconds)
    assert percentile(lat, 0.99) < 2000, lat


# -- a frozen node and Lifeguard ---------------------------------------------------------

FREEZE_CONFIG = """
[membership]
probe_interval_s = 0.2
probe_timeout_s = 0.1
suspicion_mult = 10
suspicion_max_mult = 2
gossip_interval_s = 0.05
dead_retry_interval_s = 0.3
dead_retry_max_interval_s = 1.0
"""
SUSPICION_MIN_S = 10 * 0.2
"""suspicion_mult * max(1, log10 3) * probe_interval_s"""
SUSPICION_MAX_S = 2 * SUSPICION_MIN_S
"""suspicion_max_mult * the minimum (Lifeguard's upper bound, with no confirmation)"""


def test_a_short_freeze_is_suspected_not_failed_a_long_one_fails_and_rejoins(
    cluster_factory: Any, record_property: Any
) -> None:
    c = cluster_factory(FREEZE_CONFIG)
    nodes = c.add_nodes(3)
    names = [n.name for n in nodes]
    wait_views(nodes, {n: "ALIVE" for n in names}, 30, "3 members alive")
    watchers, frozen = nodes[:2], nodes[2]

    def states_of_frozen(since: float) -> set[str]:
        return {o["states"].get(frozen.name) for n in watchers for o in n.obs
                if o["kind"] == "members" and o["t"] >= since}

    # short: frozen for 75 % of the minimum suspicion timeout
    t_stop = time.monotonic()
    frozen.freeze()
    try:
        failed_early = c.wait_until(lambda: "FAILED" in states_of_frozen(t_stop),
                                    0.75 * SUSPICION_MIN_S)
    finally:
        frozen.thaw()
    short = time.monotonic() - t_stop
    note(record_property, "freeze.short_s", round(short, 3))
    assert not failed_early, "declared failed while frozen for less than the minimum"
    assert short < SUSPICION_MIN_S
    assert "SUSPECT" in states_of_frozen(t_stop), "a frozen node was never suspected"
    suspected = min(o["t"] for n in watchers for o in n.obs if o["kind"] == "members"
                    and o["t"] >= t_stop and o["states"].get(frozen.name) == "SUSPECT")
    note(record_property, "freeze.suspected_after_s", round(suspected - t_stop, 3))
    wait_views(nodes, {n: "ALIVE" for n in names}, 10, "alive again after the short freeze")
    assert "FAILED" not in states_of_frozen(t_stop), "falsely declared failed"
    note(record_property, "freeze.short_recovered_s", round(time.monotonic() - t_stop, 2))

    # long: frozen until both watchers declare it failed
    t_stop = time.monotonic()
    frozen.freeze()
    try:
        wait_views(watchers, {frozen.name: "FAILED"}, SUSPICION_MAX_S + 30, "declared failed")
    finally:
        frozen.thaw()
    note(record_property, "freeze.long_failed_after_s", round(time.monotonic() - t_stop, 2))
    assert time.monotonic() - t_stop >= SUSPICION_MIN_S
    t_thaw = time.monotonic()
    wait_views(nodes, {n: "ALIVE" for n in names}, 20, "rejoined after SIGCONT")
    note(record_property, "freeze.rejoin_s", round(time.monotonic() - t_thaw, 2))
