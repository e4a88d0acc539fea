"""
A fake sandboxd for unit tests of the client side (the SDK and ``sbx``).

It answers the REST routes of docs/api.md from an in-memory table and runs a
tiny in-process fake agent behind ``/sandboxes/{id}/ws`` that speaks the real
wire protocol (agent/wire.py): ping, process.exec/stream with canned output,
fs.write/read/list/stat on an in-memory file table, flow-control windows in
both directions, CANCEL; and the daemon's own ``sandbox.destroy`` (unless
``session_destroy`` is False, as with an older daemon).  It is NOT the
daemon: integration tests against the real daemon belong to the daemon's
author.

Canned commands (``cmd`` a string, or an argv list joined by spaces):
``echo TEXT``, ``exit N``, ``barrier N TEXT`` (answers once N barrier
commands are running at once),
``yes N`` (N bytes on stdout, windowed), ``hang`` (prints "started" and
runs until cancelled), ``timeout`` (a timed-out result), ``missing-binary``
(ERROR ENOENT), anything in ``FakeDaemon.scripts`` (a list of steps
``("stdout"|"stderr", bytes)``, ``("result", dict)``, ``("error", dict)``,
``("delay", seconds)``), else "not found" with exit 127.
Special files: reading ``/dev/hang`` never answers; writing ``/dev/nogrant``
never grants credit.
"""

import collections
import datetime
import json
import posixpath

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import defer
from twisted.protocols.policies import WrappingFactory
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from agent import wire
from agent.wire import FrameType

_CREATE_FIELDS = {"profile", "template", "memory", "cpu", "storage", "ttl", "labels",
                  "network", "secrets"}


class FakeDaemon:
    """
    The daemon's state and its listeners (Unix socket, TCP, optionally TLS).
    """

    def __init__(self, reactor):
        self.reactor = reactor
        self.sandboxes = {}  # id -> sandbox object (the API JSON)
        self.files = {}  # id -> {path: bytes}
        self.dirs = {}  # id -> set of directory paths
        self.profiles = [
            {"name": "default", "image": "sandbox-base:latest", "memory": 536870912,
             "cpu": 1.0, "storage": 524288000, "runtime": "docker"},
            {"name": "broken", "image": "broken:latest", "memory": 536870912,
             "cpu": 1.0, "storage": 524288000, "runtime": "docker"},
        ]
        self.scripts = {}
        self.auth = None  # a token: then every route needs "Bearer <token>"
        self.max_sandboxes = 100
        self.grant_delay = 0.0  # seconds before the agent grants fs.write credit
        self.requests = []  # (method, path, headers, body) of every HTTP request
        self.sessions = collections.defaultdict(set)  # id -> open WS protocols
        self.ws_connections = 0
        self.exec_params = []
        self.calls = []  # (method, params) of every REQUEST
        self.env = collections.defaultdict(dict)  # id -> the sandbox environment
        self.spawn_stdin = []  # DATA payloads sent to spawned processes
        self.barrier = []  # (session, stream, text) of running "barrier" commands
        self.cancelled = []  # (sandbox id, stream id, method)
        self.window_violations = 0
        self.windows_sent = 0  # WINDOW frames the fake agent sent
        self.send_stalls = 0  # times the fake agent waited for client credit
        self.max_open_streams = 0
        self.reject_ws = False  # answer WebSocket upgrades as plain routes
        self.session_destroy = True  # answer sandbox.destroy on sessions, as sandboxd does
        self._counter = 0
        self._ports = []
        self._trackers = []
        self.site = Site(_Root(self))
        self.ws_factory = WebSocketServerFactory()
        self.ws_factory.protocol = FakeSession
        self.ws_factory.daemon = self

    @property
    def connections_made(self):
        """
        Connections accepted so far (HTTP and WebSocket alike).
        """
        return sum(t.built for t in self._trackers)

    def _track(self, factory):
        tracker = _Tracking(factory)
        self._trackers.append(tracker)
        return tracker

    def listen_unix(self, path):
        port = self.reactor.listenUNIX(path, self._track(self.site))
        self._ports.append(port)
        self.unix_endpoint = f"unix://{path}"
        return self.unix_endpoint

    def listen_tcp(self):
        port = self.reactor.listenTCP(0, self._track(self.site), interface="127.0.0.1")
        self._ports.append(port)
        self.tcp_endpoint = f"http://127.0.0.1:{port.getHost().port}"
        return self.tcp_endpoint

    def listen_tls(self, context_factory):
        from twisted.protocols.tls import TLSMemoryBIOFactory

        tls = TLSMemoryBIOFactory(context_factory, False, self.site)
        port = self.reactor.listenTCP(0, self._track(tls), interface="127.0.0.1")
        self._ports.append(port)
        self.tls_endpoint = f"https://127.0.0.1:{port.getHost().port}"
        return self.tls_endpoint

    @defer.inlineCallbacks
    def stop(self):
        """
        Stop listening and drop every connection; fires when all are gone.
        """
        ports, self._ports = self._ports, []
        for port in ports:
            yield port.stopListening()
        for tracker in self._trackers:
            yield tracker.drop_all()
        # Autobahn's closing-handshake timers of sessions a client dropped
        # (the SDKs do after sandbox.destroy) are the fake's, not the test's.
        buckets = self.ws_factory._batched_timer._buckets
        for delayed, _ in list(buckets.values()):
            if delayed.active():
                delayed.cancel()
        buckets.clear()

    # Sandbox table.

    def add_sandbox(self, profile="default", ttl=0, labels=None):
        self._counter += 1
        sandbox_id = f"sbx-{self._counter:08x}"
        created = datetime.datetime.now(datetime.timezone.utc).isoformat()
        self.sandboxes[sandbox_id] = {
            "id": sandbox_id, "profile": profile, "template": None,
            "image": "sandbox-base:latest", "runtime": "docker", "state": "running",
            "created": created.replace("+00:00", "Z"), "ttl": ttl,
            "labels": dict(labels or {}), "memory": 536870912, "cpu": 1.0,
            "storage": 524288000, "method": "warm",
        }
        self.files[sandbox_id] = {}
        self.dirs[sandbox_id] = {"/", "/root", "/tmp", "/dev"}
        return self.sandboxes[sandbox_id]

    def destroy(self, sandbox_id, close_code=1000):
        """
        Forget the sandbox: its sessions get SANDBOX_UNAVAILABLE and close.
        """
        self.sandboxes.pop(sandbox_id, None)
        self.lose_agent(sandbox_id, close_code)

    def lose_agent(self, sandbox_id, close_code=1011):
        for session in list(self.sessions.get(sandbox_id, ())):
            session.unavailable(close_code)


