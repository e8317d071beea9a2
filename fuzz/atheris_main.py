"""Run the fuzz targets of ``fuzz/targets.py`` under atheris (libFuzzer), for a bounded time.

Usage::

    python fuzz/atheris_main.py --target NAME --seconds N   # one target, libFuzzer's output
    python fuzz/atheris_main.py --all --seconds N           # every target, N seconds each
    python fuzz/atheris_main.py --all --budget T            # every target, T seconds in all
    python fuzz/atheris_main.py --list

Each run starts from a corpus seeded by ``targets.seeds`` (``spec/vectors/`` and sample
files, written to a temporary directory, so the repository is not touched) and stops after
its seconds; inputs that hit an open finding of ``fuzz/known_findings.py`` are skipped,
so that a run looks for new ones. A finding is any exception other than the target's own
error, an input that runs longer than ``--timeout`` seconds, or memory above
``--rss-limit-mb``.

``--all`` runs each target in its own process (libFuzzer runs once per process), prints
one line per target with its executions, then the total, and writes the totals to
``--summary`` (default ``fuzz/last-run.json``). A finding does not stop the others: its
input is minimized here (chunks deleted while the target still fails the same way) and
saved as ``tests/fuzz/regressions/<target>-<sha1>.bin`` (``--regressions``; an input
that ran too long is saved as found, as ``.timeout``), where
``tests/fuzz/test_regressions.py`` replays it. Exit status: 0 no finding, 1 a finding,
2 usage.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SUMMARY = HERE / "last-run.json"
REGRESSIONS = ROOT / "tests" / "fuzz" / "regressions"

_EXECUTED = re.compile(r"stat::number_of_executed_units:\s*(\d+)")
_DONE = re.compile(r"^#(\d+)\s+(?:DONE|pulse|NEW|REDUCE|INITED)", re.M)
_COVERAGE = re.compile(r"cov: (\d+) ft: (\d+)")
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


_INSTRUMENT: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (("cbor", "frames", "ping", "ack", "packet"), ("foundation_p2p.wire",)),
    (("open", "keyring", "identity"), ("foundation_p2p.crypto", "foundation_p2p.wire")),
    (
        ("swim-", "ping-req", "nack", "announcement", "suspect", "dead", "push-pull",
         "membership-"),
        ("foundation_p2p.membership", "foundation_p2p.wire"),
    ),
    (("handshake-", "noise-", "identity-payload"), ("foundation_p2p.crypto",)),
    (("transport-",), ("foundation_p2p.transport", "foundation_p2p.crypto")),
    (("channel-",), ("foundation_p2p.channels",)),
    (("registry-",), ("foundation_p2p.registry",)),
    (("raft-", "wal-", "kv-", "consensus-"), ("foundation_p2p.consensus",)),
    (("history-",), ("foundation_p2p.history",)),
    (("coordination-",), ("foundation_p2p.coordination",)),
    (("health-",), ("foundation_p2p.health",)),
    (("address",), ("foundation_p2p.addresses",)),
    (("scenario",), ("simulator",)),
    (("beacon-",), ("foundation_p2p.discovery", "foundation_p2p.wire")),
    (("dns-",), ("foundation_p2p.runtime.discovery", "foundation_p2p.discovery")),
    (("messenger-",), ("foundation_p2p.messaging", "foundation_p2p.wire")),
    (("mdns-",), ("foundation_p2p.runtime.discovery",)),
    (("admin-",), ("foundation_p2p.runtime.admin",)),
    (("data-dir",), ("foundation_p2p.node", "foundation_p2p.crypto", "foundation_p2p.wire")),
]
"""Target name prefixes -> the modules whose coverage guides them. Instrumenting only
these keeps a target's start-up short (instrumenting every module takes several CPU
seconds) and its coverage feedback about its own decoder; other targets (``node-config``)
instrument all of ``foundation_p2p``."""


def _excluded_modules(name: str) -> list[str]:
    """The project's modules *not* to instrument for target ``name``."""
    wanted: tuple[str, ...] = ("foundation_p2p",)
    for prefixes, modules in _INSTRUMENT:
        if name.startswith(prefixes):
            wanted = modules
            break
    out = []
    for package in ("foundation_p2p", "simulator"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            module = ".".join(parts)
            if not any(module == w or module.startswith(w + ".") for w in wanted):
                out.append(module)
    return out


def _target_names() -> list[str]:
    """The target names, listed by a child process (importing the targets here would load
    ``foundation_p2p`` before atheris can instrument it)."""
    code = "import sys; sys.path.insert(0, sys.argv[1]); import targets; print(*targets.TARGETS)"
    out = subprocess.run(
        [sys.executable, "-c", code, str(HERE)], capture_output=True, text=True, check=True
    ).stdout
    return out.split()


def _run_one(name: str, seconds: int, args: argparse.Namespace) -> int:
    """Fuzz one target in this process (libFuzzer's own output on stderr)."""
    import atheris
    import known_findings

    exclude = _excluded_modules(name)
    with atheris.instrument_imports(include=["foundation_p2p", "simulator"], exclude=exclude):
        import targets
    # An input hitting an open finding is skipped: the run looks for the others.
    target = known_findings.guarded(name, targets.TARGETS[name])
    corpus = tempfile.mkdtemp(prefix=f"fuzz-{name}-corpus-")
    seeds = targets.seeds(name)
    for i, seed in enumerate(seeds):
        Path(corpus, f"seed-{i:04d}").write_bytes(seed)
    max_len = max([args.max_len, *(len(s) for s in seeds)])

    def one_input(data: bytes) -> None:
        target(data)

    argv = [
        sys.argv[0],
        corpus,
        f"-max_total_time={seconds}",
        f"-max_len={max_len}",
        f"-timeout={args.timeout}",
        f"-rss_limit_mb={args.rss_limit_mb}",
        f"-artifact_prefix={args.artifacts.rstrip('/')}/{name}-",
        "-print_final_stats=1",
    ]
    if args.runs is not None:
        argv.append(f"-runs={args.runs}")
    print(f"fuzz {name}: {seconds}s, {len(seeds)} seeds, corpus {corpus}", file=sys.stderr)
    atheris.Setup(argv, one_input)
    atheris.Fuzz()
    return 0


# -- findings ------------------------------------------------------------------------------


def _load_targets() -> Any:
    sys.path.insert(0, str(HERE))
    import targets

    return targets


def _failure(target: Callable[[bytes], None], data: bytes) -> tuple[str, str] | None:
    """``(exception type, where it was raised)`` if ``target(data)`` fails, else None."""
    try:
        target(data)
    except Exception as exc:
        tb = traceback.extract_tb(exc.__traceback__)
        where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"
        return type(exc).__name__, where
    return None


def minimize(target: Callable[[bytes], None], data: bytes, *, budget_s: float = 30.0) -> bytes:
    """A shorter input failing ``target`` the same way (same exception type, raised at
    the same line): chunks deleted, largest first, then bytes zeroed, within ``budget_s``."""
    want = _failure(target, data)
    if want is None:
        return data
    deadline = time.monotonic() + budget_s
    best = data
    chunk = max(1, len(best) // 2)
    while chunk >= 1 and time.monotonic() < deadline:
        i, shrunk = 0, False
        while i < len(best) and time.monotonic() < deadline:
            candidate = best[:i] + best[i + chunk :]
            if _failure(target, candidate) == want:
                best, shrunk = candidate, True
            else:
                i += chunk
        if not shrunk:
            chunk //= 2
    for i in range(len(best)):
        if time.monotonic() >= deadline:
            break
        if best[i] != 0:
            candidate = best[:i] + b"\x00" + best[i + 1 :]
            if _failure(target, candidate) == want:
                best = candidate
    return best


def save_regression(
    name: str, data: bytes, directory: Path = REGRESSIONS, *, kind: str = "bin"
) -> Path:
    """Write ``data`` as ``<name>-<sha1 prefix>.<kind>`` under ``directory``; its path.
    ``kind`` is ``bin`` for an input that raises, ``timeout`` for one that runs too long
    (``tests/fuzz/test_regressions.py`` replays those in a subprocess with a time limit)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{hashlib.sha1(data).hexdigest()[:12]}.{kind}"
    path.write_bytes(data)
    return path


def _handle_artifact(name: str, artifact: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Minimize a crashing input, save it as a regression input, describe it. A timeout
    or out-of-memory input is saved as it is (running it here could take as long again)."""
    data = artifact.read_bytes()
    kind = artifact.name[len(name) + 1 :].split("-", 1)[0]  # crash, timeout, oom, leak...
    if kind != "crash":
        saved = save_regression(name, data, Path(args.regressions), kind="timeout")
        return {"artifact": str(artifact), "saved": str(saved), "kind": kind, "bytes": len(data)}
    targets = _load_targets()
    target = targets.TARGETS[name]
    failure = _failure(target, data)
    if failure is None:  # not reproducible outside libFuzzer
        saved = save_regression(name, data, Path(args.regressions))
        return {"artifact": str(artifact), "saved": str(saved), "reproduces": False}
    small = minimize(target, data)
    saved = save_regression(name, small, Path(args.regressions))
    return {
        "artifact": str(artifact),
        "saved": str(saved),
        "kind": kind,
        "reproduces": True,
        "exception": failure[0],
        "where": failure[1],
        "bytes": len(small),
    }


# -- the whole run ---------------------------------------------------------------------------


def _parse_stats(log: str) -> dict[str, Any]:
    executed = _EXECUTED.findall(log)
    if executed:
        runs = int(executed[-1])
    else:
        marks = _DONE.findall(log)
        runs = int(marks[-1]) if marks else 0
    cov = _COVERAGE.findall(log)
    return {
        "executions": runs,
        "coverage": int(cov[-1][0]) if cov else 0,
        "features": int(cov[-1][1]) if cov else 0,
    }


def run_all(names: list[str], args: argparse.Namespace) -> int:
    """Every target in turn, each in its own process; the summary printed and written."""
    per_target = args.seconds
    if args.budget is not None:
        per_target = max(1, int(args.budget // max(1, len(names))))
    logs = Path(tempfile.mkdtemp(prefix="fuzz-logs-"))
    print(
        f"fuzz: {len(names)} targets, {per_target} s each (about {per_target * len(names)} s); "
        f"logs {logs}, artifacts {args.artifacts}",
        flush=True,
    )
    results: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    for name in names:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--target",
            name,
            "--seconds",
            str(per_target),
            "--max-len",
            str(args.max_len),
            "--timeout",
            str(args.timeout),
            "--rss-limit-mb",
            str(args.rss_limit_mb),
            "--artifacts",
            args.artifacts,
        ]
        if args.runs is not None:
            cmd += ["--runs", str(args.runs)]
        log_path = logs / f"{name}.log"
        t0 = time.monotonic()
        with log_path.open("wb") as log_file:
            try:
                status = subprocess.run(
                    cmd, stdout=log_file, stderr=subprocess.STDOUT, check=False,
                    timeout=per_target + args.timeout + 120,
                ).returncode
            except subprocess.TimeoutExpired:
                status = -1
        elapsed = time.monotonic() - t0
        log = log_path.read_text(encoding="utf-8", errors="replace")
        result: dict[str, Any] = {**_parse_stats(log), "seconds": round(elapsed, 1)}
        result["status"] = "ok" if status == 0 else "finding"
        if status != 0:
            artifacts = _ARTIFACT.findall(log)
            if artifacts and Path(artifacts[-1]).exists():
                result["finding"] = _handle_artifact(name, Path(artifacts[-1]), args)
            else:
                result["finding"] = {"exit": status, "log": str(log_path)}
            tail = "\n".join(log.splitlines()[-25:])
            print(f"---- {name}: finding, log tail:\n{tail}\n----", flush=True)
        results[name] = result
        line = f"fuzz {name:<28} {result['executions']:>10,} execs  {elapsed:6.1f} s  "
        line += f"cov {result['coverage']:>5}  {result['status']}"
        if "finding" in result and "saved" in result["finding"]:
            line += f" -> {result['finding']['saved']}"
        print(line, flush=True)
    total = sum(r["executions"] for r in results.values())
    findings = [n for n, r in results.items() if r["status"] != "ok"]
    summary = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds_per_target": per_target,
        "wall_seconds": round(time.monotonic() - started, 1),
        "targets": len(names),
        "total_executions": total,
        "findings": findings,
        "python": platform.python_version(),
        "per_target": results,
    }
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(
        f"fuzz: {len(names)} targets, {total:,} executions in {summary['wall_seconds']} s, "
        f"{len(findings)} with findings{': ' + ', '.join(findings) if findings else ''}",
        flush=True,
    )
    if args.summary:
        print(f"fuzz: totals written to {args.summary}", flush=True)
    return 1 if findings else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fuzz every decoder with atheris.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--target", help="one target name (see --list)")
    which.add_argument("--all", action="store_true", help="every target in turn")
    which.add_argument("--list", action="store_true", help="print the target names")
    parser.add_argument("--seconds", type=int, default=10, help="seconds per target")
    parser.add_argument("--budget", type=int, default=None,
                        help="seconds for all targets together (overrides --seconds)")
    parser.add_argument("--only", default=None,
                        help="with --all: a comma-separated subset of the targets")
    parser.add_argument("--max-len", type=int, default=4096,
                        help="largest input tried (at least the largest seed)")
    parser.add_argument("--runs", type=int, default=None, help="stop after this many inputs")
    parser.add_argument("--timeout", type=int, default=10, help="seconds one input may take")
    parser.add_argument("--rss-limit-mb", type=int, default=1536, help="memory limit")
    parser.add_argument("--artifacts", default=None, help="where crashing inputs are written")
    parser.add_argument("--regressions", default=str(REGRESSIONS),
                        help="where minimized findings are saved")
    parser.add_argument("--summary", default=str(SUMMARY),
                        help="JSON totals of an --all run ('' for none)")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE))
    if args.list:
        print("\n".join(_target_names()))
        return 0
    if args.seconds <= 0 or (args.budget is not None and args.budget <= 0):
        parser.error("--seconds and --budget must be positive")
    args.artifacts = args.artifacts or tempfile.mkdtemp(prefix="fuzz-artifacts-")
    names = _target_names()
    if args.target:
        if args.target not in names:
            parser.error(f"unknown target {args.target!r}; one of {', '.join(names)}")
        return _run_one(args.target, args.seconds, args)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"unknown target(s) {', '.join(unknown)}")
        names = [n for n in names if n in wanted]
    return run_all(names, args)


if __name__ == "__main__":
    sys.exit(main())
