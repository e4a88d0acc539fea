"""
Reaching a freshly started agent: connect, retrying while it boots.
"""

from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import deferLater

from sandboxd.protocols.agent import AgentConnectionFactory, AgentLost

from agent import wire


async def connect_agent(reactor, host, port, secret, deadline=30.0, label=""):
    """
    Connect and authenticate to the agent at host:port, retrying every few
    milliseconds until it listens or ``deadline`` seconds have passed.
    Return the ready AgentConnection.
    """
    factory = AgentConnectionFactory(secret, reactor, label)
    endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=2)
    give_up = reactor.seconds() + deadline
    delay = 0.01
    while True:
        try:
            connection = await endpoint.connect(factory)
        except Exception as e:
            if reactor.seconds() + delay > give_up:
                raise AgentLost(
                    wire.Code.SANDBOX_UNAVAILABLE,
                    f"agent at {host}:{port} did not answer within {deadline:g}s: {e}",
                )
            await deferLater(reactor, delay, lambda: None)
            delay = min(delay * 1.5, 0.25)
            continue
        try:
            return await connection.whenReady().addTimeout(deadline, reactor)
        except Exception:
            connection.transport.abortConnection()
            raise
