"""
The tunnels of every sandbox: opening and closing dedicated host ports
within the limits, recording them, announcing them as events, and
following the sandboxes' lives (closing their tunnels when they end,
binding them again when a restarted daemon adopts them).
"""

from twisted.logger import Logger
from zope.interface import implementer

from sandboxd.api.errors import ApiError, sandbox_paused
from sandboxd.lifecycle import ISandboxObserver
from sandboxd.sandbox import State
from sandboxd.store import TunnelRecord
from sandboxd.tunnels.addressing import check_target
from sandboxd.tunnels.ingress import Ingress
from sandboxd.tunnels.hostports import HostPort, NoHostPort, PortNotReady, bind, wait_ready
from sandboxd.tunnels.pathproxy import PathProxy
from sandboxd.tunnels.relay import HostPortFactory

@implementer(ISandboxObserver)
class Tunnels:
    """
    Dedicated host ports by sandbox, and the path proxy; observes sandbox
    transitions (``sandboxChanged``).

    ``limits`` is the ``[limits]`` config (max_tunnels,
    max_connections_per_tunnel, tunnel_bind_address, tunnel_port_min/max),
    ``settings`` the ``[tunnels]`` one (connect_timeout, expose_timeout,
    auth; with auth "token", ``ingress_key`` is the key of L{Ingress}).
    """

    log = Logger()

    def __init__(self, reactor, store, limits, settings, ingress_key=None):
        self._reactor = reactor
        self._store = store
        self._ingressKey = ingress_key
        self._open = {}
        self._pending = {}
        self.proxy = PathProxy(reactor, settings.connect_timeout)
        #: Checks path-proxy callers (``[tunnels] auth = "token"``), or None.
        self.ingress = None
        self.reload(limits, settings)

    def reload(self, limits, settings):
        """
        Apply new ``[limits]`` and ``[tunnels]`` settings: to the next
        expose, bind and proxied connection.  Open tunnels keep their host
        port and connection cap.  Turning ``auth`` to ``"token"`` keeps the
        key, so tokens and signed URLs handed out before stay valid.
        """
        self._limits = limits
        self._settings = settings
        self.proxy.connect_timeout = settings.connect_timeout
        if settings.auth != "token":
            self.ingress = None
        elif self.ingress is None:
            self.ingress = Ingress(self._ingressKey, self._reactor)

    # Queries

    def ports(self, sandbox_id):
        """
        The sandbox's dedicated host ports, by sandbox port.
        """
        return [self._open[sandbox_id][p] for p in sorted(self._open.get(sandbox_id, {}))]

    def describe(self, sandbox_id):
        """
        The public shape of the sandbox's tunnels (``GET /sandboxes/{id}``).
        """
        return [tunnel.toJSON() for tunnel in self.ports(sandbox_id)]

    # Opening and closing

    async def expose(self, sandbox, port, timeout=None):
        """
        A dedicated host port relaying to ``port`` of ``sandbox``, once that
        port accepts connections (the one already open, if any).  Raise the
        API's named errors.
        """
        existing = self._open.get(sandbox.id, {}).get(port)
        if existing is not None:
            return existing, False
        if sandbox.state is State.PAUSED:
            raise sandbox_paused(sandbox.id)
        address = check_target(sandbox, port)
        key = (sandbox.id, port)
        if key in self._pending:
            raise ApiError(
                409, "EXPOSE_IN_PROGRESS", f"port {port} of sandbox {sandbox.id} is being exposed"
            )
        count = len(self._open.get(sandbox.id, {})) + sum(
            1 for sid, _ in self._pending if sid == sandbox.id
        )
        if count >= self._limits.max_tunnels:
            raise ApiError(
                429, "TOO_MANY_TUNNELS",
                f"sandbox {sandbox.id} has {count} tunnels (limits.max_tunnels"
                f" = {self._limits.max_tunnels})",
            )
        if timeout is None:
            timeout = self._settings.expose_timeout
        self._pending[key] = True
        try:
            try:
                await wait_ready(self._reactor, address, port, timeout)
            except PortNotReady as e:
                raise ApiError(504, "PORT_NOT_READY", f"sandbox {sandbox.id}: {e}")
            if not sandbox.alive:
                raise ApiError(409, "SANDBOX_NOT_RUNNING", f"sandbox {sandbox.id} ended")
            tunnel = self._bind(sandbox, port, address)
        finally:
            del self._pending[key]
        self._store.putTunnel(TunnelRecord(
            sandbox.id, port, tunnel.host_port, tunnel.interface, tunnel.created))
        self._event("tunnel.opened", sandbox, tunnel)
        return tunnel, True

    def _bind(self, sandbox, port, address, exact=None, interface=None):
        limits = self._limits
        interface = interface or limits.tunnel_bind_address
        factory = HostPortFactory(
            self._reactor, f"{sandbox.id}:{port}", address, port,
            limits.max_connections_per_tunnel, self._settings.connect_timeout,
        )
        try:
            listening = bind(
                self._reactor, factory, interface,
                limits.tunnel_port_min, limits.tunnel_port_max, exact,
            )
        except NoHostPort as e:
            raise ApiError(503, "NO_HOST_PORT", str(e))
        tunnel = HostPort(
            sandbox.id, port, listening.getHost().port, interface,
            self._reactor.seconds(), factory, listening,
        )
        self._open.setdefault(sandbox.id, {})[port] = tunnel
        self.log.info("tunnel {sandbox}:{port} on {interface}:{host_port}", sandbox=sandbox.id,
                      port=port, interface=interface, host_port=tunnel.host_port)
        return tunnel

    def close(self, sandbox, port, reason="DELETE"):
        """
        Close the dedicated host port of ``port``; False when there is none.
        """
        tunnel = self._open.get(sandbox.id, {}).pop(port, None)
        if tunnel is None:
            return False
        if not self._open[sandbox.id]:
            del self._open[sandbox.id]
        self._store.deleteTunnel(sandbox.id, port)
        tunnel.close().addErrback(lambda f: self.log.failure(
            "closing tunnel {sandbox}:{port}", f, sandbox=sandbox.id, port=port))
        self._event("tunnel.closed", sandbox, tunnel, reason=reason)
        return True

    def closeAll(self, sandbox, reason):
        """
        Close every tunnel of ``sandbox`` and cut its proxied exchanges; a
        Deferred fires once the path proxy's idle connections are closed.
        """
        for port in sorted(self._open.get(sandbox.id, {})):
            self.close(sandbox, port, reason)
        return self.proxy.forget(sandbox.id)

    # Following the sandboxes

    def sandboxChanged(self, transition):
        """
        Close a sandbox's tunnels when it ends; bind them again when a
        restarted daemon adopts it.
        """
        sandbox = transition.sandbox
        if transition.ending:
            self.closeAll(sandbox, transition.reason or f"the sandbox is {transition.new.value}")
        elif transition.old is None and sandbox.alive:
            self.restore(sandbox)

    def restore(self, sandbox):
        """
        Bind the recorded tunnels of an adopted sandbox on their host ports
        again; one that cannot be is forgotten with a ``tunnel.closed``
        event saying why.
        """
        for record in self._store.tunnels(sandbox.id):
            if record.port in self._open.get(sandbox.id, {}):
                continue
            try:
                address = check_target(sandbox, record.port)
                tunnel = self._bind(sandbox, record.port, address, exact=record.host_port,
                                    interface=record.bind_address)
            except ApiError as e:
                self._store.deleteTunnel(sandbox.id, record.port)
                self.log.warn("tunnel {sandbox}:{port} not re-bound: {why}",
                              sandbox=sandbox.id, port=record.port, why=e.message)
                self._store.addEvent(
                    "tunnel.closed", sandbox.id, self._reactor.seconds(),
                    {"port": record.port, "host_port": record.host_port,
                     "reason": f"not re-bound after a restart: {e.message}"},
                    sandbox.identity,
                )
                continue
            tunnel.created = record.created
            self._event("tunnel.opened", sandbox, tunnel, reason="re-bound after a restart")

    def _event(self, type, sandbox, tunnel, **data):
        data.update(port=tunnel.port, host_port=tunnel.host_port, url=tunnel.url)
        self._store.addEvent(type, sandbox.id, self._reactor.seconds(), data, sandbox.identity)
