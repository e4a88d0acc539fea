"""
Agent endpoints: where a sandbox's agent listens, as one string a runtime
reports, the store keeps and adoption reconnects through.

==========================  ===============================================
``tcp:HOST:PORT``           TCP (a container's bridge address); IPv6 in
                            brackets, ``tcp:[fd00::5]:7070``
``unix:PATH``               a Unix socket on the host
``vsock:CID:PORT``          AF_VSOCK to guest CID (needs vhost-vsock)
``fcvsock:UDS:PORT``        Firecracker's hybrid vsock: the VM's Unix socket
                            UDS, then ``CONNECT PORT``
``vserial:PATH``            a virtio-serial port that QEMU serves on the
                            host Unix socket PATH (the daemon resyncs first)
==========================  ===============================================

L{parse_endpoint} checks a string and returns an L{AgentEndpoint};
L{AgentEndpoint.client} makes the Twisted IStreamClientEndpoint.  Every
malformed string is an L{EndpointSyntaxError} saying what is wrong.
"""

import ipaddress
import re

import attr
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.endpoints import UNIXClientEndpoint

from sandboxd.vsock import VsockClientEndpoint, hybrid_vsock_endpoint, virtio_serial_endpoint
from sandboxd.vsock.afvsock import MIN_GUEST_CID

KINDS = ("tcp", "unix", "vsock", "fcvsock", "vserial")
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_NUMBER = re.compile(r"[0-9]{1,10}")
MAX_PATH = 107  # sun_path holds 108 bytes with the terminating NUL


class EndpointSyntaxError(ValueError):
    """
    An agent endpoint string is malformed; the message says how.
    """


@attr.s(frozen=True, auto_attribs=True)
class AgentEndpoint:
    """
    A parsed agent endpoint: C{kind} (one of L{KINDS}), C{host} (tcp),
    C{path} (unix, vserial, and fcvsock's UDS), C{cid} (vsock) and C{port}
    (tcp, vsock, fcvsock).
    """

    kind: str
    host: str = None
    path: str = None
    cid: int = None
    port: int = None

    def __str__(self):
        if self.kind == "tcp":
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"tcp:{host}:{self.port}"
        if self.kind in ("unix", "vserial"):
            return f"{self.kind}:{self.path}"
        if self.kind == "vsock":
            return f"vsock:{self.cid}:{self.port}"
        return f"fcvsock:{self.path}:{self.port}"

    @property
    def address(self):
        """
        The IP at which the sandbox's own ports are reachable from the host:
        a TCP endpoint's host; None for the VM streams.
        """
        return self.host if self.kind == "tcp" else None

    @property
    def reserved_ports(self):
        """
        The agent's TCP port inside the sandbox (nothing but the daemon may
        reach it); none for the VM streams, which are not TCP ports.
        """
        return frozenset({self.port}) if self.kind == "tcp" else frozenset()

    def client(self, reactor, timeout=10.0):
        """
        The Twisted IStreamClientEndpoint reaching this agent.
        """
        if self.kind == "tcp":
            try:
                ip = ipaddress.ip_address(self.host)
            except ValueError:
                return HostnameEndpoint(reactor, self.host, self.port, timeout=timeout)
            cls = TCP4ClientEndpoint if ip.version == 4 else TCP6ClientEndpoint
            return cls(reactor, self.host, self.port, timeout=timeout)
        if self.kind == "unix":
            return UNIXClientEndpoint(reactor, self.path, timeout=timeout)
        if self.kind == "vsock":
            return VsockClientEndpoint(reactor, self.cid, self.port, timeout=timeout)
        if self.kind == "fcvsock":
            return hybrid_vsock_endpoint(reactor, self.path, self.port, timeout=timeout)
        return virtio_serial_endpoint(reactor, self.path, timeout=timeout)


def parse_endpoint(text):
    """
    The L{AgentEndpoint} that C{text} describes, or L{EndpointSyntaxError}.
    """
    if not isinstance(text, str) or not text:
        raise EndpointSyntaxError(f"agent endpoint {text!r}: expected a non-empty string")
    kind, colon, rest = text.partition(":")
    if not colon or kind not in KINDS:
        raise EndpointSyntaxError(
            f"agent endpoint {text!r}: unknown kind {kind!r} (use one of {', '.join(KINDS)})"
        )
    try:
        return _PARSERS[kind](rest)
    except EndpointSyntaxError as e:
        raise EndpointSyntaxError(f"agent endpoint {text!r}: {e}") from None


def _number(text, what, low, high):
    if not _NUMBER.fullmatch(text or ""):
        raise EndpointSyntaxError(f"{what} {text!r} is not a number")
    value = int(text)
    if not low <= value <= high:
        raise EndpointSyntaxError(f"{what} {value} is outside {low}-{high}")
    return value


def _path(text):
    if not text.startswith("/"):
        raise EndpointSyntaxError(f"path {text!r} is not absolute")
    if "\0" in text or len(text.encode()) > MAX_PATH:
        raise EndpointSyntaxError(f"path {text!r} cannot name a Unix socket")
    return text


def _tcp(rest):
    if rest.startswith("["):
        host, bracket, port = rest[1:].partition("]:")
        if not bracket:
            raise EndpointSyntaxError("expected [IPV6]:PORT")
        try:
            if ipaddress.ip_address(host).version != 6:
                raise ValueError
        except ValueError:
            raise EndpointSyntaxError(f"{host!r} is not an IPv6 address") from None
    else:
        host, colon, port = rest.rpartition(":")
        if not colon:
            raise EndpointSyntaxError("expected HOST:PORT")
        if ":" in host:
            raise EndpointSyntaxError("an IPv6 address goes in brackets")
        if not _HOSTNAME.fullmatch(host):
            raise EndpointSyntaxError(f"{host!r} is not a host name or address")
    return AgentEndpoint("tcp", host=host, port=_number(port, "port", 1, 65535))


def _unix(rest):
    return AgentEndpoint("unix", path=_path(rest))


def _vserial(rest):
    return AgentEndpoint("vserial", path=_path(rest))


def _vsock(rest):
    cid, colon, port = rest.partition(":")
    if not colon:
        raise EndpointSyntaxError("expected CID:PORT")
    return AgentEndpoint(
        "vsock",
        cid=_number(cid, "CID", MIN_GUEST_CID, 0xFFFFFFFE),
        port=_number(port, "port", 0, 0xFFFFFFFE),
    )


def _fcvsock(rest):
    path, colon, port = rest.rpartition(":")
    if not colon:
        raise EndpointSyntaxError("expected UDS_PATH:PORT")
    return AgentEndpoint(
        "fcvsock", path=_path(path), port=_number(port, "port", 0, 0xFFFFFFFE)
    )


_PARSERS = {"tcp": _tcp, "unix": _unix, "vsock": _vsock, "fcvsock": _fcvsock,
            "vserial": _vserial}


def tcp_endpoint(host, port):
    """
    The endpoint string of a TCP agent at C{host}:C{port}.
    """
    return str(AgentEndpoint("tcp", host=host, port=port))
