"""
The VM stream endpoints: Firecracker's hybrid vsock, AF_VSOCK and a
virtio-serial port behind a host Unix socket, each a Twisted
IStreamClientEndpoint.  L{sandboxd.protocols.endpoints} picks one from an
agent endpoint string.
"""

from sandboxd.vsock._handshake import HandshakeFailed, PreambleEndpoint
from sandboxd.vsock.afvsock import VsockAddress, VsockClientEndpoint, VsockUnavailable
from sandboxd.vsock.hybrid import HybridVsockDialogue, VsockConnectFailed, hybrid_vsock_endpoint
from sandboxd.vsock.serial import SerialSyncDialogue, SerialSyncFailed, virtio_serial_endpoint

__all__ = [
    "HandshakeFailed", "PreambleEndpoint", "VsockAddress", "VsockClientEndpoint",
    "VsockUnavailable", "HybridVsockDialogue", "VsockConnectFailed", "hybrid_vsock_endpoint",
    "SerialSyncDialogue", "SerialSyncFailed", "virtio_serial_endpoint",
]
