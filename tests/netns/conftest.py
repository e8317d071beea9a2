"""Fixtures of the namespace tests: a skip with the reason when they cannot run here."""

from __future__ import annotations

import pytest
from netns_harness import clean_stale, missing_requirement

_REASON: list[str | None] = []


@pytest.fixture
def netns_ready() -> None:
    """Skip unless root with ip and nft; remove what killed earlier runs left behind."""
    if not _REASON:
        _REASON.append(missing_requirement())
        if _REASON[0] is None:
            clean_stale()
    if _REASON[0] is not None:
        pytest.skip(_REASON[0])
