"""The registry, the supervisor and the seed's ``processes`` facade of a running node.

Three thin layers over ``core.registry`` (:class:`~foundation_p2p.registry.subsystem.
RegistrySubsystem`), each public on :class:`~foundation_p2p.runtime.node.Node`:

- ``node.registry`` (:class:`Registry`): ``register``/``put``/``unregister``/``lookup``/
  ``select``/``count`` over the CRDT registry (``core.registry.core``, a
  :class:`~foundation_p2p.registry.core.RegistryCore`), and ``watch()``, an async
  iterator of the registry's changes with a bounded buffer.
- ``node.supervisor`` (:class:`Supervisor`): ``define_service(name, async_fn)`` (the table
  of service names every node defines), ``start_singleton``/``start_replicated``/
  ``start_child``/``terminate``/``which_children`` over the supervisor core
  (``core.supervisor``), and the driver of its actions: a ``StartService`` runs
  ``await async_fn(node, args, handoff)`` in the node's nursery (through the node's
  :class:`~foundation_p2p.runtime.services.ServiceRunner`); a ``StopService`` stops it.
- ``node.processes`` (:class:`Processes`): the seed's facade, ``start_singleton``,
  ``lookup_singleton``, ``start_replicated``.

Services and handoff. A service is ``async def fn(node, args, handoff)``: ``args`` is the
spec's argument, ``handoff`` the state its predecessor handed over (None if there was
none). When the supervisor stops an instance without handoff (``NameConflict``,
``terminate``, lost quorum...) it is cancelled at once. When it stops it *with* handoff
(placement moved, or its node is shutting down), the service is first asked to stop:
``await node.supervisor.stop_requested()`` inside the service returns the reason; the
service then **returns its state**, which goes to its successor (``handoff_state``).
A service that does not return within ``handoff_timeout_s`` (default 2 s) is cancelled
and hands nothing over. Exits are reported to the supervisor core
(``service_started``/``service_exited`` with ``normal``, ``crashed`` or ``stopped``), which
restarts or moves the child by its policy. A ``StartService`` for a service name this
node never defined is reported ``crashed`` at once (and logged): the supervisor's
restart intensity then moves the child to another node.

Logging: ``foundation_p2p.runtime`` at debug level names the core calls each method makes.
"""

from __future__ import annotations

import contextvars
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import trio

from foundation_p2p.addresses import NodeId, short_id
from foundation_p2p.clock import Now
from foundation_p2p.errors import ConfigError
from foundation_p2p.registry.actions import (
    Action,
    ChildInfo,
    StartService,
    StopReason,
    StopService,
)
from foundation_p2p.registry.core import RegistryCore
from foundation_p2p.registry.crdt import Entry
from foundation_p2p.registry.events import Change
from foundation_p2p.registry.supervisor import ChildSpec, SupervisorCore

if TYPE_CHECKING:
    from foundation_p2p.runtime.node import Node

log = logging.getLogger("foundation_p2p.runtime")

ServiceFn = Callable[[Any, Any, Any], Awaitable[Any]]
"""``async def fn(node, args, handoff) -> handoff state or None``."""

DEFAULT_WATCH_BUFFER = 1024
"""Changes buffered per watch before the oldest are dropped."""
DEFAULT_HANDOFF_TIMEOUT_S = 2.0
"""How long a service asked to hand off may take to return its state."""


def _now() -> Now:
    from foundation_p2p.runtime.node import machine_now

    return machine_now()


# -- the registry -------------------------------------------------------------------------


