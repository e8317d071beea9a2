"""Fixtures of the discovery tests (defined in ``discovery_helpers``)."""

from discovery_helpers import dnsmasq, netns

__all__ = ["dnsmasq", "netns"]
