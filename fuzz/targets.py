"""Fuzz targets: one per decoder, shared by atheris (``fuzz/atheris_main.py``) and Hypothesis.

Each target takes arbitrary bytes. The only allowed outcomes are "decoded" (and then the
result must satisfy the target's round-trip property) or the project's own error for that
input: :class:`~foundation_p2p.errors.WireError` for wire bytes, ``KeyringError`` for a
keyring file, ``StorageError`` for an identity file. Anything else escaping a target (an
``IndexError``, a ``cbor2`` exception, an ``AssertionError`` from a broken round trip) is
a finding.

Seeds come from ``spec/vectors/*.json``: every ``hex``, ``plaintext`` and (hex) ``frames``
field, and every keyring ``text``.

The membership targets (``spec/membership.md``): one per membership frame decoder, the
announcement verifier (a decoded announcement either verifies, and then its node id is
the hash of its key, or does not; it never raises), and ``membership-receive``, which
feeds every frame of a decoded frame list to a fresh ``SwimMembership`` (the state
machine must take any well-formed frame without raising).
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from foundation_p2p.clock import Now
from foundation_p2p.counters import Counters
from foundation_p2p.crypto.identity import Identity, node_id_from_public_key
from foundation_p2p.crypto.keyring import Keyring
from foundation_p2p.crypto.protection import GossipProtection
from foundation_p2p.errors import KeyringError, StorageError, WireError
from foundation_p2p.membership.config import MembershipConfig
from foundation_p2p.membership.frames import (
    MAX_EXTENSION_KEY,
    MAX_EXTENSIONS,
    Announcement,
    Dead,
    Nack,
    PingReq,
    PushPull,
    Suspect,
    SwimAck,
    SwimPing,
)
from foundation_p2p.membership.swim import SwimMembership
from foundation_p2p.wire import cbor
from foundation_p2p.wire.frames import Ack, Ping, decode_frames, encode_frames
from foundation_p2p.wire.limits import DEFAULT_LIMITS
from foundation_p2p.wire.packet import parse_packet

# The sibling modules hold the targets of later capabilities (handshake, transport, channels).
sys.path.insert(0, str(Path(__file__).resolve().parent))
import targets_channels
import targets_consensus
import targets_coordination
import targets_handshake
import targets_health
import targets_history
import targets_inputs
import targets_registry
import targets_transport
import targets_wal

VECTORS = Path(__file__).resolve().parent.parent / "spec" / "vectors"

# The keyring of spec/vectors/packets.json, so that seeded packets reach the AEAD.
_KEY_A = bytes(range(0x00, 0x20))
_KEY_B = bytes(range(0x20, 0x40))
_KEYRING = Keyring(_KEY_A, [_KEY_B])


def fuzz_cbor(data: bytes) -> None:
    """``cbor.decode``: a decoded item re-encodes to exactly the input."""
    try:
        value = cbor.decode(data)
    except WireError:
        return
    assert cbor.encode(value) == data, "decoded CBOR does not re-encode byte-exact"


def fuzz_frames(data: bytes) -> None:
    """``decode_frames``, liberal and strict: the strict decoder accepts only what the
    liberal one accepts, with the same frames, and such input re-encodes exactly (when
    no frame was skipped)."""
    try:
        decoded = decode_frames(data)
    except WireError:
        decoded = None
    try:
        strict = decode_frames(data, check_canonical=True)
    except WireError:
        strict = None
    if decoded is None:
        assert strict is None, "the strict decoder accepted what the liberal one refused"
        return
    assert len(decoded.frames) + decoded.unknown <= 64
    if strict is not None:
        assert strict.frames == decoded.frames and strict.unknown == decoded.unknown
        if strict.unknown == 0:
            assert encode_frames(strict.frames) == data, "frame list does not re-encode"


def fuzz_ping(data: bytes) -> None:
    """``Ping.decode``: a decoded ping re-encodes to exactly the input."""
    try:
        frame = Ping.decode(data)
    except WireError:
        return
    assert frame.encode() == data


def fuzz_ack(data: bytes) -> None:
    """``Ack.decode``: a decoded ack re-encodes to exactly the input."""
    try:
        frame = Ack.decode(data)
    except WireError:
        return
    assert frame.encode() == data


def fuzz_packet(data: bytes) -> None:
    """``parse_packet``: the associated data is the header re-encoded, then the sealed bytes."""
    try:
        header, aad, sealed = parse_packet(data)
    except WireError:
        return
    assert header.encode_prefix() == aad, "associated data differs from the header"
    assert data.startswith(aad) and data.endswith(sealed)
    assert len(header.sender) == 16 and len(sealed) >= 16


def fuzz_open(data: bytes) -> None:
    """``GossipProtection.open`` then ``decode_frames``, on a fresh receiver."""
    protection = GossipProtection(_KEYRING, bytes(16), 1)
    try:
        header, plaintext = protection.open(data)
    except WireError:
        assert len(protection.replay) == 0, "a refused packet changed the replay state"
        return
    assert protection.replay.epoch_of(header.sender) == header.boot_epoch
    try:
        protection.open(data)
    except WireError as exc:
        assert exc.code == "replay", exc.code
    else:
        raise AssertionError("the same packet opened twice")
    try:
        decode_frames(plaintext)
    except WireError:
        return


def fuzz_keyring(data: bytes) -> None:
    """``Keyring.from_text`` on the input as UTF-8 text (invalid sequences replaced)."""
    text = data.decode("utf-8", "replace")
    try:
        ring = Keyring.from_text(text, source="fuzz.keyring")
    except KeyringError as exc:
        assert str(exc).startswith("fuzz.keyring"), "a keyring error must name the file"
        return
    again = Keyring.from_text(ring.to_text())
    assert (again.primary, again.accepted) == (ring.primary, ring.accepted)


def fuzz_identity(data: bytes) -> None:
    """``Identity.from_bytes``: a loaded identity stores back to exactly the input."""
    try:
        identity = Identity.from_bytes(data, source="fuzz.identity")
    except StorageError:
        return
    assert identity.to_bytes() == data


def _frame_target(cls: Any) -> Callable[[bytes], None]:
    """A target for ``cls.decode``: a decoded frame re-encodes to exactly the input."""

    def target(data: bytes) -> None:
        try:
            frame = cls.decode(data)
        except WireError:
            return
        assert frame.encode() == data, f"{cls.__name__} does not re-encode byte-exact"
        # The same frame in a frame list decodes to the same frame.
        assert decode_frames(encode_frames([frame])).frames == [frame]

    target.__name__ = f"fuzz_{cls.__name__}"
    target.__doc__ = f"``{cls.__name__}.decode``: a decoded frame re-encodes to the input."
    return target


fuzz_swim_ping = _frame_target(SwimPing)
fuzz_swim_ack = _frame_target(SwimAck)
fuzz_ping_req = _frame_target(PingReq)
fuzz_nack = _frame_target(Nack)
fuzz_announcement = _frame_target(Announcement)
fuzz_suspect = _frame_target(Suspect)
fuzz_dead = _frame_target(Dead)
fuzz_push_pull = _frame_target(PushPull)


def fuzz_announcement_verify(data: bytes) -> None:
    """``Announcement.decode`` then ``verify``: a bool, never an exception; a record that
    verifies has the node id of its key, and every push-pull entry is checked the same."""
    try:
        frame = Announcement.decode(data)
    except WireError:
        try:
            chunk = PushPull.decode(data)
        except WireError:
            return
        announcements = [e.announcement for e in chunk.entries]
    else:
        announcements = [frame]
    for ann in announcements:
        ok = ann.verify()
        assert type(ok) is bool
        if ok:
            assert node_id_from_public_key(ann.public_key) == ann.node_id
        # the extensions element is bounded in entries, keys and value types
        ext = ann.extensions
        assert type(ext) is dict and len(ext) <= MAX_EXTENSIONS
        assert all(type(k) is int and 0 <= k <= MAX_EXTENSION_KEY for k in ext)
        assert all(type(v) is bytes for v in ext.values())


_RECEIVER = Identity(bytes(range(0xA0, 0xC0)))


def _known_announcements() -> list[Announcement]:
    """The valid signed announcements of ``spec/vectors/membership.json`` (alive ones)."""
    path = VECTORS / "membership.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for entry in data.get("signing", []):
        ann = Announcement.decode(bytes.fromhex(entry["hex"]))
        if ann.verify() and ann.state.name == "ALIVE":
            out.append(ann)
    return out


_KNOWN = _known_announcements()


def fuzz_membership_receive(data: bytes) -> None:
    """``decode_frames`` (of the input, or of the input as a one-frame list) then
    ``SwimMembership.handle_message`` for each membership frame, on a fresh node that
    already knows the members of the signing vectors, then 30 s of its timers: only
    ``WireError`` from decoding, nothing from the state machine, and every
    ``handle_timer`` leaves no timer due at the time it handled."""
    try:
        decoded = decode_frames(data)
    except WireError:
        try:
            decoded = decode_frames(b"\x81" + data)
        except WireError:
            return
    counters = Counters()
    now = Now(100.0, 1_790_000_000.0)
    node = SwimMembership(
        MembershipConfig(),
        identity=_RECEIVER,
        address=("127.0.0.1", 7946),
        name="fuzz",
        now=now,
        rng=random.Random(0),
        counters=counters,
        limits=DEFAULT_LIMITS,
    )
    for ann in _KNOWN:
        node.handle_message(now, ann.node_id, ann.address, ann)
    heard: list[Any] = []
    node.add_listener(heard.append)  # called only for other members' new records
    sender = bytes(range(16))
    for frame in decoded.frames:
        if frame.TYPE in node.frame_types:
            node.handle_message(now, sender, ("127.0.0.2", 7946), frame)
    # Then 30 s of its timers: each handle_timer runs every timer due, so the next
    # deadline is always later than the time just handled (else a driver spins).
    t = now.mono
    for _ in range(5_000):
        deadline = node.next_deadline()
        if deadline is None or deadline > now.mono + 30.0:
            break
        t = max(t, deadline)
        node.handle_timer(Now(t, now.wall))
        after = node.next_deadline()
        assert after is None or after > t, f"a timer due at {after} is still due after {t}"
    else:
        raise AssertionError("more than 5000 timer firings in 30 s")
    node.take_outgoing()
    node.take_events()
    assert all(m.node_id != _RECEIVER.node_id for m in heard)
    assert node.local.node_id == _RECEIVER.node_id
    assert len(node.members()) >= 1


TARGETS: dict[str, Callable[[bytes], None]] = {
    "cbor": fuzz_cbor,
    "frames": fuzz_frames,
    "ping": fuzz_ping,
    "ack": fuzz_ack,
    "packet": fuzz_packet,
    "open": fuzz_open,
    "keyring": fuzz_keyring,
    "identity": fuzz_identity,
    "swim-ping": fuzz_swim_ping,
    "swim-ack": fuzz_swim_ack,
    "ping-req": fuzz_ping_req,
    "nack": fuzz_nack,
    "announcement": fuzz_announcement,
    "suspect": fuzz_suspect,
    "dead": fuzz_dead,
    "push-pull": fuzz_push_pull,
    "announcement-verify": fuzz_announcement_verify,
    "membership-receive": fuzz_membership_receive,
    "handshake-receive": targets_handshake.fuzz_handshake_receive,
    "noise-read": targets_handshake.fuzz_noise_read,
    "identity-payload": targets_handshake.fuzz_identity_payload,
    "transport-frames": targets_transport.fuzz_transport_frames,
    "transport-handshake-packet": targets_transport.fuzz_transport_handshake_packet,
    "transport-one-rtt": targets_transport.fuzz_transport_one_rtt,
    "transport-open": targets_transport.fuzz_transport_open,
    "transport-connection": targets_transport.fuzz_transport_connection,
    "channel-records": targets_channels.fuzz_channel_records,
    "channel-topic-set": targets_channels.fuzz_channel_topic_set,
    "transport-endpoint": targets_transport.fuzz_transport_endpoint,
    **targets_registry.REGISTRY_TARGETS,
    **targets_consensus.CONSENSUS_TARGETS,
    **targets_wal.WAL_TARGETS,
    **targets_history.HISTORY_TARGETS,
    **targets_coordination.COORDINATION_TARGETS,
    **targets_health.HEALTH_TARGETS,
    **targets_inputs.INPUT_TARGETS,
}
"""Target name -> function (``--target NAME``)."""


def _walk(value: Any, key: str) -> Iterator[Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key:
                yield v
            yield from _walk(v, key)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v, key)


def seeds(target: str, *, max_bytes: int = 70_000) -> list[bytes]:
    """Seed inputs for ``target`` from ``spec/vectors/*.json``, in a stable order.

    The handshake, channel, registry, consensus, history, coordination and health targets
    start from their own modules' seeds (whole handshake messages and payloads, whole record
    streams, small histories), then every vector as for the others.
    """
    out: list[bytes] = []
    if target in targets_handshake.TARGETS:
        out.extend(targets_handshake.seeds(target))
    elif target in targets_channels.CHANNEL_TARGETS:
        out.extend(targets_channels.channel_seeds(target))
    elif target in targets_registry.REGISTRY_TARGETS:
        out.extend(targets_registry.registry_seeds(target))
    elif target in targets_consensus.CONSENSUS_TARGETS:
        out.extend(targets_consensus.consensus_seeds(target))
    elif target in targets_history.HISTORY_TARGETS:
        out.extend(targets_history.history_seeds(target))
    elif target in targets_coordination.COORDINATION_TARGETS:
        out.extend(targets_coordination.coordination_seeds(target))
    elif target in targets_health.HEALTH_TARGETS:
        out.extend(targets_health.health_seeds(target))
    elif target in targets_inputs.INPUT_TARGETS:
        out.extend(targets_inputs.input_seeds(target))
        if target != "beacon-open":  # text inputs: the binary vectors add nothing
            return list(dict.fromkeys(b for b in out if len(b) <= max_bytes)) or [b""]
    for path in sorted(VECTORS.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if target == "keyring":
            out.extend(t.encode() for t in _walk(data, "text") if isinstance(t, str))
        else:
            for h in _walk(data, "hex"):
                if isinstance(h, str):
                    out.append(bytes.fromhex(h))
            for key in ("plaintext", "frames"):  # "frames": membership transition steps
                for h in _walk(data, key):
                    if isinstance(h, str):
                        out.append(bytes.fromhex(h))
    unique = list(dict.fromkeys(b for b in out if len(b) <= max_bytes))
    return unique or [b""]
