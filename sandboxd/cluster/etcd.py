"""
A small etcd v3 client over etcd's gRPC-gateway JSON API (``/v3/...``), with
treq: leases (grant, keep-alive, revoke), put under a lease, range by prefix
and delete.  That is all membership needs; etcd 3.4 (Debian's
``etcd-server``) serves these paths.

Keys and values travel base64-encoded in the JSON bodies; this module takes
and returns ``str`` keys and ``bytes`` values.  Several endpoints may be
given: a request that cannot reach one tries the next, in order.  Anything
etcd refuses is an L{EtcdError}.
"""

import base64
import json

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectError, ConnectionRefusedError, TimeoutError
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool, ResponseNeverReceived
from zope.interface import Interface, implementer


class EtcdError(Exception):
    """etcd refused a request, or no endpoint answered."""


class IEtcd(Interface):
    """
    What membership and the router need from etcd.  Every method returns a
    Deferred.
    """

    def grant(ttl):
        """A new lease of ``ttl`` seconds: fires with its id (an int)."""

    def keepalive(lease):
        """Refresh ``lease``: fires with its remaining TTL, 0 when it is gone."""

    def revoke(lease):
        """End ``lease`` now (its keys vanish)."""

    def put(key, value, lease=0):
        """Store ``value`` (bytes) at ``key``, attached to ``lease`` if not 0."""

    def range_prefix(prefix):
        """Fires with a dict of every key under ``prefix`` to its value (bytes)."""

    def delete(key):
        """Remove ``key``."""

    def close():
        """Release connections (fires when done)."""


def _b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode("ascii")


def prefix_end(prefix):
    """
    The ``range_end`` of a prefix query: the prefix with its last byte plus
    one (etcd's convention), as bytes.
    """
    raw = bytearray(prefix.encode() if isinstance(prefix, str) else prefix)
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\0"


_UNREACHABLE = (ConnectError, ConnectionRefusedError, TimeoutError, ResponseNeverReceived)


@implementer(IEtcd)
class EtcdClient:
    """
    L{IEtcd} over HTTP(S) to ``endpoints`` (URLs such as
    ``http://127.0.0.1:2379``); ``timeout`` bounds each request.
    """

    log = Logger()

    def __init__(self, endpoints, reactor, timeout=3.0):
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        self._endpoints = [e.rstrip("/") for e in endpoints]
        self._reactor = reactor
        self._timeout = timeout
        self._pool = HTTPConnectionPool(reactor)
        self._pool.maxPersistentPerHost = 4
        self._http = HTTPClient(Agent(reactor, pool=self._pool))

    def close(self):
        """Close the kept-alive connections (a Deferred)."""
        return self._pool.closeCachedConnections()

    async def _call(self, path, body):
        last = None
        for index, base in enumerate(list(self._endpoints)):
            try:
                response = await self._http.post(
                    base + path, json.dumps(body).encode(),
                    headers={b"content-type": [b"application/json"]},
                    timeout=self._timeout)
                text = await response.content()
            except _UNREACHABLE as error:
                last = error
                continue
            if index:
                # Ask the endpoint that answered first next time.
                self._endpoints.insert(0, self._endpoints.pop(index))
            try:
                answer = json.loads(text)
            except ValueError:
                raise EtcdError(f"{base}{path}: not JSON (HTTP {response.code})") from None
            if response.code != 200 or "error" in answer:
                message = answer.get("message") or answer.get("error") or f"HTTP {response.code}"
                raise EtcdError(f"{path}: {message}")
            return answer
        raise EtcdError(f"no etcd endpoint answered ({last})")

    def _do(self, coroutine):
        return Deferred.fromCoroutine(coroutine)

    def grant(self, ttl):
        async def grant():
            answer = await self._call("/v3/lease/grant", {"TTL": int(ttl)})
            return int(answer["ID"])
        return self._do(grant())

    def keepalive(self, lease):
        async def keepalive():
            try:
                answer = await self._call("/v3/lease/keepalive", {"ID": str(lease)})
            except EtcdError as error:
                if "lease not found" in str(error):
                    return 0
                raise
            return int(answer.get("result", {}).get("TTL", 0))
        return self._do(keepalive())

    def revoke(self, lease):
        async def revoke():
            try:
                await self._call("/v3/lease/revoke", {"ID": str(lease)})
            except EtcdError as error:
                if "lease not found" not in str(error):
                    raise
        return self._do(revoke())

    def put(self, key, value, lease=0):
        body = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = str(lease)

        async def put():
            await self._call("/v3/kv/put", body)
        return self._do(put())

    def range_prefix(self, prefix):
        body = {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))}

        async def range_():
            answer = await self._call("/v3/kv/range", body)
            return {base64.b64decode(kv["key"]).decode("utf-8", "replace"):
                    base64.b64decode(kv.get("value", "")) for kv in answer.get("kvs", [])}
        return self._do(range_())

    def delete(self, key):
        async def delete():
            await self._call("/v3/kv/deleterange", {"key": _b64(key)})
        return self._do(delete())
