"""Discovery: how nodes find each other (static seeds, DNS, mDNS, multicast beacons).

The configuration and the three modes are pure (:mod:`foundation_p2p.discovery.config`);
beacons are sealed and opened in :mod:`foundation_p2p.discovery.beacon`; the Trio tasks
that run the strategies are in :mod:`foundation_p2p.runtime.discovery`.
"""

from foundation_p2p.discovery.config import (
    DiscoveryConfig,
    DnsConfig,
    Explanation,
    HostFacts,
    MdnsConfig,
    MulticastConfig,
    StaticConfig,
    StrategyConfig,
    resolve_discovery,
)

__all__ = [
    "DiscoveryConfig",
    "DnsConfig",
    "Explanation",
    "HostFacts",
    "MdnsConfig",
    "MulticastConfig",
    "StaticConfig",
    "StrategyConfig",
    "resolve_discovery",
]
