"""
Runtimes start and remove sandboxes behind the L{IRuntime} seam.
"""

from sandboxd.runtimes.docker import DockerRuntime
from sandboxd.runtimes.interface import (
    IRuntime,
    RuntimeFailure,
    RuntimeUnavailable,
    SandboxSpec,
    Started,
)

__all__ = [
    "DockerRuntime",
    "IRuntime",
    "RuntimeFailure",
    "RuntimeUnavailable",
    "SandboxSpec",
    "Started",
]
