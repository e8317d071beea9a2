"""A KV load client that records a Jepsen-shaped history (``spec/history.md``).

Run in its own namespace (``ip netns exec NS python netns_kv_client.py SPEC``), ``SPEC``
JSON: ``{"join": ["HOST:PORT"], "bind": "HOST:0", "key_file": path, "out": path,
"procs": n, "keys": n, "timeout_s": s, "limit_s": s}``.

It joins as an observer (``[membership] observer = true``: never probed, never counted),
waits for a member announcing Raft eligibility, prints ``ready``, then runs ``procs``
client processes, each one operation at a time on a random key (put of a unique value,
get, or cas from the value it last saw), until a line ``stop`` arrives on stdin (or
``limit_s``), printing ``progress N`` (``ok`` answers so far) every
:data:`PROGRESS_EVERY` completed requests. Then each key is read once more (a final get,
retried until one answers), the history is written to ``out`` as JSON lines, and one
JSON summary line is printed.

Outcomes map to history completions as the spec asks: ``ok`` with the KV result
(a refused command or a cas that did not swap is ``fail``: nothing changed); the client's
definite refusals (``no_leader``, ``not_member``, ``overloaded``: never proposed) are
``fail``; no answer in time (``indeterminate``, ``dropped``) is ``info``.

The client follows the leader hint; when a request gets no answer, it forgets the hint
and asks the next member first (``ConsensusClient`` alone keeps a dead leader's hint).
"""

from __future__ import annotations

import json
import random
import sys
import time
from typing import Any

import trio

from foundation_p2p.config import NodeConfig
from foundation_p2p.consensus import kv
from foundation_p2p.consensus.client import ConsensusClient
from foundation_p2p.consensus.subsystem import eligible_members
from foundation_p2p.history.recorder import HistoryRecorder
from foundation_p2p.runtime.node import machine_now, open_node
from foundation_p2p.runtime.storage import MemoryStore

PROGRESS_EVERY = 10
"""A line ``progress <ok answers so far>`` is printed every this many completed requests."""
TIMER_S = 0.02
"""How often request deadlines are checked (``ConsensusClient.handle_timer``)."""


