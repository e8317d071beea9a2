"""HealthMonitor rules on handmade inputs: each verdict with its reason, cluster rules,
figures from counters and RTT samples, recommendations, bounded history."""

from __future__ import annotations

import pytest

from foundation_p2p.clock import Now
from foundation_p2p.health.monitor import (
    NODE_RULES,
    HealthMonitor,
    HealthReport,
    NodeView,
    Status,
    Thresholds,
    percentile,
)
from foundation_p2p.health.summary import HealthSummary, RaftRole
from foundation_p2p.membership.state import Member, MemberState

T = Thresholds()


def nid(i: int) -> bytes:
    return bytes([i]) * 16


def member(i: int, state: MemberState = MemberState.ALIVE, since: float = 0.0) -> Member:
    return Member(nid(i), f"n{i}", ("127.0.0.1", 7000 + i), 1, state, b"", False,
                  bytes(32), since)


def summary(i: int, **figures: int) -> HealthSummary:
    return HealthSummary(nid(i), 1, 1, awareness_max=8, **figures)


def view(i: int = 2, *, state: MemberState = MemberState.ALIVE, age: float | None = 1.0,
         local: bool = False, **figures: int) -> NodeView:
    s = summary(i, **figures) if age is not None else None
    return NodeView(member(i, state), s, age, local, 100.0)


def verdict(v: NodeView) -> tuple[Status, list[str]]:
    n = HealthMonitor().assess_node(v)
    return n.status, [r.rule for r in n.reasons]


def test_a_quiet_node_is_healthy_without_reasons() -> None:
    assert verdict(view()) == (Status.HEALTHY, [])


@pytest.mark.parametrize(
    ("figures", "status", "rule", "text"),
    [
        ({"awareness": 4}, Status.DEGRADED, "awareness", "awareness score is 4 of 8"),
        ({"awareness": 8}, Status.CRITICAL, "awareness", "probing at 9x interval"),
        ({"loop_lag_ms": 150}, Status.DEGRADED, "loop_lag", "lags 150 ms"),
        ({"loop_lag_ms": 1500}, Status.CRITICAL, "loop_lag", "lags 1500 ms"),
        ({"drop_permille": 60}, Status.DEGRADED, "drops", "6.0% of received"),
        ({"drop_permille": 250}, Status.CRITICAL, "drops", "25.0%"),
        ({"retransmit_permille": 120}, Status.DEGRADED, "retransmits", "12.0%"),
        ({"retransmit_permille": 300}, Status.CRITICAL, "retransmits", "30.0%"),
        ({"queue_depth": 1000}, Status.DEGRADED, "queues", "1000 items"),
        ({"queue_depth": 20000}, Status.CRITICAL, "queues", "20000 items"),
        ({"raft_role": RaftRole.FOLLOWER, "raft_lag": 150}, Status.DEGRADED, "raft_lag",
         "as Raft follower it is 150 entries behind"),
        ({"raft_role": RaftRole.LEARNER, "raft_lag": 20000}, Status.CRITICAL, "raft_lag",
         "learner"),
        ({"registry_lag_ms": 6000}, Status.DEGRADED, "registry_lag", "6000 ms"),
        ({"registry_lag_ms": 60000}, Status.CRITICAL, "registry_lag", "60000 ms"),
    ],
)
def test_each_figure_rule_gives_its_verdict_and_reason(
    figures: dict[str, int], status: Status, rule: str, text: str
) -> None:
    n = HealthMonitor().assess_node(view(**figures))
    assert n.status is status
    assert [r.rule for r in n.reasons] == [rule]
    assert text in n.reasons[0].text


def test_just_below_every_threshold_is_healthy() -> None:
    v = view(awareness=3, loop_lag_ms=99, drop_permille=49, retransmit_permille=99,
             queue_depth=999, raft_role=RaftRole.LEADER, raft_lag=99, registry_lag_ms=4999)
    assert verdict(v) == (Status.HEALTHY, [])


def test_raft_lag_is_ignored_without_a_raft_role() -> None:
    assert verdict(view(raft_lag=1_000_000)) == (Status.HEALTHY, [])


def test_member_state_rules() -> None:
    s, rules = verdict(NodeView(member(2, MemberState.SUSPECT, since=97.0), summary(2), 1.0,
                                False, 100.0))
    assert (s, rules) == (Status.DEGRADED, ["member_state"])
    n = HealthMonitor().assess_node(
        NodeView(member(2, MemberState.FAILED, since=90.0), None, None, False, 100.0))
    assert n.status is Status.CRITICAL
    assert n.reasons[0].text == "missing: declared failed 10.0 s ago"
    assert [r.rule for r in n.reasons] == ["member_state"]  # no "no summary" on a failed node


def test_missing_and_stale_summaries_degrade_but_not_the_local_node() -> None:
    assert verdict(view(age=None)) == (Status.DEGRADED, ["summary_fresh"])
    assert verdict(view(age=T.summary_stale_s + 1)) == (Status.DEGRADED, ["summary_fresh"])
    assert verdict(view(age=None, local=True)) == (Status.HEALTHY, [])


def test_a_stale_summary_is_not_held_against_a_member_back_for_a_short_while() -> None:
    # back (alive again) 20 s ago, last summary 84 s old: it could not reach us before
    back = NodeView(member(2, since=80.0), summary(2), 84.0, False, 100.0)
    assert HealthMonitor().assess_node(back).status is Status.HEALTHY
    # back for longer than the staleness line: stale
    long_back = NodeView(member(2, since=10.0), summary(2), 84.0, False, 100.0)
    n = HealthMonitor().assess_node(long_back)
    assert [r.text for r in n.reasons] == ["its health summary is 84 s old"]


