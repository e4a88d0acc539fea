"""
The agent's server: authenticates each connection, then serves its
requests concurrently, one task per stream.
"""

import asyncio
import concurrent.futures
import functools
import importlib
import os
import signal

from . import listeners, params, wire
from .e2e_codes import Code as E2ECode, E2EError
from .errors import RequestError
from .methods import METHODS
from .reaper import Reaper
from .stream import Stream
from .wire import Code, FrameType, ProtocolError
from .zygote import Zygote

#: Seconds a connection may take to authenticate.
AUTH_TIMEOUT = 30.0
#: The largest PING payload.
MAX_PING = 64
#: Threads for blocking file I/O, shared by all connections.
IO_THREADS = 4


class Agent:
    """
    What every connection shares: the secret, the defaults for processes,
    the child reaper and the I/O threads.
    """

    def __init__(self, secret, cwd, env=None, use_pidfd=None, zygote=True):
        self.secret = secret
        self.cwd = cwd
        self.env = dict(os.environ if env is None else env)
        loop = asyncio.get_running_loop()
        self.reaper = Reaper(loop, use_pidfd)
        self.executor = concurrent.futures.ThreadPoolExecutor(
            IO_THREADS, thread_name_prefix="agent-io"
        )
        self.devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        #: Forks ``python3 -c`` snippets instead of starting an interpreter.
        self.zygote = Zygote(loop, self.env, cwd, self.devnull) if zygote else None
        if self.zygote is not None and not self.zygote.start():
            self.zygote = None
        self.connections = set()
        #: The private half of the agent's static key for end-to-end
        #: encryption, made at boot; ``identity`` (agent.e2e_agent) is
        #: computed from it the first time a client asks.
        self.identity_seed = os.urandom(32)
        self.identity = None
        #: The running processes by pid (for process.signal and process.resize).
        self.processes = {}

    def resolve(self, path):
        """
        ``path`` made absolute against the default working directory.
        """
        return os.path.join(self.cwd, path)

    async def close(self):
        """
        Drop every connection, killing its processes, and release resources.
        """
        tasks = []
        for conn in list(self.connections):
            tasks.extend(conn.abort())
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.zygote is not None:
            self.zygote.close()
        self.reaper.close()
        os.close(self.devnull)


