"""
A sans-IO reader of Server-Sent Events (the WHATWG event-stream format), as
``GET /events`` writes them: bytes in, ``Message``s out.
"""

#: The longest line accepted (an event's JSON is far shorter).
MAX_LINE = 1 << 20


class Message:
    """
    One dispatched event: ``id`` (None when the event had no ``id:`` line),
    ``event`` (its type, ``"message"`` by default) and ``data`` (text).
    """

    __slots__ = ("id", "event", "data")

    def __init__(self, id, event, data):
        self.id = id
        self.event = event
        self.data = data

    def __repr__(self):
        return f"Message(id={self.id!r}, event={self.event!r}, data={self.data[:60]!r})"


class SSEReader:
    """
    Feed it the stream's bytes as they come; it returns the complete events.
    ``last_id`` is the stream's last event id so far (for ``Last-Event-ID``).
    """

    def __init__(self):
        self._pending = b""
        self._data = []
        self._event = None
        self._id = None
        self.last_id = None

    def feed(self, data):
        self._pending += data
        messages = []
        while True:
            end = self._pending.find(b"\n")
            if end < 0:
                if len(self._pending) > MAX_LINE:
                    raise ValueError("event stream line too long")
                return messages
            line = self._pending[:end].rstrip(b"\r").decode("utf-8", "replace")
            self._pending = self._pending[end + 1:]
            message = self._line(line)
            if message is not None:
                messages.append(message)

    def _line(self, line):
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self):
        if self._id is not None:
            self.last_id = self._id
        if not self._data and self._event is None:
            self._id = None
            return None
        message = Message(self._id, self._event or "message", "\n".join(self._data))
        self._data, self._event, self._id = [], None, None
        return message
