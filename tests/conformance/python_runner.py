"""
The Python SDK's conformance runner: plays vectors.json against agent.wire and
sandbox.errors, and scenario.json against a real daemon.

    python tests/conformance/python_runner.py vectors
    python tests/conformance/python_runner.py scenario --endpoint unix:///path.sock
    python tests/conformance/python_runner.py bench --endpoint ... --mib 100

Prints one line per step; exits 1 at the first failure (the line says why).
"""

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time

# Play the SDK of this tree, unless told to play an installed one.
if not os.environ.get("SANDBOX_SDK_INSTALLED"):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from agent import wire  # noqa: E402
from sandbox import Client, SandboxError, connect_sandbox, create_sandbox  # noqa: E402
from sandbox.errors import error_from_http, error_from_payload  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

FAMILIES = {
    "InvalidRequestError": "invalid_request", "NotFoundError": "not_found", "CapacityError": "capacity",
    "RateLimitedError": "rate_limited", "ServerError": "server",
    "SandboxUnavailableError": "sandbox_unavailable", "FileError": "file",
    "PathNotFoundError": "path_not_found", "ProtocolError": "protocol", "SandboxTimeoutError": "timeout",
    "RequestCancelledError": "cancelled", "NetworkError": "network", "SandboxError": "sandbox",
}


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def load(name):
    with open(os.path.join(HERE, name)) as f:
        return json.load(f)


def parts_bytes(case, key_hex="hex", key_parts="parts"):
    if key_parts in case:
        out = bytearray()
        for part in case[key_parts]:
            out += bytes.fromhex(part) if isinstance(part, str) else bytes([part[0]]) * part[1]
        return bytes(out)
    return bytes.fromhex(case[key_hex])


def play_vectors(vectors):
    """
    Check agent.wire and sandbox.errors against every vector; the count played.
    """
    n = 0
    for case in vectors["encode"]:
        f = case["frame"]
        got = wire.encode(wire.FrameType[f["type"]], f["stream"], bytes.fromhex(f["payload_hex"]), f["flags"])
        check(got.hex() == case["hex"], f"encode {case['name']}: {got.hex()} != {case['hex']}")
        n += 1
    for case in vectors["decode"]:
        data = parts_bytes(case)
        if case.get("stream_bytes"):
            framer = wire.Framer()
            frames = framer.feed(data)
            framer.finish()
        else:
            frames = [wire.decode_one(data)]
        check(len(frames) == len(case["frames"]), f"decode {case['name']}: {len(frames)} frames")
        for got, want in zip(frames, case["frames"]):
            payload = parts_bytes(want, "payload_hex", "payload_parts")
            check((got.type.name, got.flags, got.stream, got.payload)
                  == (want["type"], want["flags"], want["stream"], payload), f"decode {case['name']}")
        if "json" in case:
            check(frames[0].json() == case["json"], f"decode {case['name']}: json")
        n += 1
    for case in vectors["decode_errors"]:
        try:
            frame = wire.decode_one(parts_bytes(case))
            if case.get("when") == "json":
                frame.json()
            elif case.get("when") == "window":
                frame.window()
        except wire.ProtocolError as e:
            check(e.code == case["error"], f"decode error {case['name']}: {e.code} != {case['error']}")
        else:
            raise Failure(f"decode error {case['name']}: no error")
        n += 1
    for case in vectors["wire_errors"]:
        frame = wire.decode_one(bytes.fromhex(case["hex"]))
        e = error_from_payload(frame.json())
        check((e.code, FAMILIES[type(e).__name__], e.message, e.details)
              == (case["code"], case["family"], case["message"], case["details"]),
              f"wire error {case['code']}: {type(e).__name__}")
        n += 1
    for case in vectors["http_errors"]:
        e = error_from_http(case["status"], "Reason", {}, case["body"].encode())
        check((e.code, FAMILIES[type(e).__name__], e.status) == (case["code"], case["family"], case["status"]),
              f"http error {case['status']} {case['code']}: {e.code} {type(e).__name__}")
        n += 1
    return n + play_e2e(vectors["e2e"])


