"""Raft's Figure 2, rule by rule, and the section 5.4 safety cases, on the core.

Each test quotes the sentence of the paper (Ongaro and Ousterhout, "In Search of an
Understandable Consensus Algorithm (Extended Version)", 2014) it checks. The tests drive a
bare :class:`Raft` (messages in, its outbox out) with pre-vote and check-quorum off, the
algorithm as the paper states it; pre-vote and check-quorum have their own tests.

Rule -> test (every rule of Figure 2, the Figure 3 properties, 5.4.1, 5.4.2 and Figure 8,
5.4.3; ``test_the_rule_table_names_every_test`` keeps this table and the tests in step):

- State: persistent currentTerm, votedFor (before replying):
  ``test_persistent_state_is_in_the_ready_before_the_vote_is_sent``
- State: persistent log[] (before replying):
  ``test_follower_persists_entries_before_acknowledging_them``
- State: volatile commitIndex, lastApplied (0, monotonic):
  ``test_volatile_state_starts_at_zero_and_commit_never_decreases``
- State: leaders' nextIndex = last + 1, matchIndex = 0:
  ``test_leader_state_is_reinitialized_after_each_election``
- AppendEntries receiver 1 (term < currentTerm):
  ``test_append_rejected_for_stale_term``
- AppendEntries receiver 2 (prevLogIndex/Term mismatch):
  ``test_append_rejected_when_prev_entry_does_not_match``
- AppendEntries receiver 3 (delete conflicting suffix):
  ``test_append_deletes_conflicting_entries_and_appends_new_ones``
- AppendEntries receiver 4 (append new entries):
  ``test_append_deletes_conflicting_entries_and_appends_new_ones``
- AppendEntries receiver 5 (commit = min(leaderCommit, ..)):
  ``test_append_advances_commit_to_min_of_leader_commit_and_last_new_entry``
- RequestVote receiver 1 (term < currentTerm):
  ``test_vote_rejected_for_stale_term``
- RequestVote receiver 2 (votedFor, up-to-date log):
  ``test_vote_granted_once_per_term_to_an_up_to_date_candidate``
- All servers: apply committed entries in order:
  ``test_all_servers_apply_committed_entries_in_order``
- All servers: term T > currentTerm -> follower:
  ``test_higher_term_converts_any_role_to_follower``
- Followers: respond to candidates and leaders:
  ``test_follower_responds_to_leaders_and_candidates``
- Followers: election timeout -> candidate:
  ``test_follower_becomes_candidate_after_election_timeout``
  ``test_follower_heartbeats_and_votes_reset_the_election_timer``
- Candidates: start election (term+1, self vote, timer, RV):
  ``test_candidate_starts_an_election``
- Candidates: majority -> leader:
  ``test_candidate_with_majority_becomes_leader``
- Candidates: AppendEntries from new leader -> follower:
  ``test_candidate_steps_down_on_append_from_new_leader``
- Candidates: election timeout -> new election:
  ``test_candidate_starts_a_new_election_after_timeout``
- Leaders: initial empty AppendEntries, heartbeats:
  ``test_leader_sends_initial_appends_and_heartbeats``
- Leaders: client command -> append, respond once applied:
  ``test_leader_appends_client_command_and_replicates_it``
- Leaders: send from nextIndex; success -> next/match:
  ``test_leader_sends_from_next_index_and_updates_match_on_success``
- Leaders: inconsistency -> decrement nextIndex, retry:
  ``test_leader_decrements_next_index_on_inconsistency_and_retries``
- Leaders: commitIndex = N if majority and term == current:
  ``test_leader_commits_only_current_term_entries_by_counting``
- 5.2 randomized election timeouts:
  ``test_election_timeouts_are_randomized``
- 5.2 a candidate that cannot win steps down:
  ``test_candidate_loses_with_a_majority_of_rejections``
- Figure 3 Leader Append-Only:
  ``test_leader_never_overwrites_or_deletes_its_own_entries``
- 5.4.1 election restriction:
  ``test_election_restriction_a_stale_log_cannot_win``
- 5.4.1 "more up-to-date" (last term, then length):
  ``test_vote_granted_once_per_term_to_an_up_to_date_candidate``
- 5.4.2 / Figure 8 (a)-(d): old-term entry not committed:
  ``test_figure_8_an_old_term_entry_on_a_majority_is_not_committed``
- 5.4.2 / Figure 8 (e): current-term entry commits older:
  ``test_figure_8_e_current_term_entry_commits_the_older_ones``
- 5.4.3 State Machine Safety (same entry applied per index):
  ``test_state_machine_safety_every_node_applies_the_same_entry_per_index``
- 5.5 RPCs are idempotent (a repeated append changes nothing):
  ``test_append_deletes_conflicting_entries_and_appends_new_ones``

Election Safety, Log Matching and Leader Completeness (Figure 3) are also checked after
every step of the randomized runs (``test_raft_random.py``, ``safety_checks.py``).
"""

