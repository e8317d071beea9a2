"""How the stateful tests run a ``RuleBasedStateMachine``: derandomized and without a
database in ``make test`` (the same examples every run), random under ``-m soak``."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings


def machine_settings(examples: int, steps: int, *, soak: bool = False) -> settings:
    """Settings for ``examples`` runs of up to ``steps`` rules each."""
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        derandomize=not soak,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


def run_machine(machine: Any, examples: int, steps: int, *, soak: bool = False) -> None:
    """Run the state machine class ``machine`` under :func:`machine_settings`."""
    machine.TestCase.settings = machine_settings(examples, steps, soak=soak)
    machine.TestCase().runTest()