def play_e2e(v):
    """
    The encrypted-session vectors (README, ``e2e``): the same hello, keys,
    sealed bytes and errors; the count played.
    """
    from agent import e2e
    from agent.e2e_frames import Sealing

    def client(pin=v["pin"]):
        hello = e2e.ClientHandshake(v["sandbox"], pin, private=bytes.fromhex(v["client_private_hex"]))
        check(hello.hello() == v["hello"], "e2e hello")
        sealing = Sealing(hello.finish(v["result"]), client=True)
        for case in v["to_agent"]:
            got = sealing.seal(bytes.fromhex(case["plain_hex"]))
            check(got.hex() == case["sealed_hex"], "e2e seal")
        return sealing

    sealing = client()
    for case in v["from_agent"]:
        frame = sealing.open(wire.decode_one(bytes.fromhex(case["sealed_hex"])))
        check(frame.encode().hex() == case["plain_hex"], "e2e open")
    n = 2
    for case in v["from_agent_errors"]:
        sealing = client()
        for good in v["from_agent"][: case["after"]]:
            sealing.open(wire.decode_one(bytes.fromhex(good["sealed_hex"])))
        try:
            sealing.open(wire.decode_one(bytes.fromhex(case["sealed_hex"])))
        except e2e.E2EError as e:
            check(e.code == case["error"], f"e2e {case['name']}: {e.code}")
        else:
            raise Failure(f"e2e {case['name']}: no error")
        n += 1
    try:
        client(v["wrong_pin"]["pin"])
    except e2e.E2EError as e:
        check(e.code == v["wrong_pin"]["error"], f"e2e wrong pin: {e.code}")
    else:
        raise Failure("e2e wrong pin: accepted")
    return n + 1


