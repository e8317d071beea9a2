"""The messenger's hand-read ``[kind, bytes]`` records decode exactly as the general path."""

from __future__ import annotations

import random
from typing import Any

import cbor2
import pytest

from foundation_p2p import messaging
from foundation_p2p.errors import WireError
from foundation_p2p.wire.limits import WireLimits

LIMITS = WireLimits(max_depth=16, max_collection_items=4 << 20, max_text_bytes=4 << 20,
                    max_bytes_bytes=4 << 20)


def _general(data: bytes, limits: WireLimits, monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as m:
        m.setattr(messaging, "_kind_and_bytes", lambda d, lim: None)
        try:
            return messaging.decode_message(data, limits)
        except WireError as exc:
            return type(exc)


def test_kind_and_bytes_records_decode_as_the_general_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(5)
    small = WireLimits(max_bytes_bytes=300, max_packet_bytes=2000)
    samples = []
    for size in (0, 1, 23, 24, 255, 256, 1999, 65535, 65536, 70000):
        for kind in (0, 1, 3, 23, 24, 300):
            samples.append(cbor2.dumps([kind, rng.randbytes(size)], canonical=True))
    fast_taken = 0
    for data in samples:
        variants = [data, data + b"\x00", data[:-1], b"\x98\x02" + data[1:],
                    data[:1] + b"\x18" + data[1:2] + data[2:]]
        head = data[2] if data[1] < 24 else data[3]
        if head in (0x59, 0x5A):  # the same length in a longer head
            variants.append(data[:2] + b"\x5b" + bytes(8 - (2 if head == 0x59 else 4))
                            + data[3:])
        for v in variants:
            for limits in (LIMITS, small):
                fast = messaging._kind_and_bytes(v, limits)
                general = _general(v, limits, monkeypatch)
                if fast is not None:
                    fast_taken += 1
                    assert fast == general and type(fast[1]) is bytes
                try:
                    got = messaging.decode_message(v, limits)
                except WireError as exc:
                    got = type(exc)
                assert got == general
    assert fast_taken >= 40
