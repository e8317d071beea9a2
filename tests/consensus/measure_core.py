"""Commits per second of the Raft core alone: 3 RawNodes in one process, in memory.

Not a test and not the issue's benchmark (``bench/consensus.py`` will run real nodes over
127.0.0.1 against PySyncObj); this isolates the core's own cost per committed entry, with
and without the wire codec between the nodes. Usage::

    .venv/bin/python tests/consensus/measure_core.py [--quick]

The last line is one JSON object.
"""

from __future__ import annotations

import json
import random
import sys
import time

from foundation_p2p.consensus.memory_storage import MemoryStorage
from foundation_p2p.consensus.messages import Message, decode_message, encode_message
from foundation_p2p.consensus.raft import RaftConfig
from foundation_p2p.consensus.rawnode import RawNode
from foundation_p2p.consensus.types import ConfState


def run(size: int, batch: int, total: int, codec: bool) -> float:
    ids = [bytes([n]) * 16 for n in (1, 2, 3)]
    conf = ConfState(voters=frozenset(ids))
    nodes: dict[bytes, RawNode] = {}
    stores: dict[bytes, MemoryStorage] = {}
    for n in ids:
        st = MemoryStorage()
        st.bootstrap(conf)
        stores[n] = st
        nodes[n] = RawNode(RaftConfig(id=n), st, random.Random(n[0]))
    queue: list[Message] = []

    def drain() -> None:
        moved = True
        while moved:
            moved = False
            for n, rn in nodes.items():
                if rn.has_ready():
                    rd = rn.ready()
                    st = stores[n]
                    if rd.snapshot is not None:
                        st.apply_snapshot(*rd.snapshot)
                    st.append(rd.entries)
                    if rd.hard_state is not None:
                        st.set_hard_state(rd.hard_state)
                    for m in rd.messages:
                        queue.append(decode_message(encode_message(m)) if codec else m)
                    rn.advance(rd)
                    moved = True
            while queue:
                m = queue.pop(0)
                nodes[m.to].step(m)
                moved = True

    drain()
    leader = nodes[ids[0]]
    leader.campaign()
    drain()
    data = b"x" * size
    start = time.perf_counter()
    done = 0
    while done < total:
        for _ in range(batch):
            leader.propose(data)
        drain()
        done += batch
    elapsed = time.perf_counter() - start
    assert all(rn.raft.log.applied >= total for rn in nodes.values())
    return total / elapsed


def main(argv: list[str]) -> int:
    total = 2000 if "--quick" in argv else 20000
    result: dict[str, float] = {}
    for size in (10, 200, 2048):
        result[f"commits_per_s_{size}B_batch100"] = round(run(size, 100, total, False))
    result["commits_per_s_200B_batch100_codec"] = round(run(200, 100, total, True))
    result["commits_per_s_200B_batch1_codec"] = round(run(200, 1, total // 10, True))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
