"""The deterministic simulator: whole clusters of ``NodeCore``s in virtual time.

Entry points: :func:`run_scenario` and :func:`replay_trace` (what ``foundation-p2p sim``
calls), :class:`World` for finer control.
"""

from simulator.world import CheckResult, RunResult, World, replay_trace, run_scenario

__all__ = ["CheckResult", "RunResult", "World", "replay_trace", "run_scenario"]
