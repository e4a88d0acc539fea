"""
A virtio-serial port, host side: QEMU serves the port's byte stream on a
host Unix socket (``-chardev socket,server=on``); the guest sees a character
device (``/dev/vport0p1``) that stays open across host connections.

Only the host opens a connection, and the guest's side never starts afresh:
bytes of an earlier connection may still be on their way in either
direction.  So the daemon speaks first: it writes
``\\nSANDBOXD-SYNC <nonce>\\n`` (a fresh 128-bit nonce per connection), the
agent drops whatever connection state it had (a half-read frame, open
streams) and answers ``SANDBOXD-SYNCED <nonce>\\n``; the daemon discards
every byte before that answer, then the agent's HELLO follows and the
usual authentication runs (docs/protocol.md, "Streams without
connections").
"""

import os

from twisted.internet.endpoints import UNIXClientEndpoint

from sandboxd.vsock._handshake import HANDSHAKE_TIMEOUT, HandshakeFailed, PreambleEndpoint

SYNC = b"SANDBOXD-SYNC "
SYNCED = b"SANDBOXD-SYNCED "
#: Stale bytes the daemon reads past, looking for the answer, before it
#: gives up on the port.
MAX_STALE = 16 << 20


class SerialSyncFailed(HandshakeFailed):
    """
    The agent behind a virtio-serial port did not answer the resync.
    """


class SerialSyncDialogue:
    """
    One resynchronisation (sans-IO): L{request}, then L{feed} bytes until it
    returns what followed the agent's answer.
    """

    name = "virtio-serial resync"

    def __init__(self, nonce=None):
        self.nonce = nonce or os.urandom(16).hex()
        self._answer = SYNCED + self.nonce.encode() + b"\n"
        self._tail = b""
        self._stale = 0

    def request(self):
        return b"\n" + SYNC + self.nonce.encode() + b"\n"

    def feed(self, data):
        buffer = self._tail + data
        found = buffer.find(self._answer)
        if found >= 0:
            return buffer[found + len(self._answer):]
        keep = len(self._answer) - 1
        self._stale += max(0, len(buffer) - keep)
        self._tail = buffer[-keep:]
        if self._stale > MAX_STALE:
            raise SerialSyncFailed(
                f"{self.name}: {self._stale} bytes without the agent's answer"
            )
        return None

    def closed(self, reason):
        return f"{self.name}: the port closed before the agent answered ({reason})"


def virtio_serial_endpoint(reactor, socket_path, timeout=HANDSHAKE_TIMEOUT):
    """
    An IStreamClientEndpoint to the agent behind the virtio-serial port that
    QEMU serves at the Unix socket C{socket_path}.
    """
    inner = UNIXClientEndpoint(reactor, socket_path, timeout=timeout)
    return PreambleEndpoint(inner, SerialSyncDialogue, reactor, timeout)
