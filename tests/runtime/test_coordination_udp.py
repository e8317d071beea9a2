"""Three ``foundation-p2p node run --app coordination_app:main`` processes over 127.0.0.1:
their agents bid for ``cpu`` in a sealed-bid second-price auction run through Raft, and every
node prints the same winner and price, computed from its own replica of the log."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

TOML = """
probe_interval_s = 0.1
probe_timeout_s = 0.1

[consensus]
tick_interval_s = 0.05
election_tick = 10
bootstrap_expect = 3
request_timeout_s = 3.0
"""
AMOUNTS = (30, 70, 50)
LIMIT_S = 120.0


class Proc:
    """One ``node run`` process; its stdout read line by line with a bounded wait."""

    def __init__(self, args: list[str], env: dict[str, str], err: Any) -> None:
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, env=env)
        self.buf = b""

    def line(self, deadline: float) -> str | None:
        assert self.p.stdout is not None
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.p.stdout], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.p.stdout.fileno(), 4096)
            if not chunk:
                return None
            self.buf += chunk
        out, self.buf = self.buf.split(b"\n", 1)
        return out.decode()

    def wait_for(self, prefix: str, deadline: float) -> str:
        while True:
            text = self.line(deadline)
            assert text is not None, f"no {prefix!r} line before the deadline"
            if text.startswith(prefix):
                return text


@pytest.mark.skipif(sys.platform == "win32", reason="select on pipes")
def test_three_node_run_processes_agree_on_the_auction_winner_and_price(
    tmp_path: Any,
) -> None:
    from foundation_p2p.crypto.keyring import Keyring

    config = tmp_path / "node.toml"
    config.write_text(TOML, encoding="utf-8")
    key = tmp_path / "cluster.key"
    key.write_text(Keyring.generate(os.urandom).to_text(), encoding="utf-8")
    os.chmod(key, 0o600)
    here = os.path.dirname(os.path.abspath(__file__))
    procs: list[Proc] = []
    errs = []
    deadline = time.monotonic() + LIMIT_S
    try:
        port = None
        for i, amount in enumerate(AMOUNTS):
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (here, os.environ.get("PYTHONPATH")) if p)
            env.update(COORD_APP_AMOUNT=str(amount), COORD_APP_NODES=str(len(AMOUNTS)),
                       COORD_APP_OPENER="1" if i == len(AMOUNTS) - 1 else "0")
            args = [sys.executable, "-m", "foundation_p2p", "node", "run", "--config",
                    str(config), "--cluster-key-file", str(key), "--data-dir",
                    str(tmp_path / f"n{i}"), "--bind", "127.0.0.1:0",
                    "--app", "coordination_app:main"]
            if port is not None:
                args += ["--join", f"127.0.0.1:{port}"]
            err = open(tmp_path / f"n{i}.log", "w", encoding="utf-8")  # noqa: SIM115
            errs.append(err)
            procs.append(Proc(args, env, err))
            ready = procs[-1].wait_for("ready ", deadline)
            if port is None:
                address = dict(w.split("=", 1) for w in ready.split()[1:])["address"]
                port = int(address.rsplit(":", 1)[1])
        results = []
        for p in procs:
            try:
                results.append(p.wait_for("result ", deadline))
            except AssertionError:
                for i in range(len(procs)):
                    print((tmp_path / f"n{i}.log").read_text(encoding="utf-8")[-4000:])
                raise
    finally:
        for p in procs:
            if p.p.poll() is None:
                p.p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.p.wait(15)
            except subprocess.TimeoutExpired:
                p.p.kill()
                p.p.wait(5)
        for e in errs:
            e.close()
    fields = [dict(w.split("=", 1) for w in r.split()[1:]) for r in results]
    assert len({f["node"] for f in fields}) == 3, "three different nodes reported"
    agreed = {(f["auction"], f["winner"], f["bid"], f["price"]) for f in fields}
    assert len(agreed) == 1, f"nodes disagree: {results}"
    (_, _, bid, price), = agreed
    assert (int(bid), int(price)) == (70, 50), f"second-price: 70 wins and pays 50: {results}"
