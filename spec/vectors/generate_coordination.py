"""Regenerate ``spec/vectors/coordination.json`` deterministically.

Usage: ``python spec/vectors/generate_coordination.py [--check]``. With ``--check`` nothing
is written; the script exits 1 if the committed file differs from what it would write.

Like the other generators, this script never calls the project's code: commitments come
from ``hashlib`` by the layout of ``spec/coordination.md`` section 2, signatures from the
``cryptography`` Ed25519 primitive, commands from ``cbor2``, and the auction and vote
outcomes from the rules of sections 5 and 6 written out again here.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from generate import FORMAT, dumps, node_id, public_key, render, to_json

HERE = Path(__file__).resolve().parent
FILE = "coordination.json"

COMMIT_LABEL = b"foundation-p2p auction commitment v1\x00"
COMMIT_SIGN_LABEL = b"foundation-p2p auction commit signature v2\x00"
VOTE_SIGN_LABEL = b"foundation-p2p vote signature v2\x00"
BIND_SIGN_LABEL = b"foundation-p2p agent binding v1\x00"
MOVE_SIGN_LABEL = b"foundation-p2p negotiation move v1\x00"

SEEDS = [hashlib.sha256(b"coordination vectors seed %d" % i).digest() for i in range(8)]
PUBS = [public_key(s) for s in SEEDS]
NODES = [node_id(p) for p in PUBS]
# agent i is hosted by node i unless a vector moves it; agent ids are any 16 bytes
AGENTS = [hashlib.sha256(b"coordination vectors agent %d" % i).digest()[:16] for i in range(8)]
A1 = bytes.fromhex("a1") * 16
A2 = bytes.fromhex("a2") * 16
A3 = bytes.fromhex("a3") * 16
A4 = bytes.fromhex("a4") * 16
P1 = bytes.fromhex("b1") * 16
P2 = bytes.fromhex("b2") * 16
N1 = bytes.fromhex("c1") * 16
N2 = bytes.fromhex("c2") * 16


def nonce(i: int, n: int = 16) -> bytes:
    return hashlib.shake_256(b"coordination vectors nonce %d" % i).digest(n)


def preimage(auction: bytes, bidder: bytes, amount: int, nonce_: bytes) -> bytes:
    return (COMMIT_LABEL + auction + bidder + amount.to_bytes(8, "big")
            + bytes([len(nonce_)]) + nonce_)


def commitment(auction: bytes, bidder: bytes, amount: int, nonce_: bytes) -> bytes:
    return hashlib.sha256(preimage(auction, bidder, amount, nonce_)).digest()


def sign(i: int, data: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(SEEDS[i]).sign(data)


def bind(agent: int, node: int, epoch: int = 1) -> list[Any]:
    """Node ``node`` binds agent ``agent`` to itself at ``epoch``."""
    sig = sign(node, BIND_SIGN_LABEL + AGENTS[agent] + NODES[node] + epoch.to_bytes(8, "big"))
    return [8, AGENTS[agent], NODES[node], PUBS[node], epoch, sig]


def commit(auction: bytes, i: int, amount: int, n: int, host: int | None = None) -> list[Any]:
    """Agent ``i``'s commit, signed by node ``host`` (default: node ``i``)."""
    h = i if host is None else host
    c = commitment(auction, AGENTS[i], amount, nonce(n))
    sig = sign(h, COMMIT_SIGN_LABEL + auction + AGENTS[i] + NODES[h] + c)
    return [2, auction, AGENTS[i], NODES[h], c, sig]


def reveal(auction: bytes, i: int, amount: int, n: int) -> list[Any]:
    return [4, auction, AGENTS[i], amount, nonce(n)]


def vote(pid: bytes, i: int, choice: int, host: int | None = None) -> list[Any]:
    """Agent ``i``'s vote, signed by node ``host`` (default: node ``i``)."""
    h = i if host is None else host
    sig = sign(h, VOTE_SIGN_LABEL + pid + AGENTS[i] + NODES[h] + bytes([choice]))
    return [17, pid, AGENTS[i], NODES[h], choice, sig]