from __future__ import annotations

from raft_harness import Network, ids, make_raft, nid, take
from safety_checks import SafetyChecker

from foundation_p2p.consensus.memory_storage import MemoryStorage
from foundation_p2p.consensus.messages import Message, MessageType
from foundation_p2p.consensus.raft import Raft, StateRole
from foundation_p2p.consensus.rawnode import RawNode
from foundation_p2p.consensus.types import ConfState, Entry, EntryKind, HardState

M = MessageType
PAPER = {"pre_vote": False, "check_quorum": False}


def paper_raft(n: int = 1, voters: tuple[int, ...] = (1, 2, 3), **kw: object) -> Raft:
    return make_raft(n, voters, **{**PAPER, **kw})  # type: ignore[arg-type]


def storage_with(entries: list[tuple[int, int]], voters: tuple[int, ...] = (1, 2, 3),
                 term: int = 0) -> MemoryStorage:
    st = MemoryStorage(ConfState(voters=frozenset(ids(*voters))))
    st.append([Entry(t, i) for i, t in entries])
    st.set_hard_state(HardState(term=term))
    return st


def elect(r: Raft) -> None:
    """Make ``r`` leader of a 3-node group (votes from 2 and 3), then clear its outbox."""
    r.step(Message(M.HUP, sender=r.id))
    for voter in (2, 3):
        if r.role is StateRole.CANDIDATE:
            r.step(Message(M.VOTE_RESP, to=r.id, sender=nid(voter), term=r.term))
    assert r.role is StateRole.LEADER
    take(r)


def tick_until(r: Raft, role: StateRole, limit: int = 100) -> int:
    for n in range(1, limit + 1):
        r.tick()
        if r.role is role:
            return n
    raise AssertionError(f"never became {role}")


# --- Rules for Servers: all servers ---------------------------------------------------


def test_all_servers_apply_committed_entries_in_order() -> None:
    """"If commitIndex > lastApplied: increment lastApplied, apply log[lastApplied] to state
    machine (§5.3)"."""
    st = MemoryStorage(ConfState(voters=frozenset(ids(1))))
    node = RawNode(make_raft(1, (1,), storage=st).config, st, __import__("random").Random(1))
    node.campaign()
    for data in (b"a", b"b"):
        node.propose(data)
    applied: list[bytes] = []
    while node.has_ready():
        rd = node.ready()
        st.append(rd.entries)
        if rd.hard_state:
            st.set_hard_state(rd.hard_state)
        applied += [e.data for e in rd.committed_entries if e.kind is EntryKind.NORMAL]
        node.advance(rd)
    assert applied == [b"a", b"b"]
    status = node.status()
    assert status.applied == status.commit == 3


def test_higher_term_converts_any_role_to_follower() -> None:
    """"If RPC request or response contains term T > currentTerm: set currentTerm = T,
    convert to follower (§5.1)"."""
    for role in (StateRole.FOLLOWER, StateRole.CANDIDATE, StateRole.LEADER):
        r = paper_raft()
        if role is StateRole.CANDIDATE:
            r.become_candidate()
        elif role is StateRole.LEADER:
            elect(r)
        before = r.term
        r.step(Message(M.APP, to=r.id, sender=nid(2), term=before + 5))
        assert r.term == before + 5
        assert r.role is StateRole.FOLLOWER
        assert r.leader == nid(2)
        # A response counts too.
        r.step(Message(M.APP_RESP, to=r.id, sender=nid(3), term=before + 9))
        assert (r.term, r.role, r.leader) == (before + 9, StateRole.FOLLOWER, None)


def test_persistent_state_is_in_the_ready_before_the_vote_is_sent() -> None:
    """Figure 2, persistent state: "(Updated on stable storage before responding to RPCs)".
    The vote appears in the same Ready as the granting message, which the driver sends only
    after persisting it."""
    st = MemoryStorage(ConfState(voters=frozenset(ids(1, 2, 3))))
    node = RawNode(make_raft(1, (1, 2, 3), storage=st, **PAPER).config, st,
                   __import__("random").Random(1))
    node.step(Message(M.VOTE, to=nid(1), sender=nid(2), term=1))
    rd = node.ready()
    assert rd.hard_state == HardState(term=1, vote=nid(2), commit=0)
    assert rd.must_sync()
    assert [(m.type, m.reject) for m in rd.messages] == [(M.VOTE_RESP, False)]


# --- Followers -----------------------------------------------------------------------


