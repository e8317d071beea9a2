"""The namespace harness itself: cleanup always, stale cleanup, faults verified by probes.

No node runs here: plain hosts on the bridge, echo servers and probes. A run interrupted
by KeyboardInterrupt leaves no namespace or process behind; what a run killed by SIGKILL
left behind is removed by the next run's stale cleanup; a partition and a loss rule are
seen by the probes (and their removal too).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from netns_harness import PREFIX, HarnessError, NetnsCluster, _namespaces, clean_stale

pytestmark = pytest.mark.usefixtures("netns_ready")


def owned_by(pid: int) -> list[str]:
    return [n for n in _namespaces() if n.startswith(f"{PREFIX}{pid}-")]


def test_an_interrupted_run_leaves_nothing_behind(tmp_path: Path) -> None:
    cluster = NetnsCluster(tmp_path, "")
    with pytest.raises(KeyboardInterrupt), cluster:
        cluster.add_host("a")
        cluster.add_host("b")
        sleeper = cluster.popen_in("a", ["sleep", "600"])
        assert cluster.probe("a", ["b"], 10) == {"b": 10}
        mine = [n for n in _namespaces() if n.startswith(cluster.ns_name(""))]
        assert len(mine) == 3  # hub, a, b
        raise KeyboardInterrupt
    assert not [n for n in _namespaces() if n.startswith(cluster.ns_name(""))]
    assert sleeper.wait(5) == -signal.SIGKILL


def test_stale_namespaces_of_a_dead_run_are_removed(tmp_path: Path) -> None:
    # a run that was SIGKILLed: its namespaces and a process inside are left behind
    script = (
        f"import sys, time; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from pathlib import Path\n"
        "from netns_harness import NetnsCluster\n"
        f"c = NetnsCluster(Path({str(tmp_path)!r}), '').__enter__()\n"
        "c.add_host('x')\n"
        "c.popen_in('x', ['sleep', '600'])\n"
        "print('up', flush=True)\n"
        "time.sleep(600)\n"
    )
    run = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert run.stdout is not None and run.stdout.readline().strip() == "up"
        left = owned_by(run.pid)
        assert len(left) == 2, left  # hub and x
        inside = subprocess.run(["ip", "netns", "pids", left[-1]], capture_output=True,
                                text=True).stdout.split()
    finally:
        run.kill()
        run.wait(10)
    assert owned_by(run.pid) == left  # SIGKILL: no cleanup ran
    removed = clean_stale()
    assert set(left) <= set(removed)
    assert owned_by(run.pid) == []
    for pid in inside:
        deadline = time.monotonic() + 5
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.01)  # the kernel reaps the killed orphan
        state = Path(f"/proc/{pid}/stat").read_text().split()[2] if os.path.exists(
            f"/proc/{pid}") else "gone"
        assert state in ("gone", "Z"), state


def test_faults_are_seen_by_the_probes_and_removed_by_heal(tmp_path: Path) -> None:
    with NetnsCluster(tmp_path, "") as c:
        for h in ("a", "b", "c"):
            c.add_host(h)
        c.check_partition(["a", "b", "c"])
        c.partition(["a"], ["b", "c"])
        matrix = c.check_partition(["a"], ["b", "c"])
        assert matrix["a"] == {"b": 0, "c": 0} and matrix["b"]["c"] == 20
        # a wrong expectation is reported, not passed
        with pytest.raises(HarnessError, match=r"0/20 answers"):
            c.check_partition(["a", "b"], ["c"])
        c.heal()
        c.check_partition(["a", "b", "c"])
        c.set_loss(30, ["a", "b"])
        rate = c.measure_loss("a", "b", 1000)
        assert 0.2 <= rate <= 0.4, rate
        seen, lost = c.loss_counters("b")
        assert seen > 0 and 0.2 <= lost / seen <= 0.4, (seen, lost)
        c.heal()
        assert c.measure_loss("a", "b", 500) == 0.0