def move_bytes(nid: bytes, party: int, host: int, rnd: int, kind: int, value: int) -> bytes:
    return (MOVE_SIGN_LABEL + nid + AGENTS[party] + NODES[host] + rnd.to_bytes(2, "big")
            + bytes([kind]) + value.to_bytes(8, "big"))


def move(nid: bytes, party: int, rnd: int, kind: int, value: int = 0,
         host: int | None = None) -> list[Any]:
    """Agent ``party``'s negotiation move, signed by node ``host`` (default: ``party``)."""
    h = party if host is None else host
    sig = sign(h, move_bytes(nid, party, h, rnd, kind, value))
    return [10, nid, AGENTS[party], NODES[h], rnd, kind, value, sig]


def eligible(idx: list[int], weights: list[int]) -> list[Any]:
    return sorted([[AGENTS[i], w] for i, w in zip(idx, weights, strict=True)])


def binds(idx: list[int]) -> list[tuple[Any, Any]]:
    """Agents ``idx`` bound to their nodes (epoch 1): log entries expected applied."""
    return [(bind(i, i), 0) for i in idx]


# -- section 2 ----------------------------------------------------------------------------


def commitment_vectors() -> list[dict[str, Any]]:
    out = []
    for name, auction, i, amount, nb in (
        ("zero amount, 16-byte nonce", A1, 0, 0, 16),
        ("amount 1000, 32-byte nonce", A1, 1, 1000, 32),
        ("largest amount, 64-byte nonce", A2, 2, (1 << 64) - 1, 64),
        ("same bid, another auction", A2, 1, 1000, 32),
    ):
        n = nonce(100 + nb, nb)
        out.append({
            "name": name, "auction_id": auction.hex(), "bidder": AGENTS[i].hex(),
            "amount": amount, "nonce": n.hex(), "preimage": preimage(auction, AGENTS[i],
                                                                     amount, n).hex(),
            "commitment": commitment(auction, AGENTS[i], amount, n).hex(),
        })
    return out


def signature_vectors() -> list[dict[str, Any]]:
    c = commitment(A1, AGENTS[0], 42, nonce(1))
    commit_bytes = COMMIT_SIGN_LABEL + A1 + AGENTS[0] + NODES[0] + c
    vote_bytes = VOTE_SIGN_LABEL + P1 + AGENTS[1] + NODES[1] + bytes([1])
    bind_bytes = BIND_SIGN_LABEL + AGENTS[2] + NODES[2] + (7).to_bytes(8, "big")
    move_signed = move_bytes(N1, 3, 3, 2, 0, 70)
    return [
        {"name": name, "seed": SEEDS[i].hex(), "public_key": PUBS[i].hex(),
         "node_id": NODES[i].hex(), "agent_id": AGENTS[i].hex(), "signed": data.hex(),
         "signature": sign(i, data).hex()}
        for name, i, data in (("commit", 0, commit_bytes), ("vote yes", 1, vote_bytes),
                              ("bind epoch 7", 2, bind_bytes),
                              ("move: offer 70 in round 2", 3, move_signed))
    ]


# -- section 3 ----------------------------------------------------------------------------


