"""
A tenant's quotas, from the signed ``X-Sandbox-Max-*`` headers: how many
sandboxes it may hold at once and the longest TTL it may ask for.
(``Max-Templates`` is carried for the templates routes.)
"""

from collections import Counter


class QuotaExceeded(Exception):
    """
    A create goes past a tenant's quota: answered ``status`` ``code``
    (``retry_after`` seconds, or None, for the Retry-After header).
    """

    def __init__(self, status, code, message, retry_after=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def effective_ttl(quotas, ttl):
    """
    The TTL a tenant's sandbox gets: its ``ttl`` (0: none asked), checked
    against ``quotas.max_ttl``; with a max and no TTL asked, the max.
    """
    most = quotas.max_ttl
    if most is None:
        return ttl
    if ttl > most:
        raise QuotaExceeded(
            400, "LIMIT_EXCEEDED", f"ttl {ttl} exceeds this identity's X-Sandbox-Max-TTL ({most})")
    return ttl or most


class ConcurrencyQuota:
    """
    Counts each identity's sandboxes: ``alive(identity)`` (those it holds)
    plus the creates under way, against ``quotas.max_concurrent``.
    """

    def __init__(self, alive):
        self._alive = alive
        self._pending = Counter()

    def reserve(self, identity, quotas):
        """
        Take a place for one create (raise L{QuotaExceeded} if there is
        none); call the returned function once the create is done.
        """
        most = quotas.max_concurrent
        if most is not None:
            held = self._alive(identity) + self._pending[identity]
            if held >= most:
                raise QuotaExceeded(
                    429, "QUOTA_EXCEEDED",
                    f"this identity holds {held} sandboxes; X-Sandbox-Max-Concurrent is {most}",
                    retry_after=5)
        self._pending[identity] += 1
        released = []

        def release():
            if not released:
                released.append(True)
                self._pending[identity] -= 1
                if not self._pending[identity]:
                    del self._pending[identity]

        return release