class Connection(asyncio.Protocol):
    """
    One client connection (normally the daemon's).
    """

    def __init__(self, agent):
        self.agent = agent
        self.transport = None
        self.paused = False
        self.streams = {}
        self._loop = None
        self._framer = wire.Framer()
        self._handle = self._handle_auth
        self._nonce = None
        self._auth_timer = None
        self._out = []
        self._flush_handle = None
        self._closing = False
        #: Encrypted sessions (agent.e2e_agent.ConnectionE2E), from the
        #: first e2e.* request on.
        self._e2e = None

    # asyncio.Protocol

    def connection_made(self, transport):
        self.transport = transport
        self._loop = asyncio.get_running_loop()
        self.agent.connections.add(self)
        self._nonce = wire.new_nonce()
        self.write(wire.hello(self._nonce))
        self._auth_timer = self._loop.call_later(
            AUTH_TIMEOUT, self.fatal, Code.AUTH_FAILED, "no AUTH in time"
        )

    def data_received(self, data):
        if self._closing:
            return
        try:
            frames = self._framer.feed(data)
            for frame in frames:
                if self._closing:
                    return
                self._handle(frame)
        except ProtocolError as e:
            self.fatal(e.code, e.message)

    def eof_received(self):
        try:
            self._framer.finish()
        except ProtocolError as e:
            self.fatal(e.code, e.message)
        return False

    def connection_lost(self, exc):
        self.abort()

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        self.paused = False
        for stream in list(self.streams.values()):
            stream.wake()

    # Writing: frames written in one loop iteration leave in one send.

    def write(self, frame):
        if self._closing:
            return
        if self._e2e is not None and self._e2e.owners:
            try:
                frame = self._e2e.seal(frame)
            except E2EError as e:
                self._e2e_failed(e)
                return
        self._out.append(frame)
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self):
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        out, self._out = self._out, []
        if out and not self.transport.is_closing():
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def fatal(self, code, message):
        """
        Send ERROR on stream 0 and close the connection.
        """
        if self._closing:
            return
        self.write(wire.error(0, code, message))
        self._flush()
        self.transport.close()
        self.abort()

    def abort(self):
        """
        Stop serving: cancel every stream (killing its processes); their tasks.
        """
        self._closing = True
        self.agent.connections.discard(self)
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._out = []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        streams, self.streams = list(self.streams.values()), {}
        for stream in streams:
            stream.cancel()
        return [stream.task for stream in streams]

    # Frames.

    def _handle_auth(self, frame):
        if frame.type is not FrameType.AUTH:
            raise ProtocolError(
                Code.UNEXPECTED_FRAME, f"{frame.type.name} before AUTH"
            )
        body = frame.json()
        version = body.get("version")
        if type(version) is not int or version != wire.VERSION:
            raise ProtocolError(
                Code.VERSION_MISMATCH,
                f"protocol version {version!r} is not {wire.VERSION}",
            )
        mac = body.get("mac")
        if not (isinstance(mac, str) and mac.isascii()) or not wire.check_mac(
            self.agent.secret, self._nonce, mac
        ):
            raise ProtocolError(Code.AUTH_FAILED, "the mac does not prove the secret")
        self._auth_timer.cancel()
        self._auth_timer = None
        self._handle = self._handle_frame
        self.write(wire.ready(os.getpid()))

    def _handle_frame(self, frame):
        if self._e2e is not None:
            try:
                frame, _ = self._e2e.open(frame)
            except E2EError as e:
                self._e2e_failed(e, frame.stream)
                return
            if frame is None:
                return
        elif frame.flags & wire.SEALED:
            if frame.type is FrameType.REQUEST:
                self.write(wire.error(frame.stream, E2ECode.UNKNOWN_SESSION, "no encrypted session here"))
            return
        handler = _HANDLERS.get(frame.type)
        if handler is None:
            raise ProtocolError(
                Code.UNEXPECTED_FRAME, f"the agent does not take {frame.type.name}"
            )
        handler(self, frame)

    def _on_ping(self, frame):
        if len(frame.payload) > MAX_PING:
            raise ProtocolError(Code.BAD_PAYLOAD, f"PING payload over {MAX_PING} bytes")
        self.write(wire.pong(frame.payload))

    def _on_pong(self, frame):
        pass

    def _on_request(self, frame):
        sid = frame.stream
        old = self.streams.pop(sid, None)
        if old is not None:
            old.cancel()  # this ERROR ends the stream: the old request goes silently
            self.write(wire.error(sid, Code.STREAM_IN_USE, f"stream {sid} is open"))
            return
        if len(self.streams) >= wire.MAX_STREAMS:
            self.write(
                wire.error(
                    sid, Code.TOO_MANY_STREAMS, f"{wire.MAX_STREAMS} streams are open"
                )
            )
            return
        try:
            body = frame.json()
            name = body.get("method")
            if isinstance(name, str) and name.startswith("e2e."):
                self._e2e_request(sid, name, body.get("params"))
                return
            method, args = _parse_request(body, sid)
            if method.inline:
                self.write(wire.result(sid, method.run(self.agent, args)))
                return
        except (RequestError, ProtocolError) as e:
            self.write(_error_frame(sid, e))
            return
        stream = Stream(self, sid)
        takes_body = method.takes_body
        if takes_body is True or (callable(takes_body) and takes_body(args)):
            stream.open_inbox()
        self.streams[sid] = stream
        stream.task = self._loop.create_task(self._serve(stream, method, args))
        stream.task.add_done_callback(functools.partial(self._task_done, stream))

    def _on_data(self, frame):
        stream = self.streams.get(frame.stream)
        if stream is None:
            return
        if stream.inbox is None:
            self._fail_stream(stream, Code.UNEXPECTED_FRAME, "this request takes no DATA")
            return
        try:
            stream.inbox.feed(frame)
        except ProtocolError as e:
            self._fail_stream(stream, e.code, e.message)

    def _on_end(self, frame):
        stream = self.streams.get(frame.stream)
        if stream is not None and stream.inbox is not None:
            stream.inbox.end()

    def _on_window(self, frame):
        stream = self.streams.get(frame.stream)
        if stream is None:
            return
        try:
            stream.grant(frame.window())
        except ProtocolError as e:
            self._fail_stream(stream, e.code, e.message)

    def _on_cancel(self, frame):
        stream = self.streams.get(frame.stream)
        if stream is not None:
            stream.cancel(wire.error(stream.id, Code.CANCELLED, "cancelled"))

    # End-to-end encryption (docs/security.md).

    def _e2e_request(self, sid, method, args):
        """
        ``e2e.hello``, ``e2e.identity``, ``e2e.close``: loads agent.e2e_agent
        (and with it ``cryptography``) the first time.
        """
        if self._e2e is None:
            try:
                # Imported here on purpose: cryptography costs memory that an
                # agent without encrypted sessions never pays.
                module = importlib.import_module(".e2e_agent", __package__)
            except ImportError as e:
                self.write(wire.error(sid, E2ECode.UNSUPPORTED, f"no cryptography here: {e}"))
                return
            self._e2e = module.ConnectionE2E(self.agent)
        try:
            result = self._e2e.request(method, args or {})
        except KeyError:
            self.write(wire.error(sid, Code.UNKNOWN_METHOD, f"unknown method {method!r}"))
        except ValueError as e:
            self.write(wire.error(sid, Code.BAD_PARAMS, str(e)))
        except E2EError as e:
            self.write(wire.error(sid, e.code, e.message))
        else:
            self.write(wire.result(sid, result))

    def _e2e_failed(self, error, stream=None):
        """
        An encrypted session failed: every stream it owned ends with the
        error's code (in clear: the keys are not to be trusted any more),
        and the session is forgotten.  Without a session (a sealed REQUEST
        naming none) only ``stream`` fails.
        """
        sealing = getattr(error, "sealing", None)
        streams = self._e2e.end(sealing) if sealing is not None else []
        for sid in streams:
            running = self.streams.get(sid)
            if running is not None:
                running.cancel(wire.error(sid, error.code, error.message))
        if stream and stream not in streams and stream not in self.streams:
            self.write(wire.error(stream, error.code, error.message))

    def _fail_stream(self, stream, code, message):
        stream.cancel(wire.error(stream.id, code, message))

    # Serving one request.

    async def _serve(self, stream, method, args):
        try:
            frame = wire.result(stream.id, await method.run(self.agent, stream, args))
        except (RequestError, ProtocolError) as e:
            frame = _error_frame(stream.id, e)
        except Exception as e:
            frame = wire.error(stream.id, Code.INTERNAL, f"{type(e).__name__}: {e}")
        self._end_stream(stream, frame)

    def _task_done(self, stream, task):
        if task.cancelled():  # perhaps before it even started
            self._end_stream(stream, stream.final)

    def _end_stream(self, stream, frame):
        if self.streams.get(stream.id) is stream:
            del self.streams[stream.id]
            if frame is not None:
                self.write(frame)


