"""``foundation-p2p members`` (the observer command) and the membership event lines."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from foundation_p2p.cli import format_members_table, member_record
from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.logs import format_event
from foundation_p2p.membership.events import MemberFailed, MemberReaped, MemberSuspect
from foundation_p2p.membership.state import Member, MemberState
from foundation_p2p.runtime import Node, open_node
from foundation_p2p.runtime.udp import bind_udp, bound_address

WAIT_S = 10.0
FAST = {"profile": "local", "probe_interval_s": 0.1, "probe_timeout_s": 0.05}

MEMBER = Member(
    node_id=bytes(range(16)),
    name="n3",
    address=("127.0.0.1", 7946),
    incarnation=42,
    state=MemberState.FAILED,
    metadata=b"\xa1\x01\x02",
    observer=False,
    public_key=b"\x07" * 32,
    since_mono=12.5,
)


def test_a_membership_event_line_spells_out_the_member() -> None:
    assert format_event(MemberFailed(MEMBER)) == (
        "event MemberFailed node_id=000102030405060708090a0b0c0d0e0f name=n3 "
        "address=127.0.0.1:7946 incarnation=42 state=failed metadata=a10102 observer=false"
    )
    suspect = format_event(MemberSuspect(MEMBER, b"\xee" * 16))
    assert suspect.startswith("event MemberSuspect node_id=0001")
    assert suspect.endswith(f" accuser={'ee' * 16}")
    assert format_event(MemberReaped(b"\x01" * 16)) == f"event MemberReaped node_id={'01' * 16}"


def test_member_records_and_table() -> None:
    record = member_record(MEMBER)
    assert record == {
        "node_id": "000102030405060708090a0b0c0d0e0f",
        "name": "n3",
        "address": "127.0.0.1:7946",
        "state": "failed",
        "incarnation": 42,
        "metadata_hex": "a10102",
        "observer": False,
    }
    lines = format_members_table([record]).splitlines()
    assert lines[0].split() == ["NODE_ID", "NAME", "ADDRESS", "STATE", "INCARNATION", "METADATA"]
    assert lines[1].split() == [record["node_id"], "n3", "127.0.0.1:7946", "failed", "42", "a10102"]


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.key"
    path.write_text(Keyring.generate(os.urandom).to_text())
    return path


def members_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "foundation_p2p", "members", *args],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )


def test_usage_errors_exit_2_naming_the_problem(key_file: Path, tmp_path: Path) -> None:
    no_join = members_cli("--cluster-key-file", str(key_file))
    assert no_join.returncode == 2 and "--join HOST:PORT is required" in no_join.stderr
    no_key = members_cli("--join", "127.0.0.1:9")
    assert no_key.returncode == 2 and "--cluster-key-file" in no_key.stderr
    missing = members_cli("--join", "127.0.0.1:9", "--cluster-key-file", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "nope" in missing.stderr
    bad_addr = members_cli("--join", "no-port", "--cluster-key-file", str(key_file))
    assert bad_addr.returncode == 2 and "--join" in bad_addr.stderr
    bad_timeout = members_cli(
        "--join", "127.0.0.1:9", "--cluster-key-file", str(key_file), "--timeout", "0"
    )
    assert bad_timeout.returncode == 2 and "--timeout" in bad_timeout.stderr
    config = tmp_path / "bad.toml"
    config.write_text('[membership]\nprofile = "moon"\n')
    bad_profile = members_cli(
        "--join", "127.0.0.1:9", "--cluster-key-file", str(key_file), "--config", str(config)
    )
    assert bad_profile.returncode == 2 and "membership.profile" in bad_profile.stderr


async def test_no_answer_exits_1_after_the_timeout(key_file: Path) -> None:
    silent = await bind_udp(("127.0.0.1", 0))  # bound, never answers
    try:
        host, port = bound_address(silent)
        args = [
            sys.executable, "-m", "foundation_p2p", "members", "--join", f"{host}:{port}",
            "--cluster-key-file", str(key_file), "--timeout", "0.5",
        ]  # fmt: skip
        done = await trio.run_process(
            args,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    finally:
        silent.close()
    assert done.returncode == 1
    assert b"no peer answered within 0.5 s" in done.stderr
    assert done.stdout == b""


def node_config(name: str, **overrides: Any) -> NodeConfig:
    return NodeConfig(
        name=name, bind=("127.0.0.1", 0), extra={"membership": dict(FAST)}, **overrides
    )


async def run_members(key_file: Path, node: Node, *extra: str) -> tuple[int, str, str]:
    host, port = node.address
    args = [
        sys.executable, "-m", "foundation_p2p", "members", "--join", f"{host}:{port}",
        "--cluster-key-file", str(key_file), *extra,
    ]  # fmt: skip
    done = await trio.run_process(
        args,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_members_prints_the_cluster_as_json_and_as_a_table(key_file: Path) -> None:
    keyring = Keyring.from_file(str(key_file))
    async with (
        open_node(node_config("a"), keyring=keyring) as a,
        open_node(node_config("b", join=(a.address,)), keyring=keyring) as b,
    ):
        b.update_metadata(b"\xca\xfe")
        with trio.fail_after(WAIT_S):
            await a.wait_until(
                lambda: (m := a.member(b.node_id)) is not None and m.metadata == b"\xca\xfe"
            )
        code, out, err = await run_members(key_file, a, "--json")
        assert code == 0, err
        records = {r["node_id"]: r for r in json.loads(out)}
        assert set(records) == {a.node_id.hex(), b.node_id.hex()}  # the observer hides itself
        rb = records[b.node_id.hex()]
        assert rb["name"] == "b" and rb["state"] == "alive" and rb["metadata_hex"] == "cafe"
        assert rb["address"] == f"127.0.0.1:{b.address[1]}"
        assert rb["incarnation"] == b.membership.local.incarnation

        code, out, err = await run_members(key_file, b)
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0].startswith("NODE_ID")
        assert sorted(line.split()[1] for line in lines[1:]) == ["a", "b"]


async def test_an_observer_is_marked_as_such_never_counted_and_never_probes(key_file: Path) -> None:
    keyring = Keyring.from_file(str(key_file))
    observer_table = {"membership": dict(FAST, observer=True)}
    async with (
        open_node(node_config("a"), keyring=keyring) as a,
        open_node(node_config("b", join=(a.address,)), keyring=keyring) as b,
        open_node(
            node_config("watcher", join=(a.address,)).replace(extra=observer_table),
            keyring=keyring,
        ) as watcher,
    ):
        with trio.fail_after(WAIT_S):
            await watcher.wait_until(lambda: watcher.membership.joined)
            await a.wait_until(lambda: a.member(watcher.node_id) is not None)
            await watcher.wait_until(lambda: watcher.member(b.node_id) is not None)
            # A few probe rounds of a and b happen while the observer is known.
            target = a.counters["membership.probes.sent"] + 5
            await a.wait_until(lambda: a.counters["membership.probes.sent"] >= target)
        seen = a.member(watcher.node_id)
        assert seen is not None and seen.observer
        assert a.membership.alive_count() == 2
        assert watcher.counters["membership.probes.sent"] == 0


def test_node_run_refuses_a_bad_membership_table_by_name(key_file: Path, tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text("[membership]\nprobe_timeout_s = 5.0\nprobe_interval_s = 1.0\n")
    args = [
        sys.executable, "-m", "foundation_p2p", "node", "run", "--bind", "127.0.0.1:0",
        "--cluster-key-file", str(key_file), "--config", str(config),
    ]  # fmt: skip
    done = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert done.returncode == 2
    assert "membership.probe_timeout_s" in done.stderr
    assert "ready" not in done.stdout


async def test_members_waits_for_every_chunk_of_a_large_state(key_file: Path) -> None:
    keyring = Keyring.from_file(str(key_file))
    async with contextlib.AsyncExitStack() as stack:
        seed = await stack.enter_async_context(open_node(node_config("seed"), keyring=keyring))
        nodes = [seed]
        for i in range(11):
            config = node_config(f"member-with-a-longer-name-{i:02d}", join=(seed.address,))
            nodes.append(await stack.enter_async_context(open_node(config, keyring=keyring)))
        with trio.fail_after(WAIT_S):
            await seed.wait_until(lambda: len(seed.members()) == len(nodes))
        chunks_before = seed.counters["membership.push_pull.chunks_sent"]
        sent_before = seed.counters["membership.push_pull.sent"]
        code, out, err = await run_members(key_file, seed, "--json")
        assert code == 0, err
        assert {r["node_id"] for r in json.loads(out)} == {n.node_id.hex() for n in nodes}
        # The answer really was split: more chunks than exchanges went out.
        chunks = seed.counters["membership.push_pull.chunks_sent"] - chunks_before
        assert chunks > seed.counters["membership.push_pull.sent"] - sent_before


async def test_members_shows_failed_and_left_members_with_their_state(key_file: Path) -> None:
    """An observer reads the whole state: a member that left and one that crashed are
    listed, with their state, while the seed's table holds them."""
    keyring = Keyring.from_file(str(key_file))
    async with (
        open_node(node_config("a"), keyring=keyring) as a,
        open_node(node_config("b", join=(a.address,)), keyring=keyring) as b,
    ):
        # leave_timeout_s = 0: closing cancels before its LEFT announcement goes out, so
        # for the cluster it simply stops answering (a crash).
        crasher_cm = open_node(
            node_config("crasher", join=(a.address,)), keyring=keyring, leave_timeout_s=0.0
        )
        crasher = await crasher_cm.__aenter__()
        leaver_cm = open_node(node_config("leaver", join=(a.address,)), keyring=keyring)
        leaver = await leaver_cm.__aenter__()  # closed first (nurseries nest)
        with trio.fail_after(WAIT_S):
            await a.wait_until(lambda: len(a.members()) == 4)
        await leaver_cm.__aexit__(None, None, None)
        await crasher_cm.__aexit__(None, None, None)
        with trio.fail_after(WAIT_S):
            await a.wait_until(
                lambda: (
                    (m := a.member(leaver.node_id)) is not None
                    and m.state is MemberState.LEFT
                    and (c := a.member(crasher.node_id)) is not None
                    and c.state is MemberState.FAILED
                )
            )
        code, out, err = await run_members(key_file, a, "--json")
        assert code == 0, err
        states = {r["name"]: r["state"] for r in json.loads(out)}
        assert states == {"a": "alive", "b": "alive", "leaver": "left", "crasher": "failed"}
        assert b.member(crasher.node_id) is not None
