"""foundation-p2p: a peer-to-peer node for Trio applications, and its simulator.

The sans-I/O composition is :class:`~foundation_p2p.node.NodeCore`; the Trio runtime is
:func:`foundation_p2p.runtime.open_node`. See README.md and DESIGN.md.
"""

from foundation_p2p.addresses import Address, NodeId
from foundation_p2p.clock import Now
from foundation_p2p.config import NodeConfig
from foundation_p2p.errors import ConfigError, FoundationError, WireError

__version__ = "0.1.0"

__all__ = [
    "Address",
    "ConfigError",
    "FoundationError",
    "NodeConfig",
    "NodeId",
    "Now",
    "WireError",
    "__version__",
]