def command_vectors() -> list[dict[str, Any]]:
    cases: list[tuple[str, str, Any]] = [
        ("open second-price", "open", [1, A1, ["cpu", "gpu-hours"], 2, 20, 1]),
        ("open multi-unit", "open", [1, A3, [], 3, 0, 2]),
        ("open for invited bidders", "open", [1, A4, ["cpu"], 2, 0, 1,
                                              sorted([AGENTS[0], AGENTS[1]])]),
        ("commit", "commit", commit(A1, 0, 50, 1)),
        ("close-commit", "close-commit", [3, A1]),
        ("reveal", "reveal", reveal(A1, 0, 50, 1)),
        ("finalize", "finalize", [5, A1]),
        ("propose majority", "propose", [16, P1, "deploy", [1, 0], eligible([0, 1, 2],
                                                                           [1, 1, 1]), 10]),
        ("propose quorum(2)", "propose", [16, P2, "q", [4, 2], eligible([0, 1, 2], [1, 1, 1]),
                                          3]),
        ("vote", "vote", vote(P1, 1, 1)),
        ("close-vote", "close-vote", [18, P1]),
        ("bind", "bind", bind(2, 2, 7)),
        ("negotiate", "negotiate", [9, N1, "cpu-hours", AGENTS[0], AGENTS[1], 4, 50]),
        ("move: offer", "move", move(N1, 0, 0, 0, 100)),
        ("move: accept", "move", move(N1, 1, 1, 1)),
        ("close-negotiation", "close-negotiation", [11, N1]),
    ]
    return [{"name": n, "cddl": rule, "value": to_json(v), "hex": dumps(v).hex()}
            for n, rule, v in cases]


def invalid_vectors() -> list[dict[str, Any]]:
    good_commit = commit(A1, 0, 50, 1)
    cases: list[tuple[str, bytes, str]] = [
        ("not an array", dumps(5), "malformed"),
        ("empty array", dumps([]), "malformed"),
        ("unknown command", dumps([9, A1]), "malformed"),
        ("short auction id", dumps([3, A1[:15]]), "malformed"),
        ("rule 4", dumps([1, A1, [], 4, 0, 1]), "limit"),
        ("two units second-price", dumps([1, A1, [], 2, 0, 2]), "malformed"),
        ("too many resources", dumps([1, A1, ["r"] * 65, 1, 0, 1]), "limit"),
        ("15-byte nonce", dumps([4, A1, AGENTS[0], 1, bytes(15)]), "malformed"),
        ("negative amount", dumps([4, A1, AGENTS[0], -1, bytes(16)]), "malformed"),
        ("short signature", dumps([*good_commit[:5], good_commit[5][:63]]), "malformed"),
        ("choice 3", dumps([17, P1, AGENTS[0], NODES[0], 3, bytes(64)]), "limit"),
        ("vote without node id (version 1)", dumps([17, P1, AGENTS[0], 1, bytes(64)]),
         "malformed"),
        ("commit with a public key (version 1)",
         dumps([2, A1, AGENTS[0], PUBS[0], bytes(32), bytes(64)]), "malformed"),
        ("eligible voter with a key (version 1)",
         dumps([16, P1, "s", [1, 0], [[AGENTS[0], PUBS[0], 1]], 1]), "malformed"),
        ("bind epoch 0", dumps([*bind(0, 0)[:4], 0, bind(0, 0)[5]]), "limit"),
        ("bind short key", dumps([*bind(0, 0)[:3], PUBS[0][:31], *bind(0, 0)[4:]]),
         "malformed"),
        ("unsorted eligible", dumps([16, P1, "s", [1, 0], eligible([0, 1], [1, 1])[::-1], 1]),
         "malformed"),
        ("quorum n for majority", dumps([16, P1, "s", [1, 1], eligible([0], [1]), 1]),
         "malformed"),
        ("quorum above eligible", dumps([16, P1, "s", [4, 2], eligible([0], [1]), 1]),
         "malformed"),
        ("empty bidders", dumps([1, A1, [], 2, 0, 1, []]), "malformed"),
        ("unsorted bidders", dumps([1, A1, [], 2, 0, 1, sorted(AGENTS[:2])[::-1]]),
         "malformed"),
        ("negotiate: one party twice", dumps([9, N1, "s", AGENTS[0], AGENTS[0], 4, 5]),
         "malformed"),
        ("negotiate: round limit 0", dumps([9, N1, "s", AGENTS[0], AGENTS[1], 0, 5]), "limit"),
        ("move: accept with a value", dumps([*move(N1, 1, 1, 1)[:6], 5, bytes(64)]),
         "malformed"),
        ("move: kind 3", dumps([*move(N1, 1, 1, 1)[:5], 3, 0, bytes(64)]), "limit"),
        ("truncated array", bytes.fromhex("8203"), "malformed"),
        ("not deterministic CBOR", bytes.fromhex("821803") + dumps(A1), "malformed"),
        ("trailing bytes", dumps([3, A1]) + b"\x00", "malformed"),
    ]
    return [{"name": n, "hex": h.hex(), "error": e} for n, h, e in cases]