class RegistryWatch:
    """Changes of the registry as they happen (``async with node.registry.watch() as w:
    async for change in w``). Only changes whose name starts with ``prefix``.

    Bounded: at most ``max_buffered`` changes wait; beyond, the oldest is dropped and
    counted (:attr:`dropped`, and ``registry.watch.dropped_subscriber`` in the node's
    counters). The iteration ends when the node closes.
    """

    def __init__(self, registry: Registry, prefix: str, max_buffered: int) -> None:
        if type(max_buffered) is not int or max_buffered <= 0:
            raise ConfigError(
                f"watch: max_buffered must be a positive integer, got {max_buffered!r}"
            )
        self._registry = registry
        self.prefix = prefix
        self.max_buffered = max_buffered
        self._queue: deque[Change] = deque()
        self._arrived = trio.Event()
        self._ended = False
        self.dropped = 0
        """Changes dropped because the buffer was full."""

    async def __aenter__(self) -> RegistryWatch:
        self._registry._watches.append(self)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._end()

    def _offer(self, change: Change) -> None:
        name = getattr(change, "name", "")
        if not name.startswith(self.prefix):
            return
        if len(self._queue) >= self.max_buffered:
            self._queue.popleft()
            self.dropped += 1
            self._registry._node.counters.inc("registry.watch.dropped_subscriber")
        self._queue.append(change)
        self._arrived.set()

    def _end(self) -> None:
        self._ended = True
        self._arrived.set()
        watches = self._registry._watches
        if self in watches:
            watches.remove(self)

    async def receive(self) -> Change:
        """The next change (waits); ``trio.EndOfChannel`` once the watch or node ended."""
        while not self._queue:
            if self._ended:
                raise trio.EndOfChannel
            self._arrived = trio.Event()
            await self._arrived.wait()
        return self._queue.popleft()

    def __aiter__(self) -> RegistryWatch:
        return self

    async def __anext__(self) -> Change:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None


class Registry:
    """The node's replicated name registry (``node.registry``); see the module docstring.

    ``core`` is the :class:`~foundation_p2p.registry.core.RegistryCore` itself.
    """

    def __init__(self, node: Node) -> None:
        self._node = node
        self._watches: list[RegistryWatch] = []

    @property
    def core(self) -> RegistryCore:
        """The CRDT registry core (``node.core.registry.core``), public on purpose."""
        return self._node.core.registry.core

    def register(
        self, name: str, value: Any, metadata: dict[str, Any] | None = None, *,
        owner: NodeId | Literal["self"] | None = "self",
    ) -> Entry:
        """Register ``name``; a lookup on this node sees it at once, other nodes within a
        sync interval. Raises ``AlreadyRegistered`` if a visible entry holds the name and
        ``ConfigError`` for an invalid name or value. Equivalent lower-level calls:
        ``core.registry.core.register(now, name, value, metadata, owner=owner)`` then
        ``node.wake()``."""
        log.debug("registry.register(%r): RegistryCore.register", name)
        entry = self.core.register(_now(), name, value, metadata, owner=owner)
        self._node.wake()
        return entry

    def put(
        self, name: str, value: Any, metadata: dict[str, Any] | None = None, *,
        owner: NodeId | Literal["self"] | None = "self",
    ) -> Entry:
        """Register or replace ``name``. Equivalent lower-level calls:
        ``core.registry.core.put(now, name, value, metadata, owner=owner)``, ``node.wake()``."""
        log.debug("registry.put(%r): RegistryCore.put", name)
        entry = self.core.put(_now(), name, value, metadata, owner=owner)
        self._node.wake()
        return entry

    def unregister(self, name: str) -> bool:
        """Remove ``name`` (False if absent). Equivalent lower-level calls:
        ``core.registry.core.unregister(now, name)`` then ``node.wake()``."""
        log.debug("registry.unregister(%r): RegistryCore.unregister", name)
        removed = self.core.unregister(_now(), name)
        self._node.wake()
        return removed

    def lookup(self, name: str) -> Entry | None:
        """The visible entry of ``name`` (entries of failed owners are hidden), or None.
        Equivalent lower-level call: ``core.registry.core.lookup(name)``."""
        return self.core.lookup(name)

    def select(
        self, prefix: str = "", predicate: Callable[[Entry], bool] | None = None,
        limit: int | None = None,
    ) -> list[Entry]:
        """Visible entries whose name starts with ``prefix`` (and match ``predicate``),
        sorted by name. Equivalent lower-level call: ``core.registry.core.select(...)``."""
        return self.core.select(prefix, predicate, limit)

    def count(self, prefix: str = "") -> int:
        """How many visible entries start with ``prefix``. Equivalent lower-level call:
        ``core.registry.core.count(prefix)``."""
        return self.core.count(prefix)

    def watch(self, prefix: str = "", max_buffered: int = DEFAULT_WATCH_BUFFER) -> RegistryWatch:
        """The registry's changes from now on (see :class:`RegistryWatch`). Equivalent
        lower-level calls: the pump calls ``core.registry.take_changes()`` after each step
        and offers each change to every watch."""
        return RegistryWatch(self, prefix, max_buffered)

    def _deliver(self, changes: list[Change]) -> None:
        for watch in list(self._watches):
            for change in changes:
                watch._offer(change)

    def _close(self) -> None:
        for watch in list(self._watches):
            watch._end()