def test_follower_responds_to_leaders_and_candidates() -> None:
    """Followers: "Respond to RPCs from candidates and leaders"."""
    r = paper_raft()
    r.step(Message(M.VOTE, to=r.id, sender=nid(2), term=1))
    r.step(Message(M.APP, to=r.id, sender=nid(2), term=1, index=0, log_term=0))
    r.step(Message(M.HEARTBEAT, to=r.id, sender=nid(2), term=1))
    assert [m.type for m in take(r)] == [M.VOTE_RESP, M.APP_RESP, M.HEARTBEAT_RESP]


def test_follower_becomes_candidate_after_election_timeout() -> None:
    """Followers: "If election timeout elapses without receiving AppendEntries RPC from
    current leader or granting vote to candidate: convert to candidate"."""
    r = paper_raft()
    r.step(Message(M.HEARTBEAT, to=r.id, sender=nid(2), term=1))
    ticks = tick_until(r, StateRole.CANDIDATE)
    assert r.config.election_tick <= ticks < 2 * r.config.election_tick
    assert r.term == 2


def test_follower_heartbeats_and_votes_reset_the_election_timer() -> None:
    """The timer restarts on every AppendEntries from the leader and on granting a vote."""
    r = paper_raft()
    for _ in range(5 * r.config.election_tick):
        r.tick()
        r.step(Message(M.HEARTBEAT, to=r.id, sender=nid(2), term=1))
    assert r.role is StateRole.FOLLOWER
    r.step(Message(M.VOTE, to=r.id, sender=nid(3), term=2))
    assert r.vote == nid(3) and r.election_elapsed == 0


def test_election_timeouts_are_randomized() -> None:
    """§5.2: "election timeouts are chosen randomly from a fixed interval (e.g.,
    150-300ms)" - here [election_tick, 2 * election_tick) ticks."""
    timeouts = set()
    for seed in range(30):
        r = make_raft(1, (1, 2, 3), seed=seed, **PAPER)  # type: ignore[arg-type]
        timeouts.add(tick_until(r, StateRole.CANDIDATE))
    assert len(timeouts) > 3
    assert min(timeouts) >= 10 and max(timeouts) < 20


# --- Candidates ----------------------------------------------------------------------


def test_candidate_starts_an_election() -> None:
    """Candidates: "On conversion to candidate, start election: Increment currentTerm; Vote
    for self; Reset election timer; Send RequestVote RPCs to all other servers"."""
    st = storage_with([(1, 1), (2, 1)], term=1)
    r = make_raft(1, (1, 2, 3), storage=st, **PAPER)  # type: ignore[arg-type]
    r.step(Message(M.HUP, sender=r.id))
    assert r.role is StateRole.CANDIDATE
    assert r.term == 2 and r.vote == r.id and r.election_elapsed == 0
    sent = take(r)
    assert [(m.type, m.to, m.term, m.index, m.log_term) for m in sent] == [
        (M.VOTE, nid(2), 2, 2, 1),
        (M.VOTE, nid(3), 2, 2, 1),
    ]


def test_candidate_with_majority_becomes_leader() -> None:
    """Candidates: "If votes received from majority of servers: become leader"."""
    r = paper_raft(voters=(1, 2, 3, 4, 5))
    r.step(Message(M.HUP, sender=r.id))
    r.step(Message(M.VOTE_RESP, to=r.id, sender=nid(2), term=1))
    assert r.role is StateRole.CANDIDATE  # 2 of 5
    r.step(Message(M.VOTE_RESP, to=r.id, sender=nid(3), term=1, reject=True))
    r.step(Message(M.VOTE_RESP, to=r.id, sender=nid(4), term=1))
    assert r.role is StateRole.LEADER  # 3 of 5


def test_candidate_loses_with_a_majority_of_rejections() -> None:
    """§5.2: a candidate that cannot win returns to follower rather than waiting."""
    r = paper_raft()
    r.step(Message(M.HUP, sender=r.id))
    r.step(Message(M.VOTE_RESP, to=r.id, sender=nid(2), term=1, reject=True))
    r.step(Message(M.VOTE_RESP, to=r.id, sender=nid(3), term=1, reject=True))
    assert r.role is StateRole.FOLLOWER and r.term == 1


def test_candidate_steps_down_on_append_from_new_leader() -> None:
    """Candidates: "If AppendEntries RPC received from new leader: convert to follower".
    §5.2: "If the leader's term ... is at least as large as the candidate's current term,
    then the candidate recognizes the leader as legitimate"."""
    r = paper_raft()
    r.step(Message(M.HUP, sender=r.id))
    r.step(Message(M.APP, to=r.id, sender=nid(2), term=r.term, index=0, log_term=0))
    assert r.role is StateRole.FOLLOWER and r.leader == nid(2) and r.term == 1