# -- sections 5 and 6: outcomes -------------------------------------------------------------


def auction_outcome(auction: bytes, rule: int, reserve: int, units: int,
                    commits: dict[int, tuple[int, int]], revealed: dict[int, bool],
                    late: list[int]) -> list[Any]:
    """commits: bidder -> (amount, nonce no.); revealed: bidder -> reveal matched."""
    valid = [(amount, commitment(auction, AGENTS[i], amount, nonce(n)), AGENTS[i])
             for i, (amount, n) in commits.items() if revealed.get(i)]
    eligible_ = sorted((v for v in valid if v[0] >= reserve), key=lambda v: (-v[0], v[1]))
    k = units if rule == 3 else 1
    winners = eligible_[:k]
    if not winners:
        price = None
    elif rule == 1:
        price = winners[0][0]
    else:
        price = max(eligible_[k][0], reserve) if len(eligible_) > k else reserve
    return [
        auction, rule, [[w[2], w[0]] for w in winners], price,
        sorted(AGENTS[i] for i in commits if i not in revealed),
        sorted(AGENTS[i] for i in commits if revealed.get(i) is False),
        sorted(v[2] for v in valid if v[0] < reserve),
        sorted(AGENTS[i] for i in late),
    ]


def auction_vectors() -> list[dict[str, Any]]:
    out = []
    # second-price, reserve 20: a tie at 50 (the lower commitment wins, pays 50), an
    # unrevealed 99, a bid below the reserve, a wrong reveal, a late commit, a retry.
    bids = {0: (50, 1), 1: (50, 2), 2: (30, 3), 3: (99, 4), 4: (10, 5), 5: (60, 6)}
    log: list[tuple[Any, Any]] = [*binds(list(range(7))), ([1, A1, ["cpu"], 2, 20, 1], 0)]
    log += [(commit(A1, i, a, n), 0) for i, (a, n) in bids.items()]
    log += [(commit(A1, 0, 50, 1), 1), ([3, A1], 0), (commit(A1, 6, 80, 7), "late")]
    log += [(reveal(A1, i, a, n), 0) for i, (a, n) in bids.items() if i in (0, 1, 2, 4)]
    log += [(reveal(A1, 5, 61, 6), "mismatch")]
    result = auction_outcome(A1, 2, 20, 1, bids, {0: True, 1: True, 2: True, 4: True,
                                                  5: False}, [6])
    out.append(("second-price: tie, reserve, unrevealed, mismatched, late", log, result))
    # first-price, one bidder
    one = {0: (7, 8)}
    log = [*binds([0]), ([1, A2, ["disk"], 1, 0, 1], 0), (commit(A2, 0, 7, 8), 0),
           ([3, A2], 0), (reveal(A2, 0, 7, 8), 0)]
    out.append(("first-price: a single bidder", log,
                auction_outcome(A2, 1, 0, 1, one, {0: True}, [])))
    # multi-unit, 2 units, 4 bids: the two highest pay the third
    multi = {0: (40, 9), 1: (10, 10), 2: (30, 11), 3: (20, 12)}
    log = [*binds(list(multi)), ([1, A3, [], 3, 5, 2], 0)]
    log += [(commit(A3, i, a, n), 0) for i, (a, n) in multi.items()]
    log += [([3, A3], 0)] + [(reveal(A3, i, a, n), 0) for i, (a, n) in multi.items()]
    out.append(("multi-unit: k=2, uniform third price", log,
                auction_outcome(A3, 3, 5, 2, multi, dict.fromkeys(multi, True), [])))
    # no bidders
    log = [([1, A4, [], 2, 3, 1], 0), ([3, A4], 0)]
    out.append(("second-price: no bidders", log, auction_outcome(A4, 2, 3, 1, {}, {}, [])))
    # invited bidders only: an outsider's commit is refused, then nothing else changes
    invited = {0: (15, 13), 1: (25, 14)}
    log = [*binds([0, 1, 2]), ([1, A2, ["cpu"], 2, 0, 1, sorted([AGENTS[0], AGENTS[1]])], 0),
           (commit(A2, 2, 90, 15), "not_invited")]
    log += [(commit(A2, i, a, n), 0) for i, (a, n) in invited.items()] + [([3, A2], 0)]
    log += [(reveal(A2, i, a, n), 0) for i, (a, n) in invited.items()]
    out.append(("second-price: invited bidders only", log,
                auction_outcome(A2, 2, 0, 1, invited, dict.fromkeys(invited, True), [])))
    # bindings (section 2.1): a node signing for an agent bound to another node, an unbound
    # agent, a move (the old host's commit refused once the new binding is in the log),
    # a replayed old binding, a bind naming another node's id, a forged bind
    moved = {0: (40, 16), 1: (45, 17)}
    forged = bind(3, 3)
    log = [*binds([0, 1]), ([1, A1, ["cpu"], 1, 0, 1], 0),
           (commit(A1, 0, 99, 18, host=2), "not_host"),
           (commit(A1, 3, 99, 19), "not_bound"),
           (commit(A1, 0, *moved[0]), 0),
           (bind(1, 2, 2), 0),
           (commit(A1, 1, 46, 20, host=1), "not_host"),
           (commit(A1, 1, *moved[1], host=2), 0),
           (commit(A1, 1, *moved[1], host=2), 1),
           (bind(1, 1, 1), "stale"),
           ([*bind(3, 3)[:2], NODES[4], *bind(3, 3)[3:]], "bad_key"),
           ([*forged[:5], bytes([forged[5][0] ^ 1]) + forged[5][1:]], "bad_signature"),
           (bind(1, 2, 2), 1),
           ([3, A1], 0)]
    log += [(reveal(A1, i, a, n), 0) for i, (a, n) in moved.items()]
    out.append(("first-price: bids only from the node each agent is bound to", log,
                auction_outcome(A1, 1, 0, 1, moved, dict.fromkeys(moved, True), [])))
    vectors = []
    for name, entries, res in out:
        auction = res[0]
        entries = [*entries, ([5, auction], 0)]
        vectors.append({
            "name": name,
            "log": [dumps(c).hex() for c, _ in entries],
            "expect": [s for _, s in entries],
            "result": to_json(res),
            "result_hex": dumps([0, res]).hex(),
        })
    return vectors