# -- the supervisor -----------------------------------------------------------------------


class _Instance:
    """One running service instance of a child."""

    __slots__ = (
        "done", "handoff", "instance", "name", "scope", "service", "stop_reason",
        "stop_requested",
    )

    def __init__(self, action: StartService) -> None:
        self.name = action.name
        self.instance = action.instance
        self.service = action.service
        self.scope = trio.CancelScope()
        self.stop_requested = trio.Event()
        self.stop_reason: StopReason | None = None
        self.handoff = False
        self.done = False


_current: contextvars.ContextVar[_Instance | None] = contextvars.ContextVar(
    "foundation_p2p_service", default=None
)


class Supervisor:
    """The node's distributed supervisor (``node.supervisor``); see the module docstring.

    ``core`` is the :class:`~foundation_p2p.registry.supervisor.SupervisorCore` itself.
    """

    def __init__(self, node: Node, handoff_timeout_s: float = DEFAULT_HANDOFF_TIMEOUT_S) -> None:
        self._node = node
        self._services: dict[str, ServiceFn] = {}
        self._instances: dict[str, _Instance] = {}
        self.handoff_timeout_s = handoff_timeout_s
        """How long a service asked to hand off may take to return its state."""

    @property
    def core(self) -> SupervisorCore:
        """The supervisor core (``node.core.supervisor``), public on purpose."""
        return self._node.core.supervisor

    def define_service(self, name: str, async_fn: ServiceFn) -> None:
        """Name ``async_fn`` for the supervisor: children whose spec says ``service=name``
        run ``await async_fn(node, args, handoff)`` here. Every node that may run the
        child defines the same name. Redefining a name replaces it (for new instances).
        Equivalent lower-level calls: none (a table kept by the runtime)."""
        if not isinstance(name, str) or not name:
            raise ConfigError(f"define_service: the name must be a non-empty text, got {name!r}")
        if not callable(async_fn):
            raise ConfigError(f"define_service({name!r}): {async_fn!r} is not callable")
        self._services[name] = async_fn

    @property
    def services(self) -> list[str]:
        """The service names defined on this node, sorted."""
        return sorted(self._services)

    def start_singleton(
        self, name: str, service: str, args: Any = None, *, restart: str = "permanent",
        quorum: bool = False, max_restarts: int = 3, max_seconds: float = 5.0,
    ) -> ChildSpec:
        """Run ``service`` as the cluster's one instance named ``name`` (see
        ``SupervisorCore.start_singleton``). Equivalent lower-level calls:
        ``core.supervisor.start_singleton(now, name, service, args, ...)``, ``node.wake()``."""
        log.debug("supervisor.start_singleton(%r, %r): SupervisorCore.start_singleton",
                  name, service)
        spec = self.core.start_singleton(
            _now(), name, service, args, restart=restart, quorum=quorum,
            max_restarts=max_restarts, max_seconds=max_seconds,
        )
        self._node.wake()
        return spec

    def start_replicated(
        self, name: str, service: str, args: Any = None, *, restart: str = "permanent",
        max_restarts: int = 3, max_seconds: float = 5.0,
    ) -> ChildSpec:
        """Run one instance of ``service`` on every live node. Equivalent lower-level
        calls: ``core.supervisor.start_replicated(now, name, service, args, ...)``,
        ``node.wake()``."""
        log.debug("supervisor.start_replicated(%r, %r): SupervisorCore.start_replicated",
                  name, service)
        spec = self.core.start_replicated(
            _now(), name, service, args, restart=restart, max_restarts=max_restarts,
            max_seconds=max_seconds,
        )
        self._node.wake()
        return spec

    def start_child(self, spec: ChildSpec) -> ChildSpec:
        """Start a child from a full spec. Equivalent lower-level calls:
        ``core.supervisor.start_child(now, spec)``, ``node.wake()``."""
        log.debug("supervisor.start_child(%r): SupervisorCore.start_child", spec.name)
        out = self.core.start_child(_now(), spec)
        self._node.wake()
        return out

    def terminate(self, name: str) -> bool:
        """Remove the child everywhere (False if unknown). Equivalent lower-level calls:
        ``core.supervisor.terminate(now, name)``, ``node.wake()``."""
        log.debug("supervisor.terminate(%r): SupervisorCore.terminate", name)
        done = self.core.terminate(_now(), name)
        self._node.wake()
        return done

    def which_children(self) -> list[ChildInfo]:
        """Every known child as this node sees it. Equivalent lower-level call:
        ``core.supervisor.which_children()``."""
        return self.core.which_children()

    def running(self) -> list[str]:
        """Names of the children whose service runs on this node now."""
        return sorted(self._instances)

    async def stop_requested(self) -> StopReason:
        """Inside a service: wait until the supervisor asks it to stop with handoff, and
        return the reason; the service should then return its state. Outside a service:
        ``RuntimeError``."""
        inst = _current.get()
        if inst is None:
            raise RuntimeError("stop_requested: not called from a supervised service")
        await inst.stop_requested.wait()
        assert inst.stop_reason is not None
        return inst.stop_reason

    # -- the driver ---------------------------------------------------------------------

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, StartService):
                self._start(action)
            elif isinstance(action, StopService):
                self._stop(action)

    def _start(self, action: StartService) -> None:
        node = self._node
        fn = self._services.get(action.service)
        if fn is None:
            log.error(
                "supervisor: %r asks for service %r, not defined on this node (define_service)",
                action.name, action.service,
            )
            node.counters.inc("supervisor.runtime.undefined_service")
            self.core.service_exited(
                _now(), action.name, action.instance, "crashed",
                f"service {action.service!r} is not defined on this node",
            )
            node.wake()
            return
        old = self._instances.get(action.name)
        if old is not None:
            old.scope.cancel()
        inst = _Instance(action)
        self._instances[action.name] = inst
        assert node._services is not None
        log.debug("supervisor: start %s (instance %d) of %r: ServiceRunner.start",
                  action.name, action.instance, action.service)
        node._services.start(self._run, inst, fn, action, name=f"{action.service}:{action.name}")

    def _stop(self, action: StopService) -> None:
        inst = self._instances.get(action.name)
        if inst is None or inst.instance != action.instance or inst.done:
            # nothing of ours runs: tell the supervisor at once so it does not wait
            self.core.service_exited(_now(), action.name, action.instance, "stopped")
            self._node.wake()
            return
        inst.stop_reason = action.reason
        inst.handoff = action.handoff
        inst.stop_requested.set()
        log.debug("supervisor: stop %s (instance %d): %s%s", action.name, action.instance,
                  action.reason, " with handoff" if action.handoff else "")
        if action.handoff:
            inst.scope.deadline = trio.current_time() + self.handoff_timeout_s
        else:
            inst.scope.cancel()

    async def _run(self, inst: _Instance, fn: ServiceFn, action: StartService) -> None:
        node = self._node
        core = self.core
        _current.set(inst)
        core.service_started(_now(), inst.name, inst.instance)
        node.wake()
        outcome = "normal"
        detail = ""
        result: Any = None
        try:
            with inst.scope:
                result = await fn(node, action.args, action.handoff)
        except Exception as exc:
            outcome = "crashed"
            detail = f"{type(exc).__name__}: {exc}"
            node.counters.inc("services.crashed")
            log.exception("service %s (%r) crashed", inst.name, inst.service)
        finally:
            inst.done = True
            if self._instances.get(inst.name) is inst:
                del self._instances[inst.name]
        if inst.stop_reason is not None:
            outcome = "stopped"
            if inst.handoff and result is not None and not inst.scope.cancelled_caught:
                try:
                    core.handoff_state(_now(), inst.name, inst.instance, result)
                except Exception:
                    log.exception("handoff state of %s refused", inst.name)
        elif inst.scope.cancelled_caught:
            outcome = "stopped"
        log.debug("supervisor: %s (instance %d) exited %s; SupervisorCore.service_exited",
                  inst.name, inst.instance, outcome)
        core.service_exited(_now(), inst.name, inst.instance, outcome, detail)
        node.wake()


