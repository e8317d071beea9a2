"""Findings of the fuzz targets that are open (the fix is in code this directory does not
own), each with a predicate recognising the inputs that hit it.

``fuzz/atheris_main.py`` and ``tests/fuzz/test_fuzz_targets.py`` skip an input that
matches an open finding, so that a long run keeps looking for *other* findings instead of
stopping at the known one again. The finding itself stays visible: its minimized input is
in ``tests/fuzz/regressions/`` and ``tests/fuzz/test_regressions.py`` replays it against
the unguarded target as a strict xfail naming the finding; once the code is fixed that
test passes unexpectedly (and fails), and the entry here must go.

Fixed so far (their inputs stay in ``tests/fuzz/regressions/`` as plain regression tests):
``config-not-utf8``, ``address-bracketed-host``, ``mdns-foreign-instance``,
``mdns-port-zero``, ``boot-epoch-overflow``, ``conf-change-nested-keys``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """One open finding: its id, the target, what goes wrong, and which inputs hit it."""

    id: str
    target: str
    problem: str
    hits: Callable[[bytes], bool]


OPEN: list[Finding] = []
"""The open findings (see the module docstring)."""


def known(target: str, data: bytes) -> str | None:
    """The id of the open finding ``data`` hits in ``target``, or None."""
    for finding in OPEN:
        if finding.target == target and finding.hits(data):
            return finding.id
    return None


def guarded(target: str, function: Callable[[bytes], None]) -> Callable[[bytes], None]:
    """``function`` skipping the inputs of ``target``'s open findings."""
    if not any(f.target == target for f in OPEN):
        return function

    def run(data: bytes) -> None:
        if known(target, data) is None:
            function(data)

    run.__name__ = getattr(function, "__name__", target)
    run.__doc__ = function.__doc__
    return run
