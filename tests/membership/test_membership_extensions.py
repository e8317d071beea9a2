"""Announcement extensions (spec/membership.md section 3.5): a bounded ``{key: bytes}`` map
in a node's own signed record, set with ``set_extension`` (coalesced), spread like any
record, and reported to listeners."""

from __future__ import annotations

import random
from typing import Any

import pytest
from membership_harness import EPOCH, Net, identity

from foundation_p2p.clock import Now
from foundation_p2p.counters import Counters
from foundation_p2p.errors import LimitError, MalformedError
from foundation_p2p.events import Join, Leave
from foundation_p2p.membership.config import MembershipConfig
from foundation_p2p.membership.events import MemberUpdated
from foundation_p2p.membership.frames import (
    SIGNING_CONTEXT,
    Announcement,
    PushPull,
)
from foundation_p2p.membership.state import Member, MemberState
from foundation_p2p.membership.swim import SwimMembership
from foundation_p2p.wire import cbor
from foundation_p2p.wire.limits import DEFAULT_LIMITS


def at(t: float) -> Now:
    return Now(t, EPOCH + t)


def addr(i: int) -> tuple[str, int]:
    return (f"n{i}", 7946)


def nid(i: int) -> bytes:
    return identity(i).node_id


def sign(i: int, inc: int = 1, extensions: dict[int, bytes] | None = None) -> Announcement:
    return Announcement.sign(
        identity(i),
        incarnation=inc,
        state=MemberState.ALIVE,
        address=addr(i),
        name=f"n{i}",
        metadata=b"",
        observer=False,
        extensions=extensions,
    )


def core(**config: object) -> SwimMembership:
    return SwimMembership(
        MembershipConfig(**config),  # type: ignore[arg-type]
        identity=identity(1),
        address=addr(1),
        name="n1",
        now=at(0),
        rng=random.Random(1),
        counters=Counters(),
        limits=DEFAULT_LIMITS,
        incarnation=1,
    )


def cluster(n: int, **config: Any) -> Net:
    net = Net(**config)
    cores = [net.add(f"n{i}") for i in range(1, n + 1)]
    for c in cores[1:]:
        net.command(c, Join((addr(1),)))
    net.run_until(5.0)
    assert all(len(c.members()) == n for c in cores)
    return net


# -- the record ---------------------------------------------------------------------------


def test_a_record_without_extensions_is_the_nine_element_record() -> None:
    ann = sign(2)
    assert len(cbor.decode(ann.record)) == 9 and ann.extensions == {}


def test_a_record_with_extensions_carries_them_as_a_tenth_element_and_verifies() -> None:
    ann = sign(2, extensions={7: b"b", 1: b"a"})
    fields = cbor.decode(ann.record)
    assert len(fields) == 10 and list(fields[9]) == [1, 7]  # deterministic: keys sorted
    again = Announcement.decode(ann.encode())
    assert again.extensions == {1: b"a", 7: b"b"} and again.verify()


@pytest.mark.parametrize(
    ("extensions", "error", "words"),
    [
        ([1, 2], MalformedError, "must be a map"),
        ({-1: b"x"}, MalformedError, "key -1"),
        ({65536: b"x"}, MalformedError, "key 65536"),
        ({"a": b"x"}, MalformedError, "key 'a'"),
        ({1: "text"}, MalformedError, "value of key 1"),
        ({i: b"" for i in range(17)}, LimitError, "17 entries"),
        ({1: b"x" * 30_000, 2: b"y" * 30_001}, LimitError, "60001 bytes"),
    ],
)
def test_a_misshapen_extensions_element_is_refused_naming_the_problem(
    extensions: object, error: type[Exception], words: str
) -> None:
    i = identity(2)
    record = cbor.encode(
        [i.node_id, i.public_key, 1, 0, "h", 1, "n", b"", False, extensions]
    )
    signature = i.sign(SIGNING_CONTEXT + record)
    with pytest.raises(error, match=words):
        Announcement.parse(record, signature)


def test_an_empty_extensions_map_is_accepted_though_a_sender_omits_it() -> None:
    i = identity(2)
    record = cbor.encode([i.node_id, i.public_key, 1, 0, "h", 1, "n", b"", False, {}])
    ann = Announcement.parse(record, i.sign(SIGNING_CONTEXT + record))
    assert ann.extensions == {} and ann.verify()


