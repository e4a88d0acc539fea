"""
Dedicated host ports: waiting for a sandbox's port to accept connections,
and choosing, binding and describing the host port that relays to it.
"""

import attr
from twisted.internet.defer import maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.task import deferLater

from sandboxd.tunnels.relay import CONNECT_TIMEOUT, connect_sandbox

#: The readiness probe's first pause and its cap, in seconds.
FIRST_BACKOFF = 0.05
MAX_BACKOFF = 1.0


class PortNotReady(Exception):
    """
    The sandbox's port did not accept a connection in time.
    """


class NoHostPort(Exception):
    """
    No host port of the configured range could be bound.
    """


async def wait_ready(reactor, address, port, timeout, connect=connect_sandbox):
    """
    Return once ``address:port`` accepts a TCP connection, probing with a
    backoff doubling from L{FIRST_BACKOFF} to L{MAX_BACKOFF} seconds; raise
    L{PortNotReady} when ``timeout`` seconds have passed without one.
    """
    deadline = reactor.seconds() + timeout
    pause = FIRST_BACKOFF
    last = "no attempt"
    while True:
        left = deadline - reactor.seconds()
        try:
            probe = await connect(reactor, address, port, max(0.05, min(CONNECT_TIMEOUT, left)))
        except Exception as e:
            last = type(e).__name__ if not str(e) else str(e)
        else:
            probe.transport.loseConnection()
            return
        left = deadline - reactor.seconds()
        if left <= 0:
            raise PortNotReady(f"port {port} did not accept a connection in {timeout:g} s ({last})")
        await _sleep(reactor, min(pause, left))
        pause = min(pause * 2, MAX_BACKOFF)


def _sleep(reactor, seconds):
    return deferLater(reactor, seconds, lambda: None)


def bind(reactor, factory, interface, port_min, port_max, exact=None):
    """
    Listen with ``factory`` on ``interface``: on ``exact`` when given, else
    on the first free port of ``port_min..port_max`` (0/0: a port the OS
    picks).  Return the listening port or raise L{NoHostPort}.
    """
    if exact is not None:
        candidates = [exact]
    elif port_min == 0 and port_max == 0:
        candidates = [0]
    else:
        candidates = range(max(port_min, 1), port_max + 1)
    last = None
    for candidate in candidates:
        try:
            return reactor.listenTCP(candidate, factory, interface=interface)
        except CannotListenError as e:
            last = e
    if exact is not None:
        raise NoHostPort(f"host port {exact} on {interface} is taken: {last.socketError}")
    raise NoHostPort(
        f"every host port of {port_min}-{port_max} on {interface} is taken"
        " (limits.tunnel_port_min/max)"
    )


@attr.s(auto_attribs=True, eq=False)
class HostPort:
    """
    One dedicated host port relaying to a sandbox's port.
    """

    sandbox_id: str
    port: int
    host_port: int
    interface: str
    created: float
    factory: object = attr.ib(repr=False)
    listening: object = attr.ib(repr=False)

    @property
    def url(self):
        host = self.interface
        if host in ("0.0.0.0", "::"):
            host = "localhost"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.host_port}"

    def toJSON(self):
        return {
            "port": self.port,
            "host_port": self.host_port,
            "url": self.url,
            "bind_address": self.interface,
            "connections": len(self.factory.live),
            "refused": self.factory.refused,
        }

    def close(self):
        """
        Stop listening and cut the open relays; a Deferred firing when the
        port is closed.
        """
        stopped = maybeDeferred(self.listening.stopListening)
        self.factory.closeAll()
        return stopped
