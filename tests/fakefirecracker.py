"""
A fake Firecracker for tests: ``python fakefirecracker.py --api-sock PATH``.

It serves the API over the Unix socket as Firecracker's swagger
(src/firecracker/swagger/firecracker.yaml) specifies the calls sandboxd
makes: ``PUT /machine-config``, ``/boot-source``, ``/drives/{drive_id}``,
``/vsock``, ``/actions`` (``InstanceStart``); 204 on success, 400 with
``{"fault_message"}`` on a bad body, on a pre-boot resource after the
start or on a start without a kernel.  Every call is appended to
``api.log`` (JSON lines) in the working directory.

``InstanceStart`` "boots" the guest: it takes the agent's secret from the
last archive of the initrd (as the VM's init would), runs the real agent
on loopback TCP, and serves Firecracker's hybrid vsock on ``uds_path``:
``CONNECT 1024\\n`` is answered ``OK <n>\\n`` and spliced to the agent;
any other port is refused by closing, as Firecracker does.
"""

import argparse
import ctypes
import http.server
import json
import os
import queue
import re
import signal
import socket
import socketserver
import subprocess
import sys
import threading

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUEST_PORT = 1024
PRE_BOOT = ("/machine-config", "/boot-source", "/drives/", "/vsock")


class VM:
    def __init__(self):
        self.config = {}
        self.started = False
        self.lock = threading.Lock()
        self.agent_port = None
        self.agent = None


def _check(path, body, vm):
    """
    The fault message for a bad call, or None.
    """
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    if vm.started and path.startswith(PRE_BOOT):
        return "The requested operation is not supported after starting the microVM."
    if path == "/machine-config":
        for key in ("vcpu_count", "mem_size_mib"):
            if type(body.get(key)) is not int or body[key] < 1:
                return f"missing or invalid field `{key}`"
        if body["vcpu_count"] > 32:
            return "Invalid vCPU number"
    elif path == "/boot-source":
        if not isinstance(body.get("kernel_image_path"), str):
            return "missing field `kernel_image_path`"
        for key in ("kernel_image_path", "initrd_path"):
            if key in body and not os.path.isfile(body[key]):
                return f"Cannot open the {key}: No such file or directory"
    elif path.startswith("/drives/"):
        if body.get("drive_id") != path[len("/drives/"):]:
            return "The id from the path does not match the id from the body!"
        if not isinstance(body.get("path_on_host"), str) or not os.path.isfile(body["path_on_host"]):
            return "Unable to open the drive file"
        if type(body.get("is_root_device")) is not bool:
            return "missing field `is_root_device`"
    elif path == "/vsock":
        if type(body.get("guest_cid")) is not int or body["guest_cid"] < 3:
            return "invalid field `guest_cid`"
        if not isinstance(body.get("uds_path"), str):
            return "missing field `uds_path`"
    elif path == "/actions":
        if body.get("action_type") not in ("InstanceStart", "FlushMetrics", "SendCtrlAltDel"):
            return "unknown variant `action_type`"
        if body["action_type"] == "InstanceStart":
            if vm.started:
                return "The microVM is already running."
            if "/boot-source" not in vm.config or "/machine-config" not in vm.config:
                return "Cannot start microvm without kernel configuration."
    else:
        return f"Invalid request method and/or path: PUT {path}"
    return None


def secret_from_initrd(path):
    """
    The agent secret in the initrd's per-VM archive (newc: the file size
    is the 8 hex digits at offset 54 of the 110-byte header).
    """
    with open(path, "rb") as f:
        data = f.read()
    name = data.rfind(b"sandboxd-secret\0")
    header = data[name - 110:name]
    size = int(header[54:62], 16)
    start = name + len(b"sandboxd-secret\0")
    start += -start % 4
    return data[start:start + size].decode()


def boot(vm):
    source = vm.config["/boot-source"]
    secret = secret_from_initrd(source["initrd_path"])
    libc = ctypes.CDLL(None)
    vm.agent = subprocess.Popen(
        [sys.executable, "-m", "agent", "--listen", "tcp:127.0.0.1:0"],
        cwd=REPO, env={"SANDBOX_AGENT_SECRET": secret, "PYTHONPATH": REPO,
                       "SANDBOX_AGENT_CWD": "/tmp", "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
        preexec_fn=lambda: libc.prctl(1, signal.SIGKILL),  # PR_SET_PDEATHSIG
    )
    line = vm.agent.stderr.readline().decode()
    vm.agent_port = int(re.search(r":(\d+)$", line.strip())[1])
    uds = vm.config["/vsock"]["uds_path"]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(uds)
    listener.listen(16)
    threading.Thread(target=serve_vsock, args=(listener, vm), daemon=True).start()


def serve_vsock(listener, vm):
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=hybrid, args=(conn, vm), daemon=True).start()


def hybrid(conn, vm):
    line = b""
    while not line.endswith(b"\n") and len(line) < 64:
        chunk = conn.recv(1)
        if not chunk:
            conn.close()
            return
        line += chunk
    match = re.fullmatch(rb"CONNECT (\d+)\n", line)
    if match is None or int(match[1]) != GUEST_PORT:
        conn.close()
        return
    guest = socket.create_connection(("127.0.0.1", vm.agent_port))
    conn.sendall(b"OK 1073741824\n")
    for a, b in ((conn, guest), (guest, conn)):
        threading.Thread(target=pump, args=(a, b), daemon=True).start()


def pump(source, sink):
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, fault=None):
        body = json.dumps({"fault_message": fault}).encode() if fault else b""
        self.send_response(status)
        if body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self):
        vm = self.server.vm
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with vm.lock:
            fault = _check(self.path, body, vm)
            with open("api.log", "a") as log:
                log.write(json.dumps({"path": self.path, "body": body, "fault": fault}) + "\n")
            if fault is None:
                if self.path == "/actions" and body["action_type"] == "InstanceStart":
                    # The guest is forked by the main thread: its
                    # PR_SET_PDEATHSIG fires when the forking thread ends.
                    done = queue.Queue()
                    self.server.boots.put((vm, done))
                    done.get()
                    vm.started = True
                else:
                    vm.config[self.path if not self.path.startswith("/drives/") else self.path] = body
        self.answer(400 if fault else 204, fault)

    def do_GET(self):
        self.answer(400, f"Invalid request method and/or path: GET {self.path}")


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-sock", required=True)
    args = parser.parse_args()
    server = Server(args.api_sock, Handler)
    server.vm = VM()
    server.boots = queue.Queue()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    while True:
        vm, done = server.boots.get()
        try:
            boot(vm)
        finally:
            done.put(None)


if __name__ == "__main__":
    main()
