"""The Trio facades of a node's Raft member: ``node.consensus`` and ``node.kv``.

Both are thin, leaky layers over :attr:`NodeCore.consensus
<foundation_p2p.node.NodeCore.consensus>` (a
:class:`~foundation_p2p.consensus.subsystem.ConsensusSubsystem`); each method names the
lower-level calls it makes. They need the node's config to carry a ``[consensus]`` table
(else :class:`ConsensusError` ``"no [consensus] table"``).

Outcomes map to exceptions: ``no_leader`` and ``not_member`` raise :class:`NotLeader`
(with the leader hint, if any), ``indeterminate`` (the request timed out: it may or may
not have applied) raises :class:`Indeterminate`, any other definite failure
(``dropped``, ``overloaded``) raises :class:`ConsensusError`. A KV command the state
machine refused (session expired, bad command...) raises :class:`ConsensusError` too.

The log's durability is the pump's job (``foundation_p2p.runtime.node``), through
:class:`RaftLogDriver`: it takes ``consensus.take_log_writes()``, makes them durable with
one fsync (the group commit: what is proposed meanwhile joins the next batch) and confirms
with ``consensus.log_writes_done``; the fsync runs in a worker thread while the pump goes
on receiving.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import outcome
import trio

from foundation_p2p.addresses import NodeId
from foundation_p2p.clock import Now
from foundation_p2p.consensus import kv
from foundation_p2p.consensus.rawnode import RawNode, Status
from foundation_p2p.consensus.subsystem import (
    ConsensusSubsystem,
    LogWrite,
    Outcome,
    persist,
    save_writes,
)
from foundation_p2p.consensus.wal import WalStorage
from foundation_p2p.errors import FoundationError

if TYPE_CHECKING:
    from foundation_p2p.runtime.node import Node

log = logging.getLogger("foundation_p2p.consensus")

SLOW_SYNC_S = 0.25
"""A Raft log ``fdatasync`` at least this long is counted (``raft.log.slow_syncs``) and
logged at INFO with its duration: a leader's entries wait for it (heartbeats do not)."""


class ConsensusError(FoundationError):
    """A consensus request failed definitely (nothing changed); ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotLeader(ConsensusError):
    """No leader known here, or this node is not a member; ``leader`` is the hint."""

    def __init__(self, reason: str, leader: NodeId | None) -> None:
        super().__init__(reason)
        self.leader = leader


class Indeterminate(ConsensusError):
    """The request timed out: it may or may not have been applied."""


def _now() -> Now:
    from foundation_p2p.runtime.node import machine_now

    return machine_now()


class Consensus:
    """``node.consensus``: propose commands, read, status.

    Equivalent lower-level calls: ``core.consensus.propose(now, command, on_done)``,
    ``core.consensus.read_query(now, query, on_done)``, ``core.consensus.status()``, then
    ``node.wake()`` so the pump sends and persists what they produced.
    """

    def __init__(self, node: Node) -> None:
        self._node = node

    @property
    def subsystem(self) -> ConsensusSubsystem:
        """The sans-I/O member (``core.consensus``); ``ConsensusError`` if there is none."""
        sub = self._node.core.consensus
        if sub is None:
            raise ConsensusError("no [consensus] table: this node runs no Raft member")
        return sub

    @property
    def raw(self) -> RawNode | None:
        """The Raft core (``core.consensus.raw``), ``None`` until the group is formed."""
        return self.subsystem.raw

    def status(self) -> Status | None:
        """Term, role, leader, commit, applied, voters, learners (``None`` before the group
        forms). Same as ``core.consensus.status()``."""
        return self.subsystem.status()

    def is_leader(self) -> bool:
        """Whether this node leads now (``core.consensus.is_leader()``)."""
        return self.subsystem.is_leader()

    async def wait_started(self) -> None:
        """Return once this node is a member of a formed group (``consensus.started``)."""
        sub = self.subsystem
        await self._node.wait_until(lambda: sub.started)

    async def wait_leader(self) -> NodeId:
        """Return the leader's id once this node knows one."""
        sub = self.subsystem

        def known() -> bool:  # checked on every pump round: no Status built
            raw = sub.raw
            return raw is not None and raw.raft.leader is not None

        await self._node.wait_until(known)
        st = sub.status()
        assert st is not None and st.leader is not None
        return st.leader

    async def propose(self, command: bytes) -> bytes:
        """Replicate ``command`` and return the state machine's encoded result once it
        is applied here. Equivalent: ``core.consensus.propose(now, command, on_done)``."""
        sub = self.subsystem
        return await self._call(lambda cb: sub.propose(_now(), command, on_done=cb))

    async def read(self, query: bytes) -> bytes:
        """A linearizable read (ReadIndex, or the lease if configured) of ``query``.
        Equivalent: ``core.consensus.read_query(now, query, on_done)``."""
        sub = self.subsystem
        return await self._call(lambda cb: sub.read_query(_now(), query, on_done=cb))

    async def _call(self, start: Any) -> bytes:
        node = self._node
        node._check_open()
        done = trio.Event()
        box: list[Outcome] = []

        def on_done(outcome: Outcome) -> None:
            box.append(outcome)
            done.set()

        start(on_done)
        node.wake()
        await done.wait()
        return _value(box[0])

    async def transfer_leadership(self) -> NodeId | None:
        """Hand leadership to the most caught-up alive voter and wait (at most two election
        timeouts) until this node no longer leads; the transferee (``None``: not leading).
        Equivalent: ``core.consensus.transfer_leadership(now)``."""
        sub = self.subsystem
        target = sub.transfer_leadership(_now())
        if target is None:
            return None
        self._node.wake()
        cfg = sub.config
        with trio.move_on_after(2 * cfg.election_tick * cfg.tick_interval_s):
            await self._node.wait_until(lambda: not sub.is_leader())
        return target


