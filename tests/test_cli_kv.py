"""``foundation-p2p kv get|put|cas|delete``: an observer process talks to a real 3-node Raft
group (node processes on 127.0.0.1 from tests/runtime/test_kv_udp.py) and follows the
leader hint; usage errors exit 2, no member exits 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest


def _load_udp_helpers() -> Any:
    """The node-process helpers of tests/runtime/test_kv_udp.py (not a package)."""
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "runtime", "test_kv_udp.py")
    spec = importlib.util.spec_from_file_location("_kv_udp_helpers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_udp = _load_udp_helpers()
CHILD, Proc, start_cluster, wait_leader = (
    _udp.CHILD, _udp.Proc, _udp.start_cluster, _udp.wait_leader
)


def cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "foundation_p2p", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


@pytest.fixture
def cluster(tmp_path: Any) -> Any:
    from foundation_p2p.crypto.keyring import Keyring

    script = str(tmp_path / "kvnode.py")
    with open(script, "w", encoding="utf-8") as f:
        f.write(CHILD)
    key = str(tmp_path / "cluster.key")
    with open(key, "w", encoding="utf-8") as f:
        f.write(Keyring.generate(os.urandom).to_text())
    os.chmod(key, 0o600)
    procs: list[Any] = start_cluster(script, key, [str(tmp_path / f"n{i}") for i in range(3)])
    try:
        wait_leader(procs, 20.0)
        yield key, procs
    finally:
        for p in procs:
            p.kill()


def test_put_get_cas_delete_through_an_observer(cluster: Any) -> None:
    key, procs = cluster
    # ask a member that may be a follower: the client follows the leader hint
    join = ["--join", f"127.0.0.1:{procs[2].port}", "--cluster-key-file", key]
    r = cli("kv", "put", "color", "blue", *join, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"op": "put", "key": "color", "previous": None}
    r = cli("kv", "get", "color", *join)
    assert (r.returncode, r.stdout.strip()) == (0, "blue"), r.stderr
    assert procs[0].ask("get color") == "VAL blue"
    r = cli("kv", "cas", "color", "red", "green", *join, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["swapped"] is False, r.stderr
    r = cli("kv", "cas", "color", "blue", "green", *join, "--json")
    assert json.loads(r.stdout) == {"op": "cas", "key": "color", "swapped": True,
                                    "value": "green"}
    r = cli("kv", "delete", "color", *join)
    assert r.returncode == 0 and "previous: green" in r.stdout, r.stderr
    r = cli("kv", "get", "color", *join)
    assert (r.returncode, r.stdout.strip()) == (0, "(absent)")


def test_usage_errors_exit_2_and_no_member_exits_1(tmp_path: Any) -> None:
    from foundation_p2p.crypto.keyring import Keyring

    r = cli("kv", "get", "k", "--cluster-key-file", "x")
    assert r.returncode == 2 and "--join" in r.stderr
    r = cli("kv", "put", "k")
    assert r.returncode == 2  # argparse: VALUE missing
    key = str(tmp_path / "k.key")
    with open(key, "w", encoding="utf-8") as f:
        f.write(Keyring.generate(os.urandom).to_text())
    os.chmod(key, 0o600)
    # nobody listens there
    r = cli("kv", "get", "k", "--join", "127.0.0.1:9", "--cluster-key-file", key,
            "--timeout", "1")
    assert r.returncode == 1 and "no Raft member" in r.stderr
