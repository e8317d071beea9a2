"""``foundation-p2p health`` ends on SIGINT/SIGTERM by leaving, never by a stray
``KeyboardInterrupt``.

CI once saw ``health --watch`` exit 1 on SIGINT: the interrupt was raised inside a task of
``open_node``'s nursery and reached ``cmd_health`` wrapped in an exception group, which its
``except KeyboardInterrupt`` did not catch. ``observe_health`` now reads the signals through
``trio.open_signal_receiver``. These tests send the real signal to this process while the
receiver is installed (checked, not slept for) and require a clean return.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import pytest
import trio

from foundation_p2p.config import NodeConfig
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.health.cli import Observation, observe_health
from foundation_p2p.runtime import open_node

KEYRING = Keyring(bytes(range(1, 33)))
FAST = {"profile": "local", "probe_interval_s": 0.1, "probe_timeout_s": 0.05}


def member(name: str) -> NodeConfig:
    return NodeConfig(name=name, bind=("127.0.0.1", 0),
                      extra={"membership": dict(FAST), "health": {"interval_s": 0.2}})


def observer(join: tuple[str, int]) -> NodeConfig:
    return NodeConfig(name="observer", bind=("127.0.0.1", 0), join=(join,),
                      extra={"membership": {**FAST, "observer": True},
                             "health": {"interval_s": 0.2}})


async def wait_for_receiver(before: Any) -> None:
    """Until Trio's signal receiver owns SIGINT and SIGTERM (installed together):
    SIGINT's handler is no longer ``before``, the one the test started with."""
    with trio.fail_after(10):
        while signal.getsignal(signal.SIGINT) is before:
            await trio.sleep(0.01)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_a_signal_during_watch_ends_the_observation_with_its_last_report(
    signum: int, capsys: pytest.CaptureFixture[str]
) -> None:
    before = signal.getsignal(signal.SIGINT)
    async with open_node(member("a"), keyring=KEYRING) as a, trio.open_nursery() as nursery:
        out: list[Observation] = []

        async def observe() -> None:
            out.append(await observe_health(observer(a.address), KEYRING, 10.0, True, True))

        nursery.start_soon(observe)
        printed = ""
        with trio.fail_after(20):
            while printed.count("\n") < 2:  # two reports: the watch loop is running
                printed += capsys.readouterr().out
                await trio.sleep(0.05)
        await wait_for_receiver(before)
        os.kill(os.getpid(), signum)
        with trio.fail_after(10):
            while not out:
                await trio.sleep(0.01)
    seen = out[0]
    assert seen.interrupted
    assert seen.report is not None
    assert seen.report.node("a") is not None
    first = json.loads(printed.splitlines()[0])
    assert [n["name"] for n in first["nodes"]] == ["a"]
    # the receiver is gone again: the process's own handlers are back
    assert signal.getsignal(signal.SIGINT) is before


async def test_sigint_while_waiting_for_the_join_returns_at_once_without_a_report() -> None:
    # a bound UDP socket that never answers: the observer waits for its join
    before = signal.getsignal(signal.SIGINT)
    silent = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await silent.bind(("127.0.0.1", 0))
    with silent:
        out: list[Observation] = []
        async with trio.open_nursery() as nursery:

            async def observe() -> None:
                out.append(await observe_health(observer(silent.getsockname()), KEYRING,
                                                60.0, False, True))

            nursery.start_soon(observe)
            await wait_for_receiver(before)
            start = trio.current_time()
            os.kill(os.getpid(), signal.SIGINT)
            with trio.fail_after(10):
                while not out:
                    await trio.sleep(0.01)
            # it did not sit out the 60 s join timeout
            assert trio.current_time() - start < 10
    assert out[0].interrupted and out[0].report is None
