"""The ``kv`` workload: clients of the replicated KV store, a Jepsen-shaped history, and
the Raft and KV invariants.

Parameters (``[[workload]] kind = "kv"``; every one optional, each error names its key):

- ``clients`` (default 5): client processes, each running one operation at a time;
- ``keys`` (default 3): keys ``k0`` .. ``k{keys-1}``;
- ``rate`` (default 10): operations per second per client (exponential gaps drawn from
  the world's generator);
- ``reads``, ``writes``, ``cas`` (defaults 0.5, 0.4, 0.1): the operation mix (weights);
- ``start`` (default ``"3s"``) and ``stop`` (default: the start of settle): when clients run;
- ``timeout`` (default ``"3s"``): a client that has no outcome by then records ``info``
  (the node may have crashed with the request).

Each operation goes to a node drawn among those up whose consensus subsystem is started
(``host.core.consensus``): ``propose`` for ``put``/``cas``, ``read`` (ReadIndex) for
``get``. The history follows ``spec/history.md`` (``kv`` model): the invoke is recorded
before the request, the completion when the outcome arrives: ``ok``; ``fail`` only for
an answer that guarantees no effect (refused before proposing, a cas whose compare did
not match, a KV refusal); ``info`` for ``indeterminate`` and for the client's own timeout.
Equivalent lower-level calls: ``core.consensus.propose(now, kv.encode_put(...),
on_done=...)``, ``core.consensus.read(now, key, on_done=...)``.

Observation: every ``POLL_S`` of virtual time (and at every check) the
:class:`RaftObserver` looks at every node up: who leads in which term, the committed
entries, the logs; each subsystem's ``on_apply`` hook reports applied entries.

Invariants (registered in :mod:`simulator.checkers` by :func:`register_kv`):

- ``raft.election_safety`` (safety): at most one leader per term, ever seen.
- ``raft.log_matching`` (safety): two logs holding an entry with the same index and term
  hold the same entries up to it (checked on the overlap of each pair of nodes up, the
  last ``LOG_MATCH_WINDOW`` entries below the highest common match).
- ``raft.leader_completeness`` (safety): a leader of term T holds every entry seen
  committed by a node in a term below T.
- ``raft.state_machine_safety`` (safety): no two nodes applied different entries at one
  index, and no index was seen committed with two different entries.
- ``kv.no_lost_ack`` (liveness): every write acknowledged to a client is, at the end,
  in the log of every node up that holds that index (or under its snapshot), and
  committed there.
- ``kv.linearizable`` (liveness): the history is linearizable (``foundation_p2p.history``
  search with the ``kv`` model).

Metrics: ``raft.elections`` (terms in which a leader was seen), ``raft.failover_s`` (the
longest gap in commits across a change of leader term: from the last entry committed in
the old term to the first committed in the new; also ``_count``/``_mean``),
``raft.commits_per_s`` (the highest commit index's growth over the client window),
``kv.ops_ok``, ``kv.ops_failed``, ``kv.ops_info``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from foundation_p2p.consensus import kv as kvmod
from foundation_p2p.consensus.raft import StateRole
from foundation_p2p.consensus.subsystem import ConsensusSubsystem, Outcome
from foundation_p2p.consensus.types import Entry
from foundation_p2p.events import Join
from foundation_p2p.history import Budget, KvModel, Verdict, check
from foundation_p2p.history.recorder import HistoryRecorder
from simulator.durations import parse_duration
from simulator.model import WorkloadSpec
from simulator.nemesis import ROLE_RESOLVERS

if TYPE_CHECKING:
    from simulator.host import Host
    from simulator.world import World

POLL_S = 0.05
"""How often the observer looks at the nodes."""
LOG_MATCH_WINDOW = 2000
"""Entries compared per pair of logs at each observation, at most."""
MAX_VIOLATIONS = 20
"""Violation details kept per invariant (all are counted)."""
LINEARIZABILITY_MAX_STEPS = 5_000_000
"""The history search's step budget (an exhausted budget is reported, not passed)."""


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _err(key: str, problem: str) -> ValueError:
    return ValueError(f"workload kv: {key}: {problem}")


