"""The simulated world: one event queue in virtual time driving many ``NodeCore``s.

One heap of ``(virtual time, sequence, action, argument)`` orders everything; the sequence
number breaks ties in the order events were scheduled, so a run depends only on the seed.
Every random draw comes from a child generator of the seed (:mod:`simulator.rand`), and
nothing iterates a set or a dict in hash order.

Each host is driven exactly as the Trio runtime drives a node: datagrams in
(``handle_datagram``, or ``handle_packet`` in ``messages`` mode), ``handle_timer`` when
virtual time reaches ``next_deadline()``, then ``take_outgoing`` to the virtual network,
``take_events`` to the trace and the metrics, and ``take_writes`` to the virtual disk,
confirmed with ``writes_done`` after a small fsync delay.

Public API: :func:`run_scenario` and :func:`replay_trace` (the CLI's), :class:`RunResult`.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, NoReturn

from foundation_p2p.addresses import Address
from foundation_p2p.clock import Now
from foundation_p2p.config import NodeConfig
from foundation_p2p.consensus.subsystem import LogWrite, save_writes
from foundation_p2p.consensus.wal import WalStorage
from foundation_p2p.counters import Counters
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.durability import DurableWrite
from foundation_p2p.errors import StorageError
from foundation_p2p.events import Command, Event, Leave, PeerAcked, PeerUnanswered
from foundation_p2p.node import PACKET_OVERHEAD_BYTES, NodeCore
from foundation_p2p.wire.packet import GossipPacket
from simulator import checkers as checkers_mod
from simulator.clock import EPOCH_S
from simulator.host import DOWN, LEFT, TIMERS_LATE, UP, Host, SlowParams, SlowState
from simulator.membership import MEMBER_EVENTS, MembershipTracker, memoized_signature_checks
from simulator.model import Scenario
from simulator.nemesis import Nemesis
from simulator.network import Network, PartitionState
from simulator.rand import byte_source, child_rng
from simulator.services import NODE_SERVICE, ServiceRegistry
from simulator.trace import (
    TraceSink,
    canonical,
    fmt_time,
    header_line,
    jsonable,
    member_event_line,
)
from simulator.workloads import Workload, build_workload

log = logging.getLogger("foundation_p2p.simulator")
_heappush = heapq.heappush

NODE_PORT = 7946
"""Every simulated node listens on ``(name, 7946)``."""
FSYNC_DELAY_S = 0.0005
"""Virtual time between handing a write to the disk and its sync completing."""
CHECK_INTERVAL_S = 1.0
"""How often safety checkers run during a run (virtual seconds), besides after faults."""
MAX_VIOLATIONS_KEPT = 100
"""Violation details kept per kind (all are counted)."""
RTT_SAMPLES = 100_000
"""Reservoir size for round-trip-time percentiles."""
MODES = ("bytes", "messages")
SHUTDOWN_GRACE_S = 0.5
"""Virtual time a leaving node running supervised services stays up after
``prepare_shutdown`` (its handoffs reported, the registry's deltas sent)."""
RELEASE_GRACE_S = 0.2
"""Then the time its own registry entries' removal has to reach the peers."""
MAX_CACHED_HEADS = 100_000
"""Most cached PeerAcked trace-line heads (address, node id); the cache is emptied when full."""


@dataclass
class CheckResult:
    """The outcome of one invariant."""

    ok: bool
    detail: str


@dataclass
class RunResult:
    """The report of one run (DESIGN.md, "Simulator")."""

    ok: bool
    seed: int
    scenario: str
    nodes: int
    mode: str
    virtual_seconds: float
    wall_seconds: float
    events: int
    trace_digest: str
    invariants: dict[str, CheckResult] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    internal_error: str | None = None
    """A crash of the code under test, with its traceback."""

    def to_json(self) -> dict[str, object]:
        """The report keys of DESIGN.md (the CLI adds ``replay``)."""
        out: dict[str, object] = {
            "ok": self.ok,
            "seed": self.seed,
            "scenario": self.scenario,
            "nodes": self.nodes,
            "mode": self.mode,
            "virtual_seconds": self.virtual_seconds,
            "wall_seconds": self.wall_seconds,
            "events": self.events,
            "trace_digest": self.trace_digest,
            "invariants": {
                name: {"ok": r.ok, "detail": r.detail} for name, r in self.invariants.items()
            },
            "metrics": dict(self.metrics),
        }
        if self.internal_error is not None:
            out["internal_error"] = self.internal_error
        return out


class _Stop(Exception):
    """Ends the event loop (an internal error of the code under test)."""


class World:
    """A whole simulated cluster; build it, then :meth:`run` it once.

    ``seed`` and ``mode`` override the scenario's. ``sink`` receives the trace.
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int | None = None,
        mode: str | None = None,
        random_faults: bool = False,
        sink: TraceSink | None = None,
        overrides: dict[str, Any] | None = None,
        fsync_delay_s: float = FSYNC_DELAY_S,
        network_factory: Callable[[Scenario, PartitionState, int], Network] | None = None,
    ) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.mode = mode or scenario.mode
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not bytes or messages")
        self.messages_mode = self.mode == "messages"
        self.random_faults = random_faults
        self.fsync_delay_s = fsync_delay_s
        self._overrides = dict(overrides or {})
        self.duration = scenario.duration_s
        self.now = 0.0
        self.events = 0
        self._heap: list[tuple[float, int, Callable[[Any], None], Any]] = []
        self._seq = 0
        self.sink = sink or TraceSink()
        self._line = self.sink.line
        self.internal_error: str | None = None
        self.stats = Counters()
        for name in (
            "net.dropped_node_down", "net.dropped_no_route", "net.partition_violations",
            "node.boot_failures", "node.crashes", "node.restarts", "node.leaves", "node.piled",
            "probe.unanswered", "disk.violations",
        ):
            self.stats[name] = 0
        self.partition_violations: list[str] = []
        self.disk_violations: list[str] = []
        self.services = ServiceRegistry()
        self.rng = child_rng(self.seed, "world")
        """For workloads' own draws (each draw order is part of the run)."""
        self.fault_rng = child_rng(self.seed, "faults")
        self._metrics_rng = child_rng(self.seed, "metrics")
        self.partitions = PartitionState()
        self._cuts = self.partitions.cuts  # the same list, for a cheap "any cut?" test
        if network_factory is None:
            self.network = Network(
                scenario.network, child_rng(self.seed, "network"), self.partitions
            )
        else:
            self.network = network_factory(scenario, self.partitions, self.seed)
        self.keyring = Keyring.generate(byte_source(self.seed, "cluster-key"))
        self.hosts: list[Host] = []
        self._by_name: dict[str, Host] = {}
        self._by_addr: dict[Address, Host] = {}
        base = NodeConfig.from_mapping(scenario.node_defaults, source="[node]")
        runs_kv = any(w.kind == "kv" for w in scenario.workloads)
        for i, name in enumerate(scenario.cluster.names):
            cfg = base
            if name in scenario.node_overrides:
                cfg = cfg.with_overrides(scenario.node_overrides[name], source=f"[node.{name}]")
            cfg = cfg.replace(name=name, bind=(name, NODE_PORT), join=())
            if runs_kv:
                cfg = cfg.replace(extra=kv_consensus_extra(cfg, scenario.cluster.nodes))
            host = Host(name, i, cfg, byte_source(self.seed, f"node/{name}"))
            self.hosts.append(host)
            self._by_name[name] = host
            self._by_addr[host.addr] = host
        self.workloads: list[Workload] = [build_workload(w) for w in scenario.workloads]
        self._workload_kinds = {w.kind for w in scenario.workloads}
        self.pump_hooks: list[Callable[[Host], None]] = []
        """Called with the host after every :meth:`pump` (workloads reading subscriptions)."""
        self.rtt_count = 0
        self.delivered = 0
        self.rtt_sum = 0.0
        self.rtt_samples: list[float] = []
        self._acked_heads: dict[tuple[Address, bytes], str] = {}
        self.safety_failures: dict[str, CheckResult] = {}
        self.bytes_sent = 0
        """Bytes of every datagram handed to the network (exact in ``bytes`` mode)."""
        self.membership = MembershipTracker(self)
        """Membership bookkeeping: views, detections, excuses, update spread."""
        self._checkers = self._select_checkers()
        self.settle_at = max(0.0, self.duration - scenario.check.settle_s)
        self.settled = False
        self.nemesis = Nemesis(self)
        self.progress: Callable[[float, float], None] | None = None

    # -- lookup (also for checkers, nemesis and workloads) -------------------------------

    def host(self, name: str) -> Host:
        """The host called ``name``; ``KeyError`` naming it if there is none."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no node named {name!r}") from None

    def host_at(self, addr: Address) -> Host | None:
        """The host listening at ``addr``, if any."""
        return self._by_addr.get(addr)

    def has_workload(self, kind: str) -> bool:
        """Whether the scenario runs a workload of ``kind``."""
        return kind in self._workload_kinds

    # -- the queue -----------------------------------------------------------------------

    def schedule(self, t: float, fn: Callable[[Any], None], arg: Any = None) -> None:
        """Run ``fn(arg)`` at virtual time ``t`` (never before now)."""
        self._seq += 1
        _heappush(self._heap, (t if t > self.now else self.now, self._seq, fn, arg))

    def trace(self, obj: dict[str, Any]) -> None:
        """Add one event to the trace (``t`` is added)."""
        out = {k: jsonable(v) for k, v in obj.items()}
        out["t"] = fmt_time(self.now)
        self._line(canonical(out))

    # -- running -------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Run the scenario to its end and report."""
        wall_start = time.perf_counter()
        self._line(self._header())
        for w in self.workloads:
            w.on_start(self)
        cluster = self.scenario.cluster
        late = set(cluster.late)
        k = 0
        for host in self.hosts:
            if host.name in late:
                continue
            t = k * cluster.start_interval_s if cluster.start == "staggered" else 0.0
            self.schedule(t, self._start_event, host)
            k += 1
        self.nemesis.schedule_all(self.random_faults)
        self.schedule(CHECK_INTERVAL_S, self._periodic_check)
        if self.scenario.check.settle_s > 0:
            self.schedule(self.settle_at, self._settle)
        with contextlib.ExitStack() as stack:
            if self.messages_mode:
                stack.enter_context(memoized_signature_checks())
            with contextlib.suppress(_Stop):
                self._loop(wall_start)
        if self.internal_error is None:
            self.now = self.duration
        results = self._final_checks()
        digest = self.sink.finish()
        wall = time.perf_counter() - wall_start
        ok = self.internal_error is None and all(r.ok for r in results.values())
        return RunResult(
            ok=ok,
            seed=self.seed,
            scenario=self.scenario.name,
            nodes=len(self.hosts),
            mode=self.mode,
            virtual_seconds=float(self.now),
            wall_seconds=wall,
            events=self.events,
            trace_digest=digest,
            invariants=results,
            metrics=self.metrics(wall),
            internal_error=self.internal_error,
        )

    def _header(self) -> str:
        return header_line(
            self.scenario.text,
            self.scenario.name,
            self.seed,
            {
                "mode": self.mode,
                "random_faults": self.random_faults,
                "overrides": dict(self._overrides),
            },
        )

    def _loop(self, wall_start: float) -> None:
        heap = self._heap
        pop = heapq.heappop
        end = self.duration
        progress = self.progress
        last_report = wall_start
        events = 0
        perf = time.perf_counter
        maybe_flush = self.sink.maybe_flush
        try:
            while heap:
                item = heap[0]
                t = item[0]
                if t > end:
                    break
                pop(heap)
                self.now = t
                item[2](item[3])
                events += 1
                if not events & 255:
                    maybe_flush()
                    if progress is not None and not events & 4095:
                        w = perf()
                        if w - last_report >= 0.5:
                            last_report = w
                            progress(t, end)
        finally:
            self.events = events

    def _fail(self, host: Host, what: str) -> NoReturn:
        """The code under test raised: record it and stop the run."""
        self.internal_error = (
            f"{host.name} at t={self.now:.9f} during {what}:\n{traceback.format_exc()}"
        )
        self.trace({"ev": "internal_error", "node": host.name, "during": what})
        raise _Stop

    # -- node lifecycle ------------------------------------------------------------------

    def _start_event(self, host: Host) -> None:
        self.boot(host)

    def boot(self, host: Host) -> bool:
        """Start a new ``NodeCore`` on ``host`` from what its disk holds."""
        if host.core is not None:
            return False
        stored = host.disk.snapshot()
        if host.boots:
            self._check_disk_after_crash(host, stored)
        host.boots += 1
        now = host.clock.now(self.now)
        try:
            raft_storage: WalStorage | None = None
            if "consensus" in host.config.extra:
                # recover the Raft log (a damaged one raises StorageError: boot_failed)
                raft_storage = WalStorage.open(host.raft_vfs)
            host.raft_wal = raft_storage
            core = NodeCore(
                host.config,
                now=now,
                keyring=self.keyring,
                stored=stored,
                rng=child_rng(self.seed, f"node/{host.name}/boot/{host.boots}"),
                secret_bytes=host.secret_bytes,
                raft_storage=raft_storage,
            )
        except StorageError as exc:
            # The core refused a damaged disk (a torn write): a documented refusal.
            self.stats.inc("node.boot_failures")
            host.status = DOWN
            self.trace({"ev": "boot_failed", "node": host.name, "error": str(exc)})
            return False
        except Exception:
            self._fail(host, "boot")
        if host.boots > 1:
            self.stats.inc("node.restarts")
        host.core = core
        host.status = UP
        host.torn = None
        self.membership.on_boot(host)
        self.trace(
            {"ev": "boot", "node": host.name, "boot": host.boots, "epoch": core.boot_epoch}
        )
        self.services.start(NODE_SERVICE, host.name, self.now)
        self.trace({"ev": "service", "what": "start", "name": NODE_SERVICE, "node": host.name})
        self.pump(host)
        for w in self.workloads:
            w.on_boot(self, host)
        return True

    def _check_disk_after_crash(self, host: Host, stored: dict[str, bytes]) -> None:
        expected = host.expected_durable
        torn = host.torn
        problems: list[str] = []
        for key in sorted(set(expected) | set(stored)):
            want = expected.get(key)
            got = stored.get(key)
            if got == want:
                continue
            if (
                torn is not None
                and key == torn.key
                and got is not None
                and len(got) < len(torn.data)
                and torn.data.startswith(got)
            ):
                continue
            problems.append(
                f"{key}: expected {'nothing' if want is None else f'{len(want)} synced bytes'}, "
                f"read {'nothing' if got is None else f'{len(got)} bytes'}"
            )
        if problems:
            self.stats.inc("disk.violations")
            if len(self.disk_violations) < MAX_VIOLATIONS_KEPT:
                self.disk_violations.append(
                    f"{host.name} at t={self.now:.3f}s: " + "; ".join(problems)
                )

    def crash(self, host: Host, *, torn: bool = False) -> bool:
        """Crash ``host``: its core and unsynced writes are lost."""
        if host.core is None:
            return False
        host.retire_core()
        host.status = DOWN
        host.torn = host.disk.crash(self.fault_rng, torn=torn)
        host.raft_vfs.crash(self.fault_rng, torn=torn)
        host.raft_wal = None
        host.unsynced_model.clear()
        self.stats.inc("node.crashes")
        self.membership.on_down(host, "crash")
        self._stop_services(host, "crash")
        return True

    def leave(self, host: Host) -> bool:
        """Graceful leave: hand supervised services off, then the ``Leave`` command, send
        what it produced, and stop.

        A node running supervised services or owning registry entries first calls
        ``supervisor.prepare_shutdown`` (its singletons stop with handoff, their names are
        released in the registry) and stays up for :data:`SHUTDOWN_GRACE_S` of virtual time
        so the stops are reported; then it unregisters what it still owns
        (``registry.release_own``) and leaves :data:`RELEASE_GRACE_S` later, once the
        deltas reached the peers, as the Trio runtime does before leaving.
        """
        core = host.core
        if core is None:
            return False
        if host.leaving != host.boots and (
            core.supervisor.running() or core.registry.core.entries_of(core.node_id)
        ):
            host.leaving = host.boots
            try:
                core.supervisor.prepare_shutdown(host.clock.now(self.now))
            except Exception:
                self._fail(host, "supervisor.prepare_shutdown")
            self.trace({"ev": "shutdown", "node": host.name})
            self.pump(host)
            self.schedule(self.now + SHUTDOWN_GRACE_S, self._finish_leave, (host, host.boots))
            return True
        return self._leave_now(host)

    def _finish_leave(self, arg: tuple[Host, int]) -> None:
        host, boot = arg
        core = host.core
        if host.boots != boot or core is None:
            return
        # its services handed off: drop its own registry entries, let the deltas go out
        try:
            core.registry.release_own(host.clock.now(self.now))
        except Exception:
            self._fail(host, "registry.release_own")
        self.pump(host)
        self.schedule(self.now + RELEASE_GRACE_S, self._leave_event, (host, boot))

    def _leave_event(self, arg: tuple[Host, int]) -> None:
        host, boot = arg
        if host.boots == boot and host.core is not None:
            self._leave_now(host)

    def _leave_now(self, host: Host) -> bool:
        host.leaving = None
        self.command(host, Leave())
        if host.core is None:
            return False
        # A graceful stop flushes the disk: nothing written is lost.
        host.disk.sync()
        for key, data in host.unsynced_model:
            host.expected_durable[key] = data
        host.unsynced_model.clear()
        host.retire_core()
        host.status = LEFT
        self.stats.inc("node.leaves")
        self.membership.on_down(host, "leave")
        self._stop_services(host, "leave")
        return True

    def _stop_services(self, host: Host, reason: str) -> None:
        for rec in self.services.stop_all(host.name, self.now, reason):
            self.trace(
                {"ev": "service", "what": "stop", "name": rec.name, "node": host.name,
                 "reason": reason}
            )

    def pause(self, host: Host) -> bool:
        """Starve ``host``: nothing it receives runs until :meth:`resume`."""
        if host.core is None or host.paused:
            return False
        host.paused = True
        self.membership.on_pause(host)
        return True

    def resume(self, host: Host) -> bool:
        """Run everything that piled up while ``host`` was paused, then its timers."""
        if host.core is None or not host.paused:
            return False
        host.paused = False
        self.membership.on_resume(host)
        pile = list(host.pile)
        host.pile.clear()
        self.stats.inc("node.piled", len(pile))
        for fn, arg in pile:
            if host.core is None or host.paused:
                break
            fn(arg)
        if host.core is not None and not host.paused:
            host.timer_missed = False
            self._reschedule(host, force=True)
            self._slow_kick(host)
        return True

    def command(self, host: Host, cmd: Command) -> None:
        """Give ``host``'s core an application command (then send what it produced)."""
        core = host.core
        if core is None:
            return
        try:
            core.handle_command(host.clock.now(self.now), cmd)
        except Exception:
            self._fail(host, f"handle_command({type(cmd).__name__})")
        self.pump(host)

    # -- the data path -------------------------------------------------------------------

    def pump(self, host: Host) -> None:
        """Take what the core produced: datagrams, events, writes; rearm its timer."""
        core = host.core
        assert core is not None
        send = self.send
        try:
            # First, as reading returns flow-control credit (more datagrams): the channel
            # stream data is consumed in here (delivered to the subscriptions, which the
            # broadcast workload drains); the other transport events (connected, raw
            # streams) have no reader in the simulator and are dropped.
            core.take_transport_events(host.clock.now(self.now))
            if self.messages_mode:
                for addr, packet in core.take_outgoing_packets():
                    send(host, addr, packet, PACKET_OVERHEAD_BYTES + 16 * len(packet.frames))
                # connection packets (the transport) travel as bytes in both modes
                for addr, data in core.take_outgoing_datagrams():
                    send(host, addr, data, len(data))
            else:
                for addr, data in core.take_outgoing():
                    send(host, addr, data, len(data))
            events = core.take_events()
            writes = core.take_writes()
            cons = core.consensus
            raft_writes = cons.take_log_writes() if cons is not None else []
            deadline = core.next_deadline()
        except _Stop:
            raise
        except Exception:
            self._fail(
                host, "take_outgoing/take_events/take_transport_events/take_writes/next_deadline"
            )
        if events:
            self._on_events(host, events)
        if writes:
            self._on_writes(host, writes)
        if raft_writes:
            self._on_raft_writes(host, raft_writes)
        if self.pump_hooks:
            for hook in self.pump_hooks:
                hook(host)
        if deadline is not None:
            timer_at = host.timer_at
            if timer_at is None or deadline < timer_at:
                host.timer_at = deadline
                self._seq += 1
                now = self.now
                _heappush(
                    self._heap, (deadline if deadline > now else now, self._seq, self._timer, host)
                )

    def _reschedule(self, host: Host, *, force: bool = False) -> None:
        core = host.core
        if core is None:
            return
        deadline = self._deadline(host, core)
        if deadline is None:
            host.timer_at = None
            return
        if force or host.timer_at is None or deadline < host.timer_at:
            host.timer_at = deadline
            self.schedule(deadline, self._timer, host)

    def _timer(self, host: Host) -> None:
        core = host.core
        if core is None:
            return
        if host.paused:
            if not host.timer_missed:
                host.timer_missed = True
                host.pile_up(self._timer_late, host)
            return
        st = host.slow
        if st is not None and st.params.timers == TIMERS_LATE:
            # A single-threaded starved process: the timer runs when the handler gets to it.
            st.add_timer(self.now, self._timer_late, host)
            self._slow_kick(host)
            return
        self._timer_now(host, core)

    def _timer_now(self, host: Host, core: NodeCore) -> None:
        deadline = self._deadline(host, core)
        if deadline is None:
            host.timer_at = None
            return
        if deadline > self.now:
            if host.timer_at is None or deadline != host.timer_at:
                host.timer_at = deadline
                self.schedule(deadline, self._timer, host)
            return
        host.timer_at = None
        self._line(f'{{"ev":"timer","node":"{host.name}","t":"{self.now:.9f}"}}')
        try:
            core.handle_timer(host.clock.now(self.now))
        except Exception:
            self._fail(host, "handle_timer")
        self.pump(host)

    def _deadline(self, host: Host, core: NodeCore) -> float | None:
        try:
            return core.next_deadline()
        except Exception:
            self._fail(host, "next_deadline")

    def _timer_late(self, host: Host) -> None:
        """A timer firing that waited (a pause's pile or a slow handler's queue) runs now."""
        host.timer_at = None
        core = host.core
        if core is None:
            return
        if host.paused:
            self._timer(host)
            return
        self._timer_now(host, core)

    def _on_writes(self, host: Host, writes: list[DurableWrite]) -> None:
        disk = host.disk
        for w in writes:
            disk.write(w.key, w.data)
            host.unsynced_model.append((w.key, w.data))
        self.schedule(
            self.now + self.fsync_delay_s, self._synced,
            (host, host.boots, [w.id for w in writes]),
        )

    def _synced(self, arg: tuple[Host, int, list[int]]) -> None:
        host, boot, ids = arg
        if host.boots != boot or host.core is None:
            return  # crashed before the sync completed: the writes are lost
        host.disk.sync()
        for key, data in host.unsynced_model:
            host.expected_durable[key] = data
        host.unsynced_model.clear()
        self._confirm((host, boot, ids))

    def _confirm(self, arg: tuple[Host, int, list[int]]) -> None:
        host, boot, ids = arg
        core = host.core
        if host.boots != boot or core is None:
            return
        if host.paused:
            host.pile_up(self._confirm, arg)
            return
        try:
            core.writes_done(host.clock.now(self.now), ids)
        except Exception:
            self._fail(host, "writes_done")
        self.pump(host)

    def _on_raft_writes(self, host: Host, writes: list[LogWrite]) -> None:
        """Buffer the Raft log writes in the host's WAL (not durable yet) and sync them
        ``fsync_delay_s`` later; a crash before then loses them (the WAL recovers)."""
        wal = host.raft_wal
        assert wal is not None
        try:
            save_writes(wal, writes)
        except Exception:
            self._fail(host, "save_writes (Raft WAL)")
        self.schedule(
            self.now + self.fsync_delay_s, self._raft_synced,
            (host, host.boots, [w.id for w in writes]),
        )

    def _raft_synced(self, arg: tuple[Host, int, list[int]]) -> None:
        host, boot, ids = arg
        core = host.core
        wal = host.raft_wal
        if host.boots != boot or core is None or core.consensus is None or wal is None:
            return  # crashed before the sync: the writes are lost (the WAL recovers)
        if host.paused:
            host.pile_up(self._raft_synced, arg)
            return
        try:
            wal.sync()
            core.consensus.log_writes_done(host.clock.now(self.now), ids)
        except Exception:
            self._fail(host, "log_writes_done")
        self.pump(host)

    def _on_events(self, host: Host, events: list[Event]) -> None:
        line = self._line
        t = f"{self.now:.9f}"
        for ev in events:
            if type(ev) is PeerAcked:
                host.last_ack[ev.address] = self.now
                rtt = ev.rtt_s
                self.rtt_count += 1
                self.rtt_sum += rtt
                samples = self.rtt_samples
                if len(samples) < RTT_SAMPLES:
                    samples.append(rtt)
                else:
                    j = self._metrics_rng.randrange(self.rtt_count)
                    if j < RTT_SAMPLES:
                        samples[j] = rtt
                key = (ev.address, ev.node_id)
                head = self._acked_heads.get(key)
                if head is None:
                    if len(self._acked_heads) >= MAX_CACHED_HEADS:
                        self._acked_heads.clear()
                    head = self._acked_heads[key] = (
                        f'{{"data":{{"address":"{ev.address[0]}:{ev.address[1]}",'
                        f'"node_id":"{ev.node_id.hex()}","rtt_s":"'
                    )
                line(
                    f'{head}{rtt:.9f}"}},"ev":"event","node":"{host.name}","t":"{t}",'
                    '"type":"PeerAcked"}'
                )
                continue
            kind = type(ev)
            if kind in MEMBER_EVENTS:
                self.membership.on_event(host, ev)
                line(member_event_line(host.name, t, ev))  # the canonical line, without json
                continue
            if kind is PeerUnanswered:
                self.stats.inc("probe.unanswered")
            line(
                canonical(
                    {"data": jsonable(ev), "ev": "event", "node": host.name, "t": t,
                     "type": kind.__name__}
                )
            )

    def send(self, src: Host, addr: Address, payload: bytes | GossipPacket, size: int) -> None:
        """One datagram from ``src`` to ``addr`` enters the network."""
        self.bytes_sent += size
        dst = self._by_addr.get(addr)
        if dst is None:
            self.stats.inc("net.dropped_no_route")
            self._line(
                f'{{"dst":"{addr[0]}:{addr[1]}","ev":"drop","reason":"no_route",'
                f'"src":"{src.name}","t":"{self.now:.9f}"}}'
            )
            return
        reason, arrival, dup = self.network.route(self.now, src.name, dst.name, size)
        if reason is None:
            self._seq += 1
            _heappush(self._heap, (arrival, self._seq, self._deliver, (src, dst, payload)))
            if dup >= 0.0:
                self._seq += 1
                _heappush(self._heap, (dup, self._seq, self._deliver, (src, dst, payload)))
            return
        if reason == "clog":
            key = self.network.clogged(src.name, dst.name)
            dropped = self.network.hold(key, (src, dst, payload, size))
            self._line(
                f'{{"dst":"{dst.name}","ev":"hold","src":"{src.name}","t":"{self.now:.9f}"}}'
            )
            if dropped is not None:
                self._line(
                    f'{{"dst":"{dropped[1].name}","ev":"drop","reason":"clog_overflow",'
                    f'"src":"{dropped[0].name}","t":"{self.now:.9f}"}}'
                )
            return
        self._line(
            f'{{"dst":"{dst.name}","ev":"drop","reason":"{reason}","src":"{src.name}",'
            f'"t":"{self.now:.9f}"}}'
        )

    def reroute(self, held: list[tuple[Host, Host, bytes | GossipPacket, int]]) -> None:
        """Send again datagrams a clog held (in the order they were held)."""
        for src, dst, payload, size in held:
            self.send(src, dst.addr, payload, size)

    def _deliver(self, arg: tuple[Host, Host, Any]) -> None:
        src, dst, payload = arg
        core = dst.core
        if core is None or dst.paused or self._cuts or dst.slow is not None:
            if self._deliver_blocked(src, dst, arg):
                return
            assert core is not None
        self._handle(src, dst, core, payload)

    def _handle(self, src: Host, dst: Host, core: NodeCore, payload: Any) -> None:
        """``dst``'s core handles one datagram now (then send what it produced)."""
        now = self.now
        self.delivered += 1
        clock = dst.clock
        stamp = Now(now, clock.wall(now)) if clock.skewed else Now(now, EPOCH_S + now)
        if self.messages_mode and not isinstance(payload, bytes):
            self._line(
                f'{{"dst":"{dst.name}","ev":"deliver","n":{len(payload.frames)},'
                f'"src":"{src.name}","t":"{now:.9f}"}}'
            )
            try:
                core.handle_packet(stamp, src.addr, payload)
            except Exception:
                self._fail(dst, "handle_packet")
        else:
            self._line(
                f'{{"dst":"{dst.name}","ev":"deliver","n":{len(payload)},'
                f'"src":"{src.name}","t":"{now:.9f}"}}'
            )
            try:
                core.handle_datagram(stamp, src.addr, payload)
            except Exception:
                self._fail(dst, "handle_datagram")
        self.pump(dst)

    def _deliver_blocked(self, src: Host, dst: Host, arg: tuple[Host, Host, Any]) -> bool:
        """The slow path of a delivery: down node, partition, paused node. True if it was
        dropped or piled up."""
        now = self.now
        if dst.core is None:
            self.stats.inc("net.dropped_node_down")
            self._line(
                f'{{"dst":"{dst.name}","ev":"drop","reason":"node_down","src":"{src.name}",'
                f'"t":"{now:.9f}"}}'
            )
            return True
        if self.partitions.cuts:
            if self.network.blocked(src.name, dst.name):
                self.network.counts["net.dropped_partition"] += 1
                self._line(
                    f'{{"dst":"{dst.name}","ev":"drop","reason":"partition","src":"{src.name}",'
                    f'"t":"{now:.9f}"}}'
                )
                return True
            if self.partitions.blocks(src.name, dst.name):
                # The network let through what the nemesis cut: the checker reports it.
                self.stats.inc("net.partition_violations")
                if len(self.partition_violations) < MAX_VIOLATIONS_KEPT:
                    self.partition_violations.append(f"{src.name}->{dst.name} at t={now:.9f}")
        if dst.paused:
            dst.pile_up(self._deliver, arg)
            return True
        st = dst.slow
        if st is not None:
            payload = arg[2]
            size = (
                PACKET_OVERHEAD_BYTES + 16 * len(payload.frames)
                if self.messages_mode and not isinstance(payload, bytes)
                else len(payload)
            )
            if st.admit(now, self._deliver_queued, arg, size):
                self._slow_kick(dst)
            else:
                self._line(
                    f'{{"dst":"{dst.name}","ev":"drop","reason":"recv_queue_full",'
                    f'"src":"{src.name}","t":"{now:.9f}"}}'
                )
            return True
        return False

    def _deliver_queued(self, arg: tuple[Host, Host, Any]) -> None:
        """A slow host's handler takes one datagram from its receive queue."""
        src, dst, payload = arg
        core = dst.core
        if core is None:
            return
        self._handle(src, dst, core, payload)

    # -- the slow-node model (simulator.host.SlowParams) ---------------------------------

    def slow(self, host: Host, params: SlowParams) -> bool:
        """Starve ``host``'s message handler (timers go on); see :class:`SlowParams`.

        A host still draining the backlog of an earlier starved phase starts a new one with
        the same queue.
        """
        if host.core is None or host.paused:
            return False
        st = host.slow
        if st is None:
            host.slow = SlowState(params, self.now)
            self.membership.on_pause(host)
        else:
            st.params = params
            st.starved = True
        return True

    def unslow(self, host: Host, *, flush: bool = False) -> bool:
        """End ``host``'s starved phase: its backlog now drains at ``drain_rate``.

        ``flush`` (settle: every fault undone) handles the whole backlog now, in order, and
        ends the slow period at once, as :meth:`resume` does with a pause's pile.
        """
        st = host.slow
        if st is None or (not st.starved and not flush):
            return False
        st.starved = False
        if flush:
            while host.slow is st and st.queue and not host.paused:
                fn, item = st.take(self.now)
                fn(item)
            if host.slow is st and not host.paused:
                st.scheduled = False  # a pending take finds the period over
                self._slow_kick(host)
            return True
        self._slow_kick(host)
        return True

    def _slow_kick(self, host: Host) -> None:
        """Schedule the handler's next take, or end the slow period when it has caught up."""
        st = host.slow
        if st is None or st.scheduled or host.paused:
            return
        if not st.queue:
            if not st.starved:
                host.end_slow()
                self.membership.on_resume(host)
                self.trace({"ev": "slow_end", "node": host.name, "handled": st.processed,
                            "dropped": st.dropped, "slow_s": round(self.now - st.since, 9)})
            return
        rate = st.rate()
        if rate <= 0.0:
            return  # the handler does not run until the starved phase ends
        arrival, _, _, size = st.queue[0]
        ready = arrival + st.params.lag_s if size >= 0 else arrival
        st.scheduled = True
        self.schedule(max(self.now, st.free_at, ready), self._slow_serve, (host, st))

    def _slow_serve(self, arg: tuple[Host, SlowState]) -> None:
        host, st = arg
        if host.slow is not st:
            return  # crashed or left since
        st.scheduled = False
        rate = st.rate()
        if host.paused or rate <= 0.0 or not st.queue:
            self._slow_kick(host)
            return
        fn, item = st.take(self.now)
        st.free_at = self.now + 1.0 / rate
        fn(item)
        self._slow_kick(host)

    # -- settle and checks ---------------------------------------------------------------

    def _settle(self, _: Any) -> None:
        """Start of ``[check] settle``: undo every fault, heal the network, resume all."""
        self.settled = True
        self.trace({"ev": "settle"})
        self.nemesis.settle()
        self.membership.on_network_change()
        self.membership.watch_convergence(heal=False)

    def _select_checkers(self) -> list[checkers_mod.Checker]:
        chosen: list[checkers_mod.Checker] = []
        extra = set(self.scenario.check.invariants)
        for name in self.scenario.check.invariants:
            if name not in checkers_mod.CHECKERS:
                raise ValueError(
                    f"[check] invariants: unknown invariant {name!r} "
                    f"(known: {', '.join(checkers_mod.CHECKERS)})"
                )
        for name, checker in checkers_mod.CHECKERS.items():
            if name in extra or checker.applies(self):
                chosen.append(checker)
        return chosen

    def run_safety_checks(self) -> None:
        """Run every safety checker now; keep each one's first failure."""
        self.membership.on_network_change()
        for checker in self._checkers:
            if checker.kind != checkers_mod.SAFETY or checker.name in self.safety_failures:
                continue
            ok, detail = checker.check(self)
            if not ok:
                self.safety_failures[checker.name] = CheckResult(
                    False, f"at t={self.now:.3f}s: {detail}"
                )
                self.trace({"ev": "invariant_failed", "name": checker.name})

    def _periodic_check(self, _: Any) -> None:
        self.run_safety_checks()
        self.schedule(self.now + CHECK_INTERVAL_S, self._periodic_check)

    def _final_checks(self) -> dict[str, CheckResult]:
        results: dict[str, CheckResult] = {}
        for checker in self._checkers:
            if checker.name in self.safety_failures:
                results[checker.name] = self.safety_failures[checker.name]
                continue
            if checker.kind == checkers_mod.LIVENESS and self.internal_error is not None:
                results[checker.name] = CheckResult(False, "not checked: the run was aborted")
                continue
            ok, detail = checker.check(self)
            results[checker.name] = CheckResult(ok, detail)
        return results

    # -- metrics -------------------------------------------------------------------------

    def metrics(self, wall: float) -> dict[str, float]:
        """Measured figures of the run, by dotted name (sorted)."""
        m: dict[str, float] = {}
        for k, v in self.network.counts.items():
            m[k] = v
        for k, v in self.stats.items():
            m[k] = v
        m["net.delivered"] = self.delivered
        dropped = 0
        counters = Counters()
        for host in self.hosts:
            for k, v in host.total_counters().items():
                counters[k] = counters.get(k, 0) + v
        for k in sorted(counters):
            if k.startswith("packets.dropped."):
                dropped += counters[k]
                # Per reason, e.g. wire.dropped_replay (duplicates hitting the replay window).
                m["wire.dropped_" + k[len("packets.dropped."):]] = counters[k]
        m["node.packets_dropped"] = dropped
        m["node.packets_received"] = counters.get("packets.received", 0)
        m["node.pile_dropped"] = sum(h.pile_dropped for h in self.hosts)
        q_dropped = q_handled = 0
        q_lag_sum = q_lag_max = 0.0
        for h in self.hosts:
            d, n, lag_sum, lag_max = h.slow_totals()
            q_dropped += d
            q_handled += n
            q_lag_sum += lag_sum
            q_lag_max = max(q_lag_max, lag_max)
        m["node.recv_queue_dropped"] = q_dropped
        m["node.recv_queue_handled"] = q_handled
        if q_handled:
            m["node.recv_queue_lag_s_mean"] = q_lag_sum / q_handled
            m["node.recv_queue_lag_s_max"] = q_lag_max
        m["probe.acks"] = self.rtt_count
        if self.rtt_count:
            m["probe.rtt_s_mean"] = self.rtt_sum / self.rtt_count
            ordered = sorted(self.rtt_samples)
            m["probe.rtt_s_p50"] = ordered[len(ordered) // 2]
            m["probe.rtt_s_p99"] = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
            m["probe.rtt_s_max"] = ordered[-1]
        m["services.starts"] = self.services.starts
        m["services.stops"] = self.services.stops
        m["disk.writes"] = sum(h.disk.writes for h in self.hosts)
        m["disk.syncs"] = sum(h.disk.syncs for h in self.hosts)
        m["disk.lost_writes"] = sum(h.disk.lost_writes for h in self.hosts)
        m["faults.applied"] = self.nemesis.applied
        m.update(self.membership.metrics(None if self.messages_mode else self.bytes_sent))
        for w in self.workloads:
            report = getattr(w, "metrics", None)
            if report is not None:
                m.update(report(self))
        m["sim.events"] = self.events
        m["sim.trace_lines"] = self.sink.lines
        m["sim.wall_s"] = wall
        if wall > 0:
            m["sim.events_per_s"] = self.events / wall
            m["sim.virtual_s_per_wall_s"] = self.now / wall
        return {k: m[k] for k in sorted(m)}


def _make_world(
    scenario: Scenario,
    seed: int | None,
    mode: str | None,
    random_faults: bool,
    sink: TraceSink,
    overrides: dict[str, Any],
) -> World:
    return World(
        scenario, seed=seed, mode=mode, random_faults=random_faults, sink=sink,
        overrides=overrides,
    )


SIM_CONSENSUS_DEFAULTS: dict[str, Any] = {
    "tick_interval_s": 0.05,
    "election_tick": 10,
    "stabilization_s": 10.0,
    "request_timeout_s": 3.0,
}
"""The ``[consensus]`` table every node of a scenario with a ``kv`` workload gets, under
what the node's own config sets (``bootstrap_expect`` is 3, or 5 from 5 nodes on)."""


def kv_consensus_extra(cfg: NodeConfig, nodes: int) -> dict[str, Any]:
    """``cfg.extra`` with the ``consensus`` table a node of a ``kv`` scenario runs: the
    simulator's defaults (:data:`SIM_CONSENSUS_DEFAULTS`), then the node's own table."""
    table: dict[str, Any] = {
        **SIM_CONSENSUS_DEFAULTS,
        "bootstrap_expect": 5 if nodes >= 5 else 3 if nodes >= 3 else 1,
    }
    own = cfg.extra.get("consensus")
    if isinstance(own, dict):
        table.update(own)
    return {**cfg.extra, "consensus": table}


def run_scenario(
    scenario: Scenario,
    *,
    seed: int | None = None,
    mode: str | None = None,
    random_faults: bool = False,
    trace_path: str | None = None,
    history_path: str | None = None,
    progress: Callable[[float, float], None] | None = None,
) -> RunResult:
    """Run ``scenario`` (``seed``/``mode`` override its own) and return the report.

    ``trace_path`` also writes the canonical trace there; ``history_path`` writes the KV
    client history (``spec/history.md``; empty without a ``kv`` workload).
    Equivalent lower-level calls: ``World(scenario, seed=..., sink=TraceSink(file)).run()``.
    """
    overrides: dict[str, Any] = {}
    if seed is not None:
        overrides["seed"] = seed
    if mode is not None:
        overrides["mode"] = mode
    out: IO[str] | None = None
    try:
        if trace_path is not None:
            out = open(trace_path, "w", encoding="utf-8", newline="\n")  # noqa: SIM115
        world = _make_world(scenario, seed, mode, random_faults, TraceSink(out), overrides)
        world.progress = progress
        result = world.run()
    finally:
        if out is not None:
            out.close()
    if history_path is not None:
        with open(history_path, "w", encoding="utf-8", newline="\n") as f:
            if world.has_workload("kv"):
                from simulator.kv import kv_workload

                for line in kv_workload(world).history_lines():
                    f.write(line + "\n")
    return result


def replay_trace(
    path: str,
    *,
    progress: Callable[[float, float], None] | None = None,
    scenario: Scenario | None = None,
) -> tuple[RunResult, bool, str | None]:
    """Re-run a trace file from its header and compare it line by line.

    Returns ``(result, matches, divergence)``: ``divergence`` names the first differing
    line and shows both. ``scenario`` skips parsing the header's scenario text (tests that
    build a :class:`Scenario` directly). ``ValueError`` if the file is not a trace.
    """
    from simulator.trace import read_header

    header = read_header(path)
    if scenario is None:
        from simulator.scenario import parse_scenario_text

        scenario = parse_scenario_text(header["scenario_text"], source=f"{path}: header")
    options = header["options"]
    overrides = dict(options.get("overrides", {}))
    with open(path, encoding="utf-8") as f:
        sink = TraceSink(expected=iter(f))
        world = _make_world(
            scenario,
            header["seed"],
            str(options.get("mode", scenario.mode)),
            bool(options.get("random_faults", False)),
            sink,
            overrides,
        )
        world.progress = progress
        result = world.run()
    matches = sink.divergence is None
    return result, matches, sink.divergence


__all__ = [
    "CheckResult",
    "RunResult",
    "World",
    "replay_trace",
    "run_scenario",
]

