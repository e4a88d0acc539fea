"""
A WebSocket session with one sandbox: many concurrent requests multiplexed
as streams of agent frames (docs/protocol.md) over ``/sandboxes/{id}/ws``.

One reader task dispatches incoming frames to per-stream queues.  Each
stream keeps both flow-control windows: a caller grants credit back with
``Stream.consumed`` as it uses DATA, and ``Stream.send_data`` waits for the
agent's WINDOW frames when its credit runs out.

If the connection drops (no close frame) and the sandbox has a ttl, the
session resumes itself: it reopens the WebSocket with its resume token for
up to ``ttl`` seconds, and the daemon hands back the streams with the output
they produced meanwhile.  Calls wait meanwhile instead of failing.
"""

import asyncio

from agent import wire
from agent.e2e_codes import E2EError
from agent.wire import FrameType
from sandbox import _e2e
from sandbox._stream import Stream, _fresh
from sandbox.errors import ProtocolError, SandboxError, SandboxUnavailableError

_DATA = FrameType.DATA
_WINDOW = FrameType.WINDOW
_ERROR = FrameType.ERROR
_RESULT = FrameType.RESULT
_FINAL = wire.FINAL_TYPES
_QUEUED = frozenset({FrameType.DATA, FrameType.EVENT, FrameType.END})