async def main(spec: dict[str, Any]) -> dict[str, Any]:
    config = NodeConfig.from_mapping({
        "bind": spec["bind"], "join": spec["join"], "cluster_key_file": spec["key_file"],
        "name": "kv-client", "probe_interval_s": 0.1, "probe_timeout_s": 0.1,
        "membership": {"observer": True},
    })
    rng = random.Random(spec.get("seed"))
    rec = HistoryRecorder()
    counts: dict[str, int] = {}
    async with open_node(config, store=MemoryStore()) as node:
        core = node.core
        with trio.fail_after(60):
            await node.wait_until(lambda: bool(eligible_members(core.membership.members())))
        client = ConsensusClient(
            core.node_id, messenger=core.messenger,
            members=eligible_members(core.membership.members()),
            counters=core.counters, timeout_s=float(spec["timeout_s"]),
        )
        done: dict[int, Any] = {}
        waiting: dict[int, trio.Event] = {}

        def collect() -> bool:
            for outcome in client.take_outcomes():
                done[outcome.request_id] = outcome
                event = waiting.pop(outcome.request_id, None)
                if event is not None:
                    event.set()
            return False

        async def timers() -> None:
            while True:
                client.handle_timer(machine_now())
                collect()
                node.wake()
                await trio.sleep(TIMER_S)  # the deadline check period

        async def outcomes() -> None:
            await node.wait_until(collect)  # re-checked after every pump step

        async def call(op: str, payload: bytes) -> Any:
            members = eligible_members(core.membership.members())
            client.set_members(members)
            if client.leader is not None and client.leader not in members:
                client.leader = None
            event = trio.Event()
            rid = client.request(machine_now(), op, payload)
            waiting[rid] = event
            collect()
            node.wake()
            if rid not in done:
                await event.wait()
            outcome = done.pop(rid)
            if outcome.status in ("indeterminate", "dropped"):
                client.leader = None
                client.members = client.members[1:] + client.members[:1]
            return outcome

        async def one(proc: int, f: str, key: str, value: Any, last: dict[str, Any]) -> None:
            k = key.encode()
            if f == "get":
                op, payload = "read", kv.encode_get(k)
            elif f == "put":
                op, payload = "propose", kv.encode_put(k, value.encode())
            else:
                expected, new = value
                op, payload = "propose", kv.encode_cas(
                    k, None if expected is None else expected.encode(), new.encode())
            rec.invoke(proc, f, key, value, time=time.monotonic())
            outcome = await call(op, payload)
            now = time.monotonic()
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
            if sum(counts.values()) % PROGRESS_EVERY == 0:
                print(f"progress {counts.get('ok', 0)}", flush=True)
            if outcome.status == "ok":
                result = kv.decode_result(outcome.value)
                if not result.ok:
                    rec.complete(proc, "fail", time=now)
                elif f == "get":
                    got = result.value.decode() if result.value is not None else None
                    last[key] = got
                    rec.complete(proc, "ok", got, time=now)
                elif f == "cas":
                    swapped, current = result.value
                    if swapped:
                        last[key] = value[1]
                        rec.complete(proc, "ok", time=now)
                    else:
                        last[key] = current.decode() if current is not None else None
                        rec.complete(proc, "fail", time=now)
                else:
                    last[key] = value
                    rec.complete(proc, "ok", time=now)
            elif outcome.status in ("no_leader", "not_member", "overloaded"):
                rec.complete(proc, "fail", time=now)
            else:
                rec.complete(proc, "info", time=now)

        keys = [f"k{i}" for i in range(int(spec["keys"]))]
        stop = trio.Event()

        async def worker(proc: int) -> None:
            last: dict[str, Any] = {}
            n = 0
            while not stop.is_set():
                key = rng.choice(keys)
                roll = rng.random()
                n += 1
                if roll < 0.45:
                    await one(proc, "put", key, f"p{proc}-{n}", last)
                elif roll < 0.85:
                    await one(proc, "get", key, None, last)
                else:
                    await one(proc, "cas", key, [last.get(key), f"c{proc}-{n}"], last)

        async def watch_stdin() -> None:
            stream = trio.lowlevel.FdStream(0)
            buf = b""
            while b"stop" not in buf:
                data = await stream.receive_some(256)
                if not data:
                    break
                buf += data
            stop.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(timers)
            nursery.start_soon(outcomes)
            print("ready", flush=True)
            nursery.start_soon(watch_stdin)
            with trio.move_on_after(float(spec["limit_s"])):
                async with trio.open_nursery() as workers:
                    for p in range(int(spec["procs"])):
                        workers.start_soon(worker, p)
                    await stop.wait()
                    # let every open operation end (each is bounded by timeout_s)
                    workers.cancel_scope.deadline = trio.current_time() + 3 * float(
                        spec["timeout_s"])
            stop.set()
            # final reads, one process per key, each retried until it gets an answer
            final_proc = int(spec["procs"])
            finals: dict[str, Any] = {}
            with trio.move_on_after(30):
                for i, key in enumerate(keys):
                    last: dict[str, Any] = {}
                    while key not in last:
                        await one(final_proc + i, "get", key, None, last)
                    finals[key] = last[key]
            nursery.cancel_scope.cancel()
    # an operation cut by the cancel above has no completion: indeterminate, as the spec says
    with open(spec["out"], "w", encoding="utf-8") as f:
        for line in rec.jsonl_lines():
            f.write(line + "\n")
    ops = rec.operations()
    return {
        "operations": len(ops),
        "ok_writes": sum(1 for o in ops if o.f in ("put", "cas") and o.status == "ok"),
        "statuses": counts,
        "finals": finals,
        "final_reads_complete": len(finals) == len(keys),
    }


if __name__ == "__main__":
    print(json.dumps(trio.run(main, json.loads(sys.argv[1]))), flush=True)
