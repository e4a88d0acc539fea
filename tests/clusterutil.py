"""
Processes of a test cluster: a real etcd, sandboxd nodes joined to it and
sandboxd-router processes in front (tests/test_e2e_cluster.py and
bench/router.py).
"""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

from tests.daemon import NO_RATE_LIMIT, TWISTD, Daemon, free_port

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


class Etcd:
    """Debian's etcd on free loopback ports with a data dir in ``directory``."""

    def __init__(self, directory):
        self.dir = os.path.join(directory, "etcd")
        os.makedirs(self.dir, exist_ok=True)
        client, peer = free_port(), free_port()
        self.url = f"http://127.0.0.1:{client}"
        peer_url = f"http://127.0.0.1:{peer}"
        self.log = os.path.join(self.dir, "etcd.log")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [ETCD, "--name", "t", "--data-dir", os.path.join(self.dir, "data"),
                 "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                 "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                 "--initial-cluster", f"t={peer_url}"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"etcd exited: {open(self.log).read()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as answer:
                    if b'"true"' in answer.read():
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("etcd did not answer in 30 s")

    def stop(self):
        self.process.kill()
        self.process.wait()


def cluster_node(node_id, etcd_url, lease_ttl="3s", refresh="1s", max_sandboxes=40,
                 min_base=2):
    """A Daemon (not started) that joins the cluster at ``etcd_url`` as ``node_id``."""
    daemon = Daemon(min_base=min_base, pool_config=f"total_warm = {min_base}\n",
                    limits_config=f"{NO_RATE_LIMIT}\nmax_sandboxes = {max_sandboxes}")
    with open(daemon.config) as f:
        text = f.read()
    text = text.replace("[server]\n", f'[server]\nnode_id = "{node_id}"\n', 1)
    text += (f'[cluster]\netcd = ["{etcd_url}"]\nadvertise = "http://127.0.0.1:{daemon.port}"\n'
             f'lease_ttl = "{lease_ttl}"\nrefresh = "{refresh}"\n')
    with open(daemon.config, "w") as f:
        f.write(text)
    return daemon


class Router:
    """A ``twistd -n sandboxd-router`` process on a free loopback port."""

    def __init__(self, directory, etcd_url, name="router", poll="0.5s"):
        self.dir = os.path.join(directory, name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = os.path.join(self.dir, "router.toml")
        with open(config, "w") as f:
            f.write(f'listen = "tcp:{self.port}:interface=127.0.0.1"\n'
                    f'etcd = ["{etcd_url}"]\npoll = "{poll}"\nconnect_timeout = "2s"\n')
        self.log = os.path.join(self.dir, "router.log")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "sandboxd-router",
                 "--config", config], stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)

    def request(self, method, path, body=None, timeout=30):
        """(status, decoded JSON or None) of one request to the router."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                raw = answer.read()
                return answer.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                return error.code, json.loads(raw) if raw else None
            except ValueError:
                return error.code, raw

    def wait_nodes(self, wanted, timeout=30):
        """Wait until the router's live nodes are exactly ``wanted`` (a set)."""
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the router exited: {open(self.log).read()[-3000:]}")
            try:
                status, nodes = self.request("GET", "/nodes", timeout=5)
                seen = {n["node_id"] for n in nodes} if status == 200 else None
            except OSError:
                seen = None
            if seen == set(wanted):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the router saw nodes {seen}, not {wanted}, after {timeout} s")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
