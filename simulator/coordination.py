"""The ``auction`` workload: agents bidding in sealed-bid auctions and voting, through Raft,
and the ``auction.*`` / ``vote.*`` invariants.

Agents are virtual services (``agent/NN``, :attr:`World.services`) hosted round-robin on
the nodes, each with a 16-byte agent id (drawn from the run's seed; no key) and a scripted
strategy. At each boot of its host an agent is bound to the host through the log (a
``Bind`` signed by the host's node key, epoch one above the binding its node shows;
retried until applied) and acts only once its node shows it bound there; its commits and
votes are signed by the host's node key (``core.identity``). They act on what their own
node's replicated state machine shows (the
coordination machine inside the node's composite ``MachineSet``, ``spec/consensus.md``):
an auction seen in its commit phase is bid on, one seen in its reveal phase is revealed,
a proposal seen open is voted on. What an agent knows lives in memory: a crash of its
node loses its unrevealed secrets (those bids end unrevealed) and it starts afresh.

Strategies (``strategies``, weights; each agent gets one, in proportion):

- ``honest``: commits in the commit phase, reveals in the reveal phase, votes;
- ``never_reveal``: commits, never reveals, never votes (votes time out);
- ``wrong_amount``: reveals another amount than it committed (a mismatch);
- ``wrong_nonce``: reveals its amount with another nonce (a mismatch);
- ``duplicate``: submits each commit, reveal and vote twice (retries are deduplicated);
- ``late``: commits only once its node shows the commit phase closed (refused ``late``);
- ``impostor``: bids honestly, and another node (the next live one in the cluster's
  order) also submits a commit for it, signed with that node's key and naming that node:
  refused ``not_host`` by every replica (``auction.refused_binding``); not in the default
  mix.

The auctioneer (the workload itself, a client of no particular node) opens ``auctions``
auctions at ``rate`` per second from ``start``: each goes through ``OpenAuction``, after
``commit_window`` ``CloseCommit``, after ``reveal_window`` ``Finalize``, each a Raft
proposal (``core.consensus.propose(now, coordination_envelope(command), on_done)``) on a
node drawn among those up; a proposal that fails or has no answer within ``timeout`` is
sent again (to another draw) after ``retry`` — the state machine deduplicates. Votes
(``votes`` proposals at ``vote_rate`` from ``vote_start``) name ``voters`` agents and a rule
(cycled through ``vote_rules``); the proposer closes each (``CloseVote``) ``vote_timeout``
after it opened, so every proposal ends decided or with the typed ``timeout`` /
``quorum_not_met`` (``ConsensusTimeout`` / ``QuorumNotMet``).

Bid amounts are ``AMOUNT_BASE + v`` with ``v < 2**48`` and distinct across the run, so
that each one's encoding (8 bytes big-endian, as in the commitment input and a CBOR
uint64) can be searched for in plaintext: :class:`PlaintextTap` sees every message a node
hands to sealing — each gossip packet's plaintext (``core.protection.seal``), each
internal-service message before the messenger encodes it onto its stream (Raft, registry,
coordination: ``core.messenger.send``) and each channel broadcast — by wrapping those
three calls on every core at boot.

Invariants (registered in :mod:`simulator.checkers` by :func:`register_coordination`):

- ``auction.agreement`` (safety): every node (every boot) that finalized an auction holds
  the same result (winners and bids, price, unrevealed, mismatched, below-reserve and late
  lists), and so did the proposer's answer; and it is the result the auction's applied
  commands give when replayed by :func:`reference_result` (the issue's rules, written
  independently of ``AuctionMachine``). The commands are followed as each replica applies
  them (``MachineSet.add_listener``), so log compaction hides none.
- ``auction.sealed`` (safety): no bid amount appears in any plaintext message or in any
  Raft entry (the committed ones, and each node's uncommitted tail) before its reveal: a
  bid opens when its agent releases the reveal *after* its node applied the auction's
  close; an entry carrying the amount must also sit after the auction's ``CloseCommit``
  entry in the log.
- ``auction.deadline`` (safety): no node's machine holds a commit whose first applied
  entry comes after the auction's ``CloseCommit`` entry (log order, not clocks, decides).
- ``vote.agreement`` (safety): no two nodes hold different outcomes for one proposal, and
  each typed result (accepted, rejected, ``ConsensusTimeout``, ``QuorumNotMet``) is the one
  its status names.

Metrics: ``auction.opened``, ``auction.completed``, ``auction.unfinished``,
``auction.latency_s`` (first open proposal to the finalize answer:
``_p50``/``_p99``/``_mean``/``_max``/``_count``), ``auction.bids``, ``auction.reveals``,
``auction.duplicates``, ``auction.refused_late``, ``auction.binds`` (bind proposals),
``auction.refused_binding`` (impostor commits refused; only with that strategy),
``auction.unrevealed``, ``auction.mismatched``, ``auction.no_winner``, ``auction.retries``,
``auction.sealed_messages_scanned`` / ``_bytes_scanned``, ``vote.proposed``,
``vote.accepted`` / ``rejected`` / ``timeout`` / ``quorum_not_met`` / ``undecided`` /
``duplicates``. (``auction.retries`` counts the auctioneer's and the vote proposer's
repeated proposals.)

Equivalent lower-level calls: ``core.consensus.propose(now, envelope, on_done)`` with
``consensus.machines.coordination_envelope(coordination.wire.encode_command(cmd))``;
``agents.bind_command``, ``commitments.seal_bid`` and ``sign_vote``; reading
``core.consensus.state_machine.machines[1]`` (``CoordinationMachine``:
``bindings.get/epoch``, ``auctions.phase/result``, ``votes.outcome/decision``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cbor2

from foundation_p2p.consensus.machines import (
    MACHINE_COORDINATION,
    MachineSet,
    coordination_envelope,
)
from foundation_p2p.consensus.subsystem import ConsensusSubsystem, Outcome
from foundation_p2p.coordination.agents import bind_command
from foundation_p2p.coordination.auction import COMMIT_PHASE, DONE, AuctionResult
from foundation_p2p.coordination.commitments import (
    Reveal,
    SealedBid,
    bind_signed_bytes,
    seal_bid,
    sign_vote,
)
from foundation_p2p.coordination.machine import CoordinationMachine
from foundation_p2p.coordination.voting import STATUSES, ConsensusTimeout, QuorumNotMet
from foundation_p2p.coordination.wire import (
    FIRST_PRICE,
    MAJORITY,
    MULTI_UNIT,
    QUORUM,
    SECOND_PRICE,
    SUPERMAJORITY,
    UNANIMOUS,
    WEIGHTED,
    Bind,
    CastVote,
    CloseCommit,
    CloseVote,
    CommitBid,
    Finalize,
    OpenAuction,
    Propose,
    RevealBid,
    Voter,
    decode_command,
    encode_command,
)
from foundation_p2p.crypto.identity import node_id_from_public_key, verify_signature
from foundation_p2p.errors import WireError
from foundation_p2p.events import Join
from simulator.durations import parse_duration
from simulator.kv import consensus_of
from simulator.model import WorkloadSpec
from simulator.rand import byte_source, child_rng

if TYPE_CHECKING:
    from simulator.host import Host
    from simulator.world import World

POLL_S = 0.05
"""How often agents look at their node's state and the observer at every node."""
MAX_VIOLATIONS = 20
"""Violation details kept per invariant (all are counted)."""
MAX_SAMPLES = 100_000
"""Latency samples kept (there is one per auction: never reached by a scenario)."""
MARK = 0xA5C3
AMOUNT_BASE = MARK << 48
"""Every bid amount and reserve is ``AMOUNT_BASE + v``, ``v < 2**48``."""
MARK_BYTES = MARK.to_bytes(2, "big")

