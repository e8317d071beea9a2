"""Run the fuzz targets of ``fuzz/targets.py`` under atheris (libFuzzer), for a bounded time.

Usage::

    python fuzz/atheris_main.py --target NAME --seconds N   # one target
    python fuzz/atheris_main.py --all --seconds N           # every target, N seconds each
    python fuzz/atheris_main.py --list

Each run starts from a corpus seeded with ``spec/vectors/`` (written to a temporary
directory, so the repository is not touched) and stops after ``--seconds``. A finding
(any exception other than the target's own error) stops the run with a non-zero status;
libFuzzer writes the input to ``--artifacts`` (default: a temporary directory, printed).
``--all`` runs each target in its own process, because libFuzzer can run only once per
process. Exit status: 0 no finding, 1 a finding, 2 usage.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _target_names() -> list[str]:
    """The target names, listed by a child process (importing the targets here would load
    ``foundation_p2p`` before atheris can instrument it)."""
    code = "import sys; sys.path.insert(0, sys.argv[1]); import targets; print(*targets.TARGETS)"
    out = subprocess.run(
        [sys.executable, "-c", code, str(HERE)], capture_output=True, text=True, check=True
    ).stdout
    return out.split()


def _run_one(name: str, seconds: int, artifacts: str, max_len: int, runs: int | None) -> int:
    import atheris

    with atheris.instrument_imports(include=["foundation_p2p"]):
        import targets
    target = targets.TARGETS[name]
    corpus = tempfile.mkdtemp(prefix=f"fuzz-{name}-corpus-")
    for i, seed in enumerate(targets.seeds(name)):
        Path(corpus, f"seed-{i:04d}").write_bytes(seed)

    def one_input(data: bytes) -> None:
        target(data)

    argv = [
        sys.argv[0],
        corpus,
        f"-max_total_time={seconds}",
        f"-max_len={max_len}",
        f"-artifact_prefix={artifacts.rstrip('/')}/{name}-",
        "-print_final_stats=1",
    ]
    if runs is not None:
        argv.append(f"-runs={runs}")
    print(f"fuzz {name}: {seconds}s, corpus {corpus}, artifacts {artifacts}", flush=True)
    atheris.Setup(argv, one_input)
    atheris.Fuzz()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fuzz the wire decoders with atheris.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--target", help="one target name (see --list)")
    which.add_argument("--all", action="store_true", help="every target in turn")
    which.add_argument("--list", action="store_true", help="print the target names")
    parser.add_argument("--seconds", type=int, default=10, help="seconds per target")
    parser.add_argument("--max-len", type=int, default=4096, help="largest input tried")
    parser.add_argument("--runs", type=int, default=None, help="stop after this many inputs")
    parser.add_argument("--artifacts", default=None, help="where crashing inputs are written")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE))
    if args.list:
        print("\n".join(_target_names()))
        return 0
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    artifacts = args.artifacts or tempfile.mkdtemp(prefix="fuzz-artifacts-")
    names = _target_names()
    if args.target:
        if args.target not in names:
            parser.error(f"unknown target {args.target!r}; one of {', '.join(names)}")
        return _run_one(args.target, args.seconds, artifacts, args.max_len, args.runs)

    failed = []
    for name in names:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--target",
            name,
            "--seconds",
            str(args.seconds),
            "--max-len",
            str(args.max_len),
            "--artifacts",
            artifacts,
        ]
        if args.runs is not None:
            cmd += ["--runs", str(args.runs)]
        status = subprocess.run(cmd, check=False).returncode
        print(f"fuzz {name}: {'ok' if status == 0 else f'FINDING (exit {status})'}", flush=True)
        if status != 0:
            failed.append(name)
    if failed:
        print(f"findings in: {', '.join(failed)}; inputs under {artifacts}", flush=True)
        return 1
    print(f"fuzz: {len(names)} targets, no finding", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
