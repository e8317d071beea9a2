"""Durable-write intents: what a core needs on disk before it may go on.

A core returns :class:`DurableWrite` intents from ``take_writes()``. The driver (the Trio
runtime, or the simulator with its virtual disk) writes each one and makes it durable
(``fsync``), then calls ``writes_done(now, ids)``. Datagrams produced after a write was
issued are held back until that write is confirmed (etcd raft's Ready rule: persist, then
send).

Keys are short names; the runtime stores each under its data directory as a file of the
same name, the simulator in its virtual disk.
"""

from __future__ import annotations

from dataclasses import dataclass

IDENTITY_KEY = "identity"
"""Stored Ed25519 identity (``Identity.to_bytes``)."""
BOOT_EPOCH_KEY = "boot_epoch"
"""The last boot epoch used, as a CBOR unsigned integer."""


@dataclass(frozen=True, slots=True)
class DurableWrite:
    """Replace the stored value of ``key`` with ``data``, durably."""

    id: int
    """Confirm with ``writes_done(now, [id])`` once it is durable."""
    key: str
    """What is written (e.g. ``"identity"``, ``"boot_epoch"``)."""
    data: bytes
    """The full new contents."""