STRATEGIES = ("honest", "never_reveal", "wrong_amount", "wrong_nonce", "duplicate", "late",
              "impostor")
DEFAULT_STRATEGIES = {
    "honest": 0.5, "never_reveal": 0.1, "wrong_amount": 0.1, "wrong_nonce": 0.1,
    "duplicate": 0.1, "late": 0.1,
}
RULES = {"first-price": FIRST_PRICE, "second-price": SECOND_PRICE, "multi-unit": MULTI_UNIT}
VOTE_RULES = {
    "majority": MAJORITY, "supermajority": SUPERMAJORITY, "unanimous": UNANIMOUS,
    "quorum": QUORUM, "weighted": WEIGHTED,
}
KNOWN_PARAMS = (
    "agents", "auctions", "rate", "start", "stop", "commit_window", "reveal_window",
    "retry", "timeout", "participation", "strategies", "rules", "units", "votes",
    "vote_rate", "vote_start", "voters", "vote_rules", "vote_timeout", "vote_deadline",
)
JOINING_KINDS = ("ping", "membership", "kv", "broadcast", "singleton")
"""Workloads that already send each booting node ``Join(seeds)``; alone, this one does."""
MAX_ATTEMPTS = 200
"""Proposals of one auctioneer step before the workload gives that auction up."""


def _err(key: str, problem: str) -> ValueError:
    return ValueError(f"workload auction: {key}: {problem}")


def coordination_of(sub: ConsensusSubsystem) -> CoordinationMachine | None:
    """The coordination machine of a node's composite state machine, if it runs one."""
    sm = sub.state_machine
    if not isinstance(sm, MachineSet):
        return None
    m = sm.machines.get(MACHINE_COORDINATION)
    return m if isinstance(m, CoordinationMachine) else None


def amount_key(amount: int) -> bytes:
    """The 8-byte big-endian encoding the tap searches for."""
    return amount.to_bytes(8, "big")


# -- the plaintext tap ----------------------------------------------------------------


@dataclass
class Bid:
    """One sealed bid: its amount stays secret until :attr:`open`."""

    auction: bytes
    agent: int
    amount: int
    node: str
    open: bool = False
    """Released by its agent after the agent's node applied the auction's close."""
    leaked: bool = False
    """A violation was recorded for it (one per bid)."""


class PlaintextTap:
    """Searches every plaintext handed to sealing for the amounts of sealed bids.

    ``secrets`` maps each sealed (not yet open) bid's 8-byte amount to its bid; a match of
    :data:`MARK_BYTES` is looked up there. Bounded by the bids of the run (one entry per
    bid, removed when it opens).
    """

    def __init__(self, on_leak: Callable[[Bid, str], None]) -> None:
        self.secrets: dict[bytes, Bid] = {}
        self.on_leak = on_leak
        self.messages = 0
        self.bytes = 0

    def scan(self, data: bytes, where: str) -> None:
        """Look for sealed amounts in ``data`` (one plaintext message)."""
        self.messages += 1
        self.bytes += len(data)
        secrets = self.secrets
        if not secrets:
            return
        i = data.find(MARK_BYTES)
        while i >= 0:
            bid = secrets.get(data[i:i + 8])
            if bid is not None:
                self.on_leak(bid, where)
            i = data.find(MARK_BYTES, i + 1)

    def install(self, host: Host) -> None:
        """Wrap ``host``'s core's sealing calls (gossip, messenger, channels)."""
        core = host.core
        assert core is not None
        name = host.name
        scan = self.scan
        messenger = core.messenger
        orig_send = messenger.send

        def send(now: Any, node_id: Any, service: int, message: Any) -> bool:
            scan(_plain(message), f"{name} messenger service {service}")
            return orig_send(now, node_id, service, message)

        protection = core.protection
        orig_seal = protection.seal

        def seal(plaintext: bytes) -> bytes:
            scan(plaintext, f"{name} gossip packet")
            return orig_seal(plaintext)

        channels = core.channels
        orig_broadcast = channels.broadcast

        def broadcast(now: Any, topic: Any, message: Any, **kw: Any) -> int:
            scan(_plain(message), f"{name} channel {topic}")
            return orig_broadcast(now, topic, message, **kw)

        setattr(messenger, "send", send)  # noqa: B010 (an instance attribute on purpose)
        setattr(protection, "seal", seal)  # noqa: B010
        setattr(channels, "broadcast", broadcast)  # noqa: B010


def _plain(message: Any) -> bytes:
    """A message's CBOR bytes (what the stream carries, less its record head)."""
    if isinstance(message, bytes | bytearray | memoryview):
        return bytes(message)
    try:
        return bytes(cbor2.dumps(message, canonical=True))
    except Exception:  # not CBOR data: the messenger refuses it too; search its repr
        return repr(message).encode()


# -- agents and auctions --------------------------------------------------------------


@dataclass
class AgentBid:
    """What one agent did in one auction (this boot)."""

    bid: Bid | None = None
    commit_cmd: bytes = b""
    reveal_cmd: bytes = b""
    commit: str = "todo"
    """``todo``, ``pending``, ``done`` or ``skip`` (stays out)."""
    reveal: str = "todo"
    commits_sent: int = 0
    reveals_sent: int = 0
    impostor: str = "todo"
    """For the ``impostor`` strategy: the other node's commit, ``todo``/``pending``/``done``."""
    retry_at: float = 0.0


@dataclass
class Agent:
    """A scripted agent: id, host node, strategy, and what it remembers."""

    index: int
    name: str
    agent_id: bytes
    host: str
    strategy: str
    nonce: Callable[[int], bytes]
    boot: int = 0
    """The host boot it runs in (0: not running)."""
    bind: str = "todo"
    """Its bind this boot: ``todo``, ``pending`` or ``done`` (applied or a duplicate)."""
    bind_retry_at: float = 0.0
    auctions: dict[bytes, AgentBid] = field(default_factory=dict)
    votes: dict[bytes, list[Any]] = field(default_factory=dict)
    """proposal id -> [state, sends, retry_at]."""


@dataclass
class Step:
    """The auctioneer's (or vote proposer's) current proposal of one auction or vote."""

    name: str
    command: bytes
    attempts: int = 0
    gen: int = 0


