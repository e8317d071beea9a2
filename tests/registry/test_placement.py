"""Rendezvous placement: determinism, minimal disruption, balance, and fixed vectors."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from foundation_p2p.registry.placement import (
    RendezvousPlacement,
    rendezvous_order,
    rendezvous_owner,
    rendezvous_weight,
)

node_ids = st.binary(min_size=16, max_size=16)
member_sets = st.lists(node_ids, min_size=1, max_size=12, unique=True)
names = st.text(min_size=1, max_size=40)


@given(names, member_sets, st.randoms(use_true_random=False))
def test_same_members_in_any_order_give_the_same_placement(
    name: str, members: list[bytes], rnd: object
) -> None:
    shuffled = list(members)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert rendezvous_owner(name, members) == rendezvous_owner(name, shuffled + members[:1])
    assert rendezvous_order(name, members) == rendezvous_order(name, shuffled)


@given(names, member_sets, st.data())
def test_removing_a_non_owner_never_moves_a_name(
    name: str, members: list[bytes], data: st.DataObject
) -> None:
    owner = rendezvous_owner(name, members)
    others = [m for m in members if m != owner]
    if not others:
        return
    gone = data.draw(st.sampled_from(others))
    assert rendezvous_owner(name, [m for m in members if m != gone]) == owner


@given(names, member_sets)
def test_removing_the_owner_moves_the_name_to_the_next_in_order(
    name: str, members: list[bytes]
) -> None:
    order = rendezvous_order(name, members)
    rest = [m for m in members if m != order[0]]
    assert rendezvous_owner(name, rest) == (order[1] if len(order) > 1 else None)
    assert rendezvous_owner(name, members, exclude=[order[0]]) == rendezvous_owner(name, rest)


@given(names, member_sets, node_ids)
def test_adding_a_member_moves_a_name_only_to_the_newcomer(
    name: str, members: list[bytes], newcomer: bytes
) -> None:
    before = rendezvous_owner(name, members)
    after = rendezvous_owner(name, [*members, newcomer])
    assert after in (before, newcomer)


@settings(max_examples=8)
@given(st.lists(node_ids, min_size=4, max_size=8, unique=True))
def test_names_spread_over_members_roughly_evenly(members: list[bytes]) -> None:
    counts = dict.fromkeys(members, 0)
    for i in range(4000):
        counts[rendezvous_owner(f"name-{i}", members)] += 1  # type: ignore[index]
    expected = 4000 / len(members)
    assert min(counts.values()) > 0.75 * expected
    assert max(counts.values()) < 1.25 * expected


def test_weight_is_blake2b_of_length_name_and_node_id_not_python_hash() -> None:
    node = bytes(range(16))
    h = hashlib.blake2b(digest_size=8, person=b"fp2p-hrw")
    h.update((3).to_bytes(4, "big") + b"abc" + node)
    assert rendezvous_weight("abc", node) == int.from_bytes(h.digest(), "big")
    # the length prefix keeps ("ab", "c"+id) and ("abc", id) apart
    assert rendezvous_weight("ab", b"c" + node[:15]) != rendezvous_weight("abc", node[:15])


def test_fixed_vector_every_implementation_must_reproduce() -> None:
    members = [bytes([i]) * 16 for i in range(1, 6)]
    order = [m[0] for m in rendezvous_order("singleton/leader", members)]
    assert order == [5, 4, 1, 2, 3]  # spec/supervisor.md, section "Placement"
    assert rendezvous_weight("singleton/leader", members[0]) == int.from_bytes(
        hashlib.blake2b(
            (16).to_bytes(4, "big") + b"singleton/leader" + members[0],
            digest_size=8, person=b"fp2p-hrw",
        ).digest(), "big")


def test_rendezvous_placement_tracks_member_changes() -> None:
    p = RendezvousPlacement([b"a" * 16])
    assert p.owner("x") == b"a" * 16
    assert p.set_members([b"a" * 16, b"b" * 16]) is True
    assert p.set_members([b"b" * 16, b"a" * 16]) is False
    assert p.order("x")[0] == p.owner("x")
    assert p.owner("x", exclude=p.members) is None
    assert RendezvousPlacement().owner("x") is None