def vote_vectors() -> list[dict[str, Any]]:
    """Each case is written for a log whose propose is entry 1 and whose votes follow; the
    binds of agents 0..3 (4 entries) are then inserted after the propose, whose deadline
    grows by 4, and every outcome index by 4 (the propose stays first: its id is read
    from entry 1)."""
    e3 = eligible([0, 1, 2], [1, 1, 1])
    ew = eligible([0, 1, 2], [5, 1, 1])
    heavy = 0
    cases = [
        # majority of 3: two yes decide at the third entry (index 3)
        ("majority accepted", [([16, P1, "m", [1, 0], e3, 10], 0), (vote(P1, 0, 1), 0),
                               (vote(P1, 1, 1), 0), (vote(P1, 2, 0), "closed")],
         [P1, 0, 2, 0, 0, 2, 3]),
        # unanimous: the first no rejects
        ("unanimous rejected", [([16, P1, "u", [3, 0], e3, 10], 0), (vote(P1, 1, 1), 0),
                                (vote(P1, 2, 2), 0)],
         [P1, 1, 1, 0, 1, 2, 3]),
        # weighted: the voter of weight 5 out of 7 decides alone
        ("weighted accepted", [([16, P1, "w", [5, 0], ew, 10], 0), (vote(P1, heavy, 1), 0)],
         [P1, 0, 5, 0, 0, 1, 2]),
        # deadline 2: votes at 2 and 3 count, the vote at 4 is late; one yes of 3: timeout
        ("majority timeout", [([16, P1, "t", [1, 0], e3, 2], 0), (vote(P1, 0, 1), 0),
                              (vote(P1, 1, 2), 0), (vote(P1, 2, 1), "late")],
         [P1, 2, 1, 0, 1, 2, 3]),
        # quorum(2) with one vote by close-vote
        ("quorum not met", [([16, P2, "q", [4, 2], e3, 9], 0), (vote(P2, 0, 1), 0),
                            ([18, P2], 0)],
         [P2, 3, 1, 0, 0, 1, 3]),
        # votes signed by a node the voter is not bound to: refused; agent 2 moves to
        # node 3, whose vote for it then counts; agent 3 is not eligible
        ("majority: votes only from the voter's node", [
            ([16, P1, "b", [1, 0], e3, 20], 0), (vote(P1, 0, 1, host=1), "not_host"),
            (vote(P1, 0, 1), 0), (bind(2, 3, 2), 0), (vote(P1, 2, 1, host=2), "not_host"),
            (vote(P1, 2, 1, host=3), 0), (vote(P1, 1, 0), "closed")],
         [P1, 0, 2, 0, 0, 2, 6]),
    ]
    pre = binds([0, 1, 2, 3])
    out = []
    for n, entries, o in cases:
        propose = list(entries[0][0])
        propose[5] += len(pre)
        entries = [(propose, entries[0][1]), *pre, *entries[1:]]
        outcome = [*o[:6], o[6] + len(pre)]
        out.append({"name": n, "log": [dumps(c).hex() for c, _ in entries],
                    "expect": [s for _, s in entries], "outcome": to_json(outcome)})
    return out