def pattern(size, modulus, chunk=65536):
    """
    ``size`` bytes, byte i being ``i % modulus``, as chunks of ``chunk``.
    """
    base = bytes(i % modulus for i in range(modulus)) * (chunk // modulus + 2)
    done = 0
    while done < size:
        start = done % modulus
        piece = base[start : start + min(chunk, size - done)]
        yield piece
        done += len(piece)


async def collect(handle, until=None):
    out, err = bytearray(), bytearray()
    async for event in handle:
        (out if event.channel == "stdout" else err).extend(event.raw)
        if until is not None and until.encode() in out:
            break
    return bytes(out), bytes(err)


class Player:
    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.sbx = None
        self.sandbox_id = None

    async def run(self, steps, log=print):
        try:
            for i, step in enumerate(steps):
                want_error = step.get("expect_error")
                try:
                    await asyncio.wait_for(self.step(step), 120)
                except SandboxError as e:
                    if not want_error:
                        raise Failure(f"step {i} {step['op']}: unexpected {type(e).__name__} {e.code}: {e}")
                    got = (e.code, FAMILIES[type(e).__name__])
                    check(got == (want_error["code"], want_error["family"]),
                          f"step {i} {step['op']}: got {got}, want {want_error}")
                else:
                    check(not want_error, f"step {i} {step['op']}: no error, want {want_error}")
                log(f"ok {i} {step['op']}")
        finally:
            if self.sbx is not None and not self.sbx.closed:
                try:
                    await self.sbx.destroy()
                except SandboxError:
                    pass

    async def step(self, s):
        op, want = s["op"], s.get("expect", {})
        sbx = self.sbx
        if op == "create":
            new = await create_sandbox(endpoint=self.endpoint, **s["args"])
            self.sbx, self.sandbox_id = new, new.id
            check(new.info["state"] == want["state"], f"state {new.info['state']}")
        elif op == "write":
            data = pattern(**s["pattern"]) if "pattern" in s else s["text"]
            size = await sbx.fs.write(s["path"], data)
            check(size == want["size"], f"wrote {size}")
        elif op == "read":
            h, size = hashlib.sha256(), 0
            got = bytearray()
            async for chunk in sbx.fs.read_stream(s["path"], s.get("offset", 0), s.get("length")):
                h.update(chunk)
                size += len(chunk)
                if "hex" in want:
                    got += chunk
            check(size == want["size"], f"read {size}")
            if "sha256" in want:
                check(h.hexdigest() == want["sha256"], "sha256")
            if "hex" in want:
                check(got.hex() == want["hex"], f"bytes {got.hex()}")
        elif op == "read_text":
            text = await sbx.fs.read_text(s["path"])
            check(text == want["text"], f"text {text!r}")
        elif op == "stat":
            info = await sbx.fs.stat(s["path"])
            check((info.type, info.size) == (want["type"], want["size"]), f"stat {info}")
        elif op == "mkdir":
            await sbx.fs.mkdir(s["path"], parents=s.get("parents", False))
        elif op == "rename":
            await sbx.fs.rename(s["src"], s["dst"])
        elif op == "list":
            names = [e.name for e in await sbx.fs.list(s["path"])]
            check(names == want["names"], f"names {names}")
        elif op == "remove":
            await sbx.fs.remove(s["path"], recursive=s.get("recursive", False))
        elif op == "exists":
            check(await sbx.fs.exists(s["path"]) == want["exists"], "exists")
        elif op == "exec":
            r = await sbx.process.exec_(s["cmd"], stdin=s.get("stdin"), timeout=s.get("timeout"))
            self.check_result(want, r.stdout_bytes, r.stderr_bytes, r.exit_code, r.timed_out)
        elif op == "stream":
            handle = await sbx.process.stream_exec(s["cmd"])
            out, err = await collect(handle)
            result = await handle.wait()
            self.check_result(want, out, err, result["exit_code"], result["timed_out"])
        elif op in ("spawn", "pty"):
            if op == "pty":
                proc = await sbx.process.pty(s["cmd"], cols=s["cols"], rows=s["rows"])
            else:
                proc = await sbx.process.spawn(s["cmd"])
            check(proc.pid > 0, "pid")
            out = b""
            if "wait_for" in s:
                out, _ = await collect(proc, s["wait_for"])
            if "resize" in s:
                await proc.resize(*s["resize"])
            if "write" in s:
                await proc.write(s["write"])
            if s.get("close_stdin"):
                await proc.close_stdin()
            if "signal" in s:
                await proc.signal(s["signal"])
            rest, err = await collect(proc)
            result = await proc.wait()
            out += rest
            if op == "pty":
                text = out.decode("utf-8", "replace")
                for needle in want["contains"]:
                    check(needle in text, f"pty output {text!r} lacks {needle!r}")
                check(result["exit_code"] == want["exit_code"], f"exit {result}")
            else:
                self.check_result(want, out, err, result["exit_code"], result["timed_out"])
        elif op == "env_set":
            await sbx.env.set(s["vars"])
        elif op == "env_get":
            value = await sbx.env.get(s["name"])
            check(value == want["value"], f"value {value!r}")
        elif op == "env_delete":
            deleted = await sbx.env.delete(*s["names"])
            check(list(deleted) == want["deleted"], f"deleted {deleted}")
        elif op == "connect_again":
            other = await connect_sandbox(self.sandbox_id, endpoint=self.endpoint)
            try:
                r = await other.process.exec_(s["cmd"])
                check(r.stdout == want["stdout"], f"stdout {r.stdout!r}")
            finally:
                await other.close()
        elif op == "signal":
            await sbx.process.signal(s["pid"], s["signal"])
        elif op == "connect":
            other = await connect_sandbox(s["id"], endpoint=self.endpoint)
            await other.close()
        elif op == "destroy":
            await sbx.destroy()
        elif op == "get":
            async with Client(endpoint=self.endpoint) as client:
                await client.get(self.sandbox_id)
        else:
            raise Failure(f"unknown op {op}")

    @staticmethod
    def check_result(want, out, err, exit_code, timed_out):
        if "stdout" in want:
            check(out == want["stdout"].encode(), f"stdout {out!r}")
        if "stderr" in want:
            check(err == want["stderr"].encode(), f"stderr {err!r}")
        if "exit_code" in want:
            check(exit_code == want["exit_code"], f"exit code {exit_code}")
        if "timed_out" in want:
            check(timed_out == want["timed_out"], f"timed_out {timed_out}")


async def bench(endpoint, mib):
    """
    Upload then download ``mib`` MiB through the SDK's streams; MB/s each.
    """
    size = mib << 20
    async with await create_sandbox(endpoint=endpoint, storage=f"{mib + 64}m",
                                    memory=f"{mib + 256}m") as sbx:
        t0 = time.perf_counter()
        await sbx.fs.write("/root/bench.bin", pattern(size, 251, 256 * 1024))
        t1 = time.perf_counter()
        got = 0
        async for chunk in sbx.fs.read_stream("/root/bench.bin"):
            got += len(chunk)
        t2 = time.perf_counter()
        await sbx.destroy()
    check(got == size, f"downloaded {got}")
    return {"sdk": "python", "mib": mib, "upload_mb_s": round(size / 1e6 / (t1 - t0), 1),
            "download_mb_s": round(size / 1e6 / (t2 - t1), 1)}


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("vectors", "scenario", "bench"))
    parser.add_argument("--endpoint")
    parser.add_argument("--mib", type=int, default=100)
    args = parser.parse_args(argv)
    try:
        if args.what == "vectors":
            print(f"ok {play_vectors(load('vectors.json'))} vectors")
        elif args.what == "scenario":
            asyncio.run(Player(args.endpoint).run(load("scenario.json")["steps"]))
        else:
            print(json.dumps(asyncio.run(bench(args.endpoint, args.mib))))
    except Failure as e:
        print(f"FAIL {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
