"""A multi-host cluster on one machine: one network namespace per node, real faults.

Topology of one :class:`NetnsCluster`: a *hub* namespace holding a bridge ``br0``, and one
namespace per host (a node, or a client) with a veth pair whose far end ``v<i>`` is a port
of the bridge and whose near end is ``eth0`` with the address ``10.77.0.<10+i>/24``.
Nothing is created in the machine's own namespace, so two runs at once never clash (their
namespace names carry the owning process id and a random tag) and the subnet is private to
the run. Deleting the namespaces deletes the veths and the bridge.

Every node is a ``foundation-p2p node run --config ... --data-dir ...`` process started
with ``ip netns exec`` (which execs: the process id is the node's, so signals reach it),
with ``--app netns_app:main`` reporting what it sees on stdout (see ``netns_app``).

Faults, each verified before the protocol is judged:

- :meth:`NetnsCluster.set_loss`: ``numgen random mod 100 < N drop`` on UDP at the input
  hook of the chosen hosts (a datagram between two lossy hosts is dropped with
  probability N %: only its receiver's rule sees it); measured by
  :meth:`NetnsCluster.measure_loss` with plain UDP probes (``netns_probe.py``) and read
  back from the rules' own counters (:meth:`NetnsCluster.loss_counters`);
- :meth:`NetnsCluster.partition`: an input rule on every host of each side dropping what
  comes from the other side (silently, as a broken network does: a sender gets no
  error); :meth:`NetnsCluster.check_partition` probes every pair;
- :meth:`NetnsCluster.heal`: removes every fault table;
- SIGKILL and restart with the same data directory, SIGSTOP / SIGCONT
  (:class:`NodeProc`).

Cleanup is always done: :meth:`NetnsCluster.close` (a context manager's exit, also on
KeyboardInterrupt) kills every process this cluster started and deletes its namespaces;
an ``atexit`` hook does the same if the interpreter ends first; :func:`clean_stale`
removes what a run killed before its cleanup left behind (its owner process is gone).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROBE = HERE / "netns_probe.py"
PREFIX = "fp2pn-"
"""Every namespace of these tests is named ``fp2pn-<owner pid>-<tag>-<role>``."""
SUBNET = "10.77.0"
GOSSIP_PORT = 7946
ECHO_PORT = 9999
START_S = 60.0
"""Bound on a node process printing its ready line (Python start-up on a loaded machine)."""
FAULT_TABLE = "fp2p_fault"


class HarnessError(Exception):
    """The harness could not build or drive the cluster (not a protocol verdict)."""


def run(cmd: list[str], *, input_text: str | None = None, timeout: float = 30.0) -> str:
    """Run a command, return its stdout; :class:`HarnessError` naming it if it fails."""
    proc = subprocess.run(
        cmd, input=input_text, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise HarnessError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def missing_requirement() -> str | None:
    """None if these tests can run here, else why not (the skip reason)."""
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "network namespaces need root (make test runs them as root in CI)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"the {tool} command is missing (apt-get install {package}; .ci/debian-tools)"
    name = f"{PREFIX}{os.getpid()}-probe"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    try:
        nft = subprocess.run(
            ["ip", "netns", "exec", name, "nft", "add", "table", "inet", "fp2p_check"],
            capture_output=True, text=True,
        )
        if nft.returncode != 0:
            return f"nftables does not work in a namespace here: {nft.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _kill_namespace(name: str) -> None:
    """SIGKILL the processes inside namespace ``name`` (all started by these tests), then
    delete it."""
    pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout
    for word in pids.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(word), signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


def clean_stale() -> list[str]:
    """Delete the namespaces (and their processes) of runs whose owner process is gone."""
    removed = []
    for name in _namespaces():
        if not name.startswith(PREFIX):
            continue
        owner = name[len(PREFIX):].split("-", 1)[0]
        if owner.isdigit() and int(owner) != os.getpid() and not _alive(int(owner)):
            _kill_namespace(name)
            removed.append(name)
    return removed


class NodeProc:
    """One ``foundation-p2p node run`` process in its namespace, and what it reported.

    ``obs`` holds the ``obs`` lines of ``netns_app`` (dicts, with ``node`` = this name and
    ``life`` = how many times it was started before), in arrival order, across restarts.
    """

    def __init__(
        self, cluster: NetnsCluster, index: int, name: str, env: dict[str, str] | None = None
    ) -> None:
        self.cluster = cluster
        self.env = dict(env or {})
        self.index = index
        self.name = name
        self.ns = cluster.ns_name(name)
        self.address = f"{SUBNET}.{10 + index}"
        self.data_dir = cluster.workdir / name
        self.log_path = cluster.workdir / f"{name}.log"
        self.proc: subprocess.Popen[str] | None = None
        self.node_id: str | None = None
        self.lives = 0
        self.obs: list[dict[str, Any]] = []
        self._cond = cluster.cond
        self._threads: list[threading.Thread] = []
        self.frozen = False
        self.log_level = "WARNING"
        """``node run --log-level`` (its stderr goes to :attr:`log_path`)."""

    @property
    def gossip(self) -> str:
        return f"{self.address}:{GOSSIP_PORT}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, join: Iterable[str] = ()) -> None:
        """Start the process (same data directory each time) and wait for its ready line."""
        if self.proc is not None and self.proc.poll() is None:
            raise HarnessError(f"{self.name} is already running")
        cmd = [
            "ip", "netns", "exec", self.ns, sys.executable, "-m", "foundation_p2p", "node",
            "run", "--config", str(self.cluster.config_path), "--cluster-key-file",
            str(self.cluster.key_path), "--data-dir", str(self.data_dir), "--name", self.name,
            "--bind", self.gossip, "--app", "netns_app:main", "--log-level", self.log_level,
        ]
        for peer in join:
            cmd += ["--join", peer]
        full_env = {**os.environ, **self.cluster.env, **self.env}
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        log = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115 (the child owns it)
        log.write(f"--- start {self.lives} {time.monotonic():.3f}\n")
        log.flush()
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=full_env,
        )
        log.close()
        self.cluster.pids.add(self.proc.pid)
        life = self.lives
        self.lives += 1
        ready = threading.Event()
        t = threading.Thread(target=self._read, args=(self.proc, life, ready), daemon=True)
        t.start()
        self._threads.append(t)
        if not ready.wait(START_S):
            raise HarnessError(f"{self.name}: no ready line within {START_S} s ({self.tail()})")
        if self.proc.poll() is not None:
            raise HarnessError(f"{self.name} exited at start: {self.tail()}")

    def _read(self, proc: subprocess.Popen[str], life: int, ready: threading.Event) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("ready "):
                fields = dict(w.split("=", 1) for w in line.split()[1:] if "=" in w)
                self.node_id = fields.get("node_id")
                ready.set()
            elif line.startswith("obs "):
                item = json.loads(line[4:])
                item["node"] = self.name
                item["life"] = life
                with self._cond:
                    self.obs.append(item)
                    self._cond.notify_all()
        with self._cond:
            self.obs.append({"kind": "exit", "node": self.name, "life": life,
                             "t": time.monotonic()})
            self._cond.notify_all()
        ready.set()  # the process ended: let start() see it

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], Any], timeout: float, what: str
    ) -> Any:
        """Wait until ``predicate(obs)`` is truthy (its value is returned); re-checked at each
        new report; :class:`AssertionError` naming ``what`` after ``timeout`` seconds, or
        at once if the process has exited (with the end of its log)."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate(self.obs)
                if value:
                    return value
                if self.obs and self.obs[-1]["kind"] == "exit" and not self.running:
                    raise AssertionError(
                        f"{self.name} exited (status {self.proc and self.proc.poll()}) "
                        f"before {what}: {self.tail()}"
                    )
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.name}: {what} not within {timeout} s")
                self._cond.wait(left)

    def states(self) -> dict[str, str]:
        """The latest membership view this node reported (in its current life)."""
        with self._cond:
            for item in reversed(self.obs):
                if item["kind"] == "members":
                    return dict(item["states"])
        return {}

    def signal(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise HarnessError(f"{self.name} is not running")
        os.kill(self.proc.pid, sig)

    def freeze(self) -> None:
        """SIGSTOP; verified in /proc (state T)."""
        self.signal(signal.SIGSTOP)
        self.frozen = True
        assert self.proc is not None
        end = time.monotonic() + 5
        while self._proc_state() not in ("T", "t"):
            if time.monotonic() > end:
                raise HarnessError(f"{self.name}: not stopped after SIGSTOP")
            time.sleep(0.005)  # polling /proc for the kernel's state change

    def thaw(self) -> None:
        """SIGCONT."""
        self.signal(signal.SIGCONT)
        self.frozen = False

    def _proc_state(self) -> str:
        assert self.proc is not None
        try:
            text = Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:
            return "?"
        return text.rsplit(")", 1)[1].split()[0]

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if self.proc is not None:
            self.cluster.pids.discard(self.proc.pid)
        for t in self._threads:
            t.join(5)

    def stop(self) -> None:
        """SIGTERM (a clean leave), then SIGKILL if it takes more than 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            if self.frozen:
                self.thaw()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.kill()


class NetnsCluster:
    """Namespaces, a bridge, node processes, fault injection; see the module docstring.

    Use as a context manager. ``config`` is the node TOML text every node reads; ``env``
    adds environment variables for every node (``NETNS_APP_*`` of ``netns_app``).
    """

    def __init__(self, workdir: Path, config: str, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.tag = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.env = dict(env or {})
        self.config_path = workdir / "node.toml"
        self.config_path.write_text(config, encoding="utf-8")
        self.key_path = workdir / "cluster.key"
        self.namespaces: list[str] = []
        self.hosts: dict[str, str] = {}
        """host name -> address"""
        self.nodes: dict[str, NodeProc] = {}
        self.pids: set[int] = set()
        self.cond = threading.Condition()
        """Notified at every report of any node (:meth:`wait_until`)."""
        self._echo: dict[str, subprocess.Popen[str]] = {}
        self._faulty: set[str] = set()
        self._closed = False
        atexit.register(self.close)

    def ns_name(self, host: str) -> str:
        return f"{PREFIX}{self.tag}-{host}"

    def __enter__(self) -> NetnsCluster:
        clean_stale()
        from foundation_p2p.crypto.keyring import Keyring

        self.key_path.write_text(Keyring.generate(os.urandom).to_text(), encoding="utf-8")
        os.chmod(self.key_path, 0o600)
        hub = self.ns_name("hub")
        self._add_ns(hub)
        run(["ip", "-n", hub, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", hub, "link", "set", "br0", "up"])
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _add_ns(self, name: str) -> None:
        run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])

    def add_host(self, name: str) -> str:
        """A namespace on the bridge with its own address (returned)."""
        if name in self.hosts or name == "hub":
            raise HarnessError(f"host {name!r} exists")
        index = len(self.hosts)
        ns = self.ns_name(name)
        address = f"{SUBNET}.{10 + index}"
        self._add_ns(ns)
        hub = self.ns_name("hub")
        run(["ip", "-n", hub, "link", "add", f"v{index}", "type", "veth", "peer", "name",
             "eth0", "netns", ns])
        run(["ip", "-n", hub, "link", "set", f"v{index}", "master", "br0", "up"])
        run(["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        self.hosts[name] = address
        return address

    def add_nodes(
        self, count: int, env: dict[str, str] | None = None, *, start: bool = True
    ) -> list[NodeProc]:
        """``count`` node hosts ``n0``...; with ``start``, each is started in turn
        (:meth:`start_node`). ``env`` is kept for every start of each node."""
        made = []
        for _ in range(count):
            name = f"n{len(self.nodes)}"
            self.add_host(name)
            node = NodeProc(self, len(self.hosts) - 1, name, env)
            self.nodes[name] = node
            made.append(node)
            if start:
                self.start_node(node)
        return made

    def start_node(self, node: NodeProc) -> None:
        """(Re)start ``node``, joining the first node (or, for the first, every other one
        that runs, so that a restarted ``n0`` finds the cluster again)."""
        first = next(iter(self.nodes.values()))
        if node is first:
            join = [n.gossip for n in self.nodes.values() if n is not node and n.running]
        else:
            join = [first.gossip]
        node.start(join=join)

    def wait_until(
        self, predicate: Callable[[], Any], timeout: float, what: str | None = None
    ) -> Any:
        """Wait until ``predicate()`` is truthy, re-checked at every report of any node;
        returns its value. After ``timeout`` seconds: :class:`AssertionError` naming
        ``what``, or, when ``what`` is None, the last (falsy) value."""
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                value = predicate()
                if value:
                    return value
                left = end - time.monotonic()
                if left <= 0:
                    if what is None:
                        return value
                    raise AssertionError(f"{what} not within {timeout} s")
                self.cond.wait(left)

    def node_ids(self) -> dict[str, str]:
        """node id hex -> node name"""
        return {n.node_id: n.name for n in self.nodes.values() if n.node_id}

    def host_ns(self, host: str) -> str:
        return self.ns_name(host)

    def popen_in(self, host: str, args: list[str], **kw: Any) -> subprocess.Popen[str]:
        """Start ``args`` inside ``host``'s namespace (killed at close)."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns_name(host), *args], text=True,
                                **kw)
        self.pids.add(proc.pid)
        return proc

    def lines_of(self, proc: subprocess.Popen[str]) -> list[str]:
        """The stdout lines of ``proc`` (text mode, piped), appended as they arrive by a
        reader thread; every line notifies :attr:`cond` (see :meth:`wait_until`)."""
        lines: list[str] = []
        assert proc.stdout is not None
        stdout = proc.stdout

        def read() -> None:
            for line in stdout:
                with self.cond:
                    lines.append(line.rstrip("\n"))
                    self.cond.notify_all()
            with self.cond:
                lines.append("")  # end of output
                self.cond.notify_all()

        threading.Thread(target=read, daemon=True).start()
        return lines

    # -- faults ------------------------------------------------------------------------

    def _apply(self, host: str, body: str) -> None:
        """Replace ``host``'s fault table with ``body`` (chains and rules), atomically."""
        script = (
            f"table inet {FAULT_TABLE} {{}}\n"
            f"delete table inet {FAULT_TABLE}\n"
            f"table inet {FAULT_TABLE} {{\n{body}\n}}\n"
        )
        run(["ip", "netns", "exec", self.ns_name(host), "nft", "-f", "-"], input_text=script)
        self._faulty.add(host)

    def set_loss(self, percent: int, hosts: Iterable[str]) -> None:
        """Drop ``percent`` % of the UDP datagrams arriving at each of ``hosts``."""
        if not 0 <= percent <= 100:
            raise HarnessError(f"loss percent {percent} is not in 0..100")
        for host in hosts:
            self._apply(host, (
                "  chain input {\n"
                "    type filter hook input priority 0; policy accept;\n"
                "    meta l4proto udp counter name seen\n"
                f"    meta l4proto udp numgen random mod 100 < {percent} counter name lost drop\n"
                "  }\n"
                "  counter seen { }\n"
                "  counter lost { }"
            ))

    def loss_counters(self, host: str) -> tuple[int, int]:
        """(UDP datagrams seen, dropped) by ``host``'s loss rule so far."""
        text = run(["ip", "netns", "exec", self.ns_name(host), "nft", "-j", "list", "counters",
                    "table", "inet", FAULT_TABLE])
        found = {}
        for item in json.loads(text)["nftables"]:
            c = item.get("counter")
            if c is not None:
                found[c["name"]] = int(c["packets"])
        return found["seen"], found["lost"]

    def partition(self, *sides: Iterable[str]) -> None:
        """Cut every pair of hosts on different ``sides`` (hosts on no side are untouched):
        each host drops, at its input hook, what comes from the other sides."""
        groups = [list(s) for s in sides]
        for group in groups:
            others = [self.hosts[h] for g in groups if g is not group for h in g]
            if not others:
                continue
            addrs = ", ".join(others)
            for host in group:
                self._apply(host, (
                    "  chain input {\n"
                    "    type filter hook input priority 0; policy accept;\n"
                    f"    ip saddr {{ {addrs} }} counter drop\n"
                    "  }"
                ))

    def heal(self) -> None:
        """Remove every fault table."""
        for host in sorted(self._faulty):
            run(["ip", "netns", "exec", self.ns_name(host), "nft", "delete", "table", "inet",
                 FAULT_TABLE])
        self._faulty.clear()

    # -- verifying faults with plain UDP probes ----------------------------------------

    def _ensure_echo(self, host: str) -> None:
        proc = self._echo.get(host)
        if proc is not None and proc.poll() is None:
            return
        proc = self.popen_in(host, [sys.executable, str(PROBE), "echo", str(ECHO_PORT)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise HarnessError(f"the echo server in {host} did not start")
        self._echo[host] = proc

    def probe(self, src: str, dsts: list[str], count: int) -> dict[str, int]:
        """Answers out of ``count`` probes from ``src`` to each of ``dsts``' echo servers."""
        return self.probe_many({src: dsts}, count)[src]

    def probe_many(self, plan: dict[str, list[str]], count: int) -> dict[str, dict[str, int]]:
        """:meth:`probe` from several sources at once (one probe process each)."""
        for dsts in plan.values():
            for d in dsts:
                self._ensure_echo(d)
        procs = {}
        for src, dsts in plan.items():
            targets = [f"{self.hosts[d]}:{ECHO_PORT}" for d in dsts]
            procs[src] = (dsts, targets, self.popen_in(
                src, [sys.executable, str(PROBE), "probe", str(count), *targets],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            ))
        out: dict[str, dict[str, int]] = {}
        for src, (dsts, targets, proc) in procs.items():
            stdout, stderr = proc.communicate(timeout=120)
            self.pids.discard(proc.pid)
            if proc.returncode != 0:
                raise HarnessError(f"probe from {src} failed: {stderr.strip()[-2000:]}")
            answers = json.loads(stdout.strip().splitlines()[-1])["answers"]
            out[src] = {d: int(answers[t]) for d, t in zip(dsts, targets, strict=True)}
        return out

    def check_partition(self, *sides: Iterable[str], count: int = 20) -> dict[str, Any]:
        """Probe every ordered pair; raises :class:`HarnessError` unless no probe crosses
        the cut and every pair on one side answers. Returns the answer matrix."""
        groups = [list(s) for s in sides]
        side_of = {h: i for i, g in enumerate(groups) for h in g}
        matrix = self.probe_many({src: [d for d in side_of if d != src] for src in side_of},
                                 count)
        for src in side_of:
            for d, got in matrix[src].items():
                crosses = side_of[d] != side_of[src]
                if crosses and got != 0:
                    raise HarnessError(f"partition not applied: {src}->{d} {got}/{count}")
                if not crosses and got == 0:
                    raise HarnessError(f"{src}->{d} on one side: 0/{count} answers")
        return matrix

    def measure_loss(self, src: str, dst: str, count: int = 2000) -> float:
        """The one-way loss rate between two lossy hosts, from ``count`` round trips:
        ``1 - sqrt(answered / count)`` (a round trip crosses two input hooks)."""
        got = self.probe(src, [dst], count)[dst]
        return 1.0 - (got / count) ** 0.5

    # -- cleanup -----------------------------------------------------------------------

    def close(self) -> None:
        """Kill every process started here, delete every namespace; idempotent."""
        if self._closed:
            return
        self._closed = True
        for node in self.nodes.values():
            if node.frozen:
                with contextlib.suppress(HarnessError):
                    node.thaw()
        for pid in list(self.pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for node in self.nodes.values():
            if node.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.proc.wait(10)
        for proc in self._echo.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        for ns in reversed(self.namespaces):
            _kill_namespace(ns)
        atexit.unregister(self.close)
