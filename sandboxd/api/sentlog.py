"""
What a resumable session sent its client, to send again what a dropped
connection lost in flight.

A connection that drops loses the messages still in its buffers (the
daemon's, the kernel's, the client's): sent, never read.  The session
numbers its messages from 1, across resumes, and keeps the newest
``REPLAY_LIMIT`` bytes of them; a client resuming with
``?received=<n>`` (how many it read) gets those after its n-th again, in
order, before anything else.  When they are no longer all kept the resume is
refused rather than leaving a hole in the session.
"""

from collections import deque

#: Bytes of sent messages kept per resumable session.
REPLAY_LIMIT = 1024 * 1024


class SentLog:
    """
    The count of messages sent and the newest of them.
    """

    def __init__(self, limit=None):
        self.count = 0
        self._limit = REPLAY_LIMIT if limit is None else limit
        self._kept = deque()
        self._size = 0

    def sent(self, data, keep=True):
        """
        ``data`` went to the client; ``keep`` it for a resume (else nothing
        before it can be sent again).
        """
        self.count += 1
        if not keep:
            self._kept.clear()
            self._size = 0
            return
        self._kept.append(data)
        self._size += len(data)
        while self._size > self._limit:
            self._size -= len(self._kept.popleft())

    def since(self, received):
        """
        The messages after the client's ``received``-th, oldest first; None
        when some of them are no longer kept.  ValueError when the client
        claims more than was sent.
        """
        if received > self.count:
            raise ValueError(f"received={received} but the session sent {self.count} messages")
        missing = self.count - received
        if missing > len(self._kept):
            return None
        return list(self._kept)[len(self._kept) - missing:]
