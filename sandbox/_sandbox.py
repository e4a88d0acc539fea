"""
``Sandbox``: one sandbox and its open session; ``create_sandbox`` and
``connect_sandbox``.
"""

from sandbox._code import CodeInterpreter
from sandbox._env import Environment
from sandbox._fs import Filesystem
from sandbox._net import Network
from sandbox._process import Process
from sandbox._templates import SandboxTemplate
from sandbox._connect import create_with_session, open_session
from sandbox.client import Client, create_fields


class Sandbox:
    """
    A sandbox with an open WebSocket session.  ``id`` and ``info`` (the
    daemon's JSON object) describe it; ``fs``, ``process``, ``env``, ``net`` and
    ``code`` (the code interpreter) act in it.
    Calls may run concurrently: they share the session.
    """

    def __init__(self, info, session, client, owns_client=True):
        self.id = info["id"]
        self.info = info
        self.client = client
        self._session = session
        self._owns_client = owns_client
        self.fs = Filesystem(session)
        self.process = Process(session)
        self.env = Environment(session)
        self.net = Network(session, client, self.id)
        self.code = CodeInterpreter(self.process)
        self.template = SandboxTemplate(client.templates, self.id)

    def __repr__(self):
        state = "closed" if self.closed else "open"
        return f"<Sandbox {self.id} {state}>"

    @property
    def closed(self):
        """
        True once the session is gone (closed, destroyed, agent lost).
        """
        return self._session.closed

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        await self.close()

    @property
    def encrypted(self):
        """
        True when the session is end-to-end encrypted (docs/security.md).
        """
        return self._session.encrypted

    @property
    def fingerprint(self):
        """
        The agent's key fingerprint an encrypted session agreed with (what
        to pin next time), else None.
        """
        return self._session.fingerprint

    async def agent_fingerprint(self):
        """
        The agent's key fingerprint as the agent answers it (``e2e.identity``;
        through the daemon, so check it out of band before pinning it).
        """
        return (await self._session.call("e2e.identity"))["fingerprint"]

    async def ping(self):
        """
        A round trip through the daemon to the agent's request path.
        """
        await self._session.call("ping")

    async def refresh(self):
        """
        Fetch the sandbox object again; return and keep it as ``info``.
        """
        self.info = await self.client.get(self.id)
        return self.info

    async def set_ttl(self, ttl):
        """
        Change how long the sandbox outlives its last session (seconds;
        ``PATCH /sandboxes/{id}``); return and keep the sandbox object.
        """
        return await self.update(ttl=ttl)

    async def update(self, ttl=None, labels=None, expires_at=None):
        """
        Change the sandbox's ``ttl`` and ``expires_at`` and/or merge
        ``labels`` into its own (a None value removes that label); return
        and keep the sandbox object.
        """
        self.info = await self.client.update(
            self.id, ttl=ttl, labels=labels, expires_at=expires_at)
        return self.info

    async def pause(self):
        """
        Freeze the sandbox (``POST /sandboxes/{id}/pause``): its processes
        and memory are kept, it uses no CPU, and calls on it raise
        ``SandboxPausedError`` until ``resume()``.  The session stays open.
        Return and keep the sandbox object.
        """
        self.info = await self.client.pause(self.id)
        return self.info

    async def resume(self):
        """
        Thaw a paused sandbox (``POST /sandboxes/{id}/resume``); return and
        keep the sandbox object.
        """
        self.info = await self.client.resume(self.id)
        return self.info

    async def stats(self):
        """
        Resource usage (``GET /sandboxes/{id}/stats``).
        """
        return await self.client.stats(self.id)

    async def close(self):
        """
        Close the session.  The sandbox itself stays for its ttl (a sandbox
        made with ttl 0 may be destroyed by the daemon when its last session
        closes).
        """
        try:
            await self._session.close()
        finally:
            if self._owns_client:
                await self.client.close()

    async def destroy(self):
        """
        Destroy the sandbox, then close: over the session when the daemon
        can (one message), else with ``DELETE /sandboxes/{id}``.
        """
        try:
            if not await self._session.destroy():
                await self.client.destroy(self.id)
        finally:
            await self.close()


class _Opening:
    """
    The awaitable ``create_sandbox``/``connect_sandbox`` return; also an async
    context manager: ``async with create_sandbox() as sbx:`` closes on exit.
    """

    def __init__(self, coroutine):
        self._coroutine = coroutine
        self._sandbox = None

    def __await__(self):
        return self._coroutine.__await__()

    async def __aenter__(self):
        self._sandbox = await self._coroutine
        return self._sandbox

    async def __aexit__(self, *exc_info):
        await self._sandbox.close()


