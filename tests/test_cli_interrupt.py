"""SIGINT on a command without a graceful stop of its own: one line, exit 130, no traceback.

``members`` and ``kv`` wait for a peer that never answers (a bound UDP socket that reads
nothing); the signal is sent once the child has logged its join (``--log-level DEBUG``), so
it lands inside ``trio.run``, where Trio may raise the interrupt in any task and it leaves a
nursery wrapped in an exception group. ``main`` turns either form into exit 130.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli_node import NodeProcess, key_file, processes  # noqa: F401

from foundation_p2p.cli import EXIT_INTERRUPTED, main


@pytest.fixture
def silent_peer() -> Iterator[str]:
    """``127.0.0.1:PORT`` of a bound UDP socket nobody reads: a join there never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("command", [["members"], ["kv", "get", "some/key"]])
def test_sigint_while_waiting_exits_130_with_one_line(
    command: list[str], tmp_path: Path, key_file: Path,  # noqa: F811
    processes: list[NodeProcess], silent_peer: str,  # noqa: F811
) -> None:
    proc = NodeProcess([*command, "--join", silent_peer, "--cluster-key-file", str(key_file),
                        "--timeout", "60", "--log-level", "DEBUG"], tmp_path)
    processes.append(proc)
    proc.expect("stderr", r"DEBUG foundation_p2p\.runtime: join ")
    proc.proc.send_signal(signal.SIGINT)
    assert proc.proc.wait(timeout=10.0) == EXIT_INTERRUPTED
    rest = proc.rest("stderr")
    assert rest[-1] == "foundation-p2p: error: interrupted", rest
    assert not any("Traceback" in line for line in rest), rest


def test_main_turns_an_exception_group_of_interrupts_into_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import foundation_p2p.cli as cli

    def interrupted(args: object) -> int:
        raise BaseExceptionGroup("nursery", [KeyboardInterrupt(),
                                             BaseExceptionGroup("inner", [KeyboardInterrupt()])])

    # main builds its parser at each call, so args.func is the patched command
    monkeypatch.setattr(cli, "cmd_members", interrupted)
    assert main(["members", "--join", "127.0.0.1:1", "--cluster-key-file", "x"]) == 130
    assert capsys.readouterr().err.strip() == "foundation-p2p: error: interrupted"


def test_main_lets_any_other_error_in_a_group_through(monkeypatch: pytest.MonkeyPatch) -> None:
    import foundation_p2p.cli as cli

    def broken(args: object) -> int:
        raise BaseExceptionGroup("nursery", [KeyboardInterrupt(), ValueError("real bug")])

    monkeypatch.setattr(cli, "cmd_members", broken)
    with pytest.raises(BaseExceptionGroup) as info:
        main(["members", "--join", "127.0.0.1:1", "--cluster-key-file", "x"])
    assert info.group_contains(ValueError)
