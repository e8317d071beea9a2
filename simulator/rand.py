"""Deterministic randomness for the simulator: one seed, named child generators.

Every random draw of a run comes from the run's seed. Each node and each subsystem of the
world gets its own ``random.Random`` seeded from ``sha256(f"{seed}/{name}")``, so adding a
draw in one place never shifts the draws of another, and nothing depends on Python's hash
seed.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable


def derive_seed(seed: int, name: str) -> int:
    """A 64-bit seed for the child ``name`` of ``seed`` (sha256, stable across processes)."""
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def child_rng(seed: int, name: str) -> random.Random:
    """A ``random.Random`` for the child ``name`` of ``seed``."""
    return random.Random(derive_seed(seed, name))


def byte_source(seed: int, name: str) -> Callable[[int], bytes]:
    """A seeded secret-byte source (identities, keys) for the child ``name`` of ``seed``.

    Deterministic on purpose: in the simulator secrets must replay. The Trio runtime uses
    ``os.urandom`` in its place.
    """
    rng = random.Random(derive_seed(seed, "secret/" + name))
    return rng.randbytes