_HANDLERS = {
    FrameType.PING: Connection._on_ping,
    FrameType.PONG: Connection._on_pong,
    FrameType.REQUEST: Connection._on_request,
    FrameType.DATA: Connection._on_data,
    FrameType.END: Connection._on_end,
    FrameType.WINDOW: Connection._on_window,
    FrameType.CANCEL: Connection._on_cancel,
}


def _parse_request(body, stream):
    """
    The method and checked arguments of a REQUEST frame's JSON ``body``.
    """
    name = body.get("method")
    if not isinstance(name, str):
        raise ProtocolError(Code.BAD_PAYLOAD, "REQUEST needs a string method", stream)
    method = METHODS.get(name)
    if method is None:
        raise RequestError(Code.UNKNOWN_METHOD, f"unknown method {name!r}", method=name)
    args = body.get("params")
    if args is None:
        args = {}
    elif not isinstance(args, dict):
        raise RequestError(Code.BAD_PARAMS, "params must be an object")
    return method, params.parse(args, method.spec)


def _error_frame(sid, error):
    if isinstance(error, RequestError):
        return wire.error(sid, error.code, error.message, **error.details)
    return wire.error(sid, error.code, error.message)


async def serve(
    secret, host="0.0.0.0", port=7070, cwd=None, use_pidfd=None, on_listening=None,
    zygote=True, listen=None, stop_signals=(signal.SIGTERM, signal.SIGINT),
):
    """
    Serve on ``listen`` (a listeners.Listen; by default TCP
    ``host``:``port``) until one of ``stop_signals`` comes.
    ``on_listening(address)`` is called once it is bound, with the address
    as text.
    """
    loop = asyncio.get_running_loop()
    agent = Agent(secret, cwd or os.getcwd(), use_pidfd=use_pidfd, zygote=zygote)
    if listen is None:
        listen = listeners.Listen("tcp", host=host, port=port)
    server, address = await listeners.open_listener(loop, listen, lambda: Connection(agent))
    if on_listening is not None:
        on_listening(address)
    stop = loop.create_future()
    for signum in stop_signals:
        loop.add_signal_handler(signum, lambda: stop.done() or stop.set_result(None))
    try:
        await stop
    finally:
        server.close()
        await agent.close()