def test_extensions_are_signed_a_relay_cannot_change_them() -> None:
    ann = sign(2, extensions={1: b"mine"})
    forged_record = ann.record.replace(b"mine", b"evil")
    forged = Announcement.parse(forged_record, ann.signature)
    assert forged.extensions == {1: b"evil"} and not forged.verify()
    c = core()
    c.handle_message(at(1), nid(2), addr(2), forged)
    assert c.member(nid(2)) is None
    assert c.counters["membership.announcement.bad_signature"] == 1


# -- set_extension ----------------------------------------------------------------------


def test_set_extension_signs_a_new_record_at_incarnation_plus_one() -> None:
    c = core()
    assert c.set_extension(at(1), 1, b"topics")
    assert c.local.incarnation == 2 and dict(c.local.extensions) == {1: b"topics"}
    assert c.counters["membership.extensions.announced"] == 1
    assert c.set_extension(at(2), 1, None)
    assert c.local.incarnation == 3 and dict(c.local.extensions) == {}
    assert len(cbor.decode(c._self.ann.record)) == 9  # back to the plain record


def test_setting_the_same_value_again_announces_nothing() -> None:
    c = core()
    c.set_extension(at(1), 1, b"x")
    assert not c.set_extension(at(5), 1, b"x")
    assert not c.set_extension(at(5), 2, None)
    assert c.local.incarnation == 2


def test_changes_inside_the_interval_are_coalesced_and_the_latest_value_wins() -> None:
    c = core(extension_min_interval_s=0.5)
    assert c.set_extension(at(1.0), 1, b"a")
    assert not c.set_extension(at(1.1), 1, b"b")
    assert not c.set_extension(at(1.2), 1, b"c")
    assert not c.set_extension(at(1.3), 2, b"z")
    assert c.local.incarnation == 2 and dict(c.local.extensions) == {1: b"a"}
    assert c.next_deadline() is not None and c.next_deadline() <= 1.5  # type: ignore[operator]
    c.handle_timer(at(1.49))
    assert c.local.incarnation == 2
    c.handle_timer(at(1.5))
    assert c.local.incarnation == 3 and dict(c.local.extensions) == {1: b"c", 2: b"z"}
    assert c.counters["membership.extensions.coalesced"] == 3
    assert c.counters["membership.extensions.announced"] == 2


def test_a_change_reverted_inside_the_interval_announces_nothing() -> None:
    c = core(extension_min_interval_s=0.5)
    c.set_extension(at(1.0), 1, b"a")
    c.set_extension(at(1.1), 1, b"b")
    c.set_extension(at(1.2), 1, b"a")
    c.handle_timer(at(2.0))
    assert c.local.incarnation == 2


def test_a_refutation_inside_the_interval_carries_the_waiting_change() -> None:
    from foundation_p2p.membership.frames import Suspect

    c = core(extension_min_interval_s=0.5)
    c.handle_message(at(0), nid(2), addr(2), sign(2))
    c.set_extension(at(1.0), 1, b"a")
    c.set_extension(at(1.1), 1, b"b")
    c.handle_message(at(1.2), nid(2), addr(2), Suspect(nid(1), 2, nid(2)))
    assert c.local.incarnation == 3 and dict(c.local.extensions) == {1: b"b"}
    c.handle_timer(at(1.5))
    assert c.local.incarnation == 3  # nothing left to announce


def test_extensions_beyond_max_extension_bytes_are_refused_and_nothing_changes() -> None:
    c = core(max_extension_bytes=10)
    c.set_extension(at(1), 1, b"x" * 6)
    with pytest.raises(LimitError, match="11 bytes of extensions exceeds max_extension_bytes 10"):
        c.set_extension(at(2), 2, b"y" * 5)
    assert dict(c.local.extensions) == {1: b"x" * 6} and c.local.incarnation == 2


def test_an_announcement_that_would_not_fit_one_packet_is_refused() -> None:
    c = core(max_extension_bytes=5000, max_metadata_bytes=1000)
    c.update_metadata(at(1), b"m" * 800)
    with pytest.raises(LimitError, match="would not fit one packet"):
        c.set_extension(at(2), 1, b"e" * 400)
    assert dict(c.local.extensions) == {}