def negotiation_vectors() -> list[dict[str, Any]]:
    """Outcomes written out by the rules of section 8 (entry indexes from 1)."""
    pre = binds([0, 1])  # entries 1, 2
    cases: list[tuple[str, list[tuple[Any, Any]], list[Any]]] = [
        # open at 3; offers at 4, 6 (a retry at 5), 7; accept at 8: value 80 offered by 0
        ("agreed after three offers", [
            ([9, N1, "cpu", AGENTS[0], AGENTS[1], 8, 50], 0),
            (move(N1, 0, 0, 0, 100), 0), (move(N1, 0, 0, 0, 100), 1),
            (move(N1, 1, 1, 0, 60), 0), (move(N1, 0, 2, 0, 80), 0), (move(N1, 1, 3, 1), 0),
            (move(N1, 0, 3, 0, 1), "closed")],
         [N1, "agreed", 80, AGENTS[0], AGENTS[1], 3, 8]),
        # refusals change nothing; agent 1 moves to node 2; a reject ends it at entry 10
        ("only the bound node moves for a party; rejected", [
            ([9, N2, "gpu", AGENTS[0], AGENTS[1], 8, 50], 0),
            (move(N2, 0, 0, 0, 9, host=1), "not_host"), (move(N2, 2, 0, 0, 9), "not_party"),
            (move(N2, 0, 1, 0, 9), "wrong_round"), (move(N2, 0, 0, 0, 9), 0),
            (bind(1, 2, 2), 0), (move(N2, 1, 1, 2), "not_host"),
            (move(N2, 1, 1, 2, host=2), 0)],
         [N2, "rejected", None, None, None, 1, 10]),
        # deadline 2: open at 3, the move at 5 counts, the entry at 6 ends it at 5
        ("the deadline passes in log order", [
            ([9, N1, "cpu", AGENTS[0], AGENTS[1], 8, 2], 0), (move(N1, 0, 0, 0, 5), 0),
            (move(N1, 1, 1, 0, 4), 0), ([11, N1], 1), (move(N1, 0, 2, 1), "late")],
         [N1, "deadline", None, None, None, 2, 5]),
    ]
    out = []
    for name, entries, outcome in cases:
        entries = [*pre, *entries]
        out.append({"name": name, "log": [dumps(c).hex() for c, _ in entries],
                    "expect": [st for _, st in entries], "outcome": to_json(outcome)})
    return out


