"""
A QEMU Machine Protocol client, just enough to pause and resume a VM: connect
to the monitor's Unix socket, read the greeting, leave negotiation mode
(``qmp_capabilities``) and run one command (``stop`` or ``cont``).

Every message is one JSON object a line; replies are ``{"return": ...}`` or
``{"error": {"class", "desc"}}``; ``{"event": ...}`` lines may come between
them and are skipped.
"""

import json

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.protocols.basic import LineOnlyReceiver

from sandboxd.runtimes.interface import RuntimeFailure

#: Seconds a monitor may take to answer.
TIMEOUT = 10.0


class QMPError(RuntimeFailure):
    """
    The monitor refused a command, or could not be talked to.
    """


class _Monitor(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 1 << 20

    def __init__(self):
        self._waiting = []
        self._lost = None

    def next(self):
        """
        Fire with the next greeting or reply (events skipped).
        """
        d = Deferred()
        if self._lost is not None:
            d.errback(QMPError(f"the monitor closed the connection: {self._lost}"))
        else:
            self._waiting.append(d)
        return d

    def lineReceived(self, line):
        try:
            message = json.loads(line)
        except ValueError:
            message = {"error": {"desc": f"not JSON: {line[:80]!r}"}}
        if "event" in message or not self._waiting:
            return
        self._waiting.pop(0).callback(message)

    def connectionLost(self, reason):
        self._lost = reason.getErrorMessage()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(QMPError(f"the monitor closed the connection: {self._lost}"))


async def execute(reactor, path, command, timeout=TIMEOUT):
    """
    Run ``command`` on the QMP monitor at the Unix socket ``path``; fire
    with its ``return`` value, or fail with L{QMPError}.
    """
    try:
        monitor = await connectProtocol(
            UNIXClientEndpoint(reactor, path, timeout=timeout), _Monitor())
    except Exception as e:
        raise QMPError(f"cannot reach the monitor at {path}: {e}") from e
    timer = reactor.callLater(timeout, monitor.transport.abortConnection)
    try:
        greeting = await monitor.next()
        if "QMP" not in greeting:
            raise QMPError(f"not a QMP monitor: {str(greeting)[:80]}")
        for name in ("qmp_capabilities", command):
            monitor.transport.write(json.dumps({"execute": name}).encode() + b"\n")
            reply = await monitor.next()
            if "error" in reply:
                raise QMPError(f"{name}: {reply['error'].get('desc', reply['error'])}")
        return reply.get("return")
    finally:
        if timer.active():
            timer.cancel()
        monitor.transport.loseConnection()
