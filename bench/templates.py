"""
Create from a template beside create from a profile, both from the warm
pool (docs/templates.md): a template used recently keeps
``pool.min_per_image`` warm sandboxes, so a create from it is a pool hit
like a profile's.

    .venv/bin/python bench/templates.py [--n 30] [--min-per-image 2]

Each round creates one sandbox from the profile and one from the template
over a kept-alive Unix socket connection, destroys both, and waits for
both pools to be at rest again (the numbers are claims, not refills).
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, ".."), HERE]

from stats import summary  # noqa: E402
from tests.daemon import Daemon, UnixHTTPConnection  # noqa: E402


def at_rest(daemon, names, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pools = daemon.request("GET", "/health")[1]["pool"]
        if all(name in pools and pools[name]["starting"] == 0
               and pools[name]["ready"] >= max(1, pools[name]["target"]) for name in names):
            return
        time.sleep(0.05)
    raise RuntimeError(f"pools {names} did not come to rest")


def create(connection, body):
    start = time.perf_counter()
    connection.request("POST", "/sandboxes", body=json.dumps(body),
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    created = json.loads(response.read())
    took = time.perf_counter() - start
    if response.status != 201:
        raise RuntimeError(f"create {body}: {response.status} {created}")
    return took, created


def run(n, min_per_image):
    daemon = Daemon(min_base=1, pool_config=f"min_per_image = {min_per_image}\n")
    daemon.start(timeout=300)
    template = None
    try:
        status, source = daemon.request("POST", "/sandboxes", {"ttl": 60})
        status, template = daemon.request(
            "POST", "/templates", {"sandbox_id": source["id"], "label": "bench"})
        if status != 201:
            raise RuntimeError(f"save: {status} {template}")
        daemon.request("DELETE", f"/sandboxes/{source['id']}")
        # The first create from the template starts its pool (a miss).
        status, first = daemon.request("POST", "/sandboxes", {"template": template["id"]})
        daemon.request("DELETE", f"/sandboxes/{first['id']}")
        names = ["default", template["id"]]
        at_rest(daemon, names)
        results = {"profile": ([], []), "template": ([], [])}
        connection = UnixHTTPConnection(daemon.socket)
        try:
            for _ in range(n):
                for kind, body in (("profile", {}), ("template", {"template": template["id"]})):
                    took, created = create(connection, body)
                    results[kind][0].append(took)
                    results[kind][1].append(created["method"] == "warm")
                    connection.request("DELETE", f"/sandboxes/{created['id']}")
                    connection.getresponse().read()
                at_rest(daemon, names)
        finally:
            connection.close()
        out = {}
        for kind, (samples, warm) in results.items():
            s = summary(samples)
            s.pop("samples_ms")
            s["hit_rate"] = round(sum(warm) / len(warm), 3)
            out[kind] = s
            print(f"create from {kind:8}: p50 {s['p50_ms']:.2f} ms  p99 {s['p99_ms']:.2f} ms"
                  f"  hits {s['hit_rate']:.0%}  (n={s['n']})")
        return out
    finally:
        if template is not None and "id" in template:
            daemon.request("DELETE", f"/templates/{template['id']}")
            time.sleep(2)
        daemon.stop(timeout=180)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--min-per-image", type=int, default=2)
    args = parser.parse_args()
    run(args.n, args.min_per_image)


if __name__ == "__main__":
    main()
