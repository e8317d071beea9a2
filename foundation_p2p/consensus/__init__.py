"""Raft consensus: the sans-I/O core, log storage, state machines (``spec/consensus.md``).

The core, in etcd raft's shape:

- :class:`~foundation_p2p.consensus.rawnode.RawNode` - the driver's handle: ``tick``,
  ``step``, ``propose``, ``propose_conf_change``, ``read_index``, ``transfer_leader``,
  ``ready``/``advance``, ``status``.
- :class:`~foundation_p2p.consensus.raft.Raft` and
  :class:`~foundation_p2p.consensus.raft.RaftConfig` - the state machine and its settings.
- :mod:`~foundation_p2p.consensus.messages` - the messages and their CBOR codec.
- :mod:`~foundation_p2p.consensus.confchange` - configuration changes and bootstrap.
- :class:`~foundation_p2p.consensus.memory_storage.MemoryStorage` - an in-memory
  :class:`~foundation_p2p.consensus.storage.LogStorage`.
"""
