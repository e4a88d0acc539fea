"""
What an agent may send the daemon: the sandbox is hostile, so its agent's
frames are checked before they are relayed (docs/protocol.md, "The daemon's
limits on an agent").

- DATA stays within the credit the daemon granted on its stream (the
  initial window plus every WINDOW the daemon sent): ``WINDOW_EXCEEDED``.
  So neither the daemon nor a client holds more than a window per stream,
  whatever the agent does.
- Frames name only streams the daemon opened: a stream id above the
  highest ever opened is ``BAD_STREAM``.  (Frames for streams the daemon
  already closed are dropped: they can be in flight.)
- PING and EVENT frames, which carry no credit, are bounded by a rate:
  ``RATE_EXCEEDED``.

A breach ends the connection; the sandbox then fails with the code named.
"""

import struct

from agent import wire

#: PINGs an agent may send per second (an honest agent sends none), burst.
PING_RATE = (20.0, 100.0)
#: EVENT payload bytes per second an agent may send, burst.
EVENT_RATE = (8 * 1024 * 1024.0, 16 * 1024 * 1024.0)

_WINDOW = struct.Struct("!I")


class Budget:
    """
    A token bucket: ``rate`` tokens a second up to ``burst``, on ``clock``.
    """

    def __init__(self, rate, burst, clock):
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._tokens = burst
        self._when = clock.seconds()

    def spend(self, n):
        """
        Take ``n`` tokens; False (nothing taken) when there are not enough.
        """
        now = self._clock.seconds()
        self._tokens = min(self._burst, self._tokens + (now - self._when) * self._rate)
        self._when = now
        if n > self._tokens:
            return False
        self._tokens -= n
        return True


class InboundLimits:
    """
    The credit and rates of one agent connection.  ``check(frame)`` raises
    L{wire.ProtocolError} for a frame the agent had no right to send.
    """

    def __init__(self, clock, window=wire.INITIAL_WINDOW):
        self._window = window
        self._credit = {}
        self._highest = 0
        self._pings = Budget(*PING_RATE, clock)
        self._events = Budget(*EVENT_RATE, clock)

    def opened(self, stream):
        """
        The daemon opened ``stream``: the agent may send a window of DATA.
        """
        self._credit[stream] = self._window
        self._highest = max(self._highest, stream)

    def closed(self, stream):
        self._credit.pop(stream, None)

    def sent(self, data):
        """
        The daemon is writing ``data`` (whole encoded frames) to the agent:
        count the credit its WINDOW frames grant.
        """
        offset, size = 0, len(data)
        while offset + wire.HEADER_SIZE <= size:
            length, frame_type, _, stream = wire.HEADER.unpack_from(data, offset)
            if frame_type == wire.FrameType.WINDOW and stream in self._credit:
                start = offset + wire.HEADER_SIZE
                if start + _WINDOW.size <= size:
                    self._credit[stream] += _WINDOW.unpack_from(data, start)[0]
            offset += 4 + length

    def check(self, frame):
        stream, frame_type = frame.stream, frame.type
        if stream > self._highest:
            raise wire.ProtocolError(
                wire.Code.BAD_STREAM, f"{frame_type.name} for stream {stream}, never opened", stream
            )
        if frame_type is wire.FrameType.DATA:
            credit = self._credit.get(stream)
            if credit is None:
                return
            n = len(frame.payload)
            if frame.flags & wire.SEALED:
                # Credit counts plaintext at both ends: a sealed frame's
                # counter and tag spend none (an empty sealed frame, like
                # an empty clear one, spends nothing).
                n = max(0, n - wire.SEALED_OVERHEAD)
            if n > credit:
                raise wire.ProtocolError(
                    wire.Code.WINDOW_EXCEEDED,
                    f"{n} bytes of DATA on stream {stream} with only {credit} granted",
                    stream,
                )
            self._credit[stream] = credit - n
        elif frame_type is wire.FrameType.PING:
            if not self._pings.spend(1):
                raise wire.ProtocolError(
                    wire.Code.RATE_EXCEEDED,
                    f"more than {PING_RATE[0]:g} PINGs a second", stream,
                )
        elif frame_type is wire.FrameType.EVENT:
            if not self._events.spend(len(frame.payload)):
                raise wire.ProtocolError(
                    wire.Code.RATE_EXCEEDED,
                    f"more than {EVENT_RATE[0] / 2**20:g} MiB of EVENTs a second", stream,
                )
