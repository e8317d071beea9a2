"""The ``foundation-p2p sim`` command: ``run``, ``replay`` and ``sweep`` a scenario.

``foundation_p2p/cli.py`` calls :func:`register` with its subparsers, then ``args.func(args)``,
which returns the exit status: 0 every invariant held (and, for ``replay``, the digest
matched), 1 an invariant failed (or the replay diverged), 2 an invalid scenario, trace or
usage, 3 an internal error (the code under test raised; the report names the seed and the
command that reproduces it). :func:`main` runs the same parser on its own
(``python -m simulator.cli sim run FILE``).

Equivalent lower-level calls: ``simulator.scenario.load_scenario(path)`` then
``simulator.world.run_scenario(scenario, seed=..., mode=..., random_faults=...)`` for ``run``;
``simulator.world.replay_trace(path)`` for ``replay``; one ``run_scenario`` per seed in a
``concurrent.futures.ProcessPoolExecutor`` for ``sweep``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import IO, Any, TypeAlias

from foundation_p2p.errors import FoundationError
from simulator.model import Scenario
from simulator.scenario import MODES, ScenarioError, load_scenario

log = logging.getLogger("foundation_p2p.simulator.cli")

EXIT_OK = 0
EXIT_INVARIANT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL_ERROR = 3

PROGRAM = "foundation-p2p"
PROGRESS_AFTER_S = 3.0
"""Wall seconds a run may take before progress lines appear on stderr."""
PROGRESS_EVERY_S = 2.0
"""Wall seconds between two progress lines."""
MAX_SWEEP_SEEDS = 1_000_000
"""Most seeds one sweep runs."""

Report: TypeAlias = dict[str, Any]


def register(subparsers: Any) -> None:
    """Add the ``sim`` command (``run``, ``replay``, ``sweep``) to an argparse subparsers."""
    sim = subparsers.add_parser(
        "sim",
        help="the deterministic simulator: run, replay or sweep a scenario file",
        description=(
            "Run whole clusters of the node's code in virtual time from a scenario file. "
            "Exit status: 0 every invariant held, 1 an invariant failed (or a replay "
            "diverged), 2 invalid scenario, trace or usage, 3 internal error."
        ),
    )
    commands = sim.add_subparsers(dest="sim_command", metavar="{run,replay,sweep}")
    commands.required = True

    run = commands.add_parser(
        "run",
        help="run one scenario with one seed and report the invariants",
        description="Run one scenario file with one seed; print the report.",
    )
    run.add_argument("file", help="scenario TOML file (see simulator/README.md)")
    run.add_argument("--seed", type=_seed_arg, help="the run's seed (default: the file's seed)")
    _add_run_options(run)
    run.add_argument("--trace", metavar="FILE", help="write the canonical trace (JSON lines)")
    run.add_argument(
        "--history",
        metavar="FILE",
        help="write the KV client operations as a Jepsen-shaped history (JSON lines)",
    )
    run.set_defaults(func=cmd_run)

    replay = commands.add_parser(
        "replay",
        help="re-run a trace file and check it reaches the same digest",
        description=(
            "Re-run the run a trace file records (its first line holds the scenario, seed and "
            "options) and compare the new trace with it event by event."
        ),
    )
    replay.add_argument("file", help="a trace written by sim run --trace")
    replay.add_argument("--json", action="store_true", help="print one JSON object")
    replay.set_defaults(func=cmd_replay)

    sweep = commands.add_parser(
        "sweep",
        help="run one scenario with many seeds in parallel processes",
        description="Run one scenario with every seed of a range, in parallel processes.",
    )
    sweep.add_argument("file", help="scenario TOML file")
    sweep.add_argument(
        "--seeds", required=True, type=_seed_range_arg, metavar="A..B",
        help="inclusive seed range, e.g. 1..100",
    )
    sweep.add_argument(
        "--jobs", type=_jobs_arg, default=None, metavar="N",
        help="parallel processes (default: the CPU count)",
    )
    sweep.add_argument(
        "--budget", type=_budget_arg, default=None, metavar="DURATION",
        help="wall-time budget, e.g. 60m: no seed starts after it; if seeds are left "
        "unrun the sweep fails (exit 1) and says how many ran",
    )
    _add_run_options(sweep)
    sweep.set_defaults(func=cmd_sweep)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--random-faults",
        action="store_true",
        help="add a fault schedule drawn from the seed, within the file's [random_faults]",
    )
    parser.add_argument(
        "--mode", choices=MODES, help="delivery mode (default: the file's mode)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


# -- argument types ----------------------------------------------------------------------


def _budget_arg(text: str) -> float:
    from simulator.durations import parse_duration

    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the budget must be positive")
    return value


def _seed_arg(text: str) -> int:
    try:
        seed = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer seed") from None
    if not 0 <= seed < 2**64:
        raise argparse.ArgumentTypeError(f"{seed} is out of range 0..2**64-1")
    return seed


def _seed_range_arg(text: str) -> tuple[int, int]:
    low_text, sep, high_text = text.partition("..")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not a range A..B such as 1..100")
    low = _seed_arg(low_text)
    high = _seed_arg(high_text)
    if low > high:
        raise argparse.ArgumentTypeError(f"{text!r}: {low} is above {high}")
    if high - low + 1 > MAX_SWEEP_SEEDS:
        raise argparse.ArgumentTypeError(f"{text!r}: more than {MAX_SWEEP_SEEDS} seeds")
    return low, high


def _jobs_arg(text: str) -> int:
    try:
        jobs = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes") from None
    if not 1 <= jobs <= 1024:
        raise argparse.ArgumentTypeError(f"{jobs} is out of range 1..1024")
    return jobs


# -- sim run -----------------------------------------------------------------------------


def replay_command(path: str, seed: int, mode: str, random_faults: bool) -> str:
    """The exact ``foundation-p2p sim run`` command line that reproduces one run."""
    parts = [PROGRAM, "sim", "run", path, "--seed", str(seed)]
    if random_faults:
        parts.append("--random-faults")
    parts += ["--mode", mode]
    return shlex.join(parts)


def cmd_run(args: argparse.Namespace) -> int:
    """``sim run``: load, run, print the report; return the exit status."""
    scenario = _load_or_report(args.file, "run")
    if scenario is None:
        return EXIT_USAGE
    for option in ("trace", "history"):
        target = getattr(args, option)
        if target is not None and not _writable(target):
            _usage_error("run", f"--{option} {target}: its directory does not exist")
            return EXIT_USAGE
    if args.history is not None and not any(w.kind == "kv" for w in scenario.workloads):
        _usage_error(
            "run",
            "--history records KV client operations, and this scenario has no kind = \"kv\" "
            "workload",
        )
        return EXIT_USAGE
    seed = scenario.seed if args.seed is None else args.seed
    mode = args.mode or scenario.mode
    replay = replay_command(args.file, seed, mode, args.random_faults)
    progress = ProgressLine(scenario.duration_s, sys.stderr)
    from simulator.world import run_scenario

    log.debug("run_scenario(%s, seed=%d, mode=%s)", scenario.name, seed, mode)
    try:
        result = run_scenario(
            scenario,
            seed=seed,
            mode=mode,
            random_faults=args.random_faults,
            trace_path=args.trace,
            history_path=args.history,
            progress=progress,
        )
    except Exception:
        print(traceback.format_exc(), file=sys.stderr, end="")
        print(
            f"{PROGRAM} sim run: internal error in scenario {scenario.name!r} with seed {seed}"
            f"\nreplay: {replay}",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR
    report = result_report(result)
    if not report["ok"]:
        report["replay"] = replay
    _print_report(report, args.json)
    if getattr(result, "internal_error", None):
        return EXIT_INTERNAL_ERROR
    return EXIT_OK if report["ok"] else EXIT_INVARIANT_FAILED


def result_report(result: Any) -> Report:
    """The DESIGN.md report of a ``RunResult`` as a JSON-ready dict."""
    data = result.to_json()
    report: Report = json.loads(data) if isinstance(data, str) else dict(data)
    return report


class ProgressLine:
    """Writes ``sim: 12.0/60.0 virtual s ...`` to a stream while a run is long.

    The world calls it as ``progress(virtual_now_s, virtual_end_s)`` every so often.

    Silent for the first :data:`PROGRESS_AFTER_S` wall seconds, then at most one line every
    :data:`PROGRESS_EVERY_S`; a short run prints nothing.
    """

    def __init__(self, total_virtual_s: float, stream: IO[str]) -> None:
        self.total_virtual_s = total_virtual_s
        self.stream = stream
        self.started = time.monotonic()
        self.next_line = self.started + PROGRESS_AFTER_S
        self.lines = 0

    def __call__(self, virtual_s: float, end_s: float) -> None:
        now = time.monotonic()
        if now < self.next_line:
            return
        self.next_line = now + PROGRESS_EVERY_S
        self.lines += 1
        wall = now - self.started
        total = end_s or self.total_virtual_s
        share = 100.0 * virtual_s / total if total else 100.0
        rate = virtual_s / wall if wall > 0 else 0.0
        print(
            f"sim: {virtual_s:.1f}/{total:.1f} virtual s ({share:.0f}%), {wall:.1f} s wall, "
            f"{rate:.1f} virtual s per wall s",
            file=self.stream,
            flush=True,
        )


# -- sim replay --------------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    """``sim replay``: re-run a trace, print the report with ``matches``; the exit status."""
    from simulator.world import replay_trace

    if not os.path.isfile(args.file):
        _usage_error("replay", f"{args.file}: no such trace file")
        return EXIT_USAGE
    try:
        result, matches, divergence = replay_trace(
            args.file, progress=ProgressLine(0.0, sys.stderr)
        )
    except (FoundationError, OSError, ValueError) as exc:
        _usage_error("replay", f"{args.file}: cannot replay: {exc}")
        return EXIT_USAGE
    report = result_report(result)
    report["matches"] = bool(matches)
    if divergence is not None:
        report["divergence"] = divergence
    if not report["ok"] or not matches:
        report["replay"] = shlex.join([PROGRAM, "sim", "replay", args.file])
    _print_report(report, args.json)
    if getattr(result, "internal_error", None):
        return EXIT_INTERNAL_ERROR
    return EXIT_OK if report["ok"] and matches else EXIT_INVARIANT_FAILED


# -- sim sweep ---------------------------------------------------------------------------


def sweep_one(scenario: Scenario, seed: int, mode: str, random_faults: bool) -> Report:
    """Run one seed of a sweep (in a worker process); never raises."""
    from simulator.world import run_scenario

    try:
        result = run_scenario(scenario, seed=seed, mode=mode, random_faults=random_faults)
    except Exception:
        return {
            "seed": seed,
            "ok": False,
            "failed_invariants": [],
            "internal_error": traceback.format_exc(),
            "virtual_seconds": 0.0,
            "events": 0,
        }
    report = result_report(result)
    failed = [name for name, res in report["invariants"].items() if not res["ok"]]
    return {
        "seed": seed,
        "ok": bool(report["ok"]),
        "failed_invariants": failed,
        "internal_error": getattr(result, "internal_error", None),
        "virtual_seconds": report["virtual_seconds"],
        "events": report["events"],
    }


def cmd_sweep(args: argparse.Namespace) -> int:
    """``sim sweep``: one run per seed in parallel processes; print the summary."""
    scenario = _load_or_report(args.file, "sweep")
    if scenario is None:
        return EXIT_USAGE
    low, high = args.seeds
    seeds = list(range(low, high + 1))
    mode = args.mode or scenario.mode
    jobs = min(args.jobs or os.cpu_count() or 1, len(seeds))
    started = time.monotonic()
    budget: float | None = getattr(args, "budget", None)
    deadline = None if budget is None else started + budget
    results: dict[int, Report] = {}
    progress = _SweepProgress(len(seeds), sys.stderr)
    if jobs == 1:
        for seed in seeds:
            if deadline is not None and time.monotonic() >= deadline:
                break
            results[seed] = sweep_one(scenario, seed, mode, args.random_faults)
            progress.done(results[seed])
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            # at most 2 x jobs seeds in flight (a bounded queue): none starts after the budget
            pending = iter(seeds)
            futures: dict[Future[Report], int] = {}

            def submit_next() -> None:
                if deadline is not None and time.monotonic() >= deadline:
                    return
                seed = next(pending, None)
                if seed is not None:
                    futures[pool.submit(sweep_one, scenario, seed, mode,
                                        args.random_faults)] = seed

            for _ in range(2 * jobs):
                submit_next()
            while futures:
                future = next(iter(futures))
                seed = futures.pop(future)
                try:
                    results[seed] = future.result()
                except Exception as exc:  # the worker process itself died
                    results[seed] = {
                        "seed": seed, "ok": False, "failed_invariants": [],
                        "internal_error": f"worker process failed: {exc!r}",
                        "virtual_seconds": 0.0, "events": 0,
                    }
                progress.done(results[seed])
                submit_next()
    ran = [seed for seed in seeds if seed in results]
    unrun = len(seeds) - len(ran)
    failed = []
    internal = False
    for seed in ran:
        res = results[seed]
        if res["ok"]:
            continue
        entry: Report = {
            "seed": seed,
            "failed_invariants": res["failed_invariants"],
            "replay": replay_command(args.file, seed, mode, args.random_faults),
        }
        if res["internal_error"]:
            internal = True
            entry["internal_error"] = res["internal_error"].strip().splitlines()[-1]
        failed.append(entry)
    summary: Report = {
        "ok": not failed and not unrun,
        "scenario": scenario.name,
        "mode": mode,
        "random_faults": bool(args.random_faults),
        "seeds": len(ran),
        "seed_range": [low, high],
        "passed": len(ran) - len(failed),
        "failed": failed,
        "jobs": jobs,
        "virtual_seconds": sum(float(results[s]["virtual_seconds"]) for s in ran),
        "events": sum(int(results[s]["events"]) for s in ran),
        "wall_seconds": round(time.monotonic() - started, 3),
    }
    if budget is not None:
        summary["budget_seconds"] = budget
        summary["unrun"] = unrun
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(format_sweep(summary))
    if unrun:
        print(
            f"{PROGRAM} sim sweep: the budget of {budget:g} s ran out after {len(ran)} of "
            f"{len(seeds)} seeds ({unrun} not run)",
            file=sys.stderr,
        )
    if internal:
        return EXIT_INTERNAL_ERROR
    return EXIT_OK if not failed and not unrun else EXIT_INVARIANT_FAILED


class _SweepProgress:
    """A ``sweep: 12/100 seeds done`` line on stderr when a sweep runs for a while."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        self.total = total
        self.stream = stream
        self.count = 0
        self.failed = 0
        self.started = time.monotonic()
        self.next_line = self.started + PROGRESS_AFTER_S

    def done(self, result: Report) -> None:
        self.count += 1
        self.failed += 0 if result["ok"] else 1
        now = time.monotonic()
        if now < self.next_line or self.count == self.total:
            return
        self.next_line = now + PROGRESS_EVERY_S
        print(
            f"sweep: {self.count}/{self.total} seeds done, {self.failed} failed, "
            f"{now - self.started:.1f} s wall",
            file=self.stream,
            flush=True,
        )


