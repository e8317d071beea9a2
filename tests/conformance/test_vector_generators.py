"""The committed vectors are exactly what their generators produce (``--check``).

The channels and transport generators are checked by their own conformance modules; this
module covers the rest, so no vector file can drift from the generator that documents it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

VECTORS = Path(__file__).resolve().parents[2] / "spec" / "vectors"


@pytest.mark.parametrize(
    "generator", ["generate.py", "generate_membership.py", "generate_handshake.py"]
)
def test_generator_reproduces_the_committed_vectors(generator: str) -> None:
    done = subprocess.run(
        [sys.executable, str(VECTORS / generator), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