class _Tracking(WrappingFactory):
    """
    Keeps every connection so a test can drop them all at the end.
    """

    def __init__(self, wrapped):
        super().__init__(wrapped)
        self._gone = []
        self.built = 0

    def buildProtocol(self, addr):
        self.built += 1
        return super().buildProtocol(addr)

    def unregisterProtocol(self, p):
        super().unregisterProtocol(p)
        if not self.protocols:
            waiters, self._gone = self._gone, []
            for d in waiters:
                d.callback(None)

    def drop_all(self):
        if not self.protocols:
            return defer.succeed(None)
        d = defer.Deferred()
        self._gone.append(d)
        for p in list(self.protocols):
            p.transport.abortConnection()
        return d


def _error(request, status, code, message, headers=None):
    request.setResponseCode(status)
    for name, value in (headers or {}).items():
        request.setHeader(name, value)
    return _send(request, {"error": {"code": code, "message": message}}, True)


def _send(request, obj, content_length):
    """
    Answer with JSON, either with Content-Length or chunked.
    """
    body = json.dumps(obj).encode()
    request.setHeader(b"content-type", b"application/json")
    if content_length:
        return body
    request.write(body)
    request.finish()
    return NOT_DONE_YET


class _Root(Resource):
    def __init__(self, daemon):
        super().__init__()
        self.daemon = daemon
        self.api = _API(daemon)

    def getChildWithDefault(self, name, request):
        segments = request.path.split(b"/")
        if (
            len(segments) == 4
            and segments[1] == b"sandboxes"
            and segments[3] == b"ws"
            and request.method == b"GET"
            and request.getHeader(b"upgrade")
            and not self.daemon.reject_ws
            and segments[2].decode() in self.daemon.sandboxes
            and self.api.authorized(request)
        ):
            self.daemon.requests.append(
                ("GET", request.path.decode(), _headers(request), b"")
            )
            return WebSocketResource(self.daemon.ws_factory)
        return self.api


def _headers(request):
    return {
        k.decode().lower(): v[-1].decode()
        for k, v in request.requestHeaders.getAllRawHeaders()
    }


