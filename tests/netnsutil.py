"""
Test servers in a network namespace the test makes itself: the only kind
of "elsewhere" an egress test may reach (never an outside address).

L{TestNetwork} makes a namespace joined to the host by a veth pair on a
random /29 of 198.18.0.0/15 (RFC 2544's benchmarking range: never routed
anywhere), gives the namespace two addresses and runs a small HTTP server
on each of two ports of both: the host routes sandbox traffic there through
its FORWARD chain, exactly as it would to the outside world.
"""

import atexit
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from tests.dockerutil import missing

#: Serves GET with "<address>:<port>", and appends the request's
#: Authorization header to the file argv[3] (on the host's side: what the
#: server saw never goes back to the sandbox).
SERVER = """
import http.server, sys
class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(sys.argv[3], "a") as seen:
            seen.write(self.headers.get("Authorization", "") + "\\n")
        body = f"{self.server.server_address[0]}:{self.server.server_address[1]}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), Echo).serve_forever()
"""
PORTS = (8080, 8081)


def _ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True)


class TestNetwork:
    """
    A namespace with addresses C{near} and C{far}, each serving HTTP on
    both L{PORTS}.  C{close()} removes it all.
    """

    def __init__(self):
        if os.geteuid() != 0 or shutil.which("ip") is None:
            missing("test network namespaces need root and ip (iproute2)")
        tag = os.urandom(3).hex()
        self.namespace = f"sbxtest-{tag}"
        self.host_link, self.ns_link = f"sbt{tag}h", f"sbt{tag}n"
        third = random.randrange(256)
        base = f"198.{18 + random.randrange(2)}.{third}"
        self.gateway, self.near, self.far = f"{base}.1", f"{base}.2", f"{base}.3"
        self._servers = []
        self.dir = tempfile.mkdtemp(prefix="sbxtest-net-")
        _ip("netns", "add", self.namespace)
        try:
            _ip("link", "add", self.host_link, "type", "veth", "peer", "name", self.ns_link)
            _ip("link", "set", self.ns_link, "netns", self.namespace)
            _ip("addr", "add", f"{self.gateway}/29", "dev", self.host_link)
            _ip("link", "set", self.host_link, "up")
            inside = ["netns", "exec", self.namespace, "ip"]
            _ip(*inside, "addr", "add", f"{self.near}/29", "dev", self.ns_link)
            _ip(*inside, "addr", "add", f"{self.far}/29", "dev", self.ns_link)
            _ip(*inside, "link", "set", self.ns_link, "up")
            _ip(*inside, "link", "set", "lo", "up")
            for address in (self.near, self.far):
                for port in PORTS:
                    self._servers.append(subprocess.Popen(
                        ["ip", "netns", "exec", self.namespace, sys.executable, "-c",
                         SERVER, address, str(port), self.seen_path(address, port)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            self._wait_serving()
        except BaseException:
            self.close()
            raise

    def _wait_serving(self, timeout=30):
        deadline = time.monotonic() + timeout
        for address in (self.near, self.far):
            for port in PORTS:
                while True:
                    try:
                        self.get(address, port)
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)

    def seen_path(self, address, port):
        return os.path.join(self.dir, f"{address}_{port}")

    def seen(self, address, port):
        """The Authorization headers the server at address:port received."""
        try:
            with open(self.seen_path(address, port)) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    @staticmethod
    def get(address, port, timeout=2):
        """GET from the host (no proxy): the body as text."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://{address}:{port}/", timeout=timeout) as response:
            return response.read().decode()

    def close(self):
        for server in self._servers:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", self.host_link], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


_shared = []


def shared_network():
    """
    One L{TestNetwork} for the whole test process (made on first use,
    removed at exit).
    """
    if not _shared:
        _shared.append(TestNetwork())
        atexit.register(_shared[0].close)
    return _shared[0]
