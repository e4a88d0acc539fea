"""
Several runtimes in one daemon: each profile names its runtime, and one
IRuntime routes every call to the runtime that serves it.
"""

from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from zope.interface import implementer

from sandboxd.runtimes.interface import IRuntime, RuntimeUnavailable


@implementer(IRuntime)
class RuntimeSet:
    """
    Routes by runtime name (``start``) and by container id (``destroy``,
    ``stats``: a child claims the ids with its ``PREFIX``; the child without
    one, Docker, takes the rest).  Only the children that ``prepare`` was
    asked for are watched and listed.

    ``children`` maps runtime names to runtimes; one runtime may serve
    several names (Docker serves docker and docker+gvisor).
    """

    name = "set"

    def __init__(self, children):
        self._children = dict(children)
        self._prepared = []
        self._callback = None
        self._watches = {}

    def _byName(self, name):
        child = self._children.get(name)
        if child is None:
            raise RuntimeUnavailable(
                f"unknown runtime {name!r} (this daemon runs {', '.join(sorted(self._children))})"
            )
        return child

    def serving(self, name):
        """
        The child runtime serving runtime ``name`` (RuntimeUnavailable if none).
        """
        return self._byName(name)

    def _byContainer(self, container_id):
        fallback = None
        for child in _unique(self._children.values()):
            prefix = getattr(child, "PREFIX", None)
            if prefix is None:
                fallback = child
            elif container_id.startswith(prefix):
                return child
        return fallback

    def prepare(self, runtimes):
        try:
            wanted = {}
            for name in sorted(runtimes):
                wanted.setdefault(id(self._byName(name)), (self._byName(name), set()))[1].add(name)
        except RuntimeUnavailable as e:
            return fail(e)
        prepared = [child for child, _ in wanted.values()]

        async def prepare_all():
            for child, names in wanted.values():
                await child.prepare(names)
            # A reload may bring a runtime in: it is watched from now on
            # (one that leaves keeps its watch: its sandboxes live on).
            for child in prepared:
                if child not in self._prepared:
                    self._prepared.append(child)
                    if self._callback is not None:
                        self._watches[id(child)] = child.watch(self._callback)

        return Deferred.fromCoroutine(prepare_all())

    def start(self, spec):
        try:
            return self._byName(spec.runtime).start(spec)
        except RuntimeUnavailable as e:
            return fail(e)

    def destroy(self, container_id):
        return self._byContainer(container_id).destroy(container_id)

    def stats(self, container_id):
        return self._byContainer(container_id).stats(container_id)

    def pause(self, container_id):
        return self._byContainer(container_id).pause(container_id)

    def resume(self, container_id):
        return self._byContainer(container_id).resume(container_id)

    def watch(self, callback):
        self._callback = callback
        for child in self._prepared:
            if id(child) not in self._watches:
                self._watches[id(child)] = child.watch(callback)
        return _Watches(self)

    def images_present(self, names):
        """
        Which of the image names the engine has (the Docker runtime's
        answer: VM disks are made from the same images).
        """
        return self._byContainer("").images_present(names)

    def list_owned(self):
        if not self._prepared:
            return succeed([])
        listing = DeferredList([c.list_owned() for c in self._prepared], fireOnOneErrback=True,
                               consumeErrors=True)

        def merge(results):
            return [item for _, owned in results for item in owned]

        def unwrap(failure):
            return failure.value.subFailure

        return listing.addCallbacks(merge, unwrap)


class _Watches:
    def __init__(self, runtimes):
        self._runtimes = runtimes

    def stop(self):
        watches, self._runtimes._watches = self._runtimes._watches, {}
        self._runtimes._callback = None
        for watch in watches.values():
            watch.stop()


def _unique(items):
    seen = []
    for item in items:
        if not any(item is s for s in seen):
            seen.append(item)
    return seen