def test_worst_reason_wins_and_all_reasons_are_listed_in_rule_order() -> None:
    n = HealthMonitor().assess_node(view(awareness=6, loop_lag_ms=1200, drop_permille=60))
    assert n.status is Status.CRITICAL
    assert [r.rule for r in n.reasons] == ["awareness", "loop_lag", "drops"]
    order = [r.__name__.removeprefix("rule_") for r in NODE_RULES]
    assert order.index("awareness") < order.index("loop_lag") < order.index("drops")


def _report(mon: HealthMonitor, t: float, members: list[Member],
            sums: dict[bytes, HealthSummary], counters: dict[str, int] | None = None,
            rtt: tuple[float, ...] = ()) -> HealthReport:
    return mon.report(Now(t, 1e9 + t), local=nid(1), members=members, summaries=sums,
                      received_at={k: t - 1 for k in sums}, counters=counters or {},
                      rtt_samples=rtt)


def test_cluster_verdicts_and_recommendation_names_the_cause() -> None:
    mon = HealthMonitor()
    members = [member(i) for i in range(1, 6)]
    sums = {nid(i): summary(i) for i in range(1, 6)}
    r = _report(mon, 10.0, members, sums)
    assert r.status is Status.HEALTHY and r.reasons == () and r.recommendations == ()
    sums[nid(4)] = summary(4, awareness=6, loop_lag_ms=900)
    r = _report(mon, 11.0, members, sums)
    assert r.status is Status.DEGRADED
    assert [x.rule for x in r.reasons] == ["unhealthy_nodes"]
    assert "n4 (degraded)" in r.reasons[0].text
    assert r.recommendations[0] == (
        "n4's awareness score is 6 of 8: its event loop lags 900 ms - it is probing at "
        "7x interval"
    )
    node = r.node("n4")
    assert node is not None and node.status is Status.DEGRADED


def test_missing_members_then_lost_majority() -> None:
    mon = HealthMonitor()
    members = [member(i) for i in range(1, 4)] + [member(4, MemberState.FAILED),
                                                   member(5, MemberState.FAILED)]
    sums = {nid(i): summary(i) for i in range(1, 4)}
    r = _report(mon, 10.0, members, sums)
    assert r.status is Status.DEGRADED
    assert [x.rule for x in r.reasons] == ["missing_members"]
    assert r.reasons[0].text == "2 of 5 members missing: n4, n5"
    members[2] = member(3, MemberState.FAILED)
    r = _report(mon, 11.0, members, sums)
    assert r.status is Status.CRITICAL
    assert r.reasons[0].rule == "majority"
    assert "only 2 of 5" in r.reasons[0].text


def test_left_members_and_observers_are_not_assessed() -> None:
    mon = HealthMonitor()
    obs = Member(nid(9), "obs", ("127.0.0.1", 1), 1, MemberState.ALIVE, b"", True,
                 bytes(32), 0.0)
    members = [member(1), member(2, MemberState.LEFT), obs]
    r = _report(mon, 5.0, members, {nid(1): summary(1)})
    assert [n.name for n in r.nodes] == ["n1"]
    assert r.status is Status.HEALTHY


def test_figures_are_rates_over_the_window_and_rtt_percentiles() -> None:
    mon = HealthMonitor(window_s=60.0)
    members = [member(1)]
    sums = {nid(1): summary(1)}
    c0 = {"packets.received": 1000, "membership.suspicion.started": 2,
          "membership.refutations": 1, "packets.dropped.auth_failed": 5}
    r = _report(mon, 0.0, members, sums, c0)
    assert r.figures.packets_per_s is None  # one sample: no rate yet
    c1 = {"packets.received": 4000, "membership.suspicion.started": 12,
          "membership.refutations": 4, "membership.failed": 1,
          "packets.dropped.auth_failed": 305, "frames.dropped.bad_signature": 0}
    r = _report(mon, 30.0, members, sums, c1, rtt=(0.001, 0.002, 0.003, 0.010))
    f = r.figures
    assert f.window_s == 30.0
    assert f.packets_per_s == 100.0
    # events per minute over at least a minute: 10 suspicions in 30 s are 10 a minute
    assert f.suspicions_per_min == 10.0
    assert f.refutations_per_min == 3.0
    assert f.failures_per_min == 1.0
    assert f.error_rate == 0.1
    assert f.latency_ms_p50 == 2.0 and f.latency_ms_p99 == 10.0 and f.latency_samples == 4
    rules = [x.rule for x in r.reasons]
    assert rules == ["churn", "errors"]
    assert any("10.0 suspicions per minute" in x for x in r.recommendations)
    # samples older than the window no longer count
    r = _report(mon, 95.0, members, sums, c1)
    assert r.figures.packets_per_s is None


def test_history_is_bounded_oldest_dropped() -> None:
    mon = HealthMonitor(history=3)
    for t in range(5):
        r = _report(mon, float(t), [member(1)], {nid(1): summary(1)})
    assert [h.mono for h in r.history] == [2.0, 3.0, 4.0]
    assert r.history[-1].counts == (1, 0, 0)


def test_report_json_shape() -> None:
    mon = HealthMonitor()
    r = _report(mon, 1.0, [member(1), member(2, MemberState.SUSPECT)],
                {nid(1): summary(1), nid(2): summary(2)})
    j = r.to_json()
    assert set(j) >= {"status", "nodes", "recommendations", "figures", "reasons"}
    assert j["status"] == "degraded"
    n2 = j["nodes"][1]
    assert set(n2) >= {"node_id", "name", "address", "status", "reasons"}
    assert n2["address"] == "127.0.0.1:7002" and n2["status"] == "degraded"
    assert n2["summary"]["version"] == 1


def test_percentile_nearest_rank() -> None:
    assert percentile([5.0], 0.99) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 0.5)
