"""Restart strategies, restart intensity and exponential backoff of supervised services.

The strategies are Erlang/OTP's:

* ``permanent`` — restarted after every exit (normal or crashed);
* ``transient`` — restarted only after a crash; a normal exit finishes the child;
* ``temporary`` — never restarted; any exit finishes the child.

An exit the supervisor asked for (``StopService``) is never a reason to restart, and an
unrequested ``"stopped"`` outcome counts as a normal exit (OTP treats ``shutdown`` so).

Restart intensity: at most ``max_restarts`` restarts within any ``max_seconds`` window (by
the monotonic clock). The restart that would exceed it is refused — the caller gives the
child up on this node (``supervisor.py`` says what happens next). Between a crash and its
restart the child waits an exponential backoff: ``backoff_base_s * 2**k`` capped at
``backoff_max_s``, where ``k`` is the number of restarts already in the window, scaled by a
jitter factor in ``[1 - jitter, 1]`` drawn from the rng the supervisor was handed.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Literal

from foundation_p2p.errors import ConfigError

RestartPolicy = Literal["permanent", "transient", "temporary"]
RESTART_POLICIES: tuple[str, ...] = ("permanent", "transient", "temporary")

Outcome = Literal["normal", "crashed", "stopped"]
OUTCOMES: tuple[str, ...] = ("normal", "crashed", "stopped")


def check_policy(restart: str) -> RestartPolicy:
    """Return ``restart`` as a policy, or raise :class:`ConfigError` naming the choices."""
    if restart == "permanent":
        return "permanent"
    if restart == "transient":
        return "transient"
    if restart == "temporary":
        return "temporary"
    raise ConfigError(f"restart: {restart!r} is not one of {', '.join(RESTART_POLICIES)}")


def should_restart(policy: RestartPolicy, outcome: str) -> bool:
    """Whether an exit the supervisor did not ask for restarts the child under ``policy``."""
    if outcome not in OUTCOMES:
        raise ConfigError(f"outcome: {outcome!r} is not one of {', '.join(OUTCOMES)}")
    if policy == "permanent":
        return True
    if policy == "transient":
        return outcome == "crashed"
    return False


class RestartIntensity:
    """A sliding window of restart times: at most ``max_restarts`` in ``max_seconds``.

    The window holds at most ``max_restarts`` times (older ones are dropped as they leave
    the window or when a new one is recorded), so it is bounded by the spec itself.
    """

    __slots__ = ("_times", "max_restarts", "max_seconds")

    def __init__(self, max_restarts: int, max_seconds: float) -> None:
        if max_restarts < 0:
            raise ConfigError(f"max_restarts: {max_restarts} must be >= 0")
        if not max_seconds > 0:
            raise ConfigError(f"max_seconds: {max_seconds} must be > 0")
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self._times: deque[float] = deque(maxlen=max(1, max_restarts))

    def _expire(self, mono: float) -> None:
        while self._times and mono - self._times[0] >= self.max_seconds:
            self._times.popleft()

    def in_window(self, mono: float) -> int:
        """How many restarts happened in the window ending at ``mono``."""
        self._expire(mono)
        return len(self._times)

    def try_record(self, mono: float) -> bool:
        """Record a restart at ``mono`` if the intensity allows it; False if it is exceeded."""
        self._expire(mono)
        if len(self._times) >= self.max_restarts:
            return False
        self._times.append(mono)
        return True

    def reset(self) -> None:
        """Forget every recorded restart (a fresh start of the child)."""
        self._times.clear()


class ExponentialBackoff:
    """Delays between a crash and the restart: ``base * 2**k``, capped, with jitter."""

    __slots__ = ("base_s", "jitter", "max_s")

    def __init__(self, base_s: float, max_s: float, jitter: float) -> None:
        if base_s < 0:
            raise ConfigError(f"backoff_base_s: {base_s} must be >= 0")
        if max_s < base_s:
            raise ConfigError(f"backoff_max_s: {max_s} must be >= backoff_base_s {base_s}")
        if not 0.0 <= jitter < 1.0:
            raise ConfigError(f"backoff_jitter: {jitter} must be in [0, 1)")
        self.base_s = base_s
        self.max_s = max_s
        self.jitter = jitter

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The delay before restart number ``attempt`` (0 = first restart in the window)."""
        raw = self.base_s * (2.0 ** min(attempt, 62))
        capped = min(self.max_s, raw)
        if self.jitter == 0.0:
            return capped
        return capped * (1.0 - self.jitter * rng.random())
