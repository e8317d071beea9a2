"""Raft consensus: the sans-I/O core, log storage, state machines (``spec/consensus.md``)."""