def test_candidate_starts_a_new_election_after_timeout() -> None:
    """Candidates: "If election timeout elapses: start new election"."""
    r = paper_raft()
    r.step(Message(M.HUP, sender=r.id))
    assert r.term == 1
    tick_until(r, StateRole.CANDIDATE)  # already candidate: ticks until the re-election
    for _ in range(2 * r.config.election_tick):
        r.tick()
    assert r.role is StateRole.CANDIDATE and r.term >= 2


# --- Leaders -------------------------------------------------------------------------


def test_leader_sends_initial_appends_and_heartbeats() -> None:
    """Leaders: "Upon election: send initial empty AppendEntries RPCs (heartbeat) to each
    server; repeat during idle periods to prevent election timeouts (§5.2)". The initial
    append carries the leader's no-op entry (§8)."""
    r = paper_raft()
    r.step(Message(M.HUP, sender=r.id))
    r.step(Message(M.VOTE_RESP, to=r.id, sender=nid(2), term=1))
    first = [m for m in take(r) if m.type is M.APP]
    assert {m.to for m in first} == {nid(2), nid(3)}
    assert all(m.entries == [Entry(1, 1, EntryKind.NOOP)] for m in first)
    for _ in range(r.config.heartbeat_tick):
        r.tick()
    beats = take(r)
    assert {(m.type, m.to) for m in beats} == {(M.HEARTBEAT, nid(2)), (M.HEARTBEAT, nid(3))}


def test_leader_appends_client_command_and_replicates_it() -> None:
    """Leaders: "If command received from client: append entry to local log, respond after
    entry applied to state machine (§5.3)"."""
    r = paper_raft()
    elect(r)
    r.step(Message(M.PROP, sender=r.id, entries=[Entry(0, 0, data=b"x")]))
    assert r.log.last_index() == 2 and r.log.term(2) == r.term
    sent = take(r)
    assert all(m.type is M.APP and m.entries[-1].data == b"x" for m in sent)
    assert r.log.committed == 0  # not before a majority stores it
    r.step(Message(M.APP_RESP, to=r.id, sender=nid(2), term=r.term, index=2))
    assert r.log.committed == 2


def test_leader_sends_from_next_index_and_updates_match_on_success() -> None:
    """Leaders: "If last log index >= nextIndex for a follower: send AppendEntries RPC with
    log entries starting at nextIndex" / "If successful: update nextIndex and matchIndex
    for follower (§5.3)"."""
    r = paper_raft()
    elect(r)
    pr = r.prs[nid(2)]
    r.step(Message(M.APP_RESP, to=r.id, sender=nid(2), term=r.term, index=1))
    assert (pr.match, pr.next) == (1, 2)
    r.step(Message(M.PROP, sender=r.id, entries=[Entry(0, 0, data=b"y")]))
    to2 = [m for m in take(r) if m.to == nid(2)]
    assert to2[-1].index == 1 and [e.index for e in to2[-1].entries] == [2]
    r.step(Message(M.APP_RESP, to=r.id, sender=nid(2), term=r.term, index=2))
    assert (pr.match, pr.next) == (2, 3)


def test_leader_decrements_next_index_on_inconsistency_and_retries() -> None:
    """Leaders: "If AppendEntries fails because of log inconsistency: decrement nextIndex
    and retry (§5.3)" (with the follower's hint, the optimization §5.3 describes)."""
    st = storage_with([(1, 1), (2, 1), (3, 2), (4, 2)], term=2)
    r = make_raft(1, (1, 2, 3), storage=st, **PAPER)  # type: ignore[arg-type]
    elect(r)
    pr = r.prs[nid(2)]
    assert pr.next == 5  # optimistic: after the leader's log
    # The follower has only [1, 1]: it rejects prev index 4 with a hint of its last index.
    r.step(Message(M.APP_RESP, to=r.id, sender=nid(2), term=r.term, index=4, reject=True,
                   reject_hint=2, log_term=1))
    retry = [m for m in take(r) if m.to == nid(2)]
    assert retry and retry[0].type is M.APP
    assert retry[0].index == 2 and retry[0].log_term == 1
    assert [e.index for e in retry[0].entries] == [3, 4, 5]


def test_leader_commits_only_current_term_entries_by_counting() -> None:
    """Leaders: "If there exists an N such that N > commitIndex, a majority of
    matchIndex[i] >= N, and log[N].term == currentTerm: set commitIndex = N (§5.3, §5.4)"."""
    st = storage_with([(1, 1), (2, 2)], term=2)
    r = make_raft(1, (1, 2, 3), storage=st, **PAPER)  # type: ignore[arg-type]
    elect(r)  # term 3, no-op at index 3
    assert r.term == 3 and r.log.last_index() == 3
    r.step(Message(M.APP_RESP, to=r.id, sender=nid(2), term=3, index=2))
    assert r.log.committed == 0  # index 2 is on a majority but of term 2
    r.step(Message(M.APP_RESP, to=r.id, sender=nid(2), term=3, index=3))
    assert r.log.committed == 3  # index 3 (term 3) commits, and index 2 with it


