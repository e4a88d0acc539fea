"""
Following the engine's event stream for the deaths of our containers.

A container killed from outside (or by the OOM killer reaching PID 1) takes
its network namespace with it, and the daemon's TCP connection to its agent
may then hang for minutes.  The engine says at once: one long ``GET
/events`` filtered to our containers' ``die`` and ``pause`` actions tells the
daemon to fail the sandbox's open calls without waiting (and ``oom`` tells
it of an OOM kill inside).
"""

import json

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger

#: The actions that make a sandbox unusable (or usable again), and OOM
#: kills inside it.
ACTIONS = ("die", "pause", "unpause", "oom")
#: Seconds between attempts to follow the stream again after it broke.
RETRY_DELAY = 1.0


class ContainerWatch:
    """
    Calls ``callback(container_id, action)`` for every action of ``ACTIONS``
    of a container labelled ``label``, following the stream again whenever
    it breaks, until ``stop``.
    """

    log = Logger()

    def __init__(self, reactor, engine, callback, label):
        self._reactor = reactor
        self._engine = engine
        self._callback = callback
        self._filters = json.dumps(
            {"type": ["container"], "event": list(ACTIONS), "label": [label]}
        )
        self._stopped = False
        self._following = None
        self.done = Deferred.fromCoroutine(self._run())
        self.done.addErrback(lambda f: self.log.failure("the event watch failed", f))

    async def _run(self):
        while not self._stopped:
            self._following = Deferred.fromCoroutine(
                self._engine.follow("/events", {"filters": self._filters}, self._line)
            )
            try:
                await self._following
            except CancelledError:
                pass
            except Exception as e:
                self.log.warn("the engine's event stream broke: {error}", error=e)
            if self._stopped:
                return
            await deferLater(self._reactor, RETRY_DELAY, lambda: None)

    def _line(self, event):
        action = event.get("Action") or event.get("status")
        container_id = event.get("id") or (event.get("Actor") or {}).get("ID")
        if action not in ACTIONS or not container_id:
            return
        try:
            self._callback(container_id, action)
        except Exception:
            self.log.failure("handling {action} of {container} failed",
                             action=action, container=container_id)

    def stop(self):
        """
        Stop following the stream.
        """
        self._stopped = True
        if self._following is not None and not self._following.called:
            self._following.cancel()