@dataclass
class AuctionRun:
    """One auction from the auctioneer's side."""

    k: int
    spec: OpenAuction
    first_at: float = 0.0
    step: Step | None = None
    opened: bool = False
    done: bool = False
    gave_up: bool = False
    result: AuctionResult | None = None


@dataclass
class VoteRun:
    """One proposal from the proposer's side."""

    k: int
    spec: Propose
    step: Step | None = None
    opened: bool = False
    done: bool = False
    gave_up: bool = False
    status: str | None = None


def _duration(params: dict[str, Any], key: str, default: str | None) -> float | None:
    raw = params.get(key, default)
    if raw is None:
        return None
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise _err(key, str(exc)) from None


def _int(params: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    raw = params.get(key, default)
    if type(raw) is not int or not lo <= raw <= hi:
        raise _err(key, f"must be an integer from {lo} to {hi}, got {raw!r}")
    return raw


def _rate(params: dict[str, Any], key: str, default: float) -> float:
    raw = params.get(key, default)
    if type(raw) not in (int, float) or not raw > 0:
        raise _err(key, f"must be a positive number, got {raw!r}")
    return float(raw)


def _names(params: dict[str, Any], key: str, known: dict[str, int]) -> list[int]:
    raw = params.get(key, list(known))
    if not isinstance(raw, list) or not raw or any(r not in known for r in raw):
        raise _err(key, f"must be a non-empty list of {', '.join(known)}, got {raw!r}")
    return [known[r] for r in raw]


class AuctionWorkload:
    """Agents, the auctioneer and the vote proposer; the coordination invariants' observer
    (see the module docstring)."""

    kind = "auction"

    def __init__(self, spec: WorkloadSpec) -> None:
        p = spec.params
        unknown = sorted(set(p) - set(KNOWN_PARAMS))
        if unknown:
            raise _err(unknown[0], f"unknown parameter (known: {', '.join(KNOWN_PARAMS)})")
        self.n_agents = _int(p, "agents", 20, 1, 1000)
        self.n_auctions = _int(p, "auctions", 30, 0, 100_000)
        self.rate = _rate(p, "rate", 1.0)
        self.units = _int(p, "units", 2, 1, 1024)
        self.n_votes = _int(p, "votes", 0, 0, 100_000)
        self.vote_rate = _rate(p, "vote_rate", 1.0)
        self.voters = _int(p, "voters", 5, 1, 1024)
        if self.voters > self.n_agents:
            raise _err("voters", f"{self.voters} voters but only {self.n_agents} agents")
        self.vote_deadline = _int(p, "vote_deadline", 100_000, 1, 1 << 40)
        self.rules = _names(p, "rules", RULES)
        self.vote_rules = _names(p, "vote_rules", VOTE_RULES)
        part = p.get("participation", 0.6)
        if type(part) not in (int, float) or not 0 < part <= 1:
            raise _err("participation", f"must be a number in (0, 1], got {part!r}")
        self.participation = float(part)
        strategies = p.get("strategies", DEFAULT_STRATEGIES)
        if (not isinstance(strategies, dict) or not strategies
                or any(k not in STRATEGIES for k in strategies)
                or any(type(v) not in (int, float) or v < 0 for v in strategies.values())
                or sum(strategies.values()) <= 0):
            raise _err("strategies", f"must be a table of weights >= 0 for "
                       f"{', '.join(STRATEGIES)} (not all zero), got {strategies!r}")
        self.strategy_weights = {k: float(v) for k, v in strategies.items()}
        durations: dict[str, float] = {}
        for key, default in (("start", "5s"), ("commit_window", "1s"), ("reveal_window", "1s"),
                             ("retry", "500ms"), ("timeout", "4s"), ("vote_timeout", "3s")):
            d = _duration(p, key, default)
            assert d is not None
            if key != "start" and d <= 0:
                raise _err(key, "must be longer than 0s")
            durations[key] = d
        self.start_s = durations["start"]
        self.commit_window_s = durations["commit_window"]
        self.reveal_window_s = durations["reveal_window"]
        self.retry_s = durations["retry"]
        self.timeout_s = durations["timeout"]
        self.vote_timeout_s = durations["vote_timeout"]
        vs = _duration(p, "vote_start", None)
        self.vote_start_s = self.start_s if vs is None else vs
        self.stop_s = _duration(p, "stop", None)

        self.world: Any = None
        self.rng = child_rng(0, "auction")
        self.agents: list[Agent] = []
        self.runs: dict[bytes, AuctionRun] = {}
        self.active: list[AuctionRun] = []
        self.vote_runs: dict[bytes, VoteRun] = {}
        self.active_votes: list[VoteRun] = []
        self.used: set[int] = set()
        self.bids: dict[bytes, Bid] = {}
        """Every bid by amount (sealed or open)."""
        self.tap = PlaintextTap(self._leak)
        self.violations: dict[str, list[str]] = {}
        self.counts: dict[str, int] = {}
        self.stats: dict[str, int] = {k: 0 for k in (
            "opened", "completed", "bids", "reveals", "duplicates", "refused_late", "binds",
            "refused_binding",
            "vote_duplicates",
            "retries", "unrevealed", "mismatched", "no_winner", "vote_proposed",
            "vote_accepted", "vote_rejected", "vote_timeout", "vote_quorum_not_met",
        )}
        self.latencies: list[float] = []
        # the observer
        self.results: dict[bytes, tuple[tuple[Any, ...], str]] = {}
        self.outcomes: dict[bytes, tuple[tuple[Any, ...], str]] = {}
        self.ledger: dict[bytes, list[tuple[int, Any]]] = {}
        """auction id -> its committed commands (index, command), as seen in the logs."""
        self.bind_ledger: list[tuple[int, Bind]] = []
        """Every committed ``Bind`` (index, command), as seen in the logs (one per agent
        and boot of its host: bounded by the run)."""
        self._logged: set[int] = set()
        self._oracle_done: set[bytes] = set()
        self.oracle_checked = 0
        self._seen_results: dict[tuple[str, int], set[bytes]] = {}
        self._seen_outcomes: dict[tuple[str, int], set[bytes]] = {}
        self._scanned: dict[tuple[str, int], int] = {}
        """(node, boot) -> the commit index scanned up to."""
        self._deadline_seen: dict[tuple[tuple[str, int], bytes], set[bytes]] = {}
        """((node, boot), auction) -> the bidders whose accepted commit was checked."""
        self.close_index: dict[bytes, int] = {}
        self.commit_index: dict[tuple[bytes, bytes], int] = {}
        self.entries_scanned = 0
        self.commits_verified = 0
        self.commits_unverified = 0
        self.records = 0
        self.vote_records = 0
        self._by_id: dict[bytes, Agent] = {}

    # -- the World's calls -------------------------------------------------------------

    def on_start(self, world: World) -> None:
        self.world = world
        if not all("consensus" in h.config.extra for h in world.hosts):
            raise ValueError(
                "workload auction: the nodes run no Raft group: add a kv workload (which "
                "gives every node the simulator's [consensus] table) or a [node.consensus] "
                "table"
            )
        self.rng = child_rng(world.seed, "auction")
        if self.stop_s is None:
            self.stop_s = world.settle_at
        self._make_agents(world)
        world.schedule(0.0, self._poll)
        t = self.start_s
        for k in range(self.n_auctions):
            world.schedule(t, self._open_auction, k)
            t += self.rng.expovariate(self.rate)
        t = self.vote_start_s
        for k in range(self.n_votes):
            world.schedule(t, self._open_vote, k)
            t += self.rng.expovariate(self.vote_rate)

    def on_boot(self, world: World, host: Host) -> None:
        if not any(world.has_workload(k) for k in JOINING_KINDS):
            cluster = world.scenario.cluster
            seeds = cluster.seeds or cluster.names[: min(3, cluster.nodes)]
            targets = tuple(world.host(n).addr for n in seeds if n != host.name)
            if targets:
                world.command(host, Join(targets))
        if host.core is not None:
            self.tap.install(host)  # a boot is a new core: wrap its calls once
            sub = consensus_of(host)
            sm = sub.state_machine if sub is not None else None
            if isinstance(sm, MachineSet):
                sm.add_listener(MACHINE_COORDINATION, self._on_applied)
        for a in self.agents:
            if a.host == host.name:
                a.boot = host.boots
                a.bind, a.bind_retry_at = "todo", 0.0
                a.auctions.clear()
                a.votes.clear()
                world.services.start(a.name, host.name, world.now)
                world.trace({"ev": "service", "what": "start", "name": a.name,
                             "node": host.name})

    def _make_agents(self, world: World) -> None:
        names = world.scenario.cluster.names
        weights = self.strategy_weights
        total = sum(weights.values())
        quotas = {k: self.n_agents * w / total for k, w in weights.items()}
        counts = {k: int(q) for k, q in quotas.items()}
        rest = self.n_agents - sum(counts.values())
        for k in sorted(quotas, key=lambda k: (-(quotas[k] - counts[k]), k))[:rest]:
            counts[k] += 1
        plan = [k for k in STRATEGIES for _ in range(counts.get(k, 0))]
        self.rng.shuffle(plan)
        for i in range(self.n_agents):
            agent_id = byte_source(world.seed, f"agent/{i}")(16)
            self.agents.append(Agent(
                i, f"agent/{i:02d}", agent_id, names[i % len(names)], plan[i],
                byte_source(world.seed, f"agent/{i}/nonce"),
            ))
        self._by_id = {a.agent_id: a for a in self.agents}

    # -- proposals -----------------------------------------------------------------------

    def _live(self) -> list[Host]:
        out = []
        for h in self.world.hosts:
            if h.is_live:
                sub = consensus_of(h)
                if sub is not None and sub.started:
                    out.append(h)
        return out

    def _propose(
        self, host: Host, command: bytes, on_result: Callable[[str, Any], None]
    ) -> None:
        """Propose ``command`` (a coordination command) on ``host``; ``on_result(status,
        value)`` once, later: ``ok`` with the decoded result, or the failure, or
        ``timeout``."""
        world = self.world
        sub = consensus_of(host)
        assert sub is not None
        state = [False]

        def finish(status: str, value: Any) -> None:
            if state[0]:
                return
            state[0] = True
            world.schedule(world.now, lambda _: on_result(status, value))

        def on_done(o: Outcome) -> None:
            if not o.ok:
                finish(o.status, None)
                return
            try:
                value = cbor2.loads(o.value or b"")
            except Exception:
                value = None
            finish("ok", value)

        try:
            sub.propose(host.clock.now(world.now), coordination_envelope(command), on_done)
        except Exception:
            world._fail(host, "consensus.propose")
        world.schedule(world.now + self.timeout_s, lambda _: finish("timeout", None))
        world.pump(host)

    def _submit(self, run: AuctionRun | VoteRun, step: Step) -> None:
        """Send the step's proposal through a node drawn among those up (or retry)."""
        world = self.world
        if run.step is not step or run.done or run.gave_up:
            return
        step.attempts += 1
        if step.attempts > MAX_ATTEMPTS:
            run.gave_up = True
            world.trace({"ev": "coordination", "what": "gave_up", "step": step.name,
                         "id": _rid(run)})
            return
        if step.attempts > 1:
            self.stats["retries"] += 1
        live = self._live()
        if not live:
            world.schedule(world.now + self.retry_s, lambda _: self._submit(run, step))
            return
        host = live[self.rng.randrange(len(live))]
        step.gen += 1
        gen = step.gen

        def on_result(status: str, value: Any) -> None:
            if run.step is not step or step.gen != gen:
                return
            self._step_result(run, step, host.name, status, value)

        self._propose(host, step.command, on_result)

    def _step_result(
        self, run: AuctionRun | VoteRun, step: Step, node: str, status: str, value: Any
    ) -> None:
        world = self.world
        code = value[0] if isinstance(value, list) and value else None
        if status != "ok" or code not in (0, 1):
            world.trace({"ev": "coordination", "what": "retry", "step": step.name,
                         "id": _rid(run), "status": status if status != "ok" else
                         f"refused {value[1] if isinstance(value, list) else '?'}"})
            world.schedule(world.now + self.retry_s, lambda _: self._submit(run, step))
            return
        detail = value[1] if isinstance(value, list) and len(value) > 1 else None
        world.trace({"ev": "coordination", "what": step.name, "id": _rid(run), "node": node,
                     "duplicate": code == 1})
        if isinstance(run, AuctionRun):
            self._auction_step_done(run, step, node, detail)
        else:
            self._vote_step_done(run, step, node, detail)

    # -- the auctioneer ------------------------------------------------------------------

    def _open_auction(self, k: int) -> None:
        world = self.world
        assert self.stop_s is not None
        if world.now >= self.stop_s:
            return
        aid = self.rng.randbytes(16)
        rule = self.rules[k % len(self.rules)]
        reserve = self._fresh_amount(1 << 38)
        spec = OpenAuction(aid, (f"slot-{k}",), rule, reserve,
                           self.units if rule == MULTI_UNIT else 1)
        run = AuctionRun(k, spec, first_at=world.now)
        self.runs[aid] = run
        self.active.append(run)
        run.step = Step("open", encode_command(spec))
        self._submit(run, run.step)

    def _auction_step_done(self, run: AuctionRun, step: Step, node: str, detail: Any) -> None:
        world = self.world
        aid = run.spec.auction_id
        if step.name == "open":
            run.opened = True
            self.stats["opened"] += 1
            nxt = Step("close", encode_command(CloseCommit(aid)))
            delay = self.commit_window_s
        elif step.name == "close":
            nxt = Step("finalize", encode_command(Finalize(aid)))
            delay = self.reveal_window_s
        else:
            run.done = True
            run.step = None
            self.active.remove(run)
            self.stats["completed"] += 1
            self.latencies.append(world.now - run.first_at)
            try:
                result = AuctionResult.from_wire(detail)
            except WireError:
                self._violate("auction.agreement", f"{node} answered finalize of "
                              f"{aid.hex()[:8]} with no result: {detail!r}")
                return
            run.result = result
            self._record_result(aid, result, f"{node} (finalize answer)")
            self.stats["unrevealed"] += len(result.unrevealed)
            self.stats["mismatched"] += len(result.mismatched)
            if not result.winners:
                self.stats["no_winner"] += 1
            world.trace({"ev": "coordination", "what": "result", "id": aid.hex()[:8],
                         "price": result.price, "winners": len(result.winners),
                         "unrevealed": len(result.unrevealed),
                         "mismatched": len(result.mismatched), "late": len(result.late)})
            return
        run.step = nxt
        world.schedule(world.now + delay, lambda _: self._submit(run, nxt))

    def _fresh_amount(self, spread: int) -> int:
        while True:
            v = AMOUNT_BASE + self.rng.randrange(spread)
            if v not in self.used:
                self.used.add(v)
                return v

    # -- the vote proposer ---------------------------------------------------------------

    def _open_vote(self, k: int) -> None:
        world = self.world
        assert self.stop_s is not None
        if world.now >= self.stop_s:
            return
        pid = self.rng.randbytes(16)
        rule = self.vote_rules[k % len(self.vote_rules)]
        chosen = self.rng.sample(self.agents, self.voters)
        eligible = tuple(sorted(
            (Voter(a.agent_id, self.rng.randint(1, 4) if rule == WEIGHTED else 1)
             for a in chosen),
            key=lambda v: v.voter,
        ))
        quorum = self.voters // 2 + 1 if rule == QUORUM else 0
        spec = Propose(pid, f"proposal-{k}", rule, quorum, eligible, self.vote_deadline)
        run = VoteRun(k, spec)
        self.vote_runs[pid] = run
        self.active_votes.append(run)
        run.step = Step("propose", encode_command(spec))
        self._submit(run, run.step)

    def _vote_step_done(self, run: VoteRun, step: Step, node: str, detail: Any) -> None:
        world = self.world
        pid = run.spec.proposal_id
        if step.name == "propose":
            run.opened = True
            self.stats["vote_proposed"] += 1
            nxt = Step("close_vote", encode_command(CloseVote(pid)))
            run.step = nxt
            world.schedule(world.now + self.vote_timeout_s, lambda _: self._submit(run, nxt))
            return
        run.done = True
        run.step = None
        self.active_votes.remove(run)
        status = "?"
        if (isinstance(detail, list) and len(detail) == 7 and type(detail[1]) is int
                and 0 <= detail[1] < len(STATUSES)):
            status = STATUSES[detail[1]]
        run.status = status
        key = f"vote_{status}"
        if key in self.stats:
            self.stats[key] += 1
        world.trace({"ev": "coordination", "what": "vote_outcome", "id": pid.hex()[:8],
                     "status": status})

    # -- agents --------------------------------------------------------------------------

    def _poll(self, _: Any = None) -> None:
        self.observe()
        self._agents_act()
        self.world.schedule(self.world.now + POLL_S, self._poll)

    def _agents_act(self) -> None:
        world = self.world
        by_host: dict[str, list[Agent]] = {}
        for a in self.agents:
            by_host.setdefault(a.host, []).append(a)
        for host in world.hosts:
            agents = by_host.get(host.name)
            if not agents or not host.is_live:
                continue
            sub = consensus_of(host)
            if sub is None or not sub.started:
                continue
            cm = coordination_of(sub)
            if cm is None or host.core is None:
                continue
            node_id = host.core.identity.node_id
            ready = []
            for a in agents:
                if a.boot != host.boots:
                    continue
                if a.bind == "todo" and world.now >= a.bind_retry_at:
                    self._send_bind(a, host, cm.bindings.epoch(a.agent_id) + 1)
                b = cm.bindings.get(a.agent_id)
                if a.bind == "done" and b is not None and b.node_id == node_id:
                    ready.append(a)
            for run in list(self.active):
                phase = cm.auctions.phase(run.spec.auction_id)
                if phase is None or phase == "done":
                    continue
                for a in ready:
                    self._agent_auction(a, host, run, phase)
            for vrun in list(self.active_votes):
                p = cm.votes.proposals.get(vrun.spec.proposal_id)
                if p is None or p.outcome is not None:
                    continue
                for a in ready:
                    self._agent_vote(a, host, vrun)

    def _send_bind(self, a: Agent, host: Host, epoch: int) -> None:
        """Bind ``a`` to ``host`` at ``epoch`` (signed by the host's node key)."""
        assert host.core is not None
        a.bind = "pending"
        boot = a.boot
        self.stats["binds"] += 1

        def on_result(status: str, value: Any) -> None:
            if a.boot != boot:
                return
            code = value[0] if isinstance(value, list) and value else None
            if status == "ok" and code in (0, 1):
                a.bind = "done"
            else:  # refused stale (a newer binding seen first), or no answer: again
                a.bind = "todo"
                if status != "ok":
                    a.bind_retry_at = self.world.now + self.retry_s

        self._propose(host, bind_command(host.core.identity, a.agent_id, epoch), on_result)

    def wants_reveal(self, agent: Agent, phase: str) -> bool:
        """Whether ``agent`` reveals now (its node shows ``phase``): in the reveal phase,
        unless its strategy never reveals."""
        return phase == "reveal" and agent.strategy not in ("never_reveal", "late")

    def _agent_auction(self, a: Agent, host: Host, run: AuctionRun, phase: str) -> None:
        aid = run.spec.auction_id
        ab = a.auctions.get(aid)
        now = self.world.now
        if ab is None:
            ab = a.auctions[aid] = AgentBid()
            if phase != "commit" or self.rng.random() >= self.participation:
                ab.commit = ab.reveal = "skip"
                return
            self._make_bid(a, host, run, ab)
        if ab.commit == "skip" or now < ab.retry_at:
            return
        first = ab.commit == "todo" and (a.strategy != "late" or phase == "reveal")
        again = (ab.commit == "done" and a.strategy == "duplicate" and ab.commits_sent == 1
                 and phase == "commit")
        if a.strategy == "impostor" and ab.impostor == "todo" and phase == "commit":
            self._send_impostor(a, host, run, ab)  # first: it often reaches the log first
        if first or again:
            self._send_commit(a, host, ab)
        if ab.reveal == "todo" and ab.commit != "todo" and self.wants_reveal(a, phase):
            assert ab.bid is not None
            if phase != "commit" and not ab.bid.open and a.strategy != "wrong_amount":
                ab.bid.open = True
                self.tap.secrets.pop(amount_key(ab.bid.amount), None)
            self._send_reveal(a, host, ab)
        elif ab.reveal == "done" and a.strategy == "duplicate" and ab.reveals_sent == 1:
            self._send_reveal(a, host, ab)

    def _make_bid(self, a: Agent, host: Host, run: AuctionRun, ab: AgentBid) -> None:
        aid = run.spec.auction_id
        amount = self._fresh_amount(1 << 40)
        assert host.core is not None
        sealed, reveal = seal_bid(host.core.identity, a.agent_id, aid, amount, a.nonce)
        ab.commit_cmd = encode_command(CommitBid(
            aid, sealed.bidder, sealed.node_id, sealed.commitment, sealed.signature))
        shown_amount, shown_nonce = amount, reveal.nonce
        if a.strategy == "wrong_amount":
            shown_amount = self._fresh_amount(1 << 40)
        elif a.strategy == "wrong_nonce":
            shown_nonce = bytes(b ^ 0xFF for b in reveal.nonce)
        ab.reveal_cmd = encode_command(RevealBid(aid, sealed.bidder, shown_amount, shown_nonce))
        bid = Bid(aid, a.index, amount, host.name)
        ab.bid = bid
        self.bids[amount_key(amount)] = bid
        self.tap.secrets[amount_key(amount)] = bid
        self.stats["bids"] += 1

    def _send_commit(self, a: Agent, host: Host, ab: AgentBid) -> None:
        ab.commit = "pending"
        ab.commits_sent += 1
        boot = a.boot

        def on_result(status: str, value: Any) -> None:
            if a.boot != boot:
                return
            code = value[0] if isinstance(value, list) and value else None
            if status == "ok" and code in (0, 1, 2):
                ab.commit = "done"
                if code == 1:
                    self.stats["duplicates"] += 1
                if code == 2 and value[1:2] == ["late"]:
                    self.stats["refused_late"] += 1
            else:
                ab.commit = "todo"
                ab.retry_at = self.world.now + self.retry_s

        self._propose(host, ab.commit_cmd, on_result)

    def _send_impostor(self, a: Agent, host: Host, run: AuctionRun, ab: AgentBid) -> None:
        """Another node signs a commit for ``a`` as if it hosted it (must be refused)."""
        names = [h.name for h in self.world.hosts]
        start = names.index(host.name)
        other = None
        for k in range(1, len(names)):
            h = self.world.hosts[(start + k) % len(names)]
            sub = consensus_of(h)
            if h.is_live and h.core is not None and sub is not None and sub.started:
                other = h
                break
        if other is None or other.core is None:
            return
        ab.impostor = "pending"
        sealed, _ = seal_bid(other.core.identity, a.agent_id, run.spec.auction_id,
                             AMOUNT_BASE + self.rng.randrange(1 << 40), a.nonce)
        cmd = encode_command(CommitBid(run.spec.auction_id, sealed.bidder, sealed.node_id,
                                       sealed.commitment, sealed.signature))
        boot = a.boot

        def on_result(status: str, value: Any) -> None:
            if a.boot != boot:
                return
            if status == "ok" and isinstance(value, list) and value[:1] == [2]:
                ab.impostor = "done"
                if value[1:2] in (["not_host"], ["not_bound"]):
                    self.stats["refused_binding"] += 1
            elif status == "ok":
                ab.impostor = "done"  # taken: auction.agreement reports it
            else:
                ab.impostor = "todo"

        self._propose(other, cmd, on_result)

    def _send_reveal(self, a: Agent, host: Host, ab: AgentBid) -> None:
        ab.reveal = "pending"
        ab.reveals_sent += 1
        if ab.reveals_sent == 1:
            self.stats["reveals"] += 1
        boot = a.boot

        def on_result(status: str, value: Any) -> None:
            if a.boot != boot:
                return
            code = value[0] if isinstance(value, list) and value else None
            if status == "ok" and code in (0, 1, 2):
                ab.reveal = "done"
                if code == 1:
                    self.stats["duplicates"] += 1
            else:
                ab.reveal = "todo"
                ab.retry_at = self.world.now + self.retry_s

        self._propose(host, ab.reveal_cmd, on_result)

    def _agent_vote(self, a: Agent, host: Host, run: VoteRun) -> None:
        pid = run.spec.proposal_id
        if all(v.voter != a.agent_id for v in run.spec.eligible):
            return
        if a.strategy in ("never_reveal", "late"):
            return
        st = a.votes.get(pid)
        now = self.world.now
        if st is None:
            x = self.rng.random()
            choice = 1 if x < 0.6 else 0 if x < 0.9 else 2
            assert host.core is not None
            node = host.core.identity
            cmd = encode_command(CastVote(pid, a.agent_id, node.node_id, choice,
                                          sign_vote(node, a.agent_id, pid, choice)))
            st = a.votes[pid] = ["todo", 0, 0.0, cmd]
        state, sends, retry_at, cmd = st
        if now < retry_at:
            return
        if state == "todo" or (state == "done" and a.strategy == "duplicate" and sends == 1):
            st[0] = "pending"
            st[1] = sends + 1
            boot = a.boot

            def on_result(status: str, value: Any) -> None:
                if a.boot != boot:
                    return
                if status == "ok":
                    st[0] = "done"
                    if isinstance(value, list) and value and value[0] == 1:
                        self.stats["vote_duplicates"] += 1
                else:
                    st[0] = "todo"
                    st[2] = self.world.now + self.retry_s

            self._propose(host, cmd, on_result)

    # -- the observer --------------------------------------------------------------------

    def _violate(self, name: str, detail: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1
        kept = self.violations.setdefault(name, [])
        if len(kept) < MAX_VIOLATIONS:
            kept.append(f"t={self.world.now:.3f}s: {detail}" if self.world else detail)

    def _leak(self, bid: Bid, where: str) -> None:
        if bid.leaked:
            return
        bid.leaked = True
        self._violate(
            "auction.sealed",
            f"{where}: the amount of agent/{bid.agent:02d}'s bid in auction "
            f"{bid.auction.hex()[:8]} before its reveal",
        )

    def observe(self) -> None:
        """Look at every node up: new log entries, finalized auctions, decided votes,
        accepted commits (also run before each check)."""
        world = self.world
        if world is None:
            return
        for host in world.hosts:
            sub = consensus_of(host)
            if sub is None or sub.raw is None:
                continue
            key = (host.name, host.boots)
            self._scan_log(host.name, key, sub)
            cm = coordination_of(sub)
            if cm is not None:
                self._observe_machine(host.name, key, cm)
        for aid, (value, who) in self.results.items():
            if aid in self._oracle_done:
                continue
            expected = reference_result(self.ledger.get(aid, []), self.bind_ledger)
            if expected is None:
                continue  # its finalize entry is not seen committed yet
            self._oracle_done.add(aid)
            self.oracle_checked += 1
            if expected != value:
                self._violate(
                    "auction.agreement",
                    f"auction {aid.hex()[:8]}: {who} computed price {value[1]} for "
                    f"{len(value[0])} winners, the log's commits and reveals give price "
                    f"{expected[1]} for {len(expected[0])} winners" + (
                        "" if expected[:2] != value[:2] else " (the reported lists differ)"),
                )

    def _scan_log(self, name: str, key: tuple[str, int], sub: ConsensusSubsystem) -> None:
        assert sub.raw is not None
        log = sub.raw.raft.log
        lo = max(log.first_index(), self._scanned.get(key, 0) + 1)
        hi = log.committed
        if lo <= hi:
            for e in log.slice(lo, hi + 1):
                self._entry(name, e.index, e.data, committed=True)
            self._scanned[key] = hi
        last = log.last_index()
        if last > hi:  # the uncommitted tail: searched for amounts only
            for e in log.slice(max(lo, hi + 1), last + 1):
                self._entry(name, e.index, e.data, committed=False)

    def _entry(self, name: str, index: int, data: bytes, *, committed: bool) -> None:
        """Search one log entry for amounts (see ``auction.sealed``)."""
        if committed:
            self.entries_scanned += 1
        i = data.find(MARK_BYTES)
        while i >= 0:
            bid = self.bids.get(data[i:i + 8])
            if bid is not None:
                if not bid.open:
                    self._leak(bid, f"{name} Raft entry {index}")
                else:
                    close = self.close_index.get(bid.auction)
                    if close is not None and index < close and not bid.leaked:
                        bid.leaked = True
                        self._violate("auction.sealed", f"{name} Raft entry {index} holds "
                                      f"agent/{bid.agent:02d}'s amount in auction "
                                      f"{bid.auction.hex()[:8]} before its close at {close}")
            i = data.find(MARK_BYTES, i + 1)

    def _on_applied(self, index: int, inner: bytes, result: bytes) -> None:
        """A node applied coordination command ``inner`` at ``index`` (the composite
        machine's listener, called on every replica as it applies, so compaction cannot
        hide an entry from it). Never raises."""
        try:
            cmd = decode_command(inner)
        except WireError:
            return
        if isinstance(cmd, Bind):
            if index not in self._logged:
                self._logged.add(index)
                self.bind_ledger.append((index, cmd))
        elif index not in self._logged and isinstance(
                cmd, OpenAuction | CommitBid | CloseCommit | RevealBid | Finalize):
            self._logged.add(index)
            self.ledger.setdefault(cmd.auction_id, []).append((index, cmd))
        if isinstance(cmd, CloseCommit):
            old = self.close_index.get(cmd.auction_id)
            if old is None or index < old:
                self.close_index[cmd.auction_id] = index
        elif isinstance(cmd, CommitBid):
            k = (cmd.auction_id, cmd.bidder)
            old = self.commit_index.get(k)
            if old is None or index < old:
                self.commit_index[k] = index

    def _observe_machine(
        self, name: str, key: tuple[str, int], cm: CoordinationMachine
    ) -> None:
        seen = self._seen_results.setdefault(key, set())
        for run in self.runs.values():
            aid = run.spec.auction_id
            if aid in seen:
                continue
            a = cm.auctions.auctions.get(aid)
            if a is None or a.phase == COMMIT_PHASE:
                continue
            seen_commits = self._deadline_seen.get((key, aid))
            if seen_commits is None or len(seen_commits) != len(a.commits):
                # checked again whenever the set grows (after the close it must not)
                self._check_deadline(name, key, aid, set(a.commits))
            if a.phase == DONE and a.result is not None:
                seen.add(aid)
                self.records += 1
                self._record_result(aid, a.result, f"{name} (boot {key[1]})")
        vseen = self._seen_outcomes.setdefault(key, set())
        for vrun in self.vote_runs.values():
            pid = vrun.spec.proposal_id
            if pid in vseen:
                continue
            out = cm.votes.outcome(pid)
            if out is None:
                continue
            vseen.add(pid)
            self.vote_records += 1
            try:
                typed = "accepted" if cm.votes.decision(pid) else "rejected"
            except ConsensusTimeout:
                typed = "ConsensusTimeout"
            except QuorumNotMet:
                typed = "QuorumNotMet"
            expect = {"accepted": "accepted", "rejected": "rejected",
                      "timeout": "ConsensusTimeout", "quorum_not_met": "QuorumNotMet"}
            if expect.get(out.status) != typed:
                self._violate("vote.agreement", f"{name}: proposal {pid.hex()[:8]} is "
                              f"{out.status} but decision() gives {typed}")
            value = (out.status, out.yes, out.no, out.abstain, out.voters, out.decided_at)
            prior = self.outcomes.setdefault(pid, (value, name))
            if prior[0] != value:
                self._violate("vote.agreement", f"proposal {pid.hex()[:8]}: {prior[1]} holds "
                              f"{prior[0]}, {name} holds {value}")

    def _check_deadline(
        self, name: str, key: tuple[str, int], aid: bytes, bidders: set[bytes]
    ) -> None:
        close = self.close_index.get(aid)
        if close is None:
            return  # the close entry is not seen committed yet: checked at a later poll
        seen = self._deadline_seen.setdefault((key, aid), set())
        for b in sorted(bidders - seen):
            seen.add(b)
            idx = self.commit_index.get((aid, b))
            if idx is None:
                self.commits_unverified += 1
                continue
            self.commits_verified += 1
            if idx > close:
                agent = self._by_id.get(b)
                who = agent.name if agent else b.hex()[:8]
                self._violate("auction.deadline", f"{name} accepted {who}'s commit at entry "
                              f"{idx} in auction {aid.hex()[:8]} closed at entry {close}")

    def _record_result(self, aid: bytes, result: AuctionResult, who: str) -> None:
        value = (result.winners, result.price, result.unrevealed, result.mismatched,
                 result.below_reserve, result.late)
        prior = self.results.setdefault(aid, (value, who))
        if prior[0] != value:
            self._violate(
                "auction.agreement",
                f"auction {aid.hex()[:8]}: {prior[1]} computed price {prior[0][1]} for "
                f"{len(prior[0][0])} winners, {who} price {result.price} for "
                f"{len(result.winners)} winners" + (
                    "" if prior[0][:2] != value[:2] else " (the reported lists differ)"),
            )

    # -- checks and metrics --------------------------------------------------------------

    def check(self, name: str) -> tuple[bool, str]:
        """One of the four invariants (after a fresh observation)."""
        self.observe()
        n = self.counts.get(name, 0)
        if n:
            return False, f"{n} violations: " + "; ".join(self.violations[name][:3])
        if name == "auction.agreement":
            return True, (f"{len(self.results)} finalized auctions, {self.records} node "
                          f"results, all equal; {self.oracle_checked} replayed from the log, "
                          "the same")
        if name == "auction.sealed":
            return True, (f"{len(self.bids)} bids; {self.tap.messages} plaintext messages "
                          f"({self.tap.bytes} bytes) and {self.entries_scanned} committed "
                          "entries searched, no amount before its reveal")
        if name == "auction.deadline":
            return True, (f"{self.commits_verified} accepted commits before their close "
                          f"entry ({self.commits_unverified} not seen in a log)")
        return True, (f"{len(self.outcomes)} decided proposals, {self.vote_records} node "
                      "outcomes, all equal")

    def metrics(self, world: World | None = None) -> dict[str, float]:
        """The ``auction.*`` and ``vote.*`` figures (module docstring)."""
        s = self.stats
        out: dict[str, float] = {}
        if self.n_auctions:
            for k in ("opened", "completed", "bids", "reveals", "retries", "unrevealed",
                      "mismatched", "no_winner", "refused_late", "duplicates", "binds"):
                out[f"auction.{k}"] = float(s[k])
            if self.strategy_weights.get("impostor", 0) > 0:
                out["auction.refused_binding"] = float(s["refused_binding"])
            out["auction.unfinished"] = float(len(self.runs) - s["completed"])
            lat = sorted(self.latencies)
            if lat:
                out["auction.latency_s_count"] = float(len(lat))
                out["auction.latency_s_mean"] = sum(lat) / len(lat)
                out["auction.latency_s_p50"] = lat[len(lat) // 2]
                out["auction.latency_s_p99"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
                out["auction.latency_s_max"] = lat[-1]
            out["auction.sealed_messages_scanned"] = float(self.tap.messages)
            out["auction.sealed_bytes_scanned"] = float(self.tap.bytes)
        if self.n_votes:
            for k in ("proposed", "accepted", "rejected", "timeout", "quorum_not_met",
                      "duplicates"):
                out[f"vote.{k}"] = float(s[f"vote_{k}"])
            out["vote.undecided"] = float(len(self.vote_runs) - sum(
                1 for r in self.vote_runs.values() if r.done))
        return out


def reference_result(
    events: list[tuple[int, Any]], binds: Sequence[tuple[int, Bind]] = (),
) -> tuple[Any, ...] | None:
    """The result an auction's committed commands give, replayed in log order by the
    rules of issue 8 (independently of ``AuctionMachine`` and ``BindingTable``), as the
    tuple ``_record_result`` compares; ``None`` while its finalize entry is not in
    ``events``. ``binds``: the committed ``Bind`` commands (index, command) of the log.

    A bind counts if its node id is its key's, its signature holds and its epoch is above
    the agent's last counted one. A commit counts if, at its index, its bidder is bound to
    the node it names and the signature holds under that node's key, the bidder is invited
    (when the auction names bidders) and it comes before the first close; later ones list
    the bidder as late. A bidder's first accepted commit stands (the same commit again is
    a retry). Between the close and the finalize, a
    bidder's first reveal that opens its commitment is its bid; one that does not marks
    it mismatched. Bids below the reserve never win; ties go to the lower commitment.
    First price: the winner pays its bid. Second price: max(second-highest valid bid,
    reserve). Multi-unit (k units): the k highest win and pay max((k+1)-th valid bid,
    reserve)."""
    spec: OpenAuction | None = None
    closed = False
    commits: dict[bytes, CommitBid] = {}
    amounts: dict[bytes, int] = {}
    mismatched: set[bytes] = set()
    late: set[bytes] = set()
    bound: dict[bytes, tuple[bytes, bytes, int]] = {}  # agent -> (node, key, epoch)
    merged = sorted([*events, *binds], key=lambda e: e[0])
    for _, cmd in merged:
        if isinstance(cmd, Bind):
            prior = bound.get(cmd.agent_id)
            if (node_id_from_public_key(cmd.public_key) == cmd.node_id
                    and verify_signature(cmd.public_key, cmd.signature, bind_signed_bytes(
                        cmd.agent_id, cmd.node_id, cmd.epoch))
                    and (prior is None or cmd.epoch > prior[2])):
                bound[cmd.agent_id] = (cmd.node_id, cmd.public_key, cmd.epoch)
            continue
        if isinstance(cmd, OpenAuction):
            spec = spec or cmd
        elif spec is None:
            continue
        elif isinstance(cmd, CommitBid):
            if commits.get(cmd.bidder) == cmd:
                continue  # a retry of the commit taken
            host = bound.get(cmd.bidder)
            if host is None or host[0] != cmd.node_id or not SealedBid(
                    cmd.auction_id, cmd.bidder, cmd.node_id, cmd.commitment,
                    cmd.signature).verify(host[1]):
                continue
            if getattr(spec, "bidders", ()) and cmd.bidder not in spec.bidders:
                continue
            if closed:
                late.add(cmd.bidder)
            else:
                commits.setdefault(cmd.bidder, cmd)
        elif isinstance(cmd, CloseCommit):
            closed = True
        elif isinstance(cmd, RevealBid):
            c = commits.get(cmd.bidder)
            if not closed or c is None or cmd.bidder in amounts:
                continue
            if Reveal(cmd.auction_id, cmd.bidder, cmd.amount, cmd.nonce).matches(c.commitment):
                amounts[cmd.bidder] = cmd.amount
            else:
                mismatched.add(cmd.bidder)
        elif isinstance(cmd, Finalize) and closed:
            break
    else:
        return None
    assert spec is not None
    ranked = sorted(amounts, key=lambda b: (-amounts[b], commits[b].commitment))
    eligible = [b for b in ranked if amounts[b] >= spec.reserve]
    k = spec.units if spec.rule == MULTI_UNIT else 1
    winners = eligible[:k]
    price: int | None = None
    if winners and spec.rule == FIRST_PRICE:
        price = amounts[winners[0]]
    elif winners:
        price = max(amounts[ranked[k]], spec.reserve) if len(ranked) > k else spec.reserve
    return (
        tuple((b, amounts[b]) for b in winners), price,
        tuple(sorted(set(commits) - set(amounts) - mismatched)),
        tuple(sorted(mismatched - set(amounts))),
        tuple(sorted(b for b in amounts if amounts[b] < spec.reserve)), tuple(sorted(late)),
    )


def _rid(run: AuctionRun | VoteRun) -> str:
    if isinstance(run, AuctionRun):
        return run.spec.auction_id.hex()[:8]
    return run.spec.proposal_id.hex()[:8]


def auction_workload(world: World) -> AuctionWorkload:
    """The world's ``auction`` workload (``LookupError`` if it has none)."""
    for w in world.workloads:
        if isinstance(w, AuctionWorkload):
            return w
    raise LookupError("the scenario has no auction workload")


INVARIANTS = (
    ("auction.agreement", "every node computes the same winners and price for every "
     "finalized auction"),
    ("auction.sealed", "no bid amount appears in a plaintext message or a Raft entry before "
     "its reveal"),
    ("auction.deadline", "no commit is accepted after its auction's close entry"),
    ("vote.agreement", "no two nodes hold different outcomes for one proposal"),
)


def register_coordination() -> None:
    """Register the four invariants in :mod:`simulator.checkers` (idempotent)."""
    from simulator.checkers import CHECKERS, SAFETY, Checker, register

    def applies(world: World) -> bool:
        return world.has_workload("auction")

    def check(name: str) -> Callable[[World], tuple[bool, str]]:
        return lambda world: auction_workload(world).check(name)

    for name, text in INVARIANTS:
        if name not in CHECKERS:
            register(Checker(name, SAFETY, text, applies, check(name)))