# --- RequestVote RPC receiver ----------------------------------------------------------


def test_vote_rejected_for_stale_term() -> None:
    """RequestVote receiver: "1. Reply false if term < currentTerm (§5.1)"."""
    r = make_raft(1, (1, 2, 3), storage=storage_with([], term=5), **PAPER)  # type: ignore[arg-type]
    r.step(Message(M.VOTE, to=r.id, sender=nid(2), term=4))
    assert take(r) == [] and r.vote is None  # a stale request is ignored (no grant)
    r.step(Message(M.PRE_VOTE, to=r.id, sender=nid(2), term=4))
    assert [(m.type, m.reject, m.term) for m in take(r)] == [(M.PRE_VOTE_RESP, True, 5)]


def test_vote_granted_once_per_term_to_an_up_to_date_candidate() -> None:
    """RequestVote receiver: "2. If votedFor is null or candidateId, and candidate's log is
    at least as up-to-date as receiver's log, grant vote (§5.2, §5.4)". §5.4.1: "If the
    logs have last entries with different terms, then the log with the later term is more
    up-to-date. If the logs end with the same term, then whichever log is longer is more
    up-to-date"."""
    ours = [(1, 1), (2, 2)]
    cases = [  # (candidate last index, last term, granted)
        (2, 2, True),
        (3, 2, True),
        (1, 2, False),
        (5, 1, False),
        (1, 3, True),
    ]
    for index, term, granted in cases:
        r = make_raft(1, (1, 2, 3), storage=storage_with(ours, term=2), **PAPER)  # type: ignore[arg-type]
        r.step(Message(M.VOTE, to=r.id, sender=nid(2), term=3, index=index, log_term=term))
        sent = take(r)
        assert [(m.type, m.reject) for m in sent] == [(M.VOTE_RESP, not granted)], (index, term)
        assert r.vote == (nid(2) if granted else None)
    # Once per term: a second candidate in the same term is refused; the same one again
    # is granted (a retransmission).
    r = make_raft(1, (1, 2, 3), **PAPER)  # type: ignore[arg-type]
    r.step(Message(M.VOTE, to=r.id, sender=nid(2), term=1))
    r.step(Message(M.VOTE, to=r.id, sender=nid(3), term=1))
    r.step(Message(M.VOTE, to=r.id, sender=nid(2), term=1))
    assert [m.reject for m in take(r)] == [False, True, False]


# --- AppendEntries RPC receiver --------------------------------------------------------


def test_append_rejected_for_stale_term() -> None:
    """AppendEntries receiver: "1. Reply false if term < currentTerm (§5.1)". The answer
    carries our term so the stale leader steps down."""
    r = make_raft(1, (1, 2, 3), storage=storage_with([], term=3), **PAPER)  # type: ignore[arg-type]
    r.step(Message(M.APP, to=r.id, sender=nid(2), term=2, entries=[Entry(2, 1)]))
    assert r.log.last_index() == 0
    r2 = make_raft(1, (1, 2, 3), storage=storage_with([], term=3), check_quorum=True)
    r2.step(Message(M.APP, to=r2.id, sender=nid(2), term=2, entries=[Entry(2, 1)]))
    assert [(m.type, m.term) for m in take(r2)] == [(M.APP_RESP, 3)]
    assert r2.log.last_index() == 0


def test_append_rejected_when_prev_entry_does_not_match() -> None:
    """AppendEntries receiver: "2. Reply false if log doesn't contain an entry at
    prevLogIndex whose term matches prevLogTerm (§5.3)"."""
    r = make_raft(1, (1, 2, 3), storage=storage_with([(1, 1), (2, 1)], term=2), **PAPER)  # type: ignore[arg-type]
    for index, log_term in ((2, 2), (3, 1)):
        r.step(Message(M.APP, to=r.id, sender=nid(2), term=2, index=index, log_term=log_term,
                       entries=[Entry(2, index + 1)]))
        (resp,) = take(r)
        assert resp.type is M.APP_RESP and resp.reject
        assert resp.reject_hint <= 2
    assert r.log.last_index() == 2


