"""
Reaching a freshly started agent: connect, retrying while it boots.
"""

from twisted.internet.task import deferLater

from sandboxd.protocols.agent import AgentConnectionFactory, AgentLost
from sandboxd.protocols.endpoints import EndpointSyntaxError, parse_endpoint

from agent import wire

#: Seconds one connection attempt (with its preamble, for VM streams) may take.
ATTEMPT_TIMEOUT = 2.0


async def connect_agent(reactor, endpoint, secret, deadline=30.0, label=""):
    """
    Connect and authenticate to the agent at ``endpoint`` (an agent
    endpoint string), retrying every few milliseconds until it listens or
    ``deadline`` seconds have passed.  Return the ready AgentConnection.
    """
    try:
        client = parse_endpoint(endpoint).client(reactor, timeout=ATTEMPT_TIMEOUT)
    except EndpointSyntaxError as e:
        raise AgentLost(wire.Code.SANDBOX_UNAVAILABLE, str(e)) from e
    factory = AgentConnectionFactory(secret, reactor, label)
    give_up = reactor.seconds() + deadline
    delay = 0.01
    while True:
        try:
            connection = await client.connect(factory)
        except Exception as e:
            if reactor.seconds() + delay > give_up:
                raise AgentLost(
                    wire.Code.SANDBOX_UNAVAILABLE,
                    f"agent at {endpoint} did not answer within {deadline:g}s: {e}",
                )
            await deferLater(reactor, delay, lambda: None)
            delay = min(delay * 1.5, 0.25)
            continue
        try:
            return await connection.whenReady().addTimeout(deadline, reactor)
        except Exception:
            connection.transport.abortConnection()
            raise
