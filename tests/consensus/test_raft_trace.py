"""Readable traces of small scenarios, checked line by line (etcd raft's data-driven
tests are the model: the expected trace is the specification, and a diff shows what
changed). Each line is one delivered message: ``sender->receiver TYPE term=.. fields``."""

from __future__ import annotations

from raft_harness import Network, nid

from foundation_p2p.consensus.messages import Message, MessageType

M = MessageType


def describe(m: Message) -> str:
    fields = [f"term={m.term}"]
    if m.type in (M.VOTE, M.PRE_VOTE):
        fields += [f"last={m.index}@{m.log_term}"]
    elif m.type in (M.VOTE_RESP, M.PRE_VOTE_RESP):
        fields += ["rejected" if m.reject else "granted"]
    elif m.type is M.APP:
        ents = ",".join(f"{e.index}@{e.term}" for e in m.entries) or "-"
        fields += [f"prev={m.index}@{m.log_term}", f"commit={m.commit}", f"entries={ents}"]
    elif m.type is M.APP_RESP:
        fields += [f"reject hint={m.reject_hint}" if m.reject else f"index={m.index}"]
    elif m.type is M.HEARTBEAT:
        fields += [f"commit={m.commit}"]
    return f"{m.sender[0]}->{m.to[0]} {m.type.name} " + " ".join(fields)


def traced(net: Network) -> list[str]:
    lines: list[str] = []
    deliver = net.deliver_one

    def recording() -> bool:
        if net.queue:
            lines.append(describe(net.queue[0]))
        return deliver()

    net.deliver_one = recording  # type: ignore[method-assign]
    return lines


def test_trace_pre_vote_election_and_first_commit() -> None:
    net = Network([1, 2, 3], seed=1)
    lines = traced(net)
    net.campaign(nid(1))
    assert "\n".join(lines) == "\n".join(
        [
            "1->2 PRE_VOTE term=2 last=1@1",
            "1->3 PRE_VOTE term=2 last=1@1",
            "2->1 PRE_VOTE_RESP term=2 granted",
            "3->1 PRE_VOTE_RESP term=2 granted",
            "1->2 VOTE term=2 last=1@1",
            "1->3 VOTE term=2 last=1@1",
            "2->1 VOTE_RESP term=2 granted",
            "3->1 VOTE_RESP term=2 granted",
            "1->2 APP term=2 prev=1@1 commit=1 entries=2@2",
            "1->3 APP term=2 prev=1@1 commit=1 entries=2@2",
            "2->1 APP_RESP term=2 index=2",
            "3->1 APP_RESP term=2 index=2",
            "1->2 APP term=2 prev=2@2 commit=2 entries=-",
            "1->3 APP term=2 prev=2@2 commit=2 entries=-",
            "2->1 APP_RESP term=2 index=2",
            "3->1 APP_RESP term=2 index=2",
        ]
    )


def test_trace_follower_with_a_divergent_tail_is_repaired() -> None:
    """A deposed leader that kept uncommitted entries of its term has them deleted and
    replaced by the new leader's (AppendEntries receiver rule 3)."""
    net = Network([1, 2, 3], seed=1, pre_vote=False, check_quorum=False)
    net.campaign(nid(1))
    net.isolate(nid(1))
    for data in (b"a", b"b", b"c"):
        net.nodes[nid(1)].propose(data)  # never leaves node 1
    net.stabilize()
    net.heal()
    net.isolate(nid(1))
    net.campaign(nid(2))
    net.nodes[nid(2)].propose(b"x")
    net.stabilize()
    net.heal()
    lines = traced(net)
    net.tick(1)  # node 2's heartbeat reaches node 1
    lines = [line for line in lines if "3" not in line.split()[0]]  # between 1 and 2 only
    assert lines == [
        "1->2 HEARTBEAT term=2 commit=2",  # the deposed leader; ignored (stale term)
        "2->1 HEARTBEAT term=3 commit=0",  # commit = min(leader commit, match 0)
        "1->2 HEARTBEAT_RESP term=3",
        "2->1 APP term=3 prev=2@2 commit=4 entries=3@3,4@3",  # replaces 3@2, 4@2, 5@2
        "1->2 APP_RESP term=3 index=4",
        "2->1 APP term=3 prev=4@3 commit=4 entries=-",
        "1->2 APP_RESP term=3 index=4",
    ]
    log = net.raft(nid(1)).log
    assert [(e.index, e.term, e.data) for e in log.slice(3, log.last_index() + 1)] == [
        (3, 3, b""),
        (4, 3, b"x"),
    ]
