"""The deterministic simulator: whole clusters of ``NodeCore``s in virtual time."""
