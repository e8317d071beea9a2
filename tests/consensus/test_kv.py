"""The KV state machine: get/put/delete/cas/range, exactly-once client sessions, bounded
session table with LRU eviction, deterministic snapshots, and bad commands as results."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation_p2p.consensus import kv
from foundation_p2p.consensus.kv import KVLimits, KVStore, SessionRef, Status, decode_result
from foundation_p2p.consensus.sessions import SessionLimits
from foundation_p2p.consensus.state_machine import StateMachine, apply_entries
from foundation_p2p.consensus.types import Entry, EntryKind
from foundation_p2p.errors import ConfigError, LimitError, MalformedError, WireError


class Replica:
    """A store with its own log index counter."""

    def __init__(self, limits: KVLimits | None = None) -> None:
        self.store = KVStore(limits)
        self.index = 0

    def run(self, command: bytes) -> kv.KVResult:
        self.index += 1
        return decode_result(self.store.apply(self.index, command))

    def register(self) -> int:
        result = self.run(kv.encode_register())
        assert result.ok
        client_id: int = result.value
        return client_id


def test_put_get_delete_return_previous_values() -> None:
    r = Replica()
    assert r.run(kv.encode_get(b"k")) == kv.KVResult(Status.OK, None)
    assert r.run(kv.encode_put(b"k", b"1")).value is None
    assert r.run(kv.encode_put(b"k", b"2")).value == b"1"
    assert r.run(kv.encode_get(b"k")).value == b"2"
    assert r.run(kv.encode_delete(b"k")).value == b"2"
    assert r.run(kv.encode_delete(b"k")).value is None
    assert r.store.get(b"k") is None
    assert r.store.applied_index == 6


def test_cas_swaps_only_on_a_match_and_reports_the_current_value() -> None:
    r = Replica()
    assert r.run(kv.encode_cas(b"k", None, b"a")).value == [True, b"a"]
    assert r.run(kv.encode_cas(b"k", None, b"b")).value == [False, b"a"]
    assert r.run(kv.encode_cas(b"k", b"x", b"b")).value == [False, b"a"]
    assert r.run(kv.encode_cas(b"k", b"a", b"b")).value == [True, b"b"]
    assert r.run(kv.encode_cas(b"k", b"b", None)).value == [True, None]
    assert r.store.get(b"k") is None
    assert r.run(kv.encode_cas(b"k", b"b", b"c")).value == [False, None]


def test_range_is_bytewise_ordered_end_exclusive_and_limited() -> None:
    r = Replica(KVLimits(max_range_items=3))
    for key in [b"b", b"a", b"c", b"ab", b"\xff", b"d"]:
        r.run(kv.encode_put(key, key.upper()))
    assert r.run(kv.encode_range(b"a", b"c")).value == [
        [[b"a", b"A"], [b"ab", b"AB"], [b"b", b"B"]],
        False,
    ]
    assert r.run(kv.encode_range(b"a", None, 2)).value == [[[b"a", b"A"], [b"ab", b"AB"]], True]
    assert r.run(kv.encode_range(b"c")).value == [
        [[b"c", b"C"], [b"d", b"D"], [b"\xff", b"\xff"]],
        False,
    ]
    assert r.run(kv.encode_range(b"a", None, 0)).value[1] is True, "0 means the cap (3)"
    assert r.run(kv.encode_range(b"e", b"f")).value == [[], False]


def test_a_retried_command_applies_once_and_returns_the_first_result() -> None:
    r = Replica()
    me = r.register()
    other = r.register()
    first = r.run(kv.encode_put(b"k", b"mine", SessionRef(me, 1)))
    r.run(kv.encode_put(b"k", b"theirs", SessionRef(other, 1)))
    retry = r.run(kv.encode_put(b"k", b"mine", SessionRef(me, 1)))
    assert retry == first
    assert r.store.get(b"k") == b"theirs", "the retry must not apply again"
    assert r.store.refused["duplicate"] == 1
    # A retried cas that succeeded the first time reports success again.
    ok = r.run(kv.encode_cas(b"k", b"theirs", b"swapped", SessionRef(me, 2)))
    assert ok.value == [True, b"swapped"]
    assert r.run(kv.encode_cas(b"k", b"theirs", b"swapped", SessionRef(me, 2))) == ok


def test_acknowledged_results_are_forgotten_and_their_duplicates_refused() -> None:
    r = Replica()
    me = r.register()
    r.run(kv.encode_put(b"k", b"1", SessionRef(me, 1)))
    r.run(kv.encode_put(b"k", b"2", SessionRef(me, 2, acked=1)))
    session = r.store.sessions.get(me)
    assert session is not None and sorted(session.results) == [2]
    late = r.run(kv.encode_put(b"k", b"1", SessionRef(me, 1, acked=1)))
    assert late.status == Status.STALE_SEQUENCE
    assert r.store.get(b"k") == b"2"


def test_too_many_unacknowledged_results_refuse_new_commands_without_applying() -> None:
    r = Replica(KVLimits(sessions=SessionLimits(max_results_per_session=2)))
    me = r.register()
    r.run(kv.encode_put(b"a", b"1", SessionRef(me, 1)))
    r.run(kv.encode_put(b"b", b"1", SessionRef(me, 2)))
    refused = r.run(kv.encode_put(b"c", b"1", SessionRef(me, 3)))
    assert refused.status == Status.TOO_MANY_PENDING
    assert r.store.get(b"c") is None
    assert r.run(kv.encode_put(b"c", b"1", SessionRef(me, 3, acked=2))).ok
    assert r.store.get(b"c") == b"1"


def test_the_least_recently_used_session_is_evicted_and_then_expired() -> None:
    r = Replica(KVLimits(sessions=SessionLimits(max_sessions=2)))
    a = r.register()
    b = r.register()
    r.run(kv.encode_put(b"k", b"a1", SessionRef(a, 1)))  # a is now more recent than b
    c = r.register()  # evicts b
    assert r.store.sessions.get(b) is None and r.store.sessions.evictions == 1
    expired = r.run(kv.encode_put(b"k", b"b1", SessionRef(b, 1)))
    assert expired.status == Status.SESSION_EXPIRED
    assert r.store.get(b"k") == b"a1", "an expired session's command is not applied"
    # a's retry is still deduplicated; c works; ids are log indexes, never reused.
    assert r.run(kv.encode_put(b"k", b"a1", SessionRef(a, 1))).value is None
    assert r.run(kv.encode_put(b"k", b"c1", SessionRef(c, 1))).ok
    assert len({a, b, c, r.register()}) == 4


def test_closed_and_unknown_sessions_are_expired() -> None:
    r = Replica()
    me = r.register()
    assert r.run(kv.encode_close(SessionRef(me, 1))).ok
    assert r.run(kv.encode_put(b"k", b"v", SessionRef(me, 2))).status == Status.SESSION_EXPIRED
    assert r.run(kv.encode_put(b"k", b"v", SessionRef(12345, 1))).status == Status.SESSION_EXPIRED
    assert r.store.get(b"k") is None


@pytest.mark.parametrize(
    ("command", "status", "problem"),
    [
        (b"\xff", Status.BAD_COMMAND, "not well-formed"),
        (cbor2.dumps([2, None, [0, b"k"]]), Status.BAD_COMMAND, "unsupported version 2"),
        (cbor2.dumps([1, None, [9, b"k"]]), Status.BAD_COMMAND, "unknown op 9"),
        (cbor2.dumps([1, None, [1, b"k"]]), Status.BAD_COMMAND, "put takes 2 arguments"),
        (cbor2.dumps([1, None, [1, "k", b"v"]]), Status.BAD_COMMAND, "key must be a byte string"),
        (cbor2.dumps([1, [1, 0, 0], [0, b"k"]]), Status.BAD_COMMAND, "seq >= 1"),
        (cbor2.dumps([1, [1, 1, 0], [5]]), Status.BAD_COMMAND, "register takes no session"),
        (cbor2.dumps([1, None, [6]]), Status.BAD_COMMAND, "close needs a session"),
        (cbor2.dumps([1, None, [0, b"k"]]) + b"\x00", Status.BAD_COMMAND, "deterministic"),
        (bytes.fromhex("83 01 f6 82 00 5a 00000001 6b").replace(b" ", b""), Status.BAD_COMMAND, ""),
        (cbor2.dumps([1, None, [1, b"k" * 5000, b"v"]]), Status.LIMIT, "exceeds 4096"),
    ],
)
def test_bad_commands_are_results_not_exceptions(
    command: bytes, status: Status, problem: str
) -> None:
    r = Replica()
    result = r.run(command)
    assert result.status == status
    assert problem in result.value
    assert len(r.store) == 0 and r.store.applied_index == 1


def test_apply_out_of_order_is_a_driver_error() -> None:
    store = KVStore()
    store.apply(5, kv.encode_put(b"k", b"v"))
    with pytest.raises(ConfigError, match="out of order"):
        store.apply(5, kv.encode_put(b"k", b"v"))


def test_query_reads_without_the_log_and_refuses_writes() -> None:
    r = Replica()
    r.run(kv.encode_put(b"k", b"v"))
    assert decode_result(r.store.query(kv.encode_get(b"k"))).value == b"v"
    assert decode_result(r.store.query(kv.encode_range(b""))).value == [[[b"k", b"v"]], False]
    refused = decode_result(r.store.query(kv.encode_put(b"k", b"w")))
    assert refused.status == Status.BAD_COMMAND and r.store.get(b"k") == b"v"
    assert r.store.applied_index == 1


def test_apply_entries_skips_noops_and_conf_changes() -> None:
    store: StateMachine = KVStore()
    results = apply_entries(
        store,
        [
            Entry(1, 1, EntryKind.NOOP),
            Entry(1, 2, EntryKind.NORMAL, kv.encode_put(b"k", b"v")),
            Entry(1, 3, EntryKind.CONF_CHANGE, b"\x00"),
            Entry(1, 4, EntryKind.NORMAL, kv.encode_get(b"k")),
        ],
    )
    assert [i for i, _ in results] == [2, 4]
    assert decode_result(results[1][1]).value == b"v"


def test_snapshot_restore_keeps_data_sessions_and_dedup() -> None:
    r = Replica(KVLimits(sessions=SessionLimits(max_sessions=3)))
    me = r.register()
    for i in range(5):
        r.run(kv.encode_put(b"k%d" % i, b"v%d" % i, SessionRef(me, i + 1, acked=i - 1)))
    data = r.store.snapshot()
    copy = KVStore(KVLimits(sessions=SessionLimits(max_sessions=3)))
    copy.restore(data)
    assert copy.snapshot() == data
    assert copy.items() == r.store.items()
    assert copy.applied_index == r.store.applied_index
    # The restored copy still recognizes the retry of seq 5.
    retry = kv.encode_put(b"k4", b"other", SessionRef(me, 5, acked=3))
    assert copy.apply(r.index + 1, retry) == r.store.apply(r.index + 1, retry)
    assert copy.get(b"k4") == b"v4"


def test_restore_refuses_bad_snapshots_and_keeps_the_state() -> None:
    store = KVStore()
    store.apply(1, kv.encode_put(b"k", b"v"))
    before = store.snapshot()
    bad = [
        b"\x00",
        cbor2.dumps([2, 0, 0, [], []]),
        cbor2.dumps([1, 0, 0, [[b"b", b"1"], [b"a", b"2"]], []]),
        cbor2.dumps([1, 0, 0, [[b"a", b"1"], [b"a", b"2"]], []]),
        cbor2.dumps([1, 0, 0, [], [[1, 1, 5, [[3, b"r"]]]]]),
        cbor2.dumps([1, -1, 0, [], []]),
        cbor2.dumps([1, 0, 0, [], [[1, 1, 0, [[3, b"r"], [2, b"q"]]]]]),
    ]
    for data in bad:
        with pytest.raises(WireError):
            store.restore(data)
        assert store.snapshot() == before
    with pytest.raises(LimitError):
        KVStore(KVLimits(sessions=SessionLimits(max_sessions=1))).restore(
            cbor2.dumps([1, 0, 0, [], [[1, 1, 0, []], [2, 2, 0, []]]])
        )


def test_decode_result_refuses_non_results() -> None:
    with pytest.raises(MalformedError):
        decode_result(cbor2.dumps([9, None]))
    with pytest.raises(MalformedError):
        decode_result(cbor2.dumps([1, None]))
    with pytest.raises(MalformedError):
        decode_result(cbor2.dumps({"a": 1}))


# -- property: replicas that apply the same log agree, with or without a snapshot -------

KEYS = st.sampled_from([b"a", b"b", b"c", b"d"])
VALUES = st.sampled_from([b"1", b"2", b"3"])


@st.composite
def commands(draw: st.DrawFn) -> list[bytes]:
    out: list[bytes] = []
    clients: list[int] = []
    seqs: dict[int, int] = {}
    for index in range(1, draw(st.integers(1, 40)) + 1):
        kind = draw(st.integers(0, 7))
        session = None
        if clients and draw(st.booleans()):
            cid = draw(st.sampled_from(clients))
            retry = draw(st.booleans()) and seqs[cid] > 0
            if not retry:
                seqs[cid] += 1
            session = SessionRef(cid, max(1, seqs[cid]), acked=max(0, seqs[cid] - 3))
        if kind == 0:
            out.append(kv.encode_register())
            clients.append(index)
            seqs[index] = 0
        elif kind == 1:
            out.append(kv.encode_put(draw(KEYS), draw(VALUES), session))
        elif kind == 2:
            out.append(kv.encode_delete(draw(KEYS), session))
        elif kind == 3:
            out.append(
                kv.encode_cas(
                    draw(KEYS), draw(st.none() | VALUES), draw(st.none() | VALUES), session
                )
            )
        elif kind == 4:
            out.append(kv.encode_range(draw(KEYS), draw(st.none() | KEYS), draw(st.integers(0, 3))))
        elif kind == 5:
            out.append(kv.encode_get(draw(KEYS), session))
        elif kind == 6 and session is not None:
            out.append(kv.encode_close(session))
        else:
            out.append(draw(st.binary(max_size=12)))
    return out


@settings(max_examples=150, deadline=None)
@given(commands(), st.data())
def test_replicas_agree_and_a_restored_replica_continues_identically(
    log: list[bytes], data: st.DataObject
) -> None:
    limits = KVLimits(sessions=SessionLimits(max_sessions=3, max_results_per_session=4))
    a, b = KVStore(limits), KVStore(limits)
    cut = data.draw(st.integers(0, len(log)))
    results_a = [a.apply(i + 1, c) for i, c in enumerate(log)]
    for i, c in enumerate(log[:cut]):
        b.apply(i + 1, c)
    c_store = KVStore(limits)
    c_store.restore(b.snapshot())
    results_c = [c_store.apply(i + 1, c) for i, c in enumerate(log) if i >= cut]
    assert results_c == results_a[cut:]
    assert c_store.snapshot() == a.snapshot()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), KEYS, VALUES, st.none() | VALUES), max_size=40))
def test_the_store_matches_a_dict_model(ops: list[tuple[int, bytes, bytes, bytes | None]]) -> None:
    r = Replica()
    model: dict[bytes, bytes] = {}
    for kind, key, value, expected in ops:
        if kind == 0:
            assert r.run(kv.encode_put(key, value)).value == model.get(key)
            model[key] = value
        elif kind == 1:
            assert r.run(kv.encode_delete(key)).value == model.pop(key, None)
        elif kind == 2:
            swapped, _ = r.run(kv.encode_cas(key, expected, value)).value
            assert swapped == (model.get(key) == expected)
            if swapped:
                model[key] = value
        else:
            assert r.run(kv.encode_get(key)).value == model.get(key)
    assert r.store.items() == sorted(model.items())


def test_kept_result_bytes_are_bounded_per_session() -> None:
    limits = KVLimits(sessions=SessionLimits(max_result_bytes_per_session=100))
    r = Replica(limits)
    me = r.register()
    r.run(kv.encode_put(b"k", b"x" * 200))  # no session: nothing kept
    first = r.run(kv.encode_put(b"k", b"y", SessionRef(me, 1)))  # keeps a 200-byte result
    assert first.ok and first.value == b"x" * 200
    refused = r.run(kv.encode_put(b"j", b"z", SessionRef(me, 2)))
    assert refused.status == Status.TOO_MANY_PENDING and r.store.get(b"j") is None
    assert r.run(kv.encode_put(b"j", b"z", SessionRef(me, 2, acked=1))).ok
    session = r.store.sessions.get(me)
    assert session is not None and list(session.results) == [2]
    assert session.result_bytes == len(session.results[2])


def test_a_read_in_a_session_is_not_kept_and_runs_again_when_retried() -> None:
    r = Replica()
    me = r.register()
    r.run(kv.encode_put(b"k", b"1"))
    read = kv.encode_get(b"k", SessionRef(me, 1))
    assert r.run(read).value == b"1"
    session = r.store.sessions.get(me)
    assert session is not None and session.results == {}
    r.run(kv.encode_put(b"k", b"2"))
    assert r.run(read).value == b"2", "a retried read is answered from the current state"
    assert r.run(kv.encode_get(b"k", SessionRef(me, 1, acked=1))).status == Status.STALE_SEQUENCE
