"""
The Python SDK's WebSocket stack, side by side in one run: ``websockets``
(today's) against Autobahn's asyncio flavour (with its NVX accelerated
masking and UTF-8 validation), speaking the same minimal client of the wire
protocol over the same session route of one sandbox:

- RTT: ``ping`` requests one after another, p50 and p90;
- upload: ``fs.write`` of N MiB within the window;
- download: ``fs.read`` of it, granting the window back.

    .venv/bin/python bench/ws_stacks.py [--mib 100] [--pings 500] [--rounds 3] [--endpoint unix:///...]

The issue's rule: move the SDK to Autobahn if it holds >= 90 % of websockets'
transfer and RTT figures.
"""

import argparse
import asyncio
import os
import statistics
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from agent import wire  # noqa: E402
from agent.wire import FrameType  # noqa: E402
from sandbox import Client  # noqa: E402
from tests.daemon import Daemon  # noqa: E402

MAX = wire.MAX_PAYLOAD + wire.HEADER_SIZE


class WebsocketsLink:
    name = "websockets"

    async def open(self, socket_path, path):
        from websockets.asyncio.client import unix_connect

        self.ws = await unix_connect(socket_path, f"ws://localhost{path}", max_size=MAX,
                                     compression=None, ping_timeout=None, write_limit=1 << 20)

    async def send(self, data):
        await self.ws.send(data)

    async def recv(self):
        return await self.ws.recv()

    async def close(self):
        await self.ws.close()


class AutobahnLink:
    name = "autobahn"

    async def open(self, socket_path, path):
        from autobahn.asyncio.websocket import WebSocketClientFactory, WebSocketClientProtocol

        queue = self.queue = asyncio.Queue()
        opened = asyncio.get_running_loop().create_future()

        class Protocol(WebSocketClientProtocol):
            def onOpen(self):
                opened.set_result(self)

            def onMessage(self, payload, isBinary):
                queue.put_nowait(payload)

        factory = WebSocketClientFactory(f"ws://localhost{path}")
        factory.protocol = Protocol
        factory.setProtocolOptions(maxFramePayloadSize=MAX, maxMessagePayloadSize=MAX, autoFragmentSize=0)
        await asyncio.get_running_loop().create_unix_connection(factory, socket_path)
        self.proto = await opened

    async def send(self, data):
        # No drain: the stream's window already bounds what is in flight (4 MiB).
        self.proto.sendMessage(data, isBinary=True)

    async def recv(self):
        return await self.queue.get()

    async def close(self):
        self.proto.sendClose(1000)


async def rtt(link, n):
    times = []
    for i in range(n):
        sid = 2 * i + 1
        t0 = time.perf_counter()
        await link.send(wire.request(sid, "ping"))
        frame = wire.decode_one(await link.recv())
        times.append(time.perf_counter() - t0)
        assert frame.type is FrameType.RESULT, frame
    times.sort()
    return times[len(times) // 2] * 1e3, times[int(len(times) * 0.9)] * 1e3


async def upload(link, size, sid=100001):
    await link.send(wire.request(sid, "fs.write", {"path": "/root/ws.bin"}))
    credit, sent = wire.INITIAL_WINDOW, 0
    chunk = bytes(i % 251 for i in range(wire.CHUNK_SIZE))
    t0 = time.perf_counter()
    while sent < size:
        while credit <= 0:
            frame = wire.decode_one(await link.recv())
            if frame.type is FrameType.WINDOW:
                credit += frame.window()
            else:
                raise RuntimeError(f"upload: {frame} {frame.payload[:200]}")
        n = min(len(chunk), credit, size - sent)
        await link.send(wire.data(sid, chunk[:n]))
        credit -= n
        sent += n
    await link.send(wire.end(sid))
    while True:
        frame = wire.decode_one(await link.recv())
        if frame.type is FrameType.RESULT:
            break
        if frame.type is FrameType.ERROR:
            raise RuntimeError(frame.json())
    return size / 1e6 / (time.perf_counter() - t0)


async def download(link, size, sid=100003):
    t0 = time.perf_counter()
    await link.send(wire.request(sid, "fs.read", {"path": "/root/ws.bin"}))
    got = owed = 0
    while True:
        frame = wire.decode_one(await link.recv())
        if frame.type is FrameType.DATA:
            got += len(frame.payload)
            owed += len(frame.payload)
            if owed >= wire.INITIAL_WINDOW // 2:
                await link.send(wire.window(sid, owed))
                owed = 0
        elif frame.type is FrameType.RESULT:
            break
        else:
            raise RuntimeError(frame)
    assert got == size, got
    return size / 1e6 / (time.perf_counter() - t0)


async def measure(endpoint, socket_path, mib, pings, rounds):
    async with Client(endpoint=endpoint) as client:
        # Room for the file and its replacement (a write goes to a temporary file renamed over it).
        info = await client.create(storage=f"{2 * mib + 64}m", memory=f"{2 * mib + 256}m", ttl=60)
        results = {"websockets": [], "autobahn": []}
        try:
            for _ in range(rounds):
                for link in (WebsocketsLink(), AutobahnLink()):
                    await link.open(socket_path, f"/sandboxes/{info['id']}/ws")
                    try:
                        p50, p90 = await rtt(link, pings)
                        up = await upload(link, mib << 20)
                        down = await download(link, mib << 20)
                    finally:
                        await link.close()
                    results[link.name].append((p50, p90, up, down))
                    print(f"{link.name}: rtt p50 {p50:.3f} ms p90 {p90:.3f} ms, upload {up:.1f} MB/s, "
                          f"download {down:.1f} MB/s", flush=True)
        finally:
            await client.destroy(info["id"])
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--pings", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--endpoint")
    args = parser.parse_args(argv)
    daemon = None
    if args.endpoint is None:
        daemon = Daemon(min_base=1)
        daemon.start()
        args.endpoint = daemon.endpoint
    socket_path = args.endpoint[len("unix://"):]
    try:
        results = asyncio.run(measure(args.endpoint, socket_path, args.mib, args.pings, args.rounds))
    finally:
        if daemon is not None:
            daemon.stop()
    med = {k: [statistics.median(r[i] for r in v) for i in range(4)] for k, v in results.items()}
    w, a = med["websockets"], med["autobahn"]
    print("\n| stack | RTT p50 ms | RTT p90 ms | upload MB/s | download MB/s |\n|---|---:|---:|---:|---:|")
    for name, m in med.items():
        print(f"| {name} | {m[0]:.3f} | {m[1]:.3f} | {m[2]:.1f} | {m[3]:.1f} |")
    print(f"| autobahn / websockets | {w[0] / a[0]:.0%} (RTT, inverse) | {w[1] / a[1]:.0%} | "
          f"{a[2] / w[2]:.0%} | {a[3] / w[3]:.0%} |")


if __name__ == "__main__":
    main()
