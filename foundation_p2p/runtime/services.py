"""Application services: async callables the node runs in its own nursery.

A service is ``async_fn(*args)`` started with ``Node.start_service``. It lives at most as
long as the node: leaving ``open_node``'s ``async with`` cancels it.

Crash policy: a service that raises is logged with its traceback (logger
``foundation_p2p.runtime.services``, level ERROR) and counted in ``services.crashed``;
the node keeps running and its other services are not touched. A service that returns
is counted in ``services.finished``. Cancellation (the node closing) is neither.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from foundation_p2p.counters import Counters

log = logging.getLogger("foundation_p2p.runtime.services")


class ServiceRunner:
    """Starts services in a nursery and keeps the count of what happened to them."""

    def __init__(self, nursery: trio.Nursery, counters: Counters) -> None:
        self._nursery = nursery
        self._counters = counters
        self._closed = False
        self.running: dict[int, str] = {}
        """Names of the services running now, by an id unique within this node."""
        self._next_id = 1

    def start(
        self, async_fn: Callable[..., Awaitable[Any]], *args: Any, name: str | None = None
    ) -> int:
        """Start ``async_fn(*args)`` now; return its id. ``trio.ClosedResourceError`` if closed."""
        if self._closed:
            raise trio.ClosedResourceError("the node is closed: no new services")
        if not callable(async_fn):
            raise TypeError(f"start_service: {async_fn!r} is not callable")
        label = name or getattr(async_fn, "__qualname__", None) or repr(async_fn)
        service_id = self._next_id
        self._next_id += 1
        self.running[service_id] = label
        self._counters.inc("services.started")
        log.debug("start service %s (id %d): nursery.start_soon", label, service_id)
        self._nursery.start_soon(self._run, service_id, label, async_fn, args, name=label)
        return service_id

    async def _run(
        self,
        service_id: int,
        label: str,
        async_fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
    ) -> None:
        try:
            await async_fn(*args)
        except Exception:
            self._counters.inc("services.crashed")
            log.exception("service %s crashed; the node keeps running", label)
        else:
            self._counters.inc("services.finished")
            log.debug("service %s returned", label)
        finally:
            del self.running[service_id]

    def close(self) -> None:
        """Refuse new services (those running are cancelled with the node's nursery)."""
        self._closed = True