def test_bad_keys_and_values_and_a_left_node_are_refused() -> None:
    c = core()
    with pytest.raises(ValueError, match="extension key"):
        c.set_extension(at(1), 70_000, b"x")
    with pytest.raises(TypeError, match="bytes or None"):
        c.set_extension(at(1), 1, "text")  # type: ignore[arg-type]
    c.handle_command(at(1), Leave())
    with pytest.raises(ValueError, match="has left"):
        c.set_extension(at(2), 1, b"x")


def test_a_peer_record_with_too_many_extension_bytes_is_dropped_and_counted() -> None:
    c = core(max_extension_bytes=8)
    c.handle_message(at(1), nid(2), addr(2), sign(2, extensions={1: b"z" * 9}))
    assert c.member(nid(2)) is None
    assert c.counters["membership.announcement.extensions_too_large"] == 1


# -- spreading and listeners ------------------------------------------------------------


def test_an_extension_spreads_to_every_member_and_listeners_hear_it_once() -> None:
    net = cluster(6)
    heard: dict[str, list[Member]] = {}
    for name in ("n2", "n3", "n4", "n5", "n6"):
        heard[name] = []
        net.node(name).add_listener(heard[name].append)
    a = net.node("n1")
    a.set_extension(net.now(), 1, b"room:1")
    net.run_until(net.t + 3.0)
    for name, got in heard.items():
        assert [dict(m.extensions) for m in got if m.node_id == nid(1)] == [{1: b"room:1"}], name
        assert not net.of_type(name, MemberUpdated)  # not the application's metadata


def test_a_joiner_learns_extensions_from_the_push_pull_table_and_listeners_hear_them() -> None:
    net = cluster(3)
    net.node("n2").set_extension(net.now(), 1, b"t")
    net.run_until(net.t + 2.0)
    joiner = net.add("n4")
    heard: list[Member] = []
    joiner.add_listener(heard.append)
    net.record = True
    net.command(joiner, Join((addr(1),)))
    net.run_until(net.t + 2.0)
    assert any(isinstance(f, PushPull) for _, _, dst, f in net.sent if dst == addr(4))
    assert {m.node_id: dict(m.extensions) for m in heard}[nid(2)] == {1: b"t"}


def test_listeners_hear_a_leave_and_a_restart_without_the_extension() -> None:
    net = cluster(3)
    b = net.node("n2")
    b.set_extension(net.now(), 1, b"t")
    net.run_until(net.t + 2.0)
    heard: list[Member] = []
    net.node("n1").add_listener(heard.append)
    net.crash(b)
    restarted = net.add("n2b", number=2, address=addr(2), incarnation=b.local.incarnation + 50)
    net.command(restarted, Join((addr(1),)))
    net.run_until(net.t + 2.0)
    mine = [m for m in heard if m.node_id == nid(2)]
    assert mine and dict(mine[-1].extensions) == {}
    net.command(restarted, Leave())
    net.run_until(net.t + 2.0)
    assert heard[-1].node_id == nid(2) and heard[-1].state is MemberState.LEFT


# -- a join answer with a lost chunk (found by tests/simulator/test_topics_spread) --


def test_a_join_answer_missing_a_chunk_before_the_last_is_retried_not_taken_as_complete() -> None:
    net = cluster(14)
    joiner = net.add("n15")
    lost: list[int] = []

    def drop(src: tuple[str, int], dst: tuple[str, int], frame: object) -> bool:
        # the first answer's chunk 0 (of 2) to the joiner is lost; its last chunk comes
        if (
            isinstance(frame, PushPull)
            and dst == addr(15)
            and not frame.reply
            and frame.index == 0
            and not lost
        ):
            lost.append(frame.exchange)
            return True
        return False

    net.drop = drop
    net.command(joiner, Join((addr(1),)))
    net.run_until(net.t + 0.5)
    assert lost
    assert not joiner.joined
    assert joiner.counters["membership.join.incomplete"] == 1
    net.run_until(net.t + 3.0)  # the join is retried at its backoff
    assert joiner.joined and joiner.counters["membership.join.answered"] == 1
    assert len(joiner.members()) == 15