# -- output ------------------------------------------------------------------------------


def _print_report(report: Report, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, sort_keys=True))
    else:
        print(format_report(report))


def format_report(report: Report) -> str:
    """The human-readable form of a run report."""
    wall = float(report.get("wall_seconds") or 0.0)
    virtual = float(report.get("virtual_seconds") or 0.0)
    speed = f" ({virtual / wall:.1f}x)" if wall > 0 else ""
    lines = [
        f"scenario {report.get('scenario')}: seed {report.get('seed')}, "
        f"{report.get('nodes')} nodes, mode {report.get('mode')}",
        f"  {virtual:.1f} virtual s in {wall:.2f} wall s{speed}, {report.get('events')} events",
        f"  trace digest {report.get('trace_digest')}",
    ]
    if "matches" in report:
        lines.append(f"  replay matches the trace: {'yes' if report['matches'] else 'NO'}")
        if report.get("divergence"):
            lines.append(f"  diverged: {report['divergence']}")
    invariants: dict[str, Any] = report.get("invariants") or {}
    width = max((len(n) for n in invariants), default=0)
    lines.append("invariants:")
    for name, res in invariants.items():
        mark = "ok  " if res.get("ok") else "FAIL"
        lines.append(f"  {mark}  {name.ljust(width)}  {res.get('detail', '')}")
    metrics: dict[str, Any] = report.get("metrics") or {}
    if metrics:
        width = max(len(n) for n in metrics)
        lines.append("metrics:")
        for name, value in metrics.items():
            shown = f"{value:.6g}" if isinstance(value, float) else str(value)
            lines.append(f"  {name.ljust(width)}  {shown}")
    failed = [n for n, r in invariants.items() if not r.get("ok")]
    if report.get("ok"):
        lines.append("result: ok, every invariant held")
    else:
        what = f"{len(failed)} invariant(s) failed: {', '.join(failed)}" if failed else "failed"
        lines.append(f"result: FAILED, {what}")
    if report.get("replay"):
        lines.append(f"replay: {report['replay']}")
    return "\n".join(lines)


