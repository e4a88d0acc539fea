"""
The CPU cost of sealing, apart from the machine's load: CPU seconds
(``time.process_time``) one process spends sealing and opening frames with
agent.e2e_frames, so what it gives is a bound on throughput per core that a
busy machine does not distort the way wall-clock runs are distorted.

- ``bulk``: 100 MiB as 256 KiB DATA frames, sealed (as the agent does for
  fs.read) and opened (as the SDK does), MB/s of CPU each way;
- ``small``: an exec round trip's frames (a REQUEST, a RESULT): CPU
  microseconds the encryption adds to one round trip (both ends' share).

Run with the SDK's Python (``.venv/bin/python bench/e2e_cost.py``) and, for
the agent's, inside an image (``docker run --rm -v $PWD:/repo:ro -w /repo
--entrypoint python3 sandbox-base:latest bench/e2e_cost.py``); bench/e2e_bench.py
does both.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from agent import e2e, wire  # noqa: E402
from agent.e2e_frames import Sealing  # noqa: E402

MiB = 1 << 20


def pair():
    client = e2e.ClientHandshake("sbx-bench")
    result, agent = e2e.agent_handshake(e2e.Identity(), client.hello())
    return Sealing(client.finish(result), client=True), Sealing(agent, client=False)


def cost(frames=400):
    import cryptography

    client, agent = pair()
    agent.open(wire.decode_one(client.seal(wire.request(1, "fs.read", {"path": "/x"}))))
    chunk = os.urandom(wire.CHUNK_SIZE)
    start = time.process_time()
    sealed = [agent.seal(wire.data(1, chunk)) for _ in range(frames)]
    seal_s = time.process_time() - start
    framer = wire.Framer()
    start = time.process_time()
    for data in sealed:
        for frame in framer.feed(data):
            client.open(frame)
    open_s = time.process_time() - start
    size = frames * len(chunk)
    n = 2000
    start = time.process_time()
    for i in range(n):
        sid = 2 * i + 3
        request = client.seal(wire.request(sid, "process.exec", {"cmd": ["true"]}))
        agent.open(wire.decode_one(request))
        answer = agent.seal(wire.result(sid, {"exit_code": 0, "timed_out": False}))
        client.open(wire.decode_one(answer))
    small_s = time.process_time() - start
    return {
        "python": sys.version.split()[0],
        "cryptography": cryptography.__version__,
        "seal_cpu_MBps": round(size / seal_s / 1e6, 1),
        "open_cpu_MBps": round(size / open_s / 1e6, 1),
        "exec_rtt_cpu_overhead_us": round(small_s / n * 1e6, 1),
    }


if __name__ == "__main__":
    print(json.dumps(cost()))
