"""
Finding again, after a restart, the sandboxes a previous run of the daemon
handed out: their records, their containers, their agents.
"""

from twisted.internet.defer import Deferred, DeferredList

from sandboxd.sandbox import Sandbox, State

#: Seconds a restarted daemon gives each recorded agent to answer.
ADOPT_TIMEOUT = 5.0
#: The recorded states worth adopting.
_LIVE = frozenset({State.RUNNING.value, State.DISCONNECTED.value, State.PAUSED.value})


async def reconnect(reactor, records, containers, connect, timeout=ADOPT_TIMEOUT):
    """
    Connect to the agent of every record that was running or disconnected
    and whose container is among ``containers``, all at once (a paused
    one's agent cannot answer: it is adopted with no connection, made on
    its resume).  Return ``(adopted, given_up)``: Sandboxes with their
    connection, and
    ``(record, reason)`` pairs for the others (``reason`` None for records
    that were not live, so nothing was lost).
    """
    live = [r for r in records if r.state in _LIVE and r.container_id in containers]
    given_up = [
        (r, None if r.state not in _LIVE else "its container is gone")
        for r in records if r not in live
    ]

    async def one(record):
        sandbox = Sandbox.fromRecord(record)
        if sandbox.state is State.PAUSED:
            return sandbox
        sandbox.connection = await connect(
            reactor, sandbox.endpoint, sandbox.secret,
            deadline=timeout, label=sandbox.id,
        )
        return sandbox

    results = await DeferredList(
        [Deferred.fromCoroutine(one(r)) for r in live], consumeErrors=True
    )
    adopted = []
    for record, (ok, result) in zip(live, results):
        if ok:
            adopted.append(result)
        else:
            given_up.append((record, f"its agent did not answer: {result.value}"))
    return adopted, given_up