def test_append_deletes_conflicting_entries_and_appends_new_ones() -> None:
    """AppendEntries receiver: "3. If an existing entry conflicts with a new one (same index
    but different terms), delete the existing entry and all that follow it (§5.3)" and
    "4. Append any new entries not already in the log"."""
    ours = [(1, 1), (2, 1), (3, 1), (4, 1)]
    r = make_raft(1, (1, 2, 3), storage=storage_with(ours, term=1), **PAPER)  # type: ignore[arg-type]
    r.step(Message(M.APP, to=r.id, sender=nid(2), term=2, index=2, log_term=1,
                   entries=[Entry(2, 3, data=b"new3")]))
    got = r.log.slice(1, r.log.last_index() + 1)
    assert [(e.index, e.term) for e in got] == [(1, 1), (2, 1), (3, 2)]
    # Entries already present are kept as they are (a duplicate append changes nothing).
    r.step(Message(M.APP, to=r.id, sender=nid(2), term=2, index=1, log_term=1,
                   entries=[Entry(1, 2), Entry(2, 3, data=b"new3"), Entry(2, 4)]))
    got = r.log.slice(1, r.log.last_index() + 1)
    assert [(e.index, e.term) for e in got] == [(1, 1), (2, 1), (3, 2), (4, 2)]
    # A stale, shorter append does not truncate the longer matching log.
    r.step(Message(M.APP, to=r.id, sender=nid(2), term=2, index=1, log_term=1,
                   entries=[Entry(1, 2)]))
    assert r.log.last_index() == 4


def test_append_advances_commit_to_min_of_leader_commit_and_last_new_entry() -> None:
    """AppendEntries receiver: "5. If leaderCommit > commitIndex, set commitIndex =
    min(leaderCommit, index of last new entry)"."""
    r = make_raft(1, (1, 2, 3), storage=storage_with([(1, 1), (2, 1), (3, 1)], term=1), **PAPER)  # type: ignore[arg-type]
    r.step(Message(M.APP, to=r.id, sender=nid(2), term=1, index=1, log_term=1, commit=3,
                   entries=[Entry(1, 2)]))
    assert r.log.committed == 2  # the last new entry, not the leader's 3
    r.step(Message(M.APP, to=r.id, sender=nid(2), term=1, index=2, log_term=1, commit=3,
                   entries=[Entry(1, 3)]))
    assert r.log.committed == 3


# --- §5.4 safety ---------------------------------------------------------------------


def test_election_restriction_a_stale_log_cannot_win() -> None:
    """§5.4.1: "Raft uses the voting process to prevent a candidate from winning an election
    unless its log contains all committed entries"."""
    net = Network([1, 2, 3], **PAPER)
    net.campaign(nid(1))
    net.isolate(nid(3))
    net.nodes[nid(1)].propose(b"committed")
    net.stabilize()
    assert net.raft(nid(1)).log.committed == net.raft(nid(1)).log.last_index() == 3
    net.heal()
    net.isolate(nid(1))
    net.campaign(nid(3))  # its log lacks index 2: node 2 refuses
    assert net.raft(nid(3)).role is not StateRole.LEADER
    net.campaign(nid(2))
    assert net.raft(nid(2)).role is StateRole.LEADER


def test_figure_8_an_old_term_entry_on_a_majority_is_not_committed() -> None:
    """§5.4.2, Figure 8: "a log entry from an old term that is stored on a majority of
    servers can still be overwritten by a future leader". Raft "never commits log entries
    from previous terms by counting replicas"; the scenario of the figure, step by step."""
    net = Network([1, 2, 3, 4, 5], **PAPER)
    checker = SafetyChecker()
    net.observers.append(checker)
    s1, s2, s3, s4, s5 = ids(1, 2, 3, 4, 5)
    net.campaign(s1)
    base = net.raft(s1).log.last_index()  # the no-op, committed everywhere
    # (a) S1 leads and replicates a new entry to S2 only.
    net.partition([s1, s2], [s3, s4, s5])
    net.nodes[s1].propose(b"term-a")
    net.stabilize()
    a_index = base + 1
    a_term = net.raft(s1).term
    assert net.raft(s2).log.term(a_index) == a_term
    # (b) S1 crashes; S5 is elected by S3, S4, S5 and appends an entry at the same index
    # (its no-op), which no one else receives.
    net.crash(s1)
    net.heal()
    net.msg_filter = lambda m: not (m.sender == s5 and m.type is M.APP)
    net.campaign(s5)
    assert net.raft(s5).role is StateRole.LEADER
    b_term = net.raft(s5).term
    assert net.raft(s5).log.term(a_index) == b_term
    net.crash(s5)
    # (c) S1 restarts and is elected; it replicates the term-a entry to S3 but the entry
    # of its own term does not get through (only index a_index passes the filter).

    def only_up_to_a(m: Message) -> bool:
        if m.type is M.APP and m.sender == s1:
            m.entries = [e for e in m.entries if e.index <= a_index]
        return m.sender != s5

    net.msg_filter = only_up_to_a
    net.restart(s1)
    for _ in range(3):  # its first term number may be one S5's voters already used
        net.campaign(s1)
        if net.raft(s1).role is StateRole.LEADER:
            break
    assert net.raft(s1).role is StateRole.LEADER
    c_term = net.raft(s1).term
    assert c_term > b_term
    holders = [n for n in (s1, s2, s3, s4) if net.raft(n).log.term(a_index) == a_term]
    assert len(holders) >= 3  # on a majority of the five
    assert net.raft(s1).log.committed < a_index  # ... and still not committed
    # (d) S1 crashes; S5 restarts, is elected (its last term b_term beats a_term) and
    # overwrites the entry everywhere: allowed, because it was never committed.
    net.crash(s1)
    net.msg_filter = None
    net.restart(s5)
    for _ in range(3):
        net.campaign(s5)
        if net.raft(s5).role is StateRole.LEADER:
            break
    assert net.raft(s5).role is StateRole.LEADER
    for n in (s2, s3, s4):
        assert net.raft(n).log.term(a_index) == b_term
    assert checker.checks > 0


