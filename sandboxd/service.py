"""
The daemon's own service: the sandbox manager's start and stop, tied to
twistd's lifecycle.
"""

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger


class ManagerService(Service):
    """
    Starts the manager (runtime checks, orphan removal, warm pools) with the
    application and destroys every sandbox when it stops.

    A failed start stops the reactor: a daemon that cannot reach its engine
    or find its runtime says why and exits instead of serving errors.
    """

    log = Logger()

    def __init__(self, manager, reactor):
        self._manager = manager
        self._reactor = reactor
        self.ready = Deferred()

    def startService(self):
        super().startService()
        starting = Deferred.fromCoroutine(self._manager.start())
        starting.addCallbacks(self._started, self._failed)

    def _started(self, _):
        self.log.info(
            "sandboxd ready: profiles {profiles}",
            profiles=", ".join(sorted(self._manager.profiles)),
        )
        self.ready.callback(None)

    def _failed(self, failure):
        self.log.critical("sandboxd cannot start: {error}", error=failure.value)
        self.ready.errback(failure)
        # A check that fails at once fails before twistd runs the reactor.
        if self._reactor.running:
            self._reactor.stop()
        else:
            self._reactor.callWhenRunning(self._reactor.stop)

    def stopService(self):
        super().stopService()
        return Deferred.fromCoroutine(self._manager.stop())
