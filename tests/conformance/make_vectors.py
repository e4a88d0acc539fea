"""
Write tests/conformance/vectors.json, the language-neutral wire vectors, from
agent/wire.py (the codec the agent and the daemon run) and sandbox/errors.py
(the error families).  Run it after a change of either and commit the file:

    .venv/bin/python tests/conformance/make_vectors.py

Every SDK's runner plays the file; tests/test_conformance.py also checks that
the committed file is what this script makes.
"""

import json
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from agent import e2e, wire  # noqa: E402
from agent.e2e_frames import Sealing  # noqa: E402
from agent.wire import FrameType as T  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(HERE, "vectors.json")


def frame(type_, stream, payload=b"", flags=0):
    return {"type": type_.name, "flags": flags, "stream": stream, "payload_hex": payload.hex()}


def header(length, type_byte, flags, stream):
    return struct.pack("!IBBI", length, type_byte, flags, stream)


def encode_cases():
    """
    Frames an SDK sends (or could), and their exact bytes.
    """
    j = lambda o: json.dumps(o, separators=(",", ":"), ensure_ascii=False).encode()  # noqa: E731
    cases = [
        ("request exec", T.REQUEST, 1, j({"method": "process.exec", "params": {"cmd": "echo hi"}}), 0),
        ("request unicode", T.REQUEST, 3, j({"method": "fs.read", "params": {"path": "/root/ü€😀"}}), 0),
        ("data stdin", T.DATA, 5, b"hello\n", 0),
        ("data zero length", T.DATA, 5, b"", 0),
        ("data stdout channel", T.DATA, 7, b"\x00\xff", 1),
        ("data stderr channel", T.DATA, 7, b"err", 2),
        ("end", T.END, 9, b"", 0),
        ("cancel", T.CANCEL, 11, b"", 0),
        ("window 4 MiB", T.WINDOW, 13, struct.pack("!I", wire.INITIAL_WINDOW), 0),
        ("window max", T.WINDOW, 13, struct.pack("!I", 0xFFFFFFFF), 0),
        ("ping empty", T.PING, 0, b"", 0),
        ("ping 64 bytes", T.PING, 0, bytes(range(64)), 0),
        ("pong", T.PONG, 0, b"abc", 0),
        ("largest stream id", T.END, wire.MAX_STREAM_ID, b"", 0),
    ]
    out = []
    for name, t, stream, payload, flags in cases:
        out.append({
            "name": name,
            "frame": frame(t, stream, payload, flags),
            "hex": wire.encode(t, stream, payload, flags).hex(),
        })
    return out


