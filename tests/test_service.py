"""
Tests for L{sandboxd.service.ManagerService}: a failed start stops the
daemon instead of leaving it serving errors.
"""

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from sandboxd.runtimes.interface import RuntimeUnavailable
from sandboxd.service import ManagerService


class _FailingManager:
    profiles = {}

    async def start(self):
        raise RuntimeUnavailable("unknown runtime 'qemu'")


class _StoppableReactor(MemoryReactorClock):
    def __init__(self):
        super().__init__()
        self.stops = 0

    def stop(self):
        self.stops += 1


class ManagerServiceTests(SynchronousTestCase):
    def test_failure_before_the_reactor_runs(self):
        """
        A start that fails at once (before twistd runs the reactor) stops
        the reactor as soon as it runs, and fails ``ready``.
        """
        reactor = _StoppableReactor()
        service = ManagerService(_FailingManager(), reactor)
        service.startService()
        self.failureResultOf(service.ready, RuntimeUnavailable)
        self.assertEqual(reactor.stops, 0)
        self.assertEqual(len(reactor.whenRunningHooks), 1)
        hook, args, kwargs = reactor.whenRunningHooks[0]
        hook(*args, **kwargs)
        self.assertEqual(reactor.stops, 1)

    def test_failure_while_running(self):
        """
        A start failing while the reactor runs stops it at once.
        """
        reactor = _StoppableReactor()
        reactor.running = True
        service = ManagerService(_FailingManager(), reactor)
        service.startService()
        self.failureResultOf(service.ready, RuntimeUnavailable)
        self.assertEqual(reactor.stops, 1)
