"""
Port tunnels: the path proxy (``/sandboxes/{id}/ports/{port}/...``) and
dedicated host ports relaying to a sandbox's ports (docs/tunnels.md).
"""

from sandboxd.tunnels.registry import Tunnels
from sandboxd.tunnels.resource import TunnelFront, TunnelResource

__all__ = ["Tunnels", "TunnelFront", "TunnelResource"]