def format_sweep(summary: Report) -> str:
    """The human-readable form of a sweep summary."""
    low, high = summary["seed_range"]
    unrun = summary.get("unrun", 0)
    lines = [
        f"sweep {summary['scenario']}: seeds {low}..{high}, mode {summary['mode']}"
        f"{', random faults' if summary['random_faults'] else ''}, {summary['jobs']} "
        f"process{'es' if summary['jobs'] != 1 else ''}",
        f"  {summary['passed']} passed, {len(summary['failed'])} failed "
        f"in {summary['wall_seconds']:.2f} wall s"
        + (f"; budget ran out: {unrun} seeds not run" if unrun else ""),
    ]
    for entry in summary["failed"]:
        why = ", ".join(entry["failed_invariants"]) or entry.get("internal_error", "")
        lines.append(f"  seed {entry['seed']}: {why}")
        lines.append(f"    replay: {entry['replay']}")
    return "\n".join(lines)


def _load_or_report(path: str, command: str) -> Scenario | None:
    try:
        return load_scenario(path)
    except ScenarioError as exc:
        _usage_error(command, str(exc))
        return None


def _usage_error(command: str, message: str) -> None:
    print(f"{PROGRAM} sim {command}: error: {message}", file=sys.stderr)


def _writable(path: str) -> bool:
    return os.path.isdir(os.path.dirname(os.path.abspath(path)))


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (``["sim", "run", FILE, ...]``) and run it; return the exit status."""
    parser = argparse.ArgumentParser(prog=PROGRAM)
    commands = parser.add_subparsers(dest="command", metavar="{sim}")
    commands.required = True
    register(commands)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        status: int = args.func(args)
    except BrokenPipeError:  # stdout closed early (``| head``): not worth a traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_USAGE
    return status


if __name__ == "__main__":
    sys.exit(main())