def decode_cases():
    """
    Bytes a client receives: the frames they hold, or the error code.
    A case's bytes (``hex``, or ``parts``: hex strings and [byte, count]
    runs, concatenated) are one WebSocket message (one whole frame) unless
    ``stream_bytes`` is true (a raw byte stream with any number of frames).
    """
    ok = []

    def good(name, t, stream, payload=b"", flags=0, json_obj=None):
        data = wire.encode(t, stream, payload, flags)
        case = {"name": name, "hex": data.hex(), "frames": [frame(t, stream, payload, flags)]}
        if json_obj is not None:
            case["json"] = json_obj
        ok.append(case)

    res = {"exit_code": 0, "timed_out": False, "truncated": False}
    good("result", T.RESULT, 1, json.dumps(res).encode(), json_obj=res)
    ev = {"pid": 42}
    good("event pid", T.EVENT, 1, json.dumps(ev).encode(), json_obj=ev)
    good("data stdout", T.DATA, 1, b"out", 1)
    good("data zero length", T.DATA, 1, b"", 2)
    good("end", T.END, 1)
    good("window", T.WINDOW, 1, struct.pack("!I", 1 << 21))
    good("ping", T.PING, 0, b"x" * 64)
    good("pong", T.PONG, 0, b"")
    err0 = {"code": "FRAME_TOO_LARGE", "message": "too big"}
    good("error on stream 0", T.ERROR, 0, json.dumps(err0).encode(), json_obj=err0)
    good("largest stream id", T.RESULT, wire.MAX_STREAM_ID, b"{}", json_obj={})
    # Large payloads as parts (hex strings and [byte, count] runs) to keep the file small.
    hdr = header(6 + wire.MAX_PAYLOAD, T.DATA, 1, 1).hex()
    ok.append({"name": "data largest payload", "parts": [hdr, [0xAB, wire.MAX_PAYLOAD]],
               "frames": [{"type": "DATA", "flags": 1, "stream": 1,
                           "payload_parts": [[0xAB, wire.MAX_PAYLOAD]]}]})
    pre, post = b'{"a":"'.hex(), b'"}'.hex()
    hdr = header(6 + wire.MAX_JSON, T.EVENT, 0, 1).hex()
    fill = [ord("x"), wire.MAX_JSON - 8]
    ok.append({"name": "json largest payload", "parts": [hdr, pre, fill, post],
               "frames": [{"type": "EVENT", "flags": 0, "stream": 1, "payload_parts": [pre, fill, post]}]})
    # Two frames back to back in a byte stream (the agent's TCP link).
    two = wire.encode(T.DATA, 1, b"a", 1) + wire.encode(T.END, 1)
    ok.append({"name": "two frames in a byte stream", "hex": two.hex(), "stream_bytes": True,
               "frames": [frame(T.DATA, 1, b"a", 1), frame(T.END, 1)]})

    bad = [
        ("length below 6", header(5, T.END, 0, 1), "FRAME_TOO_SHORT"),
        ("length 0", header(0, T.END, 0, 1)[:4] + b"\x12\x00\x00\x00\x00\x01", "FRAME_TOO_SHORT"),
        ("payload above 1 MiB", header(6 + wire.MAX_PAYLOAD + 1, T.DATA, 1, 1), "FRAME_TOO_LARGE"),
        ("json payload above 256 KiB", header(6 + wire.MAX_JSON + 1, T.EVENT, 0, 1)
         + b"x" * 16, "FRAME_TOO_LARGE"),
        ("unknown type 0x00", header(6, 0x00, 0, 1), "UNKNOWN_FRAME_TYPE"),
        ("unknown type 0x18", header(6, 0x18, 0, 1), "UNKNOWN_FRAME_TYPE"),
        ("unknown type 0xff", header(6, 0xFF, 0, 1), "UNKNOWN_FRAME_TYPE"),
        ("data channel 3", header(6, T.DATA, 3, 1), "BAD_FLAGS"),
        ("flags on end", header(6, T.END, 1, 1), "BAD_FLAGS"),
        ("ping on a stream", header(6, T.PING, 0, 1), "BAD_STREAM"),
        ("result on stream 0", header(8, T.RESULT, 0, 0) + b"{}", "BAD_STREAM"),
        ("data on stream 0", header(6, T.DATA, 1, 0), "BAD_STREAM"),
        ("message ends inside the header", header(6, T.END, 0, 1)[:7], "TRUNCATED"),
        ("message ends inside the payload", header(10, T.DATA, 1, 1) + b"ab", "TRUNCATED"),
        ("two frames in one message", wire.encode(T.END, 1) + wire.encode(T.END, 3), "BAD_PAYLOAD"),
        ("trailing byte", wire.encode(T.END, 1) + b"\x00", "BAD_PAYLOAD"),
    ]
    bad_cases = [{"name": n, "hex": b.hex(), "error": code} for n, b, code in bad]
    # JSON payloads that frame fine but are not objects: BAD_PAYLOAD when parsed.
    for name, payload in [("result not json", b"{nope"), ("result a list", b"[1]"),
                          ("result not utf-8", b'{"a":"\xff"}')]:
        bad_cases.append({"name": name, "hex": wire.encode(T.RESULT, 1, payload).hex(),
                          "error": "BAD_PAYLOAD", "when": "json"})
    for name, payload in [("window of 3 bytes", b"\x00\x00\x01"), ("window zero", b"\x00\x00\x00\x00")]:
        bad_cases.append({"name": name, "hex": wire.encode(T.WINDOW, 1, payload).hex(),
                          "error": "BAD_PAYLOAD", "when": "window"})
    return ok, bad_cases


#: The error family of every code, as each SDK names it (docs/sdk.md maps the
#: family to its class or type in each language).
FAMILIES = {
    "InvalidRequestError": "invalid_request",
    "NotFoundError": "not_found",
    "CapacityError": "capacity",
    "RateLimitedError": "rate_limited",
    "ServerError": "server",
    "SandboxUnavailableError": "sandbox_unavailable",
    "SandboxPausedError": "sandbox_unavailable",
    "FileError": "file",
    "PathNotFoundError": "path_not_found",
    "ProtocolError": "protocol",
    "SandboxTimeoutError": "timeout",
    "RequestCancelledError": "cancelled",
    "NetworkError": "network",
    "SandboxError": "sandbox",
}