# -- the seed's facade ------------------------------------------------------------------------


def _service_name(service: str | ServiceFn) -> str:
    if isinstance(service, str):
        return service
    module = getattr(service, "__module__", "?")
    qual = getattr(service, "__qualname__", repr(service))
    return f"{module}.{qual}"


class Processes:
    """The seed's facade for singletons (``node.processes``); each method logs, at debug
    level, the ``node.registry`` / ``node.supervisor`` calls it makes."""

    def __init__(self, node: Node) -> None:
        self._node = node

    def start_singleton(
        self, name: str, service: str | ServiceFn, args: Any = None, *,
        restart: str = "permanent", quorum: bool = False,
    ) -> ChildSpec:
        """Run one instance of ``service`` in the cluster under ``name``.

        ``service`` is a service name already defined, or an async callable, which is
        defined under its module-qualified name first (every node that may run it must
        make the same call). Equivalent lower-level calls:
        ``node.supervisor.define_service(name_of(fn), fn)`` (for a callable), then
        ``node.supervisor.start_singleton(name, service_name, args, restart=..., quorum=...)``.
        """
        sup = self._node.supervisor
        service_name = _service_name(service)
        if not isinstance(service, str):
            log.debug("processes.start_singleton: supervisor.define_service(%r)", service_name)
            sup.define_service(service_name, service)
        log.debug("processes.start_singleton(%r): supervisor.start_singleton(%r, %r)",
                  name, name, service_name)
        return sup.start_singleton(name, service_name, args, restart=restart, quorum=quorum)

    def lookup_singleton(self, name: str) -> NodeId | None:
        """The node running singleton ``name`` now, as this node's registry sees it, or
        None. Equivalent lower-level calls: ``node.registry.lookup(name)`` and its
        ``owner`` (a cluster-scoped entry, the state of a handoff in progress, is None)."""
        log.debug("processes.lookup_singleton(%r): registry.lookup", name)
        entry = self._node.registry.lookup(name)
        return entry.owner if entry is not None else None

    def start_replicated(
        self, name: str, service: str | ServiceFn, args: Any = None, *,
        restart: str = "permanent",
    ) -> ChildSpec:
        """Run one instance of ``service`` on every node. Equivalent lower-level calls:
        ``node.supervisor.define_service(...)`` (for a callable), then
        ``node.supervisor.start_replicated(name, service_name, args, restart=...)``."""
        sup = self._node.supervisor
        service_name = _service_name(service)
        if not isinstance(service, str):
            log.debug("processes.start_replicated: supervisor.define_service(%r)", service_name)
            sup.define_service(service_name, service)
        log.debug("processes.start_replicated(%r): supervisor.start_replicated", name)
        return sup.start_replicated(name, service_name, args, restart=restart)

    def describe(self, name: str) -> str:
        """One line: where singleton ``name`` runs as this node sees it."""
        owner = self.lookup_singleton(name)
        return f"{name}: {'nowhere' if owner is None else short_id(owner)}"
