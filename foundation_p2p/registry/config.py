"""``RegistryConfig``: the CRDT registry's sync and size settings, validated on construction.

A node reads them from the ``[registry]`` table of its TOML config through
:meth:`RegistryConfig.from_node_config`; every key overrides one field. Errors name the
field and the problem.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from foundation_p2p.errors import ConfigError

if TYPE_CHECKING:
    from foundation_p2p.config import NodeConfig


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    """Settings of one :class:`~foundation_p2p.registry.core.RegistryCore`."""

    sync_interval_s: float = 1.0
    """Mean time between two anti-entropy rounds started by this node (one peer each)."""
    sync_jitter: float = 0.2
    """Each interval is multiplied by a factor drawn uniformly from [1 - jitter, 1 + jitter]."""
    sync_timeout_s: float = 5.0
    """A sync with no answer for this long is abandoned (the peer may be picked again)."""
    max_sync_bytes: int = 256 * 1024
    """Cap on the encoded size of one sync or delta message; more goes in later rounds."""
    max_delta_buffer: int = 4096
    """Most local mutations buffered for eager shipping; overflow drops the oldest (counted
    ``registry.deltas.dropped``) and anti-entropy repairs what they carried."""
    max_delta_buffer_bytes: int = 4 * 1024 * 1024
    """Most estimated encoded bytes of buffered mutations; overflow drops the oldest, as
    for ``max_delta_buffer``."""
    max_changes: int = 10_000
    """Most changes queued for ``take_changes``; overflow drops the oldest (counted
    ``registry.changes.dropped``)."""
    max_value_bytes: int = 65_536
    """Largest encoded value, and likewise largest encoded metadata map, of one entry."""
    max_clock_lead_s: float = 60.0
    """How far a remote stamp may lead the local wall clock before the hybrid clock stops
    following it (the entry is kept; the clock is clamped; counted ``registry.hlc.clamped``)."""
    max_recent_conflicts: int = 1024
    """Names whose last conflict ``conflicts_of`` remembers (oldest forgotten first)."""
    max_entries: int = 100_000
    """Most live entries a replica holds. An entry of a name new here that a delta or a
    sync reply brings beyond it is refused (counted ``registry.entries.refused``): it is
    not taken later either (its dot is in the context, as if removed), unless its writer
    writes the name again. Names already held still update; removals always apply. A local
    write of a new name beyond it raises ``ConfigError`` naming the bound."""
    max_entries_per_writer: int = 10_000
    """Most live entries written by one node (a dot's node); beyond it, as for
    ``max_entries`` (counted ``registry.entries.refused_writer``). A peer flooding ever new
    names fills at most this much of every replica."""

    def __post_init__(self) -> None:
        for name in ("sync_interval_s", "sync_timeout_s", "max_clock_lead_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(
                    f"RegistryConfig.{name}: must be a positive number, got {value!r}"
                )
        jitter = self.sync_jitter
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not 0 <= jitter < 1:
            raise ConfigError(f"RegistryConfig.sync_jitter: must be in [0, 1), got {jitter!r}")
        for name in (
            "max_sync_bytes",
            "max_delta_buffer",
            "max_delta_buffer_bytes",
            "max_changes",
            "max_value_bytes",
            "max_recent_conflicts",
            "max_entries",
            "max_entries_per_writer",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(
                    f"RegistryConfig.{name}: must be a positive integer, got {value!r}"
                )
        if self.max_sync_bytes < 4096:
            raise ConfigError(
                f"RegistryConfig.max_sync_bytes: {self.max_sync_bytes} is below 4096 "
                "(a sync request alone takes up to ~1 KiB)"
            )

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> RegistryConfig:
        """Build from a TOML table; an unknown key is a :class:`ConfigError` naming it."""
        known = {f.name for f in dataclasses.fields(cls)}
        for key in table:
            if key not in known:
                raise ConfigError(f"[registry]: unknown key {key!r}")
        return cls(**dict(table))

    @classmethod
    def from_node_config(cls, config: NodeConfig) -> RegistryConfig:
        """The registry settings of a node: its ``[registry]`` table (``extra``)."""
        table = config.extra.get("registry", {})
        if not isinstance(table, Mapping):
            raise ConfigError("[registry]: must be a table")
        return cls.from_mapping(table)

    def replace(self, **changes: Any) -> RegistryConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)
