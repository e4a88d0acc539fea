"""
``sandbox-mcp``: the command line.  Checks that a daemon answers (or starts
one with ``--start-daemon``), then serves the tools over stdio (the default)
or streamable HTTP.  Nothing but MCP messages may go to stdout under stdio:
messages for people go to stderr.
"""

import argparse
import asyncio
import os
import subprocess
import sys
import time

import anyio

from sandbox import Client, DaemonUnavailableError, SandboxError, parse_endpoint
from sandbox_mcp.http import is_loopback, serve_http
from sandbox_mcp.limits import DEFAULT_MAX_OUTPUT
from sandbox_mcp.server import build_server
from sandbox_mcp.state import Settings, State

#: Seconds --start-daemon waits for the daemon it started to answer.
START_TIMEOUT = 120

HOW_TO_START = """\
sandbox-mcp: no sandboxd answers at {endpoint} ({reason}).
Start one (as a user who may use Docker and the socket's directory):
    twistd -n sandboxd [--config /etc/sandboxd/config.toml]      (or `make run` in a checkout)
or point SANDBOX_ENDPOINT (and SANDBOX_AUTH) at a running daemon, or pass --start-daemon
(with --daemon-config PATH) to have sandbox-mcp start one."""


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="sandbox-mcp",
        description="The MCP server of sandboxd: sandbox tools for AI agents (docs/mcp.md).",
    )
    parser.add_argument(
        "--transport", choices=("stdio", "http"), default="stdio", help="stdio (default) or streamable HTTP"
    )
    parser.add_argument("--host", default="127.0.0.1", help="HTTP: address to listen on")
    parser.add_argument("--port", type=int, default=7523, help="HTTP: port (0: any free port)")
    parser.add_argument("--path", default="/mcp", help="HTTP: the endpoint's path")
    parser.add_argument(
        "--token",
        default=os.environ.get("SANDBOX_MCP_TOKEN") or None,
        help="HTTP: the bearer token clients must send (default: $SANDBOX_MCP_TOKEN); "
        "required unless --host is a loopback address",
    )
    parser.add_argument("--endpoint", help="the daemon (default: $SANDBOX_ENDPOINT, then the default socket)")
    parser.add_argument(
        "--download-dir", help="where sandbox_download writes (default: the working directory)"
    )
    parser.add_argument("--upload-dir", help="what sandbox_upload may read (default: the working directory)")
    parser.add_argument(
        "--max-output",
        type=int,
        default=DEFAULT_MAX_OUTPUT,
        help="characters of text per tool output (default 30000)",
    )
    parser.add_argument("--max-upload", type=int, default=100 << 20, help="bytes an upload may carry")
    parser.add_argument(
        "--start-daemon", action="store_true", help="start `twistd -n sandboxd` if no daemon answers"
    )
    parser.add_argument("--daemon-config", help="--start-daemon: the daemon's config file")
    parser.add_argument("--log-level", default="WARNING", help="the server's log level (to stderr)")
    return parser.parse_args(argv)


async def daemon_health(endpoint):
    """
    The daemon's /health, or the DaemonUnavailableError of trying.
    """
    async with Client(endpoint, timeout=10) as client:
        return await client.health()


def check_daemon(options):
    """
    Make sure a daemon answers at the endpoint; start one with
    ``--start-daemon``.  Return the started process (or None); exit with a
    message saying how to start one when none answers.
    """
    endpoint = parse_endpoint(options.endpoint)
    try:
        asyncio.run(daemon_health(endpoint))
        return None
    except DaemonUnavailableError as e:
        if not options.start_daemon:
            sys.exit(HOW_TO_START.format(endpoint=endpoint, reason=e.reason))
        reason = e.reason
    if not endpoint.is_unix:
        sys.exit(
            f"sandbox-mcp: --start-daemon starts a local daemon, but the endpoint is {endpoint} "
            f"({reason}); point SANDBOX_ENDPOINT at a Unix socket"
        )
    return start_daemon(endpoint, options.daemon_config)


def start_daemon(endpoint, config):
    """
    Start ``twistd -n sandboxd`` (logging to a file beside the socket, or
    in the working directory) and wait until it answers at ``endpoint``.
    """
    command = [
        sys.executable,
        "-c",
        "from twisted.scripts.twistd import run; run()",
        "-n",
        "--pidfile=",
        "sandboxd",
    ]
    if config:
        command += ["--config", config]
    log_path = os.path.join(os.path.dirname(endpoint.path) or ".", "sandboxd-mcp.log")
    try:
        log = open(log_path, "ab")
    except OSError:
        log_path = os.path.abspath("sandboxd-mcp.log")
        log = open(log_path, "ab")
    print(f"sandbox-mcp: no daemon at {endpoint}: starting sandboxd (log: {log_path})", file=sys.stderr)
    with log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"sandbox-mcp: the sandboxd it started exited with {process.returncode}; see {log_path}")
        try:
            asyncio.run(daemon_health(endpoint))
            print(f"sandbox-mcp: sandboxd {process.pid} answers at {endpoint}", file=sys.stderr)
            return process
        except SandboxError:
            time.sleep(0.2)
    process.terminate()
    sys.exit(f"sandbox-mcp: the sandboxd it started did not answer in {START_TIMEOUT} s; see {log_path}")


async def serve(server, state, options):
    try:
        if options.transport == "stdio":
            await server.run_stdio_async()
        else:
            await serve_http(
                server, options.host, options.port, options.path, options.token, options.log_level
            )
    finally:
        with anyio.CancelScope(shield=True):
            await state.close()


def main(argv=None):
    options = parse_args(sys.argv[1:] if argv is None else argv)
    if options.transport == "http" and not options.token and not is_loopback(options.host):
        sys.exit(
            f"sandbox-mcp: refusing to listen on {options.host} without a token: "
            "whoever reaches it drives the sandboxes; set --token or $SANDBOX_MCP_TOKEN"
        )
    if options.endpoint:
        os.environ["SANDBOX_ENDPOINT"] = options.endpoint
    daemon = check_daemon(options)
    settings = Settings(
        endpoint=options.endpoint,
        download_dir=options.download_dir,
        upload_dir=options.upload_dir,
        max_output=options.max_output,
        max_upload=options.max_upload,
    )
    state = State(settings)
    server = build_server(state, log_level=options.log_level.upper())
    try:
        anyio.run(serve, server, state, options)
    except KeyboardInterrupt:
        pass
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(60)


if __name__ == "__main__":
    main()