WIRE_CODES = [
    # protocol.md, "Errors"
    "FRAME_TOO_LARGE", "FRAME_TOO_SHORT", "UNKNOWN_FRAME_TYPE", "BAD_FLAGS", "BAD_PAYLOAD", "BAD_STREAM",
    "UNEXPECTED_FRAME", "TRUNCATED", "VERSION_MISMATCH", "AUTH_FAILED", "STREAM_IN_USE", "TOO_MANY_STREAMS",
    "WINDOW_EXCEEDED", "RATE_EXCEEDED", "UNKNOWN_METHOD", "BAD_PARAMS", "CANCELLED", "TIMEOUT", "INTERNAL",
    "SANDBOX_UNAVAILABLE", "SANDBOX_PAUSED",
    "ENOENT", "EACCES", "EPERM", "EISDIR", "ENOTDIR", "EEXIST", "ENOSPC", "EROFS", "ENAMETOOLONG", "ELOOP",
    "EINVAL", "EIO", "ENOTEMPTY", "EBUSY", "EXDEV", "ETXTBSY", "EMFILE", "EFBIG", "EDQUOT",
    "UNSAFE_PATH", "BAD_ARCHIVE", "ESRCH", "ENOTTY",
    "CONNECTION_REFUSED", "HOST_NOT_FOUND", "TLS_ERROR", "TOO_MANY_REDIRECTS", "NET_ERROR", "ENOSYS",
    "EGRESS_DENIED",
    "SOMETHING_NEW",
]
HTTP_CODES = [
    (400, "INVALID_BODY"), (400, "BAD_PATH"), (400, "INVALID_FIELD"), (400, "LIMIT_EXCEEDED"),
    (400, "INVALID_PORT"), (400, "INVALID_UPGRADE"), (403, "ADMIN_ONLY"), (403, "PORT_RESERVED"),
    (404, "UNKNOWN_PROFILE"), (404, "SANDBOX_NOT_FOUND"), (404, "NOT_FOUND"), (405, "METHOD_NOT_ALLOWED"),
    (401, "TUNNEL_UNAUTHORIZED"), (404, "TUNNEL_NOT_FOUND"), (409, "SANDBOX_NOT_RUNNING"),
    (409, "EXPOSE_IN_PROGRESS"), (409, "SANDBOX_DESTROYED"), (429, "TOO_MANY_TUNNELS"),
    (429, "RATE_LIMITED"), (501, "NOT_AVAILABLE"), (503, "AT_CAPACITY"), (502, "RUNTIME_ERROR"),
    (502, "PORT_NOT_LISTENING"), (502, "UPSTREAM_FAILED"), (503, "NO_HOST_PORT"), (504, "PORT_NOT_READY"),
    (500, "INTERNAL"), (429, "QUOTA_EXCEEDED"), (403, "OPERATOR_ONLY"), (401, "SIGNATURE_MISSING"),
    (401, "SIGNATURE_MALFORMED"), (401, "SIGNATURE_EXPIRED"), (401, "SIGNATURE_FUTURE"),
    (401, "SIGNATURE_INVALID"), (401, "BODY_TAMPERED"), (401, "SIGNATURE_REPLAYED"),
    (503, "REPLAY_CACHE_FULL"), (401, "SESSION_TOKEN_INVALID"),
    (409, "SANDBOX_PAUSED"), (501, "PAUSE_NOT_SUPPORTED"), (409, "VOLUME_IN_USE"),
    (409, "VOLUME_EXISTS"), (404, "VOLUME_NOT_FOUND"), (503, "SANDBOX_UNAVAILABLE"),
    (503, "CLUSTER_UNAVAILABLE"), (400, "NETWORK_UNSUPPORTED"), (502, "EGRESS_FAILED"),
    (418, "SOMETHING_NEW"), (400, "SOMETHING_NEW"), (404, "SOMETHING_NEW"),
]


def error_cases():
    from sandbox.errors import error_from

    wire_cases = []
    for code in WIRE_CODES:
        details = {"path": "/root/x"} if code.startswith("E") and code != "ESRCH" else {}
        if code == "ESRCH":
            details = {"pid": 7}
        body = {"code": code, "message": f"m {code}", **details}
        e = error_from(code, body["message"], None, details)
        wire_cases.append({
            "code": code,
            "hex": wire.encode_json(T.ERROR, 1, body).hex(),
            "family": FAMILIES[type(e).__name__],
            "message": body["message"],
            "details": details,
        })
    http_cases = []
    for status, code in HTTP_CODES:
        e = error_from(code, "m", status, {})
        http_cases.append({
            "status": status,
            "code": code,
            "body": json.dumps({"error": {"code": code, "message": f"m {code}"}}),
            "family": FAMILIES[type(e).__name__],
        })
    # A body that is not the error shape: HTTP_<status>.
    for status in (502, 404):
        e = error_from(f"HTTP_{status}", "m", status, None)
        http_cases.append({"status": status, "code": f"HTTP_{status}", "body": "<html>bad gateway</html>",
                           "family": FAMILIES[type(e).__name__]})
    return wire_cases, http_cases


