"""
Serving the daemon over a virtio-serial port (``--listen vserial:PATH``).

The guest side of a virtio-serial port is a character device that stays
open for the life of the VM; the host side (a Unix socket QEMU serves)
connects and disconnects.  There is no accept and no end of a connection
on the guest side, only the port's "host connected" state: while the host
is away, a read returns 0 bytes (and the device polls readable and hung
up), a write would block.  Bytes of an old host connection may still be
in flight when a new one begins.

So the daemon speaks first.  The link starts out hunting: it reads and
discards bytes until the line ``SANDBOXD-SYNC <32 hex>``, answers
``SANDBOXD-SYNCED <same hex>``, and only then starts a session (a fresh
``server.Connection``, which says HELLO: the usual authentication).  A
session ends, and the link hunts again, when

- the host disconnects (a read returns 0): the session's streams are
  cancelled as on a closed TCP connection, a half-read frame is dropped
  with the framer, unsent output is dropped;
- (on the daemon's side) the agent's server was killed and PID 1 started
  another: the new one writes ``\\nSANDBOXD-RESET\\n`` as it opens the
  port, which a daemon still connected reads as a broken frame header;
- the session itself closes (a protocol error, e.g. the ``\\n`` and
  ``SANDBOXD-SYNC`` of a new daemon connection read as a frame header):
  then the last bytes received are scanned again for a SYNC line, so a
  daemon that reconnected before the agent saw the host leave is still
  answered.

See docs/protocol.md, "Streams without connections".
"""

import errno
import os
import re

SYNC_LINE = re.compile(rb"SANDBOXD-SYNC ([0-9a-f]{32})\n")
RESET_LINE = b"\nSANDBOXD-RESET\n"
#: Bytes kept while hunting (a SYNC line is 47).
HUNT_WINDOW = 256
#: Bytes of a session's latest input kept for a rescan when it fails.
RESCAN_WINDOW = 4096
#: Seconds between looks at the port while the host is away.
POLL_INTERVAL = 0.05
READ_SIZE = 256 * 1024
#: Unsent output above which the session is asked to pause, and below
#: which it resumes.
HIGH_WATER = 1 << 20
LOW_WATER = 256 * 1024


class _Session:
    """
    The transport one session's Connection writes to.
    """

    def __init__(self, link):
        self._link = link
        self._closing = False

    def write(self, data):
        if not self._closing:
            self._link._write(data)

    def is_closing(self):
        return self._closing

    def close(self):
        if not self._closing:
            self._closing = True
            self._link._sessionClosed(self)

    abort = close

    def get_extra_info(self, name, default=None):
        return default


class SerialLink:
    """
    Serves sessions of ``new_protocol()`` (asyncio Protocols) over the
    virtio-serial port at ``path``, one at a time.
    """

    def __init__(self, loop, path, new_protocol, poll_interval=POLL_INTERVAL, fd=None):
        self._loop = loop
        self._new_protocol = new_protocol
        self._poll_interval = poll_interval
        if fd is None:
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self._fd = fd
        self.path = path
        self._hunt = b""
        self._recent = b""
        self._session = None
        self._protocol = None
        self._out = bytearray()
        self._writing = False
        self._paused = False
        self._poll = None
        self._closed = False
        self.sessions = 0
        # A server started again by PID 1 (the previous one was killed)
        # tells a daemon still connected to the old one: read as a frame
        # header the line is FRAME_TOO_LARGE, so the daemon drops that
        # connection and resynchronises.  With no host connected it is
        # dropped unsent.
        self._write(RESET_LINE)
        loop.add_reader(self._fd, self._readable)

    def close(self):
        if self._closed:
            return
        self._endSession()
        self._closed = True
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        if self._poll is not None:
            self._poll.cancel()
        os.close(self._fd)

    # Reading

    def _readable(self):
        try:
            data = os.read(self._fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno not in (errno.EIO, errno.ENODEV, errno.EPIPE):
                raise
            data = b""
        if not data:
            self._hostAway()
            return
        if self._protocol is None:
            self._scan(data)
            return
        self._recent = (self._recent + data)[-RESCAN_WINDOW:]
        self._protocol.data_received(data)

    def _scan(self, data):
        buffer = self._hunt + data
        match = SYNC_LINE.search(buffer)
        if match is None:
            self._hunt = buffer[-HUNT_WINDOW:]
            return
        self._hunt = b""
        rest = buffer[match.end():]
        self._out.clear()
        self._write(b"SANDBOXD-SYNCED " + match[1] + b"\n")
        self._startSession()
        if rest:
            self._recent = rest[-RESCAN_WINDOW:]
            self._protocol.data_received(rest)

    def _hostAway(self):
        """
        The host side is not connected: end the session, drop what was
        unsent, and look again every poll interval.
        """
        self._endSession()
        self._hunt = b""
        self._out.clear()
        self._loop.remove_reader(self._fd)
        self._stopWriting()
        self._poll = self._loop.call_later(self._poll_interval, self._lookAgain)

    def _lookAgain(self):
        self._poll = None
        if not self._closed:
            self._loop.add_reader(self._fd, self._readable)

    # Sessions

    def _startSession(self):
        self.sessions += 1
        self._session = _Session(self)
        self._protocol = self._new_protocol()
        self._paused = False
        self._protocol.connection_made(self._session)

    def _endSession(self):
        protocol, session = self._protocol, self._session
        self._protocol = self._session = None
        if session is not None:
            session._closing = True
        if protocol is not None:
            protocol.connection_lost(None)

    def _sessionClosed(self, session):
        """
        The session's protocol closed it: hunt again, first through the
        bytes it was given last (a SYNC there is a new daemon connection).
        """
        if session is not self._session:
            return
        recent = self._recent
        self._recent = b""
        self._endSession()
        self._scan(recent)

    # Writing

    def _write(self, data):
        self._out += data
        if not self._writing:
            self._flush()
        if self._protocol is not None and not self._paused and len(self._out) > HIGH_WATER:
            self._paused = True
            self._protocol.pause_writing()

    def _flush(self):
        while self._out:
            try:
                sent = os.write(self._fd, self._out[:READ_SIZE])
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno not in (errno.EIO, errno.ENODEV, errno.EPIPE):
                    raise
                self._out.clear()
                break
            del self._out[:sent]
        if self._out and not self._writing:
            self._writing = True
            self._loop.add_writer(self._fd, self._flush)
        elif not self._out:
            self._stopWriting()
        if self._paused and len(self._out) < LOW_WATER and self._protocol is not None:
            self._paused = False
            self._protocol.resume_writing()

    def _stopWriting(self):
        if self._writing:
            self._writing = False
            self._loop.remove_writer(self._fd)
