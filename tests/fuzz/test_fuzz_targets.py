"""The fuzz targets of ``fuzz/targets.py``, driven by Hypothesis in the normal suite.

Inputs are mutations of the ``spec/vectors/`` seeds (bit flips, truncation, insertion,
byte replacement, splices of two seeds) and plain random bytes, a bounded number of
examples per target. The targets themselves decide what is allowed: "decoded" with its
round-trip property, or the project's own error. ``make fuzz`` runs the same targets
under atheris for longer.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]


def _load_targets() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "foundation_fuzz_targets", ROOT / "fuzz" / "targets.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


targets = _load_targets()
NAMES = list(targets.TARGETS)
MEMBERSHIP = json.loads((ROOT / "spec" / "vectors" / "membership.json").read_text("utf-8"))



def _load_known() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "foundation_fuzz_known_findings", ROOT / "fuzz" / "known_findings.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


known_findings = _load_known()
"""The open findings (``fuzz/known_findings.py``): their inputs are skipped here, as in
``make fuzz``; ``tests/fuzz/test_regressions.py`` keeps each one visible as a strict xfail."""

SEEDS = {
    name: [
        s
        for s in targets.seeds(name)
        if len(s) <= 2048 and known_findings.known(name, s) is None
    ]
    for name in NAMES
}


@st.composite
def mutated(draw: st.DrawFn, name: str) -> bytes:
    """A seed of ``name``'s corpus changed by one to three random edits, or random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))
    data = bytearray(draw(st.sampled_from(SEEDS[name])))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "replace", "splice", "delete"]))
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            data = data[: draw(st.integers(0, len(data)))]
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "replace" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(
                st.sampled_from(
                    [
                        0x00,
                        0x17,
                        0x18,
                        0x1B,
                        0x40,
                        0x5F,
                        0x7F,
                        0x80,
                        0x9F,
                        0xA0,
                        0xBF,
                        0xC2,
                        0xF5,
                        0xF7,
                        0xFB,
                        0xFF,
                    ]
                )
            )
        elif op == "splice":
            other = draw(st.sampled_from(SEEDS[name]))
            cut = draw(st.integers(0, len(data)))
            data = data[:cut] + other[draw(st.integers(0, len(other))) :]
        elif op == "delete" and data:
            i = draw(st.integers(0, len(data) - 1))
            del data[i : i + draw(st.integers(1, 4))]
    return bytes(data)


SIBLING_TESTED = (
    "transport-endpoint", "registry-message", "registry-state", "registry-core",
    "raft-message", "raft-conf-change", "raft-step", "wal-record", "wal-body", "wal-segment",
    "wal-replay", "kv-apply", "history-jepsen", "history-jsonl", "coordination-command",
    "coordination-machine", "coordination-snapshot", "health-summary", "health-frames",
)
"""Targets also run by their area's tests (tests/transport/test_restart.py,
tests/registry, tests/consensus, tests/history, tests/coordination, tests/health) with
their own seeds and mutations."""


def test_every_decoder_has_a_target() -> None:
    assert set(NAMES) == {
        "cbor",
        "frames",
        "ping",
        "ack",
        "packet",
        "open",
        "keyring",
        "identity",
        "swim-ping",
        "swim-ack",
        "ping-req",
        "nack",
        "announcement",
        "suspect",
        "dead",
        "push-pull",
        "announcement-verify",
        "membership-receive",
        "handshake-receive",
        "noise-read",
        "identity-payload",
        "transport-frames",
        "transport-handshake-packet",
        "transport-one-rtt",
        "transport-open",
        "transport-connection",
        "channel-records",
        "channel-topic-set",
        "transport-endpoint",
        "registry-message",
        "registry-state",
        "registry-core",
        "raft-message",
        "raft-conf-change",
        "raft-step",
        "wal-record",
        "wal-body",
        "wal-segment",
        "wal-replay",
        "kv-apply",
        "history-jepsen",
        "history-jsonl",
        "coordination-command",
        "coordination-machine",
        "coordination-snapshot",
        "health-summary",
        "health-frames",
        "node-config",
        "address",
        "scenario",
        "history-file",
        "beacon-open",
        "dns-answer",
        "mdns-answer",
        "admin-http",
        "messenger-record",
        "raft-envelope",
        "raft-snapshot",
        "consensus-client",
        "raft-bootstrap",
        "data-dir",
    }
    assert all(SEEDS[name] for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_seeds_are_accepted_outcomes(name: str) -> None:
    for seed in SEEDS[name]:
        targets.TARGETS[name](seed)


EXAMPLES = dict.fromkeys(NAMES, 600) | dict.fromkeys(
    ("swim-ping", "swim-ack", "ping-req", "nack", "announcement", "suspect", "dead", "push-pull"),
    250,
) | dict.fromkeys(SIBLING_TESTED, 100) | dict.fromkeys(
    ("node-config", "scenario", "history-file", "dns-answer", "admin-http", "data-dir"), 200
)
"""Examples per target: fewer for the small membership frame decoders (each is one
shape check), for the targets whose own test modules already run them at length
(:data:`SIBLING_TESTED`), and for the targets that read a file, run a resolver or an
event loop per input, so the whole module stays within seconds; ``make fuzz`` runs
them longer."""


@pytest.mark.parametrize("name", NAMES)
def test_mutated_inputs_decode_or_raise_the_projects_error(name: str) -> None:
    target = known_findings.guarded(name, targets.TARGETS[name])

    @settings(
        max_examples=EXAMPLES[name],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(mutated(name))
    def run(data: bytes) -> None:
        target(data)

    run()


def test_a_broken_round_trip_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    # The harness must be able to fail: an encoder that disagrees with its decoder.
    monkeypatch.setattr(targets.cbor, "encode", lambda value: b"different")
    with pytest.raises(AssertionError, match="re-encode"):
        targets.fuzz_cbor(b"\x01")


def test_a_foreign_exception_escapes_the_target(monkeypatch: pytest.MonkeyPatch) -> None:
    def leaky(data: bytes, limits: object = None) -> object:
        raise IndexError("a decoder bug")

    monkeypatch.setattr(targets, "parse_packet", leaky)
    with pytest.raises(IndexError):
        targets.fuzz_packet(b"\x80")


def test_a_state_machine_error_escapes_membership_receive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # membership-receive is only an oracle if an exception in SwimMembership reaches it.
    def broken(self: object, now: object, sender: object, addr: object, frame: object) -> None:
        raise KeyError("a state machine bug")

    monkeypatch.setattr(targets.SwimMembership, "handle_message", broken)
    with pytest.raises(KeyError):
        targets.fuzz_membership_receive(bytes.fromhex(MEMBERSHIP["frame_list"][0]["hex"]))


def test_a_forged_announcement_that_verifies_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    # announcement-verify must flag a verifier that accepts a key/node-id mismatch.
    monkeypatch.setattr(targets.Announcement, "verify", lambda self: True)
    forged = bytes.fromhex(
        next(
            e["hex"]
            for e in MEMBERSHIP["forged_announcement"]
            if e["name"].startswith("node id not derived")
        )
    )
    with pytest.raises(AssertionError):
        targets.fuzz_announcement_verify(forged)
