"""
An in-memory L{IEtcd} whose leases expire on a Clock: for the logic tests of
membership and the router (the real client is tested against a real etcd in
tests/test_cluster_etcd.py).
"""

from twisted.internet.defer import fail, succeed
from zope.interface import implementer

from sandboxd.cluster.etcd import EtcdError, IEtcd


@implementer(IEtcd)
class FakeEtcd:
    """
    Keys, values and leases in dicts; a lease's keys vanish when ``clock``
    passes its deadline.  ``down = True`` makes every call fail as an
    unreachable etcd does.
    """

    def __init__(self, clock):
        self._clock = clock
        self.data = {}
        self.leases = {}  # id -> (ttl, deadline)
        self._attached = {}  # key -> lease
        self._next = 100
        self.down = False

    def _expire(self):
        now = self._clock.seconds()
        for lease, (_, deadline) in list(self.leases.items()):
            if deadline <= now:
                self._drop(lease)

    def _drop(self, lease):
        self.leases.pop(lease, None)
        for key, owner in list(self._attached.items()):
            if owner == lease:
                del self._attached[key]
                self.data.pop(key, None)

    def _call(self, action):
        if self.down:
            return fail(EtcdError("no etcd endpoint answered (fake: down)"))
        self._expire()
        try:
            return succeed(action())
        except EtcdError as error:
            return fail(error)

    def grant(self, ttl):
        def grant():
            self._next += 1
            self.leases[self._next] = (ttl, self._clock.seconds() + ttl)
            return self._next
        return self._call(grant)

    def keepalive(self, lease):
        def keepalive():
            if lease not in self.leases:
                return 0
            ttl = self.leases[lease][0]
            self.leases[lease] = (ttl, self._clock.seconds() + ttl)
            return ttl
        return self._call(keepalive)

    def revoke(self, lease):
        return self._call(lambda: self._drop(lease))

    def put(self, key, value, lease=0):
        def put():
            if lease and lease not in self.leases:
                raise EtcdError("/v3/kv/put: etcdserver: requested lease not found")
            self.data[key] = value
            if lease:
                self._attached[key] = lease
            else:
                self._attached.pop(key, None)
        return self._call(put)

    def range_prefix(self, prefix):
        return self._call(lambda: {k: v for k, v in self.data.items() if k.startswith(prefix)})

    def delete(self, key):
        def delete():
            self.data.pop(key, None)
            self._attached.pop(key, None)
        return self._call(delete)

    def close(self):
        return succeed(None)