class _API(Resource):
    isLeaf = True

    def __init__(self, daemon):
        super().__init__()
        self.daemon = daemon

    def authorized(self, request):
        token = self.daemon.auth
        return token is None or request.getHeader(b"authorization") == (
            f"Bearer {token}".encode()
        )

    def render(self, request):
        daemon = self.daemon
        method = request.method.decode()
        path = request.path.decode()
        body = request.content.read()
        daemon.requests.append((method, path, _headers(request), body))
        if not self.authorized(request):
            return _error(request, 401, "UNAUTHORIZED", "missing or bad bearer token")
        parts = [p for p in path.split("/") if p]
        if parts == ["health"] and method == "GET":
            return _send(request, {
                "status": "ok", "version": "0.1.0-fake", "uptime_seconds": 12.3,
                "sandboxes": len(daemon.sandboxes),
                "pool": {"default": {"target": 2, "ready": 2, "starting": 0,
                                     "hits": 10, "misses": 1}},
            }, True)
        if parts == ["profiles"] and method == "GET":
            return _send(request, daemon.profiles, False)
        if parts == ["html"]:
            request.setResponseCode(502)
            return b"<html><body>Bad Gateway</body></html>"
        if parts == ["sandboxes"]:
            if method == "POST":
                return self.create(request, body)
            if method == "GET":
                wanted = [v.decode() for v in request.args.get(b"label", [])]
                found = [
                    s for s in daemon.sandboxes.values()
                    if set(wanted) <= {f"{k}:{v}" for k, v in s["labels"].items()}
                ]
                return _send(request, found, False)
            return _error(request, 405, "METHOD_NOT_ALLOWED", f"{method} {path}")
        if len(parts) in (2, 3) and parts[0] == "sandboxes":
            sandbox = daemon.sandboxes.get(parts[1])
            if sandbox is None:
                return _error(request, 404, "SANDBOX_NOT_FOUND",
                              f"no sandbox {parts[1]}")
            if len(parts) == 3 and parts[2] == "stats" and method == "GET":
                return _send(request, {"cpu_percent": 1.5, "memory_usage_bytes": 1024,
                                       "memory_limit_bytes": 536870912, "pids": 2,
                                       "network_rx_bytes": 0, "network_tx_bytes": 0,
                                       "uptime_seconds": 3.0}, True)
            if len(parts) == 2 and method == "GET":
                return _send(request, sandbox, True)
            if len(parts) == 2 and method == "DELETE":
                daemon.destroy(parts[1])
                request.setResponseCode(204)
                return b""
            return _error(request, 405, "METHOD_NOT_ALLOWED", f"{method} {path}")
        return _error(request, 404, "NOT_FOUND", f"no route {path}")

    def create(self, request, body):
        daemon = self.daemon
        try:
            fields = json.loads(body) if body else {}
        except ValueError:
            fields = None
        if not isinstance(fields, dict):
            return _error(request, 400, "INVALID_BODY", "the body is not a JSON object")
        for name in fields:
            if name not in _CREATE_FIELDS:
                return _error(request, 400, "INVALID_FIELD", f"unknown field {name!r}")
        if fields.get("ttl") is not None and fields["ttl"] > 86400:
            return _error(request, 400, "LIMIT_EXCEEDED", "ttl above max_ttl 86400")
        profile = fields.get("profile") or "default"
        if profile not in [p["name"] for p in daemon.profiles]:
            return _error(request, 404, "UNKNOWN_PROFILE", f"no profile {profile!r}")
        if profile == "broken":
            return _error(request, 502, "RUNTIME_ERROR", "docker: image not found")
        if len(daemon.sandboxes) >= daemon.max_sandboxes:
            return _error(request, 503, "AT_CAPACITY", "max_sandboxes reached",
                          {b"retry-after": b"2"})
        sandbox = daemon.add_sandbox(profile, fields.get("ttl") or 0, fields.get("labels"))
        request.setResponseCode(201)
        return _send(request, sandbox, False)


class _Stream:
    __slots__ = ("id", "method", "params", "send", "recv", "steps", "body", "waiting")

    def __init__(self, stream_id, method, params):
        self.id = stream_id
        self.method = method
        self.params = params
        self.send = wire.SendWindow()
        self.recv = wire.ReceiveWindow()
        self.steps = collections.deque()
        self.body = bytearray()
        self.waiting = False


