"""The consensus client protocol: a node outside the group asks a member (sans-I/O).

Specified in ``spec/consensus-client.md``. Messages ride the messenger's Raft service
(service 2) beside the Raft messages:

- request ``[1, request_id, op, payload]``: ``op`` 0 proposes ``payload`` (a state
  machine command, for the KV store ``kv.encode_put(...)`` etc., with the client's
  session if it has one), ``op`` 1 reads (``payload`` a read-only query such as
  ``kv.encode_get(key)``, answered through ReadIndex);
- response ``[2, request_id, status, value, leader]``: ``status`` one of
  :data:`STATUS_CODES`, ``value`` the state machine's result (``ok`` only, else
  ``null``), ``leader`` the member's leader hint or ``null``.

:class:`ConsensusClient` is the observer's side: it sends each request to a member
(the leader hint it last heard, else the first of the members it was given), retries a
definite refusal (``no_leader``, ``not_member``) on another member while time remains,
and reports a request that got no answer within ``timeout_s`` as ``indeterminate``
(a proposal may still apply: the caller must treat it as unknown; a KV session makes
its retry safe). Pending requests are bounded (``max_pending``): past it a request
fails at once with ``overloaded``.

A request can be lost on its way without the member refusing it: the messenger drops
what a connection held when it ends or is replaced by a newer one (both sides dial at a
member's restart, and one connection is closed) and then calls ``on_peer_lost``. Reads
pending at that member are then sent again, to it if it is still reachable, else to the
next member not tried (a read changes nothing; if both copies are answered the second
answer is a stale response). Proposals are not sent again (the first copy may still
apply: a second would apply twice); they keep waiting for an answer or their timeout.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from foundation_p2p.addresses import NodeId, short_id
from foundation_p2p.clock import Now
from foundation_p2p.counters import Counters
from foundation_p2p.errors import ConfigError, MalformedError

log = logging.getLogger("foundation_p2p.consensus")

SERVICE_RAFT = 2
KIND_REQUEST = 1
KIND_RESPONSE = 2
OP_PROPOSE = 0
OP_READ = 1
STATUS_CODES = {
    "ok": 0,
    "indeterminate": 1,
    "no_leader": 2,
    "dropped": 3,
    "overloaded": 4,
    "not_member": 5,
}
"""Response status names and their numbers on the wire."""
_STATUS_NAMES = {v: k for k, v in STATUS_CODES.items()}
MAX_REQUEST_ID = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class ClientRequest:
    """A decoded request."""

    request_id: int
    op: str
    """``propose`` or ``read``."""
    payload: bytes


@dataclass(frozen=True, slots=True)
class ClientResponse:
    """A decoded response."""

    request_id: int
    status: str
    value: bytes | None
    leader: NodeId | None


def encode_request(request_id: int, op: str, payload: bytes) -> list[Any]:
    """The messenger message of a request."""
    if op not in ("propose", "read"):
        raise ConfigError(f"client request: unknown op {op!r}")
    return [KIND_REQUEST, request_id, OP_PROPOSE if op == "propose" else OP_READ, payload]


def decode_request(message: Any) -> ClientRequest:
    """Decode a request; ``MalformedError`` naming the problem."""
    if type(message) is not list or len(message) != 4 or message[0] != KIND_REQUEST:
        raise MalformedError("client request: expected [1, request_id, op, payload]")
    _, rid, op, payload = message
    if type(rid) is not int or not 0 <= rid <= MAX_REQUEST_ID:
        raise MalformedError("client request: request_id must be a uint64")
    if op not in (OP_PROPOSE, OP_READ) or type(op) is not int:
        raise MalformedError(f"client request: unknown op {op!r}")
    if type(payload) is not bytes:
        raise MalformedError("client request: payload must be a byte string")
    return ClientRequest(rid, "propose" if op == OP_PROPOSE else "read", payload)


def encode_response(
    request_id: int, status: str, value: bytes | None, leader: NodeId | None
) -> list[Any]:
    """The messenger message of a response."""
    return [KIND_RESPONSE, request_id, STATUS_CODES[status], value, leader]


def decode_response(message: Any) -> ClientResponse:
    """Decode a response; ``MalformedError`` naming the problem."""
    if type(message) is not list or len(message) != 5 or message[0] != KIND_RESPONSE:
        raise MalformedError("client response: expected [2, request_id, status, value, leader]")
    _, rid, status, value, leader = message
    if type(rid) is not int or not 0 <= rid <= MAX_REQUEST_ID:
        raise MalformedError("client response: request_id must be a uint64")
    if type(status) is not int or status not in _STATUS_NAMES:
        raise MalformedError(f"client response: unknown status {status!r}")
    if value is not None and type(value) is not bytes:
        raise MalformedError("client response: value must be a byte string or null")
    if leader is not None and (type(leader) is not bytes or len(leader) != 16):
        raise MalformedError("client response: leader must be a 16-byte node id or null")
    return ClientResponse(rid, _STATUS_NAMES[status], value, leader)


@dataclass(frozen=True, slots=True)
class ClientOutcome:
    """How a client request ended (``status`` as in :data:`STATUS_CODES`)."""

    request_id: int
    status: str
    value: bytes | None = None


@dataclass(slots=True)
class _Pending:
    op: str
    payload: bytes
    deadline: float
    target: NodeId
    tried: set[NodeId]


class ConsensusClient:
    """An observer's requests to the group over the messenger; see the module docstring."""

    def __init__(
        self,
        node_id: NodeId,
        *,
        messenger: Any,
        members: Sequence[NodeId],
        counters: Counters,
        timeout_s: float = 5.0,
        max_pending: int = 1024,
    ) -> None:
        if not members:
            raise ConfigError("consensus client: needs at least one member to ask")
        if not timeout_s > 0:
            raise ConfigError("consensus client: timeout_s must be positive")
        self.node_id = node_id
        self.messenger = messenger
        self.members = list(members)
        self.counters = counters
        self.timeout_s = timeout_s
        self.max_pending = max_pending
        self.leader: NodeId | None = None
        self._next_id = 0
        self._pending: dict[int, _Pending] = {}
        self._outcomes: deque[ClientOutcome] = deque()
        self._now: Now | None = None
        """The latest ``now`` a call brought (``on_peer_lost`` comes without one)."""
        messenger.register(SERVICE_RAFT, self._on_message, self._on_peer_lost)

    def set_members(self, members: Sequence[NodeId]) -> None:
        """Replace the members to ask (from membership)."""
        if members:
            self.members = list(members)

    def request(self, now: Now, op: str, payload: bytes) -> int:
        """Send a ``propose`` or ``read``; its request id (outcome via :meth:`take_outcomes`)."""
        self._now = now
        self._next_id += 1
        rid = self._next_id
        if len(self._pending) >= self.max_pending:
            self.counters.inc("raft.client.overloaded")
            self._outcomes.append(ClientOutcome(rid, "overloaded"))
            return rid
        target = self.leader if self.leader is not None else self.members[0]
        p = _Pending(op, payload, now.mono + self.timeout_s, target, {target})
        self._pending[rid] = p
        self._send(now, rid, p)
        return rid

    def _send(self, now: Now, rid: int, p: _Pending) -> bool:
        self.counters.inc("raft.client.sent")
        msg = encode_request(rid, p.op, p.payload)
        if not self.messenger.send(now, p.target, SERVICE_RAFT, msg):
            self.counters.inc("raft.client.send_failed")
            return False
        return True

    def _on_peer_lost(self, peer: NodeId) -> None:
        """What was sent to ``peer`` may be lost (see the module docstring): send its
        pending reads again, to ``peer`` or, if that send is refused, to the next member
        not tried yet; proposals stay as they are."""
        now = self._now
        if now is None:
            return
        for rid, p in list(self._pending.items()):
            if p.target != peer or p.op != "read":
                continue
            self.counters.inc("raft.client.read_resent")
            log.debug("consensus client: read %d to %s resent (on_peer_lost)", rid,
                      short_id(peer))
            while not self._send(now, rid, p):
                nxt = next((m for m in self.members if m not in p.tried), None)
                if nxt is None:
                    break  # it waits for its timeout
                p.target = nxt
                p.tried.add(nxt)

    def handle_timer(self, now: Now) -> None:
        """Expire requests without an answer (``indeterminate``)."""
        self._now = now
        for rid, p in list(self._pending.items()):
            if now.mono >= p.deadline:
                del self._pending[rid]
                status = "indeterminate" if p.op == "propose" else "dropped"
                self._outcomes.append(ClientOutcome(rid, status))
                if self.leader is not None and self.leader == p.target:
                    # a hinted leader that never answered may be gone: the next request
                    # goes to the members in turn again, not to it for ever
                    self.leader = None
                    self.counters.inc("raft.client.leader_forgotten")
                if p.target in self.members and len(self.members) > 1:
                    # and the silent member goes last
                    self.members.remove(p.target)
                    self.members.append(p.target)

    def next_deadline(self) -> float | None:
        """The earliest request deadline."""
        return min((p.deadline for p in self._pending.values()), default=None)

    def take_outcomes(self) -> list[ClientOutcome]:
        """Outcomes since the last call."""
        out = list(self._outcomes)
        self._outcomes.clear()
        return out

    def _on_message(self, now: Now, peer: NodeId, message: Any) -> None:
        self._now = now
        resp = decode_response(message)
        p = self._pending.get(resp.request_id)
        if p is None or peer != p.target:
            self.counters.inc("raft.client.stale_response")
            return
        if resp.leader is not None:
            self.leader = resp.leader
        if resp.status in ("no_leader", "not_member"):
            nxt = resp.leader if resp.leader is not None and resp.leader not in p.tried else None
            if nxt is None:
                nxt = next((m for m in self.members if m not in p.tried), None)
            if nxt is not None:
                p.target = nxt
                p.tried.add(nxt)
                self._send(now, resp.request_id, p)
                return
        del self._pending[resp.request_id]
        self._outcomes.append(ClientOutcome(resp.request_id, resp.status, resp.value))
