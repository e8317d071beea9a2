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


def partition_scenario(
    cluster_factory: Any, record: Any, size: int, cycles: int
) -> None:
    """``size`` nodes; ``cycles`` times: cut a minority off (a different one each cycle),
    verify the cut with probes, wait until both sides see each other failed and the
    registry forgets the other side, heal, wait until membership, registry and the
    singleton converge (one owner agreed by all, running on exactly that node)."""
    env = {"NETNS_APP_FEATURES": "singleton,registry", "NETNS_APP_EXPECT": str(size)}
    c = cluster_factory(FAST, env)
    t0 = time.monotonic()
    nodes = c.add_nodes(size)
    names = [n.name for n in nodes]
    all_alive = {n: "ALIVE" for n in names}
    wait_views(nodes, all_alive, 30, f"{size} members alive")
    regs = [f"node/{n}" for n in names]

    def settled(n: NodeProc) -> bool:
        reg, look = last_of(n, "registry"), last_of(n, "lookup")
        return bool(reg and reg["names"] == regs and look and look["owner"])

    def one_owner() -> bool:
        looks = {(last_of(n, "lookup") or {}).get("owner") for n in nodes}
        return len(looks) == 1 and None not in looks and len(running_singletons(nodes)) == 1

    c.wait_until(lambda: all(settled(n) for n in nodes), 30, "registry and singleton settled")
    c.wait_until(one_owner, 30, "one singleton before the partition")
    note(record, "partition.formed_s", round(time.monotonic() - t0, 2))

    for cycle in range(cycles):
        cut = size // 2 - (cycle % 2)  # alternately 2 and 1 of 5 (3 and 2 of 7) cut off
        start = (cycle * 2) % size
        minor = [names[(start + i) % size] for i in range(cut)]
        major = [n for n in names if n not in minor]
        t_cut = time.monotonic()
        c.partition(major, minor)
        matrix = c.check_partition(major, minor)
        if cycle == 0:
            note(record, "partition.probe_matrix", json.dumps(matrix))
        wait_views([c.nodes[n] for n in major], {m: "FAILED" for m in minor}, 30,
                   "the minority declared failed")
        wait_views([c.nodes[n] for n in minor], {m: "FAILED" for m in major}, 30,
                   "the majority declared failed")
        note(record, f"partition.{cycle}.detected_s", round(time.monotonic() - t_cut, 2))
        # each side's registry forgets the other side's names
        for side, other in ((major, minor), (minor, major)):
            gone = {f"node/{m}" for m in other}
            c.wait_until(
                lambda side=side, gone=gone: all(
                    not set((last_of(c.nodes[x], "registry") or {"names": []})["names"]) & gone
                    for x in side),
                30, "the other side's registrations removed",
            )
        note(record, f"partition.{cycle}.singletons_during", running_singletons(nodes))

        t_heal = time.monotonic()
        c.heal()
        c.check_partition(names)  # every pair answers again
        wait_views(nodes, all_alive, 30, f"{size} members alive after the heal")
        note(record, f"partition.{cycle}.membership_healed_s",
             round(time.monotonic() - t_heal, 2))
        c.wait_until(lambda: all(settled(n) for n in nodes), 30,
                     "registry converged after the heal")
        c.wait_until(one_owner, 30, "one singleton, agreed by every node")
        note(record, f"partition.{cycle}.converged_s", round(time.monotonic() - t_heal, 2))

    owner = last_of(nodes[0], "lookup")["owner"]  # type: ignore[index]
    [runner] = running_singletons(nodes)
    assert c.node_ids()[owner] == runner
    # the CLI, from inside a namespace, sees the same cluster
    cli = subprocess.run(
        ["ip", "netns", "exec", c.ns_name(names[-1]), sys.executable, "-m", "foundation_p2p",
         "members", "--json", "--join", nodes[1].gossip, "--cluster-key-file",
         str(c.key_path), "--timeout", "10"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert cli.returncode == 0, cli.stderr
    seen = {m["name"]: m["state"].upper() for m in json.loads(cli.stdout) if not m["observer"]}
    assert seen == all_alive, seen
    # still exactly one singleton, agreed by every node, after that time: it may have moved
    # once to its placement owner after the heal (a handoff: stopped, then started), so wait
    # for the agreement rather than demand the same node
    c.wait_until(one_owner, 30, "one singleton, agreed by every node, after the CLI")
    final = last_of(nodes[0], "lookup")["owner"]  # type: ignore[index]
    assert running_singletons(nodes) == [c.node_ids()[final]]


def test_partition_and_heal_converge_with_exactly_one_singleton(
    cluster_factory: Any, record_property: Any
) -> None:
    partition_scenario(cluster_factory, record_property, size=5, cycles=1)


@pytest.mark.soak
def test_soak_partition_cycles_seven_nodes(cluster_factory: Any, record_property: Any) -> None:
    partition_scenario(cluster_factory, record_property, size=7, cycles=6)


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


def kv_scenario(
    cluster_factory: Any, record: Any, tmp_path: Path, kills: int, per_phase: int
) -> None:
    """Three Raft nodes and a load client in its own namespace; ``kills`` times: SIGKILL the
    leader, wait for another, restart the killed node from its data directory. Between
    faults, ``per_phase`` more acknowledged operations. The client's history must be
    linearizable (``check-history``); the same history with one read falsified must not."""
    c = cluster_factory(KV_CONFIG, {"NETNS_APP_FEATURES": "raft"})
    nodes = c.add_nodes(3)
    client_addr = c.add_host("client")
    c.check_partition([*c.nodes, "client"])  # no fault yet: every pair answers
    leader = wait_leader(c, nodes, 40)
    history = tmp_path / "history.jsonl"
    spec = {
        "join": [n.gossip for n in nodes], "bind": f"{client_addr}:0",
        "key_file": str(c.key_path), "out": str(history), "procs": 4, "keys": 3,
        "timeout_s": 1.5, "limit_s": 60 + 30 * kills, "seed": 1,
    }
    client_log = tmp_path / "client.log"
    t_client = time.monotonic()
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
    note(record, "kv.client_ready_s", round(time.monotonic() - t_client, 2))
    more_ok(per_phase, 60, "acknowledged operations before the fault")
    for k in range(kills):
        victim = next(n for n in nodes if n.node_id == leader)
        killed_at = time.monotonic()
        ok_at_kill = oks()
        victim.kill()
        assert not victim.running
        survivors = [n for n in nodes if n is not victim]
        new_leader = wait_leader(c, survivors, 20, exclude=leader)
        assert new_leader != leader
        note(record, f"kv.{k}.failover_s", round(time.monotonic() - killed_at, 2))
        more_ok(per_phase, 60, "acknowledged operations on the new leader")
        note(record, f"kv.{k}.ok_while_down", oks() - ok_at_kill)
        c.start_node(victim)  # same data directory
        victim.wait_for(lambda _o, v=victim: raft_view(v)[1] is not None, 30,
                        "the restarted node follows a leader")
        note(record, f"kv.{k}.rejoin_s", round(time.monotonic() - killed_at, 2))
        more_ok(per_phase // 2, 60, "acknowledged operations with the old leader back")
        leader = wait_leader(c, nodes, 20)
    client.stdin.write("stop\n")
    client.stdin.flush()
    client.stdin.close()
    client.wait(120)
    assert client.returncode == 0, client_log.read_text()[-3000:]
    summary = json.loads([x for x in lines if x.startswith("{")][-1])
    note(record, "kv.client", json.dumps(summary))
    assert summary["final_reads_complete"], summary
    assert summary["ok_writes"] >= 10, summary
    check = check_history(history)
    note(record, "kv.check", check.stdout.strip()[-500:])
    assert check.returncode == 0, check.stdout + check.stderr
    # the same history with its last read falsified is refused: the check can fail
    events = [json.loads(x) for x in history.read_text().splitlines()]
    last_read = max(i for i, e in enumerate(events) if e["f"] == "get" and e["type"] == "ok")
    events[last_read]["value"] = "never-written"
    bad = tmp_path / "falsified.jsonl"
    bad.write_text("".join(json.dumps(e) + "\n" for e in events))
    assert check_history(bad).returncode == 1


def check_history(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "foundation_p2p", "check-history", str(path), "--json",
         "--timeout", "60"],
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_leader_sigkill_under_kv_load_keeps_the_history_linearizable(
    cluster_factory: Any, record_property: Any, tmp_path: Path
) -> None:
    kv_scenario(cluster_factory, record_property, tmp_path, kills=1, per_phase=100)


@pytest.mark.soak
def test_soak_five_leader_kills_under_kv_load(
    cluster_factory: Any, record_property: Any, tmp_path: Path
) -> None:
    kv_scenario(cluster_factory, record_property, tmp_path, kills=5, per_phase=300)


# -- loss with bulk and control on channels ----------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def loss_scenario(cluster_factory: Any, record: Any, percent: int, publish_s: float) -> None:
    """Two nodes behind a ``percent`` % loss rule (measured with probes first); one
    publishes control messages every 50 ms and bulk at 3.3 MB/s offered (more than the
    connection carries under loss) for ``publish_s`` seconds; every control message must
    arrive, its latency is reported (p50/p99) and bounded only loosely."""
    c = cluster_factory(FAST, {"NETNS_APP_PUB_S": str(publish_s), "NETNS_APP_CTL_S": "0.05",
                               "NETNS_APP_BULK_S": "0.02", "NETNS_APP_BULK_BYTES": "65536"})
    sub, pub = c.add_nodes(2, start=False)
    sub.env["NETNS_APP_FEATURES"] = "sub"
    pub.env["NETNS_APP_FEATURES"] = "pub"
    c.set_loss(percent, ["n0", "n1"])
    p = percent / 100
    rate = c.measure_loss("n1", "n0", 2000)
    note(record, "loss.probe_rate", round(rate, 4))
    assert 0.5 * p <= rate <= 1.6 * p, f"the {percent} % loss rule measured {rate:.3%}"
    c.start_node(sub)
    c.start_node(pub)
    started = pub.wait_for(lambda obs: next((o for o in obs if o["kind"] == "pub_start"), None),
                           30, "the publisher found its subscriber")
    done = pub.wait_for(lambda obs: next((o for o in obs if o["kind"] == "pub_done"), None),
                        publish_s + 60, "the publisher finished")
    want = int(done["ctl"])

    def controls(obs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [o for o in obs if o["kind"] == "ctl"]

    arrived = c.wait_until(lambda: len(controls(sub.obs)) >= want, 30)
    ctl = controls(sub.obs)
    if not arrived:
        got = {o["seq"] for o in ctl}
        missing = sorted(set(range(want)) - got)
        last = max((o["t"] for o in ctl), default=started["t"])
        raise AssertionError(
            f"{len(ctl)}/{want} control messages arrived; missing {missing[:10]}... "
            f"({len(missing)}); the last arrived {last - started['t']:.1f} s after the "
            f"start, publishing ended at {done['t'] - started['t']:.1f} s; publisher "
            f"counters {done['counters']}; subscriber log: {sub.tail(1500)}"
        )
    assert sorted(o["seq"] for o in ctl) == list(range(want))
    lat = [o["lat"] * 1000 for o in ctl]
    span = done["t"] - started["t"]
    bulk = [o for o in sub.obs if o["kind"] == "data" and o["t"] <= done["t"]]
    for host in ("n0", "n1"):
        seen, lost = c.loss_counters(host)
        note(record, f"loss.{host}.rule_rate", f"{lost}/{seen} = {lost / seen:.4f}")
        assert 0.5 * p <= lost / seen <= 1.6 * p
    note(record, "loss.control_messages", want)
    note(record, "loss.control_p50_ms", round(statistics.median(lat), 2))
    note(record, "loss.control_p99_ms", round(percentile(lat, 0.99), 2))
    note(record, "loss.control_max_ms", round(max(lat), 2))
    note(record, "loss.bulk_delivered_while_publishing", f"{len(bulk)}/{done['bulk']}")
    note(record, "loss.bulk_mb_per_s", round(sum(o["bytes"] for o in bulk) / span / 1e6, 3))
    note(record, "loss.pub_counters", json.dumps(done["counters"]))
    assert bulk, "no bulk message arrived"
    # functional bound only (a control message is not stuck behind bulk data for seconds)
    assert percentile(lat, 0.99) < 2000, lat


def test_five_percent_loss_bulk_and_control_on_channels(
    cluster_factory: Any, record_property: Any
) -> None:
    loss_scenario(cluster_factory, record_property, percent=5, publish_s=6)


@pytest.mark.soak
def test_soak_ten_percent_loss_for_a_minute(cluster_factory: Any, record_property: Any) -> None:
    loss_scenario(cluster_factory, record_property, percent=10, publish_s=60)


# -- a frozen node and Lifeguard ---------------------------------------------------------

FREEZE_CONFIG = """
[membership]
probe_interval_s = 0.2
probe_timeout_s = 0.1
suspicion_mult = 15
suspicion_max_mult = 2
gossip_interval_s = 0.05
dead_retry_interval_s = 0.3
dead_retry_max_interval_s = 1.0
"""
SUSPICION_MIN_S = 15 * 0.2
"""suspicion_mult * max(1, log10 3) * probe_interval_s"""
SUSPICION_MAX_S = 2 * SUSPICION_MIN_S
"""suspicion_max_mult * the minimum (Lifeguard's upper bound, with no confirmation)"""


def freeze_scenario(cluster_factory: Any, record: Any, cycles: int) -> None:
    """Three nodes; ``cycles`` times: SIGSTOP one for half the minimum suspicion timeout
    (suspected, never failed, alive again after SIGCONT), then SIGSTOP it until both others
    declare it failed (alive again after SIGCONT)."""
    c = cluster_factory(FREEZE_CONFIG)
    nodes = c.add_nodes(3)
    names = [n.name for n in nodes]
    wait_views(nodes, {n: "ALIVE" for n in names}, 30, "3 members alive")
    for cycle in range(cycles):
        frozen = nodes[2 - cycle % 3]
        watchers = [n for n in nodes if n is not frozen]
        freeze_cycle(c, record, nodes, watchers, frozen, f"freeze.{cycle}")


def freeze_cycle(
    c: NetnsCluster, record: Any, nodes: list[NodeProc], watchers: list[NodeProc],
    frozen: NodeProc, tag: str,
) -> None:
    names = [n.name for n in nodes]

    def states_of_frozen(since: float) -> set[str]:
        return {o["states"].get(frozen.name) for n in watchers for o in n.obs
                if o["kind"] == "members" and o["t"] >= since}

    # short: frozen for half the minimum suspicion timeout (the other half leaves a loaded
    # machine time to run the thawed node's refutation)
    t_stop = time.monotonic()
    frozen.freeze()
    try:
        failed_early = c.wait_until(lambda: "FAILED" in states_of_frozen(t_stop),
                                    0.5 * SUSPICION_MIN_S)
    finally:
        frozen.thaw()
    short = time.monotonic() - t_stop
    note(record, f"{tag}.short_s", round(short, 3))
    assert not failed_early, "declared failed while frozen for less than the minimum"
    assert short < SUSPICION_MIN_S
    assert "SUSPECT" in states_of_frozen(t_stop), "a frozen node was never suspected"
    suspected = min(o["t"] for n in watchers for o in n.obs if o["kind"] == "members"
                    and o["t"] >= t_stop and o["states"].get(frozen.name) == "SUSPECT")
    note(record, f"{tag}.suspected_after_s", round(suspected - t_stop, 3))
    wait_views(nodes, {n: "ALIVE" for n in names}, 10, "alive again after the short freeze")
    assert "FAILED" not in states_of_frozen(t_stop), "falsely declared failed"
    note(record, f"{tag}.short_recovered_s", round(time.monotonic() - t_stop, 2))

    # long: frozen until both watchers declare it failed
    t_stop = time.monotonic()
    frozen.freeze()
    try:
        wait_views(watchers, {frozen.name: "FAILED"}, SUSPICION_MAX_S + 30, "declared failed")
    finally:
        frozen.thaw()
    note(record, f"{tag}.long_failed_after_s", round(time.monotonic() - t_stop, 2))
    assert time.monotonic() - t_stop >= SUSPICION_MIN_S
    t_thaw = time.monotonic()
    wait_views(nodes, {n: "ALIVE" for n in names}, 20, "rejoined after SIGCONT")
    note(record, f"{tag}.rejoin_s", round(time.monotonic() - t_thaw, 2))


def test_a_short_freeze_is_suspected_not_failed_a_long_one_fails_and_rejoins(
    cluster_factory: Any, record_property: Any
) -> None:
    freeze_scenario(cluster_factory, record_property, cycles=1)


@pytest.mark.soak
def test_soak_freeze_cycles(cluster_factory: Any, record_property: Any) -> None:
    freeze_scenario(cluster_factory, record_property, cycles=6)
