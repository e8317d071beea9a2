"""The full-size health scenarios (``make soak`` only): ``health.verdicts`` at 24 nodes.

``health-paused-node-soak.toml`` (three pauses) and ``health-partition-heal-soak.toml``
(a 12/12 split, then an isolation) keep the invariant, and the detail shows that every
pause and cut was reported and the figures compared.
"""

from __future__ import annotations

import os

import pytest

from simulator.scenario import load_scenario
from simulator.world import run_scenario

pytestmark = pytest.mark.soak

SCENARIOS = os.path.join(os.path.dirname(__file__), "..", "..", "simulator", "scenarios")


@pytest.fixture(autouse=True)
def _only_under_make_soak(request: pytest.FixtureRequest) -> None:
    """A plain ``pytest`` skips these; ``pytest -m soak`` (make soak) runs them."""
    if request.config.getoption("markexpr", "").strip() != "soak":
        pytest.skip("full-size run: only under make soak (pytest -m soak)")


@pytest.mark.parametrize("name", ["health-paused-node-soak.toml",
                                  "health-partition-heal-soak.toml"])
def test_health_soak(name: str) -> None:
    result = run_scenario(load_scenario(os.path.join(SCENARIOS, name)))
    verdict = result.invariants["health.verdicts"]
    assert verdict.ok, verdict.detail
    assert result.ok, {k: v.detail for k, v in result.invariants.items() if not v.ok}
    for words in ("degraded after max", "missing after max", "healthy again after max",
                  "packets/s within", "suspicions monitor/measured"):
        assert words in verdict.detail