def consensus_of(host: Host) -> ConsensusSubsystem | None:
    """The host's consensus subsystem, if it is up and has one."""
    core = host.core
    if core is None:
        return None
    sub = getattr(core, "consensus", None)
    return sub if isinstance(sub, ConsensusSubsystem) else None


# -- the observer -------------------------------------------------------------------------


@dataclass
class RaftObserver:
    """What the Raft checkers need, gathered from the nodes (see the module docstring)."""

    leaders: dict[int, str] = field(default_factory=dict)
    """term -> the node seen leading it."""
    committed: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    """index -> (term, data digest) seen committed."""
    commit_term: dict[int, int] = field(default_factory=dict)
    """index -> the lowest current term of a node seen holding it committed."""
    applied: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    """index -> (term, data digest) applied by some node."""
    proposals: dict[tuple[bytes, int, int], int] = field(default_factory=dict)
    """(proposer, boot, ticket) -> the index it was applied at."""
    violations: dict[str, list[str]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    failovers: list[float] = field(default_factory=list)
    seen_leader: bool = False
    _gap_top: int = 0
    _gap_term: int | None = None
    _gap_at: float | None = None
    max_commit: int = 0
    _checked: dict[int, int] = field(default_factory=dict)
    """id(subsystem) -> the commit index checked up to (a restart is a new subsystem)."""
    _complete_checked: dict[tuple[str, int], int] = field(default_factory=dict)

    def violate(self, name: str, detail: str) -> None:
        """Record a violation of invariant ``name``."""
        self.counts[name] = self.counts.get(name, 0) + 1
        kept = self.violations.setdefault(name, [])
        if len(kept) < MAX_VIOLATIONS:
            kept.append(detail)

    def attach(self, name: str, sub: ConsensusSubsystem) -> None:
        """Follow ``sub``'s applied entries."""

        def on_apply(e: Entry, env: tuple[bytes, int, int] | None) -> None:
            self.on_applied(name, e, env)

        sub.on_apply = on_apply

    def on_applied(self, name: str, e: Entry, env: tuple[bytes, int, int] | None) -> None:
        """Node ``name`` applied ``e`` (its envelope's id, if any)."""
        got = (e.term, _digest(e.data))
        prior = self.applied.setdefault(e.index, got)
        if prior != got:
            self.violate(
                "raft.state_machine_safety",
                f"{name} applied term {e.term} at index {e.index}, another node term {prior[0]}",
            )
        if env is not None:
            self.proposals.setdefault(env, e.index)

    def observe(self, t: float, nodes: Iterable[tuple[str, ConsensusSubsystem]]) -> None:
        """Look at the started subsystems of the nodes up at virtual time ``t``."""
        started = [(n, s) for n, s in nodes if s.raw is not None]
        leader_up = False
        for name, sub in started:
            assert sub.raw is not None
            r = sub.raw.raft
            if r.role is StateRole.LEADER:
                leader_up = True
                seen = self.leaders.setdefault(r.term, name)
                if seen != name:
                    self.violate(
                        "raft.election_safety", f"term {r.term}: leaders {seen} and {name}"
                    )
            self._observe_committed(name, sub)
        for name, sub in started:
            assert sub.raw is not None
            if sub.raw.raft.role is StateRole.LEADER:
                self._check_completeness(name, sub)
        for i in range(len(started)):
            for j in range(i + 1, len(started)):
                self._check_matching(started[i], started[j])
        if leader_up:
            self.seen_leader = True
        self._observe_commit_gap(t)

    def _observe_commit_gap(self, t: float) -> None:
        """A failover is a change of the term that commits: its length is the time from the
        last entry seen committed in the old term to the first seen committed in the new one
        (a new leader commits an entry of its term at once). Measured on commits rather
        than on "some node is leader", because an isolated leader keeps its role until
        check-quorum steps it down, while the majority may already have elected another."""
        top = max(self.committed, default=0)
        if top <= self._gap_top:
            return
        term = self.committed[top][0]
        if self._gap_term is not None and term > self._gap_term and self._gap_at is not None:
            self.failovers.append(t - self._gap_at)
        self._gap_top, self._gap_term, self._gap_at = top, term, t

    def _observe_committed(self, name: str, sub: ConsensusSubsystem) -> None:
        assert sub.raw is not None
        r = sub.raw.raft
        log = r.log
        lo = max(log.first_index(), self._checked.get(id(sub), 0) + 1)
        hi = log.committed
        self.max_commit = max(self.max_commit, hi)
        if lo <= hi:
            for e in log.slice(lo, hi + 1):
                got = (e.term, _digest(e.data))
                prior = self.committed.setdefault(e.index, got)
                if prior != got:
                    self.violate(
                        "raft.state_machine_safety",
                        f"{name} committed term {e.term} at index {e.index}, "
                        f"another node term {prior[0]}",
                    )
                ct = self.commit_term.get(e.index)
                if ct is None or r.term < ct:
                    self.commit_term[e.index] = r.term
        self._checked[id(sub)] = max(hi, self._checked.get(id(sub), 0))

    def _check_completeness(self, name: str, sub: ConsensusSubsystem) -> None:
        assert sub.raw is not None
        r = sub.raw.raft
        log = r.log
        key = (name, r.term)
        start = max(log.first_index(), self._complete_checked.get(key, 0) + 1)
        top = max(self.committed, default=0)
        for index in range(start, top + 1):
            known = self.committed.get(index)
            ct = self.commit_term.get(index)
            if known is None or ct is None or ct >= r.term:
                continue
            term = log.term(index) if index <= log.last_index() else None
            if term != known[0]:
                self.violate(
                    "raft.leader_completeness",
                    f"leader {name} of term {r.term} lacks index {index} (term {known[0]}) "
                    f"committed in term {ct}",
                )
                break
        self._complete_checked[key] = top

    def _check_matching(
        self, a: tuple[str, ConsensusSubsystem], b: tuple[str, ConsensusSubsystem]
    ) -> None:
        assert a[1].raw is not None and b[1].raw is not None
        la, lb = a[1].raw.raft.log, b[1].raw.raft.log
        lo = max(la.first_index(), lb.first_index())
        hi = min(la.last_index(), lb.last_index())
        j = hi
        floor = max(lo, hi - LOG_MATCH_WINDOW)
        while j >= floor and la.term(j) != lb.term(j):
            j -= 1
        if j < lo or j < floor:
            return
        start = max(lo, j - LOG_MATCH_WINDOW)
        if la.slice(start, j + 1) != lb.slice(start, j + 1):
            self.violate(
                "raft.log_matching",
                f"{a[0]} and {b[0]} agree on the term at index {j} but differ before it",
            )


# -- the workload -------------------------------------------------------------------------


@dataclass
class _Op:
    process: int
    f: str
    key: str
    arg: Any
    host: str
    boot: int
    ticket: int = 0
    done: bool = False


def _duration(params: dict[str, Any], key: str, default: str | None) -> float | None:
    raw = params.get(key, default)
    if raw is None:
        return None
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise _err(key, str(exc)) from None


def _number(params: dict[str, Any], key: str, default: float, *, positive: bool) -> float:
    raw = params.get(key, default)
    if type(raw) not in (int, float) or raw < 0 or (positive and raw == 0):
        want = "a positive number" if positive else "a number >= 0"
        raise _err(key, f"must be {want}, got {raw!r}")
    return float(raw)


KNOWN_PARAMS = ("clients", "keys", "rate", "reads", "writes", "cas", "start", "stop", "timeout")


class KVWorkload:
    """Clients of the KV store recording a history; the Raft/KV invariants' observer."""

    kind = "kv"

    def __init__(self, spec: WorkloadSpec) -> None:
        p = spec.params
        unknown = sorted(set(p) - set(KNOWN_PARAMS))
        if unknown:
            raise _err(unknown[0], f"unknown parameter (known: {', '.join(KNOWN_PARAMS)})")
        clients = p.get("clients", 5)
        if type(clients) is not int or not 1 <= clients <= 10_000:
            raise _err("clients", f"must be an integer from 1 to 10000, got {clients!r}")
        keys = p.get("keys", 3)
        if type(keys) is not int or not 1 <= keys <= 1_000_000:
            raise _err("keys", f"must be an integer from 1 to 1000000, got {keys!r}")
        self.clients: int = clients
        self.keys: int = keys
        self.rate = _number(p, "rate", 10, positive=True)
        mix = [_number(p, k, d, positive=False) for k, d in
               (("reads", 0.5), ("writes", 0.4), ("cas", 0.1))]
        if sum(mix) <= 0:
            raise _err("reads", "the mix reads + writes + cas must be positive")
        self.mix = mix
        start = _duration(p, "start", "3s")
        assert start is not None
        self.start_s = start
        self.stop_s = _duration(p, "stop", None)
        timeout = _duration(p, "timeout", "3s")
        assert timeout is not None and timeout > 0
        self.timeout_s = timeout
        self.recorder = HistoryRecorder()
        self.observer = RaftObserver()
        self.counts = {"ok": 0, "failed": 0, "info": 0}
        self.seeds: tuple[Any, ...] = ()
        self.world: Any = None
        self._writes_seen = 0
        self._acked: list[tuple[int, str]] = []
        """(index, host) of each acknowledged write."""
        self._commit_window: list[tuple[float, int]] = []
        self._attached: set[int] = set()
        self._last_written: dict[str, str] = {}
        """key -> the value of the latest write invoked (a cas expects it)."""

    # -- the World's calls -------------------------------------------------------------

    def on_start(self, world: World) -> None:
        self.world = world
        cluster = world.scenario.cluster
        seeds = cluster.seeds or cluster.names[: min(3, cluster.nodes)]
        self.seeds = tuple(world.host(n).addr for n in seeds)
        if self.stop_s is None:
            self.stop_s = world.settle_at
        world.schedule(0.0, self._poll)
        for proc in range(self.clients):
            world.schedule(self.start_s + proc * 1e-4, self._next, proc)

    def on_boot(self, world: World, host: Host) -> None:
        targets = tuple(a for a in self.seeds if a != host.addr)
        if targets:
            world.command(host, Join(targets))
        self._attach(host)

    def _attach(self, host: Host) -> None:
        sub = consensus_of(host)
        if sub is not None and id(sub) not in self._attached:
            self._attached.add(id(sub))
            self.observer.attach(host.name, sub)

    def _nodes(self) -> list[tuple[str, ConsensusSubsystem]]:
        out = []
        for h in self.world.hosts:
            sub = consensus_of(h)
            if sub is not None:
                self._attach(h)
                out.append((h.name, sub))
        return out

    def observe(self) -> None:
        """One observation of every node up (also run before each check)."""
        world = self.world
        self.observer.observe(world.now, self._nodes())
        assert self.stop_s is not None
        if self.start_s <= world.now <= self.stop_s:
            self._commit_window.append((world.now, self.observer.max_commit))
            if len(self._commit_window) > 2:
                del self._commit_window[1:-1]

    def _poll(self, _: Any = None) -> None:
        self.observe()
        self.world.schedule(self.world.now + POLL_S, self._poll)

    # -- clients -----------------------------------------------------------------------

    def _choose(self, rng: Any) -> str:
        x = rng.random() * sum(self.mix)
        if x < self.mix[0]:
            return "get"
        if x < self.mix[0] + self.mix[1]:
            return "put"
        return "cas"

    def _next(self, proc: int) -> None:
        world = self.world
        assert self.stop_s is not None
        if world.now >= self.stop_s:
            return
        rng = world.rng
        f = self._choose(rng)
        key = f"k{rng.randrange(self.keys)}"
        arg: Any = None
        if f == "put":
            self._writes_seen += 1
            arg = f"{proc}-{self._writes_seen}"
        elif f == "cas":
            self._writes_seen += 1
            arg = [self._last_written.get(key), f"{proc}-{self._writes_seen}"]
        if arg is not None:
            self._last_written[key] = arg if f == "put" else arg[1]
        up = [h for h in world.hosts if h.is_live and (s := consensus_of(h)) and s.started]
        self.recorder.invoke(proc, f, key, arg, time=world.now)
        if not up:
            self._complete(_Op(proc, f, key, arg, "", 0), "fail", None)
            return
        host = up[rng.randrange(len(up))]
        sub = consensus_of(host)
        assert sub is not None
        op = _Op(proc, f, key, arg, host.name, 0)
        now = host.clock.now(world.now)

        def on_done(outcome: Outcome) -> None:
            self._outcome(op, outcome)

        kb = key.encode()
        if f == "get":
            op.ticket = sub.read(now, kb, on_done=on_done)
        elif f == "put":
            op.ticket = sub.propose(now, kvmod.encode_put(kb, str(arg).encode()), on_done=on_done)
        else:
            expected = None if arg[0] is None else str(arg[0]).encode()
            cmd = kvmod.encode_cas(kb, expected, str(arg[1]).encode())
            op.ticket = sub.propose(now, cmd, on_done=on_done)
        op.boot = sub.boot_id
        world.schedule(world.now + self.timeout_s, self._timeout, op)
        world.pump(host)

    def _gap(self) -> float:
        return float(self.world.rng.expovariate(self.rate))

    def _complete(self, op: _Op, outcome: str, value: Any) -> None:
        if op.done:
            return
        op.done = True
        self.recorder.complete(op.process, outcome, value, time=self.world.now)
        self.counts["ok" if outcome == "ok" else "failed" if outcome == "fail" else "info"] += 1
        self.world.schedule(self.world.now + self._gap(), self._next, op.process)

    def _timeout(self, op: _Op) -> None:
        self._complete(op, "info", None)

    def _outcome(self, op: _Op, o: Outcome) -> None:
        if op.done:
            return
        if o.status == "indeterminate":
            self._complete(op, "info", None)
            return
        if not o.ok:
            self._complete(op, "fail", None)
            return
        res = kvmod.decode_result(o.value or b"")
        if not res.ok:
            self._complete(op, "fail", None)
            return
        if op.f == "get":
            v = res.value
            self._complete(op, "ok", None if v is None else v.decode())
            return
        if op.f == "cas" and not res.value[0]:
            self._complete(op, "fail", None)
            return
        index = self.observer.proposals.get(self._proposal_id(op))
        if index is not None:
            self._acked.append((index, op.host))
        self._complete(op, "ok", None)

    def _proposal_id(self, op: _Op) -> tuple[bytes, int, int]:
        host = self.world.host(op.host)
        node_id = host.core.node_id if host.core is not None else b""
        return (node_id, op.boot, op.ticket)

    # -- checks and metrics ------------------------------------------------------------

    def check_safety(self, name: str) -> tuple[bool, str]:
        """One of the ``raft.*`` safety invariants (after a fresh observation)."""
        if self.world is not None:
            self.observe()
        n = self.observer.counts.get(name, 0)
        if n:
            return False, f"{n} violations: " + "; ".join(self.observer.violations[name][:3])
        return True, (
            f"{len(self.observer.leaders)} terms with a leader, "
            f"{len(self.observer.committed)} committed entries observed"
        )

    def check_no_lost_ack(self) -> tuple[bool, str]:
        """``kv.no_lost_ack``: acknowledged writes are in every log up that reaches them."""
        self.observe()
        lost: list[str] = []
        nodes = [(n, s) for n, s in self._nodes() if s.raw is not None]
        for index, host in self._acked:
            want = self.observer.applied.get(index)
            for name, sub in nodes:
                assert sub.raw is not None
                log = sub.raw.raft.log
                if index < log.first_index():
                    continue  # under the snapshot: committed, compacted
                if index > log.last_index():
                    lost.append(f"{name} lacks index {index} acknowledged by {host}")
                    continue
                if want is not None and log.term(index) != want[0]:
                    lost.append(f"{name} holds another entry at acknowledged index {index}")
        if lost:
            return False, f"{len(lost)} problems: " + "; ".join(lost[:3])
        return True, f"{len(self._acked)} acknowledged writes present on {len(nodes)} nodes"

    def check_linearizable(self) -> tuple[bool, str]:
        """``kv.linearizable``: the recorded history under the ``kv`` model."""
        result = check(
            self.recorder.operations(),
            KvModel(),
            budget=Budget(max_steps=LINEARIZABILITY_MAX_STEPS),
            source="kv workload",
        )
        return result.verdict is Verdict.LINEARIZABLE, result.summary().splitlines()[0]

    def metrics(self, world: World | None = None) -> dict[str, float]:
        """The ``raft.*`` and ``kv.*`` figures (module docstring)."""
        obs = self.observer
        out: dict[str, float] = {
            "raft.elections": float(len(obs.leaders)),
            "kv.ops_ok": float(self.counts["ok"]),
            "kv.ops_failed": float(self.counts["failed"]),
            "kv.ops_info": float(self.counts["info"]),
        }
        if obs.failovers:
            out["raft.failover_s"] = max(obs.failovers)
            out["raft.failover_s_count"] = float(len(obs.failovers))
            out["raft.failover_s_mean"] = sum(obs.failovers) / len(obs.failovers)
        w = self._commit_window
        if len(w) == 2 and w[1][0] > w[0][0]:
            out["raft.commits_per_s"] = (w[1][1] - w[0][1]) / (w[1][0] - w[0][0])
        return out

    def history_lines(self) -> list[str]:
        """The history as JSON lines (what ``--history`` writes)."""
        return list(self.recorder.jsonl_lines())


def kv_workload(world: World) -> KVWorkload:
    """The world's ``kv`` workload (``LookupError`` if it has none)."""
    for w in world.workloads:
        if isinstance(w, KVWorkload):
            return w
    raise LookupError("the scenario has no kv workload")


def resolve_leader(world: World, _: str) -> str | None:
    """The ``@leader`` role: the node up leading the highest term now, or None."""
    best: tuple[int, str] | None = None
    for h in world.hosts:
        sub = consensus_of(h)
        if sub is not None and sub.raw is not None and sub.is_leader():
            term = sub.raw.raft.term
            if best is None or term > best[0]:
                best = (term, h.name)
    return best[1] if best is not None else None


def register_kv() -> None:
    """Register the six invariants in :mod:`simulator.checkers` and the ``@leader`` role
    (idempotent). Called where the ``kv`` workload is added to ``WORKLOADS`` (not at
    import: the set of registered checkers is part of the engine's contract)."""
    from simulator.checkers import CHECKERS, LIVENESS, SAFETY, Checker, register

    ROLE_RESOLVERS.setdefault("@leader", resolve_leader)

    def applies(world: World) -> bool:
        return world.has_workload("kv")

    def safety(name: str) -> Any:
        return lambda world: kv_workload(world).check_safety(name)

    for name, text in (
        ("raft.election_safety", "never two leaders in one term"),
        ("raft.log_matching", "two logs with the same index and term agree up to it"),
        ("raft.leader_completeness", "a leader holds every entry committed in earlier terms"),
        ("raft.state_machine_safety", "no two nodes apply or commit different entries at "
         "one index"),
    ):
        if name not in CHECKERS:
            register(Checker(name, SAFETY, text, applies, safety(name)))
    if "kv.no_lost_ack" not in CHECKERS:
        register(Checker(
            "kv.no_lost_ack", LIVENESS,
            "every acknowledged write is, at the end, in every log up that reaches its index",
            applies, lambda world: kv_workload(world).check_no_lost_ack(),
        ))
    if "kv.linearizable" not in CHECKERS:
        register(Checker(
            "kv.linearizable", LIVENESS, "the kv workload's history is linearizable (kv model)",
            applies, lambda world: kv_workload(world).check_linearizable(),
        ))
