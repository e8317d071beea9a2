"""The consensus subsystem inside real NodeCores (membership, transport, messenger) on the
in-memory network of ``tests/core_net.py``, attached the way K_wiring.md tells NodeCore to:
``add_subsystem``, ``on_membership`` after membership events, the extension-2
announcement, and the log writes persisted by the driver (here the test's net)."""

from __future__ import annotations

import random

from core_net import WALL, CoreNet

from foundation_p2p.addresses import Address
from foundation_p2p.clock import Now
from foundation_p2p.config import NodeConfig
from foundation_p2p.consensus import kv
from foundation_p2p.consensus.subsystem import (
    ELIGIBLE_EXTENSION_KEY,
    ConsensusConfig,
    ConsensusSubsystem,
    Outcome,
    persist,
)
from foundation_p2p.consensus.wal import WalStorage
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.events import Join
from foundation_p2p.node import NodeCore
from simulator.vfs import MemoryVfs

KEYRING = Keyring(bytes(range(32)))
ADDRS: list[Address] = [(f"10.0.0.{i}", 7946) for i in range(1, 6)]


class ConsensusNet(CoreNet):
    """CoreNet whose cores carry a ConsensusSubsystem (the wiring, done from outside)."""

    def __init__(self, n: int, config: ConsensusConfig) -> None:
        self.subs: dict[Address, ConsensusSubsystem] = {}
        self.wals: dict[Address, WalStorage] = {}
        self.results: dict[Address, list[Outcome]] = {}
        cores = []
        for i, addr in enumerate(ADDRS[:n]):
            rng = random.Random(i + 1)
            core = NodeCore(
                NodeConfig(bind=addr),
                now=Now(0.0, WALL),
                keyring=KEYRING,
                stored={},
                rng=random.Random(i + 100),
                secret_bytes=rng.randbytes,
            )
            wal = WalStorage.open(MemoryVfs(f"n{i}"))
            sub = ConsensusSubsystem(
                core.node_id,
                messenger=core.messenger,
                storage=wal,
                config=config,
                counters=core.counters,
                rng=random.Random(int.from_bytes(core.node_id, "big") ^ core.boot_epoch),
            )
            core.add_subsystem("consensus", sub)
            self.subs[addr], self.wals[addr], self.results[addr] = sub, wal, []
            cores.append(core)
        super().__init__(*cores)

    def collect(self, addr: Address, core: NodeCore) -> None:
        now = self.stamp()
        sub = self.subs[addr]
        core.take_transport_events(now)
        if core.take_events():
            sub.on_membership(now, core.membership.members())
        value = sub.take_extension_change()
        if value is not None:
            core.membership.set_extension(now, ELIGIBLE_EXTENSION_KEY, value)
        writes = sub.take_log_writes()
        if writes:
            persist(self.wals[addr], writes)
            sub.log_writes_done(now, [w.id for w in writes])
            core.take_transport_events(now)
        self.results[addr].extend(sub.take_results())

    def leader(self) -> Address | None:
        for addr, sub in self.subs.items():
            if sub.is_leader():
                return addr
        return None


def test_three_nodecores_form_a_group_and_replicate() -> None:
    net = ConsensusNet(3, ConsensusConfig(bootstrap_expect=3))
    cores = list(net.cores.values())
    for core in cores[1:]:
        core.handle_command(net.stamp(), Join((ADDRS[0],)))
    assert net.run(lambda: net.leader() is not None, max_time_s=30.0)
    # a founding voter whose bootstrap write was overtaken by the leader's messages joins
    # with an empty log instead (it then gets entry 1 from the leader): each started once
    for sub in net.subs.values():
        assert sub.counters["raft.bootstrapped"] + sub.counters["raft.joined"] == 1
    assert sum(s.counters["raft.bootstrapped"] for s in net.subs.values()) >= 1

    # every member comes to see the others announce extension 2 = "in the group"
    def announced() -> bool:
        for core in cores:
            others = [m for m in core.membership.members() if m.node_id != core.node_id]
            if len(others) != 2 or not all(
                m.extensions.get(ELIGIBLE_EXTENSION_KEY) == b"\x02" for m in others
            ):
                return False
        return True

    assert net.run(announced, max_time_s=10.0)
    leader = net.leader()
    assert leader is not None
    follower = next(a for a in net.subs if a != leader)
    net.run(lambda: net.subs[follower].raw is not None and net.subs[follower].raw.raft.leader
            is not None, max_time_s=5.0)
    ticket = net.subs[follower].propose(net.stamp(), kv.encode_put(b"k", b"v"))
    net.flush()

    def answered() -> bool:
        return any(o.ticket == ticket for o in net.results[follower])

    assert net.run(answered, max_time_s=10.0)
    out = next(o for o in net.results[follower] if o.ticket == ticket)
    assert out.ok
    assert net.run(
        lambda: all(
            isinstance(s.state_machine, kv.KVStore) and s.state_machine.get(b"k") == b"v"
            for s in net.subs.values()
        ),
        max_time_s=5.0,
    )
    assert cores[0].counters["messaging.raft.sent"] > 0
    firsts = {net.wals[a].entries(1, 2)[0] for a in net.subs}
    assert len(firsts) == 1, "one entry 1 everywhere"


def test_fourth_nodecore_becomes_learner_and_catches_up() -> None:
    net = ConsensusNet(4, ConsensusConfig(bootstrap_expect=3, stabilization_s=1.0))
    cores = list(net.cores.values())
    for core in cores[1:]:
        core.handle_command(net.stamp(), Join((ADDRS[0],)))
    assert net.run(lambda: net.leader() is not None, max_time_s=30.0)
    leader = net.leader()
    assert leader is not None

    def four_in_group() -> bool:
        st = net.subs[leader].status()
        return st is not None and len(st.voters) == 3 and len(st.learners) == 1

    assert net.run(four_in_group, max_time_s=10.0)
    st = net.subs[leader].status()
    assert st is not None
    (learner,) = st.learners
    ticket = net.subs[leader].propose(net.stamp(), kv.encode_put(b"x", b"y"))
    net.flush()
    assert net.run(lambda: any(o.ticket == ticket and o.ok for o in net.results[leader]), 10.0)
    sub4 = next(s for s in net.subs.values() if s.node_id == learner)
    assert net.run(
        lambda: isinstance(sub4.state_machine, kv.KVStore)
        and sub4.state_machine.get(b"x") == b"y",
        max_time_s=5.0,
    )