def test_figure_8_e_current_term_entry_commits_the_older_ones() -> None:
    """Figure 8 (e): "if S1 replicates an entry from its current term on a majority of the
    servers before crashing ... then this entry is committed (S5 cannot win an election)",
    and with it the preceding entries (Log Matching)."""
    net = Network([1, 2, 3, 4, 5], **PAPER)
    s1, s2, s3, s4, s5 = ids(1, 2, 3, 4, 5)
    net.campaign(s1)
    net.partition([s1, s2, s3], [s4, s5])
    net.nodes[s1].propose(b"x")
    net.stabilize()
    committed = net.raft(s1).log.committed
    assert committed == net.raft(s1).log.last_index()
    net.crash(s1)
    net.heal()
    net.campaign(s5)  # its log is behind S2 and S3: it cannot gather a majority
    assert net.raft(s5).role is not StateRole.LEADER
    net.campaign(s2)
    assert net.raft(s2).role is StateRole.LEADER
    assert net.raft(s2).log.committed >= committed


# --- Figure 2 state, Figure 3 properties, 5.4.3 ---------------------------------------


def test_follower_persists_entries_before_acknowledging_them() -> None:
    """Figure 2, persistent state: "log[]: log entries" is "Updated on stable storage before
    responding to RPCs". The appended entries are in the same Ready as the AppendEntries
    answer, which the driver sends only after persisting them."""
    st = MemoryStorage(ConfState(voters=frozenset(ids(1, 2, 3))))
    node = RawNode(make_raft(1, (1, 2, 3), storage=st, **PAPER).config, st,
                   __import__("random").Random(1))
    node.step(Message(M.APP, to=nid(1), sender=nid(2), term=1, index=0, log_term=0,
                      entries=[Entry(1, 1, data=b"a"), Entry(1, 2, data=b"b")]))
    rd = node.ready()
    assert [(e.index, e.term) for e in rd.entries] == [(1, 1), (2, 1)]
    assert rd.must_sync()
    assert [(m.type, m.index, m.reject) for m in rd.messages] == [(M.APP_RESP, 2, False)]
    assert st.last_index() == 0, "nothing is stored by the core itself: the driver does it"


def test_volatile_state_starts_at_zero_and_commit_never_decreases() -> None:
    """Figure 2, volatile state: "commitIndex: index of highest log entry known to be
    committed (initialized to 0, increases monotonically)" and "lastApplied: ...
    (initialized to 0, increases monotonically)"."""
    r = make_raft(1, (1, 2, 3), storage=storage_with([(1, 1), (2, 1), (3, 1)], term=1),
                  **PAPER)  # type: ignore[arg-type]
    assert r.log.committed == 0 and r.log.applied == 0
    r.step(Message(M.APP, to=r.id, sender=nid(2), term=1, index=3, log_term=1, commit=3))
    assert r.log.committed == 3
    # a delayed append with an older leaderCommit does not move commitIndex back
    r.step(Message(M.APP, to=r.id, sender=nid(2), term=1, index=1, log_term=1, commit=1,
                   entries=[Entry(1, 2)]))
    assert r.log.committed == 3
    r.step(Message(M.HEARTBEAT, to=r.id, sender=nid(2), term=1, commit=2))
    assert r.log.committed == 3