class Session:
    """
    The multiplexed WebSocket session of one sandbox.
    """

    def __init__(self, ws, sandbox_id, token=None, reopen=None, resume_for=0):
        self.sandbox_id = sandbox_id
        self._ws = ws
        #: The daemon's resume token, how to reopen with it, for how long.
        self._token = token
        self._reopen = reopen
        self._resume_for = resume_for
        self._swapped = asyncio.get_running_loop().create_future()
        self.resumed = 0
        #: Messages read from the daemon, across resumes: a resume asks for
        #: those after them again (sandboxd.api.sentlog).
        self._received = 0
        self._streams = {}
        self._next_id = 1
        self._slots = asyncio.Semaphore(wire.MAX_STREAMS)
        self._failure = None
        self._closing = False
        #: The sandbox was destroyed through this session.
        self._destroyed = False
        self._connection_error = None
        self._background = set()
        #: The encrypted session's frames (agent.e2e_frames.Sealing), once
        #: ``encrypt`` agreed keys with the agent.
        self._sealing = None
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())

    @property
    def encrypted(self):
        return self._sealing is not None

    @property
    def fingerprint(self):
        """
        The agent's key fingerprint of an encrypted session, else None.
        """
        return self._sealing.channel.fingerprint if self._sealing is not None else None

    async def encrypt(self, pin=None):
        """
        Agree keys with the agent (``e2e.hello``, docs/security.md) and seal
        every later frame; ``pin`` (the agent's key fingerprint, known out
        of band) refuses any other key with IdentityMismatchError.
        """
        if self._sealing is None:
            self._sealing = await _e2e.handshake(self, pin)

    @property
    def closed(self):
        return self._failure is not None

    def _check(self):
        if self._failure is not None:
            raise _fresh(self._failure)

    async def send(self, data):
        """
        Send one encoded frame; SandboxUnavailableError once the session is gone.
        """
        self._check()
        if self._sealing is not None:
            try:
                data = self._sealing.seal(data)
            except E2EError as e:
                raise self._e2e_failed(e) from None
        await self._send_sealed(data)

    async def _send_sealed(self, data):
        ws = self._ws
        try:
            await ws.send(data)
        except Exception as e:
            from websockets.exceptions import ConnectionClosed

            if isinstance(e, ConnectionClosed) and await self._resumed_from(ws):
                self._check()
                return await self._send_sealed(data)
            if self._failure is not None:
                raise _fresh(self._failure) from None
            error = self._closed_error(e)
            if isinstance(e, ConnectionClosed):
                # The reader fails every stream when it sees the close; the
                # session is closed from now on either way.
                self._failure = error
            raise _fresh(error) from None

    def send_soon(self, data):
        """
        Send a frame in the background (CANCEL, PONG), ignoring failures;
        None closes the WebSocket (an encrypted session that broke).
        """
        if self._failure is not None and data is not None:
            return
        task = asyncio.get_running_loop().create_task(self._send_quietly(data))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _resumed_from(self, ws):
        """
        After ``ws`` broke: wait for the reader to resume the session or give
        up; True when a new connection took its place.
        """
        if self._ws is ws and self._failure is None and self._resumable():
            await asyncio.shield(self._swapped)
        return self._ws is not ws and self._failure is None

    def _resumable(self):
        return bool(self._token and self._reopen and self._resume_for > 0 and not self._closing)

    async def _resume(self, exc):
        """
        Reopen the WebSocket with the resume token until the daemon takes
        it, refuses it, or ``resume_for`` seconds pass; True on success.
        """
        if getattr(exc, "rcvd", None) is not None or not self._resumable():
            return False
        from sandbox.errors import SandboxError

        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._resume_for
        delay = 0.05
        while not self._closing and loop.time() < give_up:
            try:
                self._ws = await self._reopen(self._token, self._received)
            except SandboxError as e:
                if e.status in (404, 410):
                    return False
            except Exception:
                pass
            else:
                self.resumed += 1
                swapped, self._swapped = self._swapped, loop.create_future()
                swapped.set_result(None)
                return True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        return False

    async def _send_quietly(self, data):
        """
        Send ``data`` ignoring failures; None closes the WebSocket instead.
        """
        try:
            if data is None:
                self._closing = True
                await self._ws.close(1002, "E2E")
            else:
                await self._ws.send(data)
        except Exception:
            pass

    async def open(self, method, params=None):
        """
        Open a stream with a REQUEST; return the Stream (use it with ``async
        with`` so that a caller giving up cancels the request).
        """
        self._check()
        await self._slots.acquire()
        if self._failure is not None:
            self._slots.release()
            raise _fresh(self._failure)
        stream_id = self._free_id()
        self._next_id = stream_id + 2 if stream_id + 2 <= wire.MAX_STREAM_ID else 1
        stream = Stream(self, stream_id)
        self._streams[stream_id] = stream
        try:
            payload = wire.request(stream_id, method, params)
        except wire.ProtocolError as e:
            self._forget(stream)
            raise ProtocolError(e.code, f"{method}: {e.message}") from None
        try:
            await self.send(payload)
        except BaseException:
            stream.abandon()
            raise
        return stream

    def _free_id(self):
        stream_id = self._next_id
        while stream_id in self._streams:
            stream_id = stream_id + 2 if stream_id + 2 <= wire.MAX_STREAM_ID else 1
        return stream_id

    async def call(self, method, params=None):
        """
        A request whose answer is one RESULT; return its JSON.
        """
        stream = await self.open(method, params)
        async with stream:
            return await stream.result()

    async def destroy(self):
        """
        Destroy the sandbox over this session (``sandbox.destroy``, which
        the daemon answers itself: no HTTP request).  False when it cannot:
        the session is encrypted (the daemon reads no sealed request) or
        gone, or the daemon is older and relays the method to the agent.
        """
        if self._sealing is not None or self._failure is not None:
            return False
        try:
            await self.call(wire.DESTROY_METHOD)
        except SandboxUnavailableError:
            return False
        except SandboxError as e:
            if e.code == wire.Code.UNKNOWN_METHOD:
                return False
            raise
        self._destroyed = self._closing = True
        # The daemon closes every session of the sandbox now: end this
        # connection at once instead of waiting out the closing handshake
        # (a round trip through both ends: ~1.3 ms of a task at rest).
        # abort() marks the transport lost at once, so websockets' own
        # close or abort of it afterwards does nothing; close() would leave
        # it half-closed while a write is pending, and a later abort()
        # would fail.  Then wait for the reader to see the connection end.
        transport = getattr(self._ws, "transport", None)
        if transport is not None and not transport.is_closing():
            transport.abort()
            try:
                await self._reader
            except Exception:
                pass
        return True

    def _forget(self, stream):
        if self._streams.pop(stream.id, None) is not None:
            self._slots.release()
            if self._sealing is not None:
                self._sealing.forget(stream.id)

    def _e2e_failed(self, error):
        """
        The encrypted session broke (``error``, an E2EError): fail every
        call with its typed error and close; returns that error.
        """
        if self._failure is None:
            self._fail_all(_e2e.failure(self.sandbox_id, error))
            self.send_soon(None)
        return _fresh(self._failure)

    async def close(self):
        """
        Close the WebSocket; pending calls fail with SandboxUnavailableError.
        """
        if self._reader.done():
            return
        if self._sealing is not None and self._failure is None:
            await self._send_quietly(_e2e.close_request(self._sealing, self._free_id()))
        self._closing = True
        try:
            await self._ws.close()
        finally:
            try:
                await self._reader
            except Exception:
                pass

    async def _read_loop(self):
        from websockets.exceptions import ConnectionClosed

        dispatch = self._dispatch
        failure = None
        try:
            while True:
                ws = self._ws
                try:
                    message = await ws.recv()
                except ConnectionClosed as e:
                    if await self._resume(e):
                        continue
                    failure = self._closed_error(e)
                    break
                if isinstance(message, str):
                    continue
                self._received += 1
                try:
                    frame = wire.decode_one(message)
                except wire.ProtocolError as e:
                    failure = ProtocolError(
                        e.code, f"the daemon sent a malformed frame: {e.message}"
                    )
                    await ws.close(1002, e.code)
                    break
                if self._sealing is not None:
                    try:
                        frame = _e2e.open(self._sealing, frame)
                    except (E2EError, wire.ProtocolError) as e:
                        failure = _e2e.failure(self.sandbox_id, e)
                        await ws.close(1002, "E2E")
                        break
                    if frame is None:
                        continue
                dispatch(frame)
        except asyncio.CancelledError:
            failure = self._closed_error(None)
            raise
        except Exception as e:
            failure = SandboxUnavailableError(
                "SANDBOX_UNAVAILABLE", f"sandbox {self.sandbox_id}: session failed: {e!r}"
            )
            await self._ws.close(1011)
        finally:
            self._fail_all(failure or self._closed_error(None))
            if not self._swapped.done():
                self._swapped.set_result(None)

    def _dispatch(self, frame):
        kind = frame.type
        stream = self._streams.get(frame.stream)
        if stream is None:
            if frame.stream == 0:
                if kind is FrameType.PING:
                    self.send_soon(wire.pong(frame.payload))
                elif kind is _ERROR:
                    self._connection_error = frame.payload
            return
        if kind is _DATA:
            try:
                stream.recv_window.received(len(frame.payload), frame.stream)
            except wire.ProtocolError as e:
                self._forget(stream)
                stream._fail(ProtocolError(e.code, f"the agent {e.message}"))
                self.send_soon(wire.cancel(stream.id))
                return
            stream._deliver(frame)
        elif kind is _WINDOW:
            try:
                stream.send_window.grant(frame.window())
            except wire.ProtocolError:
                return
            stream._wake()
        elif kind in _FINAL:
            self._forget(stream)
            stream.finished = True
            stream._deliver(frame)
        elif kind in _QUEUED:
            stream._deliver(frame)

    def _closed_error(self, exc):
        """
        The SandboxUnavailableError for a WebSocket closed with ``exc``.
        """
        close = getattr(exc, "rcvd", None)
        code = getattr(close, "code", None)
        reason = getattr(close, "reason", "") or ""
        if self._destroyed:
            why = "the sandbox was destroyed"
        elif self._closing and code in (None, 1000):
            why = "the session was closed"
        elif code == 1000:
            why = "the daemon closed the session (the sandbox was destroyed)"
        elif code == 1011:
            why = "the sandbox's agent was lost"
        elif code == 1002:
            why = "the daemon closed the session on a protocol error"
            if self._connection_error:
                try:
                    obj = wire.decode_json(self._connection_error)
                    why += f": {obj.get('code')}: {obj.get('message')}"
                except wire.ProtocolError:
                    pass
        elif code is not None:
            why = f"the daemon closed the session (code {code}{': ' + reason if reason else ''})"
        else:
            why = "the connection to the daemon was lost"
        return SandboxUnavailableError(
            "SANDBOX_UNAVAILABLE", f"sandbox {self.sandbox_id}: {why}"
        )

    def _fail_all(self, failure):
        self._failure = failure
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            stream._fail(failure)
            self._slots.release()