# -- spec/consensus.md, the composite state machine ---------------------------------------

KV_PUT = [1, None, [1, b"k", b"v"]]  # spec/consensus-kv.md: put k = v, no session


def envelope_vectors() -> list[dict[str, Any]]:
    inner = dumps([1, A1, ["cpu"], 2, 20, 1])
    cases = [("coordination open", 1, inner), ("machine 255, empty command", 255, b"")]
    out: list[dict[str, Any]] = [
        {"name": n, "cddl": "machine-envelope", "machine_id": m, "command": c.hex(),
         "hex": dumps([m, c]).hex()} for n, m, c in cases]
    out.append({"name": "a KV command is no envelope", "cddl": None, "machine_id": 0,
                "command": dumps(KV_PUT).hex(), "hex": dumps(KV_PUT).hex()})
    return out


def composite_snapshot_vectors() -> list[dict[str, Any]]:
    """KV put at index 1, an enveloped open at 2: the snapshot of the three machines."""
    opened = [1, A1, ["cpu"], 2, 20, 1]
    kv = dumps([1, 2, 0, [[b"k", b"v"]], []])
    auctions = dumps([1, 2, 0, [[opened, 2, 0, [], [], [], [], 0, 0]]])
    votes = dumps([1, 0, 0, [], []])
    coordination = dumps([2, 2, auctions, votes, [], [0, [], []]])
    snap = [2, kv, [[1, coordination]]]
    return [{
        "name": "kv put, then an auction opened",
        "log": [dumps(KV_PUT).hex(), dumps([1, dumps(opened)]).hex()],
        "cddl": "composite-snapshot",
        "hex": dumps(snap).hex(),
        "bare_kv_before_open": dumps([1, 1, 0, [[b"k", b"v"]], []]).hex(),
    }]


def build() -> dict[str, Any]:
    return {
        "format": FORMAT,
        "about": (
            "Vectors for spec/coordination.md. 'commitment': SHA-256 of 'preimage' "
            "(section 2). 'signature': Ed25519 of 'signed' by 'seed' (node id of the key). "
            "'command': valid commands with their 'cddl' rule of spec/coordination.cddl; "
            "decoding 'hex' gives 'value', re-encoding gives 'hex'. 'invalid_command': "
            "decoding 'hex' raises 'error'. 'auction' and 'vote': apply 'log' at indexes "
            "1, 2, ... to a fresh machine (agents are bound by the bind entries of the log "
            "itself); 'expect' is each result's status (0 applied, "
            "1 duplicate) or refusal code; the last result of an auction log is "
            "'result_hex', and 'outcome' is the proposal's (or the negotiation's) final "
            "outcome. "
            "'envelope' (spec/consensus.md, the composite state machine): 'hex' is the "
            "Raft command carrying 'command' to 'machine_id' (0: a KV command, routed as "
            "is). 'composite_snapshot': apply 'log' at 1, 2 to a fresh MachineSet; its "
            "snapshot is 'hex'; after the first entry alone it is 'bare_kv_before_open'."
        ),
        "commitment": commitment_vectors(),
        "signature": signature_vectors(),
        "command": command_vectors(),
        "invalid_command": invalid_vectors(),
        "auction": auction_vectors(),
        "vote": vote_vectors(),
        "negotiation": negotiation_vectors(),
        "envelope": envelope_vectors(),
        "composite_snapshot": composite_snapshot_vectors(),
    }


def main(argv: list[str]) -> int:
    text = render(build())
    path = HERE / FILE
    if "--check" in argv:
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            print(f"{FILE} is stale: run python spec/vectors/generate_coordination.py")
            return 1
        return 0
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