def test_leader_state_is_reinitialized_after_each_election() -> None:
    """Figure 2, volatile state on leaders "(Reinitialized after election)": "nextIndex[] ...
    (initialized to leader last log index + 1)" and "matchIndex[] ... (initialized to 0,
    increases monotonically)". Here the leader's last index is counted before its §8
    no-op, which is then sent from nextIndex like any entry."""
    st = storage_with([(1, 1), (2, 1), (3, 2)], term=2)
    r = make_raft(1, (1, 2, 3), storage=st, **PAPER)  # type: ignore[arg-type]
    r.step(Message(M.HUP, sender=r.id))
    last = r.log.last_index()
    r.step(Message(M.VOTE_RESP, to=r.id, sender=nid(2), term=r.term))
    assert r.role is StateRole.LEADER
    for peer in (nid(2), nid(3)):
        assert (r.prs[peer].next, r.prs[peer].match) == (last + 1, 0)
    take(r)
    r.step(Message(M.APP_RESP, to=r.id, sender=nid(2), term=r.term, index=4))
    assert r.prs[nid(2)].match == 4
    # a stale, lower acknowledgement does not lower matchIndex
    r.step(Message(M.APP_RESP, to=r.id, sender=nid(2), term=r.term, index=2))
    assert r.prs[nid(2)].match == 4
    # a new term, a new election: reinitialized again
    r.step(Message(M.APP, to=r.id, sender=nid(3), term=r.term + 1, index=4, log_term=r.term))
    assert r.role is StateRole.FOLLOWER
    r.step(Message(M.HUP, sender=r.id))
    last = r.log.last_index()
    r.step(Message(M.VOTE_RESP, to=r.id, sender=nid(3), term=r.term))
    assert r.role is StateRole.LEADER
    for peer in (nid(2), nid(3)):
        assert (r.prs[peer].next, r.prs[peer].match) == (last + 1, 0)


def test_leader_never_overwrites_or_deletes_its_own_entries() -> None:
    """Figure 3, Leader Append-Only: "a leader never overwrites or deletes entries in its
    log; it only appends new entries. §5.3". An AppendEntries of the leader's own term from
    another node (which cannot exist: Election Safety) or a stale one from an older term
    leaves its log as it is."""
    r = paper_raft()
    elect(r)
    r.step(Message(M.PROP, sender=r.id, entries=[Entry(0, 0, data=b"mine")]))
    take(r)
    before = [(e.index, e.term, e.data) for e in r.log.slice(1, r.log.last_index() + 1)]
    r.step(Message(M.APP, to=r.id, sender=nid(2), term=r.term - 1, index=0, log_term=0,
                   entries=[Entry(r.term - 1, 1, data=b"other")]))
    assert r.role is StateRole.LEADER
    after = [(e.index, e.term, e.data) for e in r.log.slice(1, r.log.last_index() + 1)]
    assert after == before
    r.step(Message(M.PROP, sender=r.id, entries=[Entry(0, 0, data=b"next")]))
    grown = [(e.index, e.term, e.data) for e in r.log.slice(1, r.log.last_index() + 1)]
    assert grown[: len(before)] == before and len(grown) == len(before) + 1


def test_state_machine_safety_every_node_applies_the_same_entry_per_index() -> None:
    """§5.4.3, State Machine Safety: "if a server has applied a log entry at a given index
    to its state machine, no other server will ever apply a different log entry for the
    same index". Leaders change under partitions and crashes while entries are proposed;
    what each node applies is recorded and compared index by index."""
    net = Network([1, 2, 3, 4, 5], **PAPER)
    checker = SafetyChecker()
    net.observers.append(checker)
    nodes = ids(1, 2, 3, 4, 5)
    net.campaign(nodes[0])
    for rnd in range(6):
        leader = nodes[rnd % 5]
        minority = [nodes[(rnd + 1) % 5], nodes[(rnd + 2) % 5]]
        net.partition([n for n in nodes if n not in minority], minority)
        net.campaign(leader)
        if net.raft(leader).role is StateRole.LEADER:
            net.nodes[leader].propose(f"v{rnd}".encode())
        net.stabilize()
        net.heal()
        net.stabilize()
    applied: dict[int, set[tuple[int, bytes]]] = {}
    for n in nodes:
        log = net.raft(n).log
        for e in log.slice(1, log.applied + 1):
            applied.setdefault(e.index, set()).add((e.term, e.data))
    assert applied and all(len(v) == 1 for v in applied.values()), applied
    assert checker.checks > 0
    assert any(data.startswith(b"v") for v in applied.values() for _, data in v)


def test_the_rule_table_names_every_test() -> None:
    """The docstring's rule table lists only tests that exist, and every test of this
    module is in it (so a rule cannot lose its test silently)."""
    import re
    import sys

    module = sys.modules[__name__]
    doc = module.__doc__ or ""
    named = set(re.findall(r"``(test_[a-z0-9_]+)``", doc))
    tests = {n for n in dir(module) if n.startswith("test_")}
    assert named - tests == set(), named - tests
    assert tests - named == set(), tests - named
