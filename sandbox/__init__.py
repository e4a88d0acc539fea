"""
The Python SDK of sandboxd (asyncio).

    from sandbox import create_sandbox

    async with await create_sandbox() as sbx:
        await sbx.fs.write("/root/main.py", "print('hello')")
        result = await sbx.process.exec_("python3 /root/main.py")
        print(result.stdout)

See docs/sdk.md.
"""

__version__ = "0.1.0"

from sandbox._endpoint import DEFAULT_ENDPOINT, Endpoint, parse_endpoint
from sandbox._code import CodeInterpreter, CodeResult
from sandbox._env import Environment
from sandbox._fs import FileInfo, Filesystem
from sandbox._net import FetchResponse, Network, Tunnel
from sandbox._watch import WatchEvent, Watcher
from sandbox._process import ExecHandle, ExecResult, OutputEvent, Process
from sandbox._spawn import ProcessExitedError, SpawnedProcess
from sandbox._sandbox import Sandbox, connect_sandbox, create_sandbox
from sandbox.client import Client
from sandbox._events import DaemonEvent
from sandbox.errors import (
    CapacityError,
    DaemonUnavailableError,
    RateLimitedError,
    FileError,
    InvalidEndpointError,
    InvalidRequestError,
    NetworkError,
    NotFoundError,
    PathNotFoundError,
    ProtocolError,
    RequestCancelledError,
    SandboxError,
    SandboxTimeoutError,
    SandboxPausedError,
    SandboxUnavailableError,
    ServerError,
)

__all__ = [
    "__version__",
    "create_sandbox",
    "connect_sandbox",
    "Sandbox",
    "Client",
    "DaemonEvent",
    "Filesystem",
    "Environment",
    "CodeInterpreter",
    "CodeResult",
    "Network",
    "Tunnel",
    "Watcher",
    "WatchEvent",
    "FetchResponse",
    "FileInfo",
    "Process",
    "ExecResult",
    "ExecHandle",
    "OutputEvent",
    "SpawnedProcess",
    "ProcessExitedError",
    "Endpoint",
    "parse_endpoint",
    "DEFAULT_ENDPOINT",
    "SandboxError",
    "InvalidEndpointError",
    "DaemonUnavailableError",
    "InvalidRequestError",
    "NotFoundError",
    "CapacityError",
    "RateLimitedError",
    "ServerError",
    "SandboxPausedError",
    "SandboxUnavailableError",
    "FileError",
    "PathNotFoundError",
    "ProtocolError",
    "SandboxTimeoutError",
    "RequestCancelledError",
    "NetworkError",
]