class FakeSession(WebSocketServerProtocol):
    """
    One client session, served by a fake agent over the real wire format.
    """

    def onConnect(self, request):
        self.daemon = self.factory.daemon
        self.sandbox_id = request.path.split("/")[2]
        self.streams = {}
        self.timers = []

    def onOpen(self):
        self.daemon.ws_connections += 1
        self.daemon.sessions[self.sandbox_id].add(self)

    def onClose(self, wasClean, code, reason):
        self.daemon.sessions[getattr(self, "sandbox_id", None)].discard(self)
        for timer in self.timers:
            if timer.active():
                timer.cancel()

    def frame(self, data):
        self.sendMessage(data, isBinary=True)

    def unavailable(self, close_code):
        for stream_id in list(self.streams):
            self.frame(wire.error(stream_id, "SANDBOX_UNAVAILABLE", "agent lost"))
        self.streams.clear()
        self.sendCloseFrame(code=close_code, reasonUtf8=b"sandbox unavailable")

    def later(self, delay, f, *args):
        self.timers.append(self.daemon.reactor.callLater(delay, f, *args))

    def onMessage(self, payload, isBinary):
        if not isBinary:
            self.frame(wire.error(0, "BAD_PAYLOAD", "text message"))
            self.sendCloseFrame(code=1002)
            return
        try:
            frame = wire.decode_one(payload)
        except wire.ProtocolError as e:
            self.frame(wire.error(0, e.code, e.message))
            self.sendCloseFrame(code=1002)
            return
        kind = frame.type
        stream = self.streams.get(frame.stream)
        if kind is FrameType.PING:
            self.frame(wire.pong(frame.payload))
        elif kind is FrameType.REQUEST:
            if stream is not None:
                self.frame(wire.error(frame.stream, "STREAM_IN_USE", "stream in use"))
                return
            request = frame.json()
            stream = _Stream(frame.stream, request["method"], request.get("params", {}))
            self.streams[stream.id] = stream
            self.daemon.max_open_streams = max(
                self.daemon.max_open_streams, len(self.streams)
            )
            self.request(stream)
        elif stream is None:
            return
        elif kind is FrameType.CANCEL:
            self.daemon.cancelled.append((self.sandbox_id, stream.id, stream.method))
            self.finish(stream, wire.error(stream.id, "CANCELLED", "cancelled"))
        elif kind is FrameType.WINDOW:
            stream.send.grant(frame.window())
            if stream.waiting:
                stream.waiting = False
                self.pump(stream)
        elif kind is FrameType.DATA and stream.method == "fs.write":
            try:
                stream.recv.received(len(frame.payload), stream.id)
            except wire.ProtocolError as e:
                self.daemon.window_violations += 1
                self.finish(stream, wire.error(stream.id, e.code, e.message))
                return
            stream.body += frame.payload
            self.later(self.daemon.grant_delay, self.grant, stream, len(frame.payload))
        elif kind is FrameType.END and stream.method == "fs.write":
            self.end_write(stream)
        elif kind is FrameType.DATA and stream.method == "process.spawn":
            # The fake ``cat``: stdin comes back on stdout.
            self.daemon.spawn_stdin.append(frame.payload)
            self.frame(wire.data(stream.id, frame.payload, wire.CHANNEL_STDOUT))
            increment = stream.recv.consumed(len(frame.payload))
            if increment:
                self.frame(wire.window(stream.id, increment))
        elif kind is FrameType.END and stream.method == "process.spawn":
            self.finish(stream, wire.result(stream.id, {"exit_code": 0, "timed_out": False, "truncated": False}))

    def grant(self, stream, n):
        if stream.params.get("path") == "/dev/nogrant":
            return
        increment = stream.recv.consumed(n)
        if increment and self.streams.get(stream.id) is stream:
            self.daemon.windows_sent += 1
            self.frame(wire.window(stream.id, increment))

    def finish(self, stream, data):
        if self.streams.pop(stream.id, None) is not None:
            self.frame(data)

    def request(self, stream):
        self.daemon.calls.append((stream.method, stream.params))
        handler = getattr(self, "do_" + stream.method.replace(".", "_"), None)
        if handler is None:
            self.finish(stream, wire.error(stream.id, "UNKNOWN_METHOD", stream.method))
            return
        handler(stream)

    def pump(self, stream):
        """
        Send the stream's queued steps, DATA within the client's credit.
        """
        steps = stream.steps
        while steps and self.streams.get(stream.id) is stream:
            step = steps[0]
            if step[0] in ("stdout", "stderr", "body"):
                channel = {"body": 0, "stdout": 1, "stderr": 2}[step[0]]
                view = memoryview(step[1])
                n = min(len(view), wire.CHUNK_SIZE, stream.send.credit)
                if n == 0 and len(view):
                    self.daemon.send_stalls += 1
                    stream.waiting = True
                    return
                stream.send.take(n)
                self.frame(wire.data(stream.id, view[:n], channel))
                if n < len(view):
                    steps[0] = (step[0], view[n:])
                else:
                    steps.popleft()
            elif step[0] == "delay":
                steps.popleft()
                self.later(step[1], self.pump, stream)
                return
            elif step[0] == "hang":
                return
            elif step[0] == "event":
                steps.popleft()
                self.frame(wire.event(stream.id, step[1]))
            elif step[0] == "result":
                self.finish(stream, wire.result(stream.id, step[1]))
            elif step[0] == "error":
                self.finish(stream, wire.error(stream.id, **step[1]))

    def run(self, stream, steps):
        stream.steps.extend(steps)
        self.pump(stream)

    def do_ping(self, stream):
        self.run(stream, [("result", {})])

    def do_sandbox_destroy(self, stream):
        # The daemon's own method (an older daemon relays it: UNKNOWN_METHOD).
        if not self.daemon.session_destroy:
            self.finish(stream, wire.error(stream.id, "UNKNOWN_METHOD", stream.method))
            return
        self.finish(stream, wire.result(stream.id, {"id": self.sandbox_id}))
        self.daemon.destroy(self.sandbox_id)

    def do_process_exec(self, stream):
        self.daemon.exec_params.append(stream.params)
        cmd = stream.params["cmd"]
        cmd = " ".join(cmd) if isinstance(cmd, list) else cmd
        word, _, rest = cmd.partition(" ")
        ok = {"exit_code": 0, "timed_out": False, "truncated": False}
        if cmd in self.daemon.scripts:
            steps = self.daemon.scripts[cmd]
        elif word == "echo":
            steps = [("stdout", rest.encode() + b"\n"), ("result", ok)]
        elif word == "barrier":
            count, _, text = rest.partition(" ")
            self.daemon.barrier.append((self, stream, text))
            if len(self.daemon.barrier) >= int(count):
                waiting, self.daemon.barrier = self.daemon.barrier, []
                for session, waiter, text in waiting:
                    session.run(waiter, [("stdout", text.encode() + b"\n"), ("result", ok)])
            return
        elif word == "exit":
            steps = [("result", dict(ok, exit_code=int(rest)))]
        elif word == "yes":
            steps = [("stdout", b"y\n" * (int(rest) // 2)), ("result", ok)]
        elif word == "hang":
            steps = [("stdout", b"started\n"), ("hang",)]
        elif word == "timeout":
            steps = [("stdout", b"partial"),
                     ("result", dict(ok, exit_code=137, timed_out=True))]
        elif word == "missing-binary":
            steps = [("error", {"code": "ENOENT", "message": "no such file",
                                "path": "missing-binary"})]
        else:
            steps = [("stderr", f"sh: 1: {word}: not found\n".encode()),
                     ("result", dict(ok, exit_code=127))]
        self.run(stream, steps)

    do_process_stream = do_process_exec

    def path_error(self, stream, code, path):
        self.finish(stream, wire.error(stream.id, code, f"{code}: {path}", path=path))

    def do_fs_write(self, stream):
        path = stream.params["path"]
        dirs = self.daemon.dirs[self.sandbox_id]
        if path in dirs:
            self.path_error(stream, "EISDIR", path)
        elif posixpath.dirname(path) not in dirs:
            self.path_error(stream, "ENOENT", path)

    def end_write(self, stream):
        files = self.daemon.files[self.sandbox_id]
        path = stream.params["path"]
        if stream.params.get("append"):
            files[path] = files.get(path, b"") + bytes(stream.body)
        else:
            files[path] = bytes(stream.body)
        self.finish(stream, wire.result(stream.id, {"size": len(stream.body)}))

    def do_fs_read(self, stream):
        path = stream.params["path"]
        if path == "/dev/hang":
            return self.run(stream, [("hang",)])
        if path in self.daemon.dirs[self.sandbox_id]:
            return self.path_error(stream, "EISDIR", path)
        content = self.daemon.files[self.sandbox_id].get(path)
        if content is None:
            return self.path_error(stream, "ENOENT", path)
        offset = stream.params.get("offset", 0)
        length = stream.params.get("length")
        content = content[offset: None if length is None else offset + length]
        self.run(stream, [("body", content), ("result", {"size": len(content)})])

    def entries(self, path):
        files = self.daemon.files[self.sandbox_id]
        dirs = self.daemon.dirs[self.sandbox_id]
        found = [{"name": posixpath.basename(p), "type": "file", "size": len(c),
                  "mode": 0o644, "mtime": 1700000000.5}
                 for p, c in files.items() if posixpath.dirname(p) == path]
        found += [{"name": posixpath.basename(d), "type": "dir", "size": 4096,
                   "mode": 0o755, "mtime": 1700000000.0}
                  for d in dirs if d != "/" and posixpath.dirname(d) == path]
        return sorted(found, key=lambda e: e["name"])

    def do_fs_list(self, stream):
        path = stream.params["path"]
        if path not in self.daemon.dirs[self.sandbox_id]:
            code = "ENOTDIR" if path in self.daemon.files[self.sandbox_id] else "ENOENT"
            return self.path_error(stream, code, path)
        entries = self.entries(path)
        steps = [("event", {"entries": entries[i: i + 500]})
                 for i in range(0, len(entries), 500)]
        self.run(stream, steps + [("result", {"count": len(entries)})])

    def do_fs_stat(self, stream):
        path = stream.params["path"]
        parent = self.entries(posixpath.dirname(path))
        match = [e for e in parent if e["name"] == posixpath.basename(path)]
        if not match:
            return self.path_error(stream, "ENOENT", path)
        self.run(stream, [("result", dict(match[0], path=path))])

    # The capabilities beyond exec and fs read/write/list/stat.

    def do_env_set(self, stream):
        self.daemon.env[self.sandbox_id].update(stream.params["vars"])
        self.run(stream, [("result", {})])

    def do_env_get(self, stream):
        name = stream.params["name"]
        value = self.daemon.env[self.sandbox_id].get(name)
        self.run(stream, [("result", {"name": name, "value": value})])

    def do_env_delete(self, stream):
        env = self.daemon.env[self.sandbox_id]
        deleted = [n for n in stream.params["names"] if env.pop(n, None) is not None]
        self.run(stream, [("result", {"deleted": deleted})])

    def do_env_list(self, stream):
        self.run(stream, [("result", {"env": dict(self.daemon.env[self.sandbox_id])})])

    def do_fs_mkdir(self, stream):
        path = stream.params["path"]
        dirs = self.daemon.dirs[self.sandbox_id]
        if path in dirs and not stream.params.get("parents"):
            return self.path_error(stream, "EEXIST", path)
        dirs.add(path)
        self.run(stream, [("result", {"path": path})])

    def do_fs_remove(self, stream):
        path = stream.params["path"]
        files = self.daemon.files[self.sandbox_id]
        if files.pop(path, None) is None:
            return self.path_error(stream, "ENOENT", path)
        self.run(stream, [("result", {})])

    def do_fs_rename(self, stream):
        src, dst = stream.params["src"], stream.params["dst"]
        files = self.daemon.files[self.sandbox_id]
        if src not in files:
            return self.path_error(stream, "ENOENT", src)
        if dst in files and stream.params.get("overwrite") is False:
            return self.path_error(stream, "EEXIST", dst)
        files[dst] = files.pop(src)
        self.run(stream, [("result", {"src": src, "dst": dst})])

    def do_process_spawn(self, stream):
        if stream.params["cmd"] == ["missing-binary"]:
            return self.path_error(stream, "ENOENT", "missing-binary")
        self.run(stream, [("event", {"pid": 4242})])

    def do_process_signal(self, stream):
        spawned = [s for s in self.streams.values() if s.method == "process.spawn"]
        if stream.params["pid"] != 4242 or not spawned:
            return self.finish(stream, wire.error(stream.id, "ESRCH", "no such process", pid=stream.params["pid"]))
        self.run(stream, [("result", {})])
        self.finish(spawned[0], wire.result(spawned[0].id, {"exit_code": 143, "timed_out": False, "truncated": False}))

    def do_process_resize(self, stream):
        self.run(stream, [("result", {})])

    def do_net_fetch(self, stream):
        head = {"status": 201, "reason": "Created", "headers": [["Content-Type", "text/plain"]],
                "url": stream.params["url"]}
        body = b"fetched"
        self.run(stream, [("event", head), ("body", body),
                          ("result", dict(head, size=len(body), truncated=False))])

    def do_fs_watch(self, stream):
        path = stream.params["path"]
        events = [{"type": "create", "path": path + "/a", "is_dir": False},
                  {"type": "move_from", "path": path + "/a", "is_dir": False, "cookie": 7}]
        self.run(stream, [("event", {"ready": True, "path": path, "watches": 1}),
                          ("event", {"events": events}), ("hang",)])