class RaftLogDriver:
    """The pump's side of ``core.consensus.take_log_writes()`` and ``log_writes_done``:
    each batch taken becomes durable with one sync (group commit), and the subsystem
    releases the messages and applies the entries that depend on it only after that.

    - **Memory** (no data directory, ``MemoryStorage``): saved at once, confirmed at once.
    - **The WAL, plain batches** (entries, hard states): saved in the pump's thread
      (``save_writes``: encoding, indexing, one ``write`` of the records via
      ``WalStorage.sync_start``), then the ``fdatasync`` runs in a worker thread while the
      pump goes on receiving datagrams and stepping Raft. When it returns,
      ``sync_finish`` and ``log_writes_done`` run in the pump's thread and the pump is
      woken. One sync is in flight at a time: what the subsystem produces meanwhile stays
      in it (its own bound: one Ready in flight) and forms the next batch.
    - **Batches with a snapshot or a compaction** (files written and renamed): the whole
      ``persist`` runs in a worker thread and the pump waits for it, shielded.

    A failed sync is raised from the next :meth:`step` (the pump stops: after a failed
    fsync nothing unsynced can be trusted). Equivalent lower-level calls:
    ``take_log_writes``, ``save_writes``, ``WalStorage.sync_start`` / the blocking part in
    ``trio.lowlevel.start_thread_soon`` / ``sync_finish``, ``log_writes_done``.
    """

    def __init__(self, node: Node) -> None:
        self._node = node
        self._sync_started = 0.0
        self._done: trio.Event | None = None
        self._error: BaseException | None = None

    @property
    def busy(self) -> bool:
        """True while a sync runs in the worker thread."""
        return self._done is not None

    async def step(self, cons: ConsensusSubsystem) -> bool:
        """Take the subsystem's writes if no sync is in flight and persist them (see the
        class docstring); True if something was confirmed durable already."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if self._done is not None:
            return False
        writes = cons.take_log_writes()
        if not writes:
            return False
        storage = self._node.raft_storage
        ids = [w.id for w in writes]
        if not hasattr(storage, "sync"):
            persist(storage, writes)
            cons.log_writes_done(_now(), ids)
            return True
        if not isinstance(storage, WalStorage) or any(_writes_files(w) for w in writes):
            # shielded: once a write is on disk the subsystem must hear about it
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(persist, storage, writes)
                cons.log_writes_done(_now(), ids)
            return True
        save_writes(storage, writes)
        blocking = storage.sync_start()
        if blocking is None:
            storage.sync_finish()
            cons.log_writes_done(_now(), ids)
            return True
        done = trio.Event()
        self._done = done
        token = trio.lowlevel.current_trio_token()

        def deliver(result: outcome.Outcome[None]) -> None:  # in the worker thread
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(self._synced, cons, storage, ids, result, done)

        log.debug("raft log: %d writes saved; fdatasync in a worker thread", len(writes))
        self._sync_started = time.monotonic()
        trio.lowlevel.start_thread_soon(blocking, deliver)
        return False

    def _synced(
        self,
        cons: ConsensusSubsystem,
        storage: WalStorage,
        ids: list[int],
        result: outcome.Outcome[None],
        done: trio.Event,
    ) -> None:
        self._done = None
        done.set()
        took = time.monotonic() - self._sync_started
        if took >= SLOW_SYNC_S:
            # heartbeats still leave meanwhile (RawNode.take_heartbeats); entries wait
            self._node.core.counters.inc("raft.log.slow_syncs")
            log.info("raft log: fdatasync took %.0f ms", took * 1000.0)
        try:
            result.unwrap()
            storage.sync_finish()
        except Exception as exc:
            self._error = exc
        else:
            log.debug("raft log: synced; log_writes_done(%s)", ids)
            cons.log_writes_done(_now(), ids)
        self._node.wake()

    async def drain(self) -> None:
        """Wait (shielded) until no sync is in flight: before the WAL is closed."""
        done = self._done
        if done is not None:
            with trio.CancelScope(shield=True):
                await done.wait()


def _writes_files(w: LogWrite) -> bool:
    return w.snapshot is not None or w.compact is not None


def _value(outcome: Outcome) -> bytes:
    if outcome.status == "ok":
        assert outcome.value is not None
        return outcome.value
    if outcome.status in ("no_leader", "not_member"):
        raise NotLeader(outcome.status, outcome.leader)
    if outcome.status == "indeterminate":
        raise Indeterminate("indeterminate: timed out, may or may not have applied")
    raise ConsensusError(f"{outcome.status}: {outcome.reason}" if outcome.reason
                         else outcome.status)


class KV:
    """``node.kv``: the replicated key-value store.

    Equivalent lower-level calls: ``kv.encode_put/get/cas/delete(...)``, then
    ``node.consensus.propose`` (writes) or ``node.consensus.read`` (reads), then
    ``kv.decode_result``.
    """

    def __init__(self, consensus: Consensus) -> None:
        self._consensus = consensus

    async def put(self, key: bytes, value: bytes) -> bytes | None:
        """Set ``key``; the previous value (``None``: absent)."""
        return _optional_bytes(await self._consensus.propose(kv.encode_put(key, value)))

    async def get(self, key: bytes) -> bytes | None:
        """The value of ``key`` (``None``: absent), read linearizably."""
        return _optional_bytes(await self._consensus.read(kv.encode_get(key)))

    async def delete(self, key: bytes) -> bytes | None:
        """Delete ``key``; the previous value (``None``: absent)."""
        return _optional_bytes(await self._consensus.propose(kv.encode_delete(key)))

    async def cas(
        self, key: bytes, expected: bytes | None, new: bytes | None
    ) -> tuple[bool, bytes | None]:
        """Set ``key`` to ``new`` if it holds ``expected`` (``None``: absent / delete);
        ``(swapped, current value)``."""
        result = _payload(await self._consensus.propose(kv.encode_cas(key, expected, new)))
        if not (isinstance(result, list) and len(result) == 2):
            raise ConsensusError(f"cas: unexpected result {result!r}")
        return bool(result[0]), result[1]

    async def range(
        self, start: bytes, end: bytes | None = None, limit: int = 0
    ) -> Any:
        """Keys in ``[start, end)`` (at most ``limit``, 0: no limit), read linearizably."""
        return _payload(await self._consensus.read(kv.encode_range(start, end, limit)))


def _optional_bytes(data: bytes) -> bytes | None:
    value = _payload(data)
    if value is not None and not isinstance(value, bytes):
        raise ConsensusError(f"kv: expected bytes or null, got {type(value).__name__}")
    return value


def _payload(data: bytes) -> Any:
    result = kv.decode_result(data)
    if not result.ok:
        raise ConsensusError(f"kv refused: {result.status.name}: {result.value!r}")
    return result.value
