"""
``twistd sandboxd --relay-tap PATH``: a copy of every frame the WebSocket
sessions relay, as the daemon sees it.

It exists to show (and to test, tests/test_e2e_encrypted.py) what the
operator of a daemon can read of a session: everything, for a clear one;
method names and frame sizes, for an end-to-end encrypted one
(docs/security.md).  Not for production: the file grows without bound.

Each record is ``direction`` (``>`` client to agent, ``<`` agent to
client), the sandbox id, and the frame, framed as::

    u8 direction | u8 id length | id | u32 frame length | frame
"""

import struct

_LENGTH = struct.Struct("!I")


class RelayTap:
    """
    Appends relayed frames to a file, synchronously (a debugging aid).
    """

    def __init__(self, path):
        self._file = open(path, "ab", buffering=0)

    def relayed(self, direction, sandbox_id, frame):
        name = sandbox_id.encode()[:255]
        self._file.write(
            direction.encode() + bytes((len(name),)) + name + _LENGTH.pack(len(frame)) + bytes(frame)
        )

    def close(self):
        self._file.close()


def read_records(path):
    """
    The records of a tap file: ``(direction, sandbox_id, frame bytes)``.
    """
    with open(path, "rb") as f:
        data = f.read()
    records, offset = [], 0
    while offset < len(data):
        direction = chr(data[offset])
        n = data[offset + 1]
        sandbox_id = data[offset + 2 : offset + 2 + n].decode()
        offset += 2 + n
        (size,) = _LENGTH.unpack_from(data, offset)
        offset += 4
        records.append((direction, sandbox_id, data[offset : offset + size]))
        offset += size
    return records