def e2e_cases():
    """
    An encrypted session with every random part fixed: the hello, the
    agent's answer, then frames each way as plaintext and sealed (what the
    client sends, what it receives on its stream), and bad frames with the
    error they must give (docs/security.md), each played on a fresh client
    that sealed ``to_agent`` and opened the first ``after`` of ``from_agent``.
    """
    sandbox_id = "sbx-c0ffee00"
    client_private, agent_private = bytes(range(1, 33)), bytes(range(33, 65))
    static_private, session_id = bytes(range(65, 97)), bytes(range(97, 113))
    identity = e2e.Identity(static_private)
    client = e2e.ClientHandshake(sandbox_id, pin=identity.fingerprint, private=client_private)
    hello = client.hello()
    result, agent_channel = e2e.agent_handshake(identity, hello, ephemeral=agent_private, session_id=session_id)
    client_side = Sealing(client.finish(result), client=True)
    agent_side = Sealing(agent_channel, client=False)
    to_agent = [
        wire.request(1, "process.exec", {"cmd": ["cat"], "stdin_stream": True, "env": {"K": "v"}}),
        wire.data(1, b"stdin bytes \x00\xff"),
        wire.end(1),
        wire.window(1, 65536),
        wire.request(3, "fs.read", {"path": "/root/a"}),
    ]
    sent = []
    for plain in to_agent:
        sealed = client_side.seal(plain)
        agent_side.open(wire.decode_one(sealed))
        sent.append({"plain_hex": plain.hex(), "sealed_hex": sealed.hex()})
    from_agent = [
        wire.data(1, b"stdout bytes", wire.CHANNEL_STDOUT),
        wire.event(3, {"progress": 1}),
        wire.result(1, {"exit_code": 0}),
        wire.data(3, bytes(range(256)) * 4),
        wire.error(3, "ENOENT", "no such file", path="/root/a"),
    ]
    received = []
    for plain in from_agent:
        sealed = agent_side.seal(plain)
        client_side.open(wire.decode_one(sealed))
        received.append({"sealed_hex": sealed.hex(), "plain_hex": plain.hex()})
    flipped = bytearray.fromhex(received[0]["sealed_hex"])
    flipped[-1] ^= 1
    return {
        "sandbox": sandbox_id,
        "client_private_hex": client_private.hex(),
        "client_public_hex": client.client_key.hex(),
        "pin": identity.fingerprint,
        "hello": hello,
        "result": result,
        "session_hex": session_id.hex(),
        "to_agent": sent,
        "from_agent": received,
        "from_agent_errors": [
            {"name": "a flipped tag", "after": 0, "sealed_hex": bytes(flipped).hex(),
             "error": "E2E_TAMPERED"},
            {"name": "a replay", "after": 1, "sealed_hex": received[0]["sealed_hex"],
             "error": "E2E_REPLAYED"},
            {"name": "frames swapped in a stream", "after": 0,
             "sealed_hex": received[2]["sealed_hex"], "error": "E2E_TAMPERED"},
            {"name": "a forged clear DATA", "after": 0, "sealed_hex": wire.data(1, b"x", 1).hex(),
             "error": "E2E_UNSEALED"},
        ],
        "wrong_pin": {"pin": "sha256:" + "00" * 32, "error": "E2E_IDENTITY_MISMATCH"},
    }


def build():
    ok, bad = decode_cases()
    wire_errors, http_errors = error_cases()
    return {
        "about": "sandboxd wire protocol v1 conformance vectors; made by make_vectors.py, do not edit",
        "constants": {
            "HEADER_SIZE": wire.HEADER_SIZE, "MAX_PAYLOAD": wire.MAX_PAYLOAD, "MAX_JSON": wire.MAX_JSON,
            "CHUNK_SIZE": wire.CHUNK_SIZE, "INITIAL_WINDOW": wire.INITIAL_WINDOW,
            "MAX_STREAMS": wire.MAX_STREAMS, "MAX_STREAM_ID": wire.MAX_STREAM_ID,
        },
        "frame_types": {t.name: t.value for t in T},
        "encode": encode_cases(),
        "decode": ok,
        "decode_errors": bad,
        "wire_errors": wire_errors,
        "http_errors": http_errors,
        "e2e": e2e_cases(),
    }


def render():
    return json.dumps(build(), indent=1, ensure_ascii=True) + "\n"


if __name__ == "__main__":
    with open(PATH, "w") as f:
        f.write(render())
    print(f"wrote {PATH}")
