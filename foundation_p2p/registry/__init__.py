"""The replicated name registry (a delta-state CRDT) and the distributed supervisor
(``spec/registry.md``)."""
