"""``BindingTable``: which node hosts each agent, agreed through the replicated log.

An agent has an id (16 random bytes, no key). When a node starts hosting an agent (a
supervisor start, a move, a restart) it submits a ``Bind`` command
``[8, agent_id, node_id, public_key, epoch, signature]`` signed with its node key over
``commitments.bind_signed_bytes(agent_id, node_id, epoch)``. Every replica applies the
bindings in log order; the latest accepted one wins. Commits and votes name their agent
and the node that signed them: the auction and vote machines take them only if, at their
log position, the agent is bound to that node (:meth:`BindingTable.check`) and the
signature verifies with the bound key.

Checks on a bind, in order (refusal code, counted as
``coordination.binding.refused.<code>``): ``bad_key`` (``node_id`` is not
``node_id_from_public_key(public_key)``), ``bad_signature``, a duplicate (the same agent,
node, key and epoch as the current binding: a retried submission, nothing changes),
``stale`` (``epoch`` not above the current binding's: an old binding replayed, or a race
lost to a newer host), ``full`` (see below). Accepted: ``[0, epoch]``.

Bound: at most ``max_agents`` agents (default 65536). Overflow policy: a bind for an agent
not yet in the table is refused ``full`` once the table holds ``max_agents`` (counted);
rebinding an agent already present is always possible. Bindings are never evicted (an
evicted binding would forget its epoch, and an old binding could then be replayed).

Trust: any member node may bind any agent to itself (the bind is signed and logged, so
who claimed an agent is attributable, but not prevented); no member can sign for an agent
bound to another node.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from foundation_p2p.counters import Counters
from foundation_p2p.crypto.identity import node_id_from_public_key, verify_signature
from foundation_p2p.errors import MalformedError

from .commitments import bind_signed_bytes
from .wire import MAX_U64, Bind, applied, duplicate, refused

log = logging.getLogger("foundation_p2p.coordination")

DEFAULT_MAX_AGENTS = 65536


@dataclass(frozen=True, slots=True)
class Binding:
    """Agent ``agent_id`` is hosted by ``node_id`` (key ``public_key``) since entry
    ``bound_at``, at ``epoch``."""

    agent_id: bytes
    node_id: bytes
    public_key: bytes
    epoch: int
    bound_at: int

    def to_wire(self) -> list[Any]:
        """``[agent_id, node_id, public_key, epoch, bound_at]``."""
        return [self.agent_id, self.node_id, self.public_key, self.epoch, self.bound_at]


class BindingTable:
    """The agent -> node bindings of one replica (see the module docstring).

    Equivalent lower-level calls: :func:`~foundation_p2p.crypto.identity.verify_signature`
    over :func:`~foundation_p2p.coordination.commitments.bind_signed_bytes`.
    """

    def __init__(self, *, max_agents: int = DEFAULT_MAX_AGENTS) -> None:
        self.max_agents = max_agents
        self.bindings: dict[bytes, Binding] = {}
        self.counters = Counters()

    def __len__(self) -> int:
        return len(self.bindings)

    def get(self, agent_id: bytes) -> Binding | None:
        """The current binding of ``agent_id``, or ``None``."""
        return self.bindings.get(agent_id)

    def epoch(self, agent_id: bytes) -> int:
        """The current binding's epoch (0 for an agent never bound): a new bind must use a
        greater one."""
        b = self.bindings.get(agent_id)
        return 0 if b is None else b.epoch

    def check(self, agent_id: bytes, node_id: bytes) -> tuple[Binding | None, str, str]:
        """``(binding, "", "")`` if ``agent_id`` is bound to ``node_id`` now, else
        ``(None, code, message)`` with code ``not_bound`` (no binding) or ``not_host``
        (bound to another node)."""
        b = self.bindings.get(agent_id)
        if b is None:
            return None, "not_bound", f"agent {agent_id.hex()} is bound to no node"
        if b.node_id != node_id:
            return None, "not_host", (f"agent {agent_id.hex()} is bound to node "
                                      f"{b.node_id.hex()}, not {node_id.hex()}")
        return b, "", ""

    def _refuse(self, code: str, message: str) -> bytes:
        self.counters.inc(f"coordination.binding.refused.{code}")
        log.debug("bind refused %s: %s", code, message)
        return refused(code, message)

    def apply(self, index: int, cmd: Bind) -> bytes:
        """Apply the bind at log ``index`` (the checks of the module docstring)."""
        if node_id_from_public_key(cmd.public_key) != cmd.node_id:
            return self._refuse("bad_key", "the node id is not the node id of the public key")
        if not verify_signature(cmd.public_key, cmd.signature,
                                bind_signed_bytes(cmd.agent_id, cmd.node_id, cmd.epoch)):
            return self._refuse("bad_signature", "bind not signed by the node's key for this "
                                "agent and epoch")
        old = self.bindings.get(cmd.agent_id)
        if old is not None:
            if (old.epoch, old.node_id, old.public_key) == (cmd.epoch, cmd.node_id,
                                                            cmd.public_key):
                self.counters.inc("coordination.binding.duplicates")
                return duplicate(cmd.epoch)
            if cmd.epoch <= old.epoch:
                return self._refuse("stale", f"epoch {cmd.epoch} is not above the current "
                                    f"binding's {old.epoch}")
            if old.node_id != cmd.node_id:
                self.counters.inc("coordination.binding.moved")
        elif len(self.bindings) >= self.max_agents:
            return self._refuse("full", f"{self.max_agents} agents already bound")
        self.bindings[cmd.agent_id] = Binding(cmd.agent_id, cmd.node_id, cmd.public_key,
                                              cmd.epoch, index)
        self.counters.inc("coordination.binding.bound")
        log.debug("agent %s bound to node %s at epoch %d (entry %d)", cmd.agent_id.hex(),
                  cmd.node_id.hex(), cmd.epoch, index)
        return applied(cmd.epoch)

    def to_wire(self) -> list[Any]:
        """Every binding's wire form, sorted by agent id (the snapshot's part)."""
        return [self.bindings[k].to_wire() for k in sorted(self.bindings)]

    def restore_wire(self, value: Any) -> None:
        """Replace the table by a snapshot's part; :class:`MalformedError` (and the table
        unchanged) if it is not one. Signatures are not checked again (the replica that
        took the snapshot did); the node id of each key is."""
        if type(value) is not list:
            raise MalformedError("binding snapshot: expected an array")
        if len(value) > self.max_agents:
            raise MalformedError(f"binding snapshot: more than {self.max_agents} agents")
        out: dict[bytes, Binding] = {}
        last = b""
        for item in value:
            if type(item) is not list or len(item) != 5:
                raise MalformedError("binding snapshot: a binding is not an array of 5")
            agent, node, key, epoch, at = item
            if (type(agent) is not bytes or len(agent) != 16 or type(node) is not bytes
                    or len(node) != 16 or type(key) is not bytes or len(key) != 32
                    or type(epoch) is not int or not 1 <= epoch <= MAX_U64
                    or type(at) is not int or at < 1):
                raise MalformedError("binding snapshot: bad binding fields")
            if agent <= last:
                raise MalformedError("binding snapshot: not sorted by distinct agent id")
            if node_id_from_public_key(key) != node:
                raise MalformedError("binding snapshot: a node id is not its key's")
            last = agent
            out[agent] = Binding(agent, node, key, epoch, at)
        self.bindings = out