def create_sandbox(
    profile=None,
    template=None,
    memory=None,
    cpu=None,
    storage=None,
    ttl=None,
    labels=None,
    endpoint=None,
    auth=None,
    client=None,
    encrypted=False,
    pin=None,
    ttl_action=None,
    expires_at=None,
    volumes=None,
    network=None,
    secrets=None,
):
    """
    Create a sandbox and open its session, in one round trip (``GET
    /sandboxes/new/ws``; ``POST /sandboxes`` then the session with a daemon
    that lacks it, or when ``network`` or ``secrets`` are given: a secret
    never travels in a URL).

    ``network`` is "open", "none" or ``{"allow": ["host:port", "CIDR",
    ...]}``; ``secrets`` maps a name to a value or to ``{"value": ...,
    "hosts": [...]}``: the sandbox sees only a placeholder in ``$NAME``, and
    the daemon puts the value in the headers of its ``net.fetch`` requests to
    those hosts (docs/egress.md).

    ``memory``/``storage`` take sizes ("512m", "2g" or bytes), ``cpu`` a
    number of CPUs, ``ttl`` seconds, ``labels`` a dict.  Unset fields take the
    daemon's defaults.  ``endpoint``/``auth`` default to ``$SANDBOX_ENDPOINT``
    and ``$SANDBOX_AUTH``; pass ``client`` (a Client) to share its connections
    (it is then not closed with the sandbox).  If the session cannot be
    opened, the new sandbox is destroyed before the error is raised.
    ``ttl_action`` ("destroy" or "pause") says what the ttl running out
    does; ``expires_at`` (a zoned ``datetime`` or ISO 8601 string) ends the
    sandbox then whatever it does; ``volumes`` mount volumes
    (``{"name", "path", "read_only"}`` or ``(name, path[, read_only])``).

    ``encrypted=True`` seals everything between this process and the
    sandbox's agent (docs/security.md); ``pin`` (a key fingerprint, implies
    ``encrypted``) refuses any agent key but that one.
    """
    fields = create_fields(
        profile=profile,
        template=template,
        memory=memory,
        cpu=cpu,
        storage=storage,
        ttl=ttl,
        labels=labels,
        ttl_action=ttl_action,
        expires_at=expires_at,
        volumes=volumes,
    )
    extra = {name: value for name, value in (("network", network), ("secrets", secrets))
             if value is not None}
    return _Opening(_create(fields, endpoint, auth, client, _e2e(encrypted, pin), extra))


def connect_sandbox(
    sandbox_id, endpoint=None, auth=None, client=None, encrypted=False, pin=None
):
    """
    Open a session with the existing sandbox ``sandbox_id``
    (NotFoundError if there is none); ``encrypted`` and ``pin`` as for
    create_sandbox.
    """
    return _Opening(_connect(sandbox_id, endpoint, auth, client, _e2e(encrypted, pin)))


def _e2e(encrypted, pin):
    """
    What to ask of the session: None (clear), or ``(pin,)``.
    """
    return (pin,) if encrypted or pin else None


async def _secure(session, e2e):
    """
    Encrypt ``session`` if asked; closes it on failure.
    """
    if e2e is None:
        return
    try:
        await session.encrypt(*e2e)
    except BaseException:
        await session.close()
        raise


async def _create(fields, endpoint, auth, client, e2e=None, extra=None):
    owns = client is None
    if owns:
        client = Client(endpoint, auth)
    try:
        created = None if extra else await create_with_session(client, fields)
        if created is not None:
            info, session = created
        else:
            info = await client.create(**fields, **(extra or {}))
        try:
            if created is None:
                session = await open_session(client, info["id"], resume_for=info.get("ttl") or 0)
            await _secure(session, e2e)
        except BaseException:
            try:
                await client.destroy(info["id"])
            except Exception:
                pass
            raise
    except BaseException:
        if owns:
            await client.close()
        raise
    return Sandbox(info, session, client, owns)


async def _connect(sandbox_id, endpoint, auth, client, e2e=None):
    owns = client is None
    if owns:
        client = Client(endpoint, auth)
    try:
        info = await client.get(sandbox_id)
        session = await open_session(client, sandbox_id, resume_for=info.get("ttl") or 0)
        await _secure(session, e2e)
    except BaseException:
        if owns:
            await client.close()
        raise
    return Sandbox(info, session, client, owns)
