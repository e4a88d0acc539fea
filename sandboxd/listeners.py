"""
The daemon's listeners: the Unix socket (mode 0660, optionally given
``server.socket_group``), plain TCP, or TLS (1.2 or later, with an optional
client CA: ``server.tls_client_ca``).  docs/deployment.md, docs/multi-tenant.md.

Plain listeners are strports descriptions (``Config.endpoint_strings``);
the TLS listener is built here because a strports ``ssl:`` description can
neither raise the minimum TLS version nor ask for client certificates.
"""

import grp
import os
import re

from twisted.application import strports
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import Service
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.ssl import Certificate, CertificateOptions, PrivateCertificate, TLSVersion
from twisted.logger import Logger

from sandboxd.config import LISTEN_BACKLOG, parse_tcp_address

_PEM_CERT = re.compile(
    rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


class ListenerError(Exception):
    """A listener cannot be set up (a TLS file unreadable or invalid, no such group)."""


def _read(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ListenerError(f"{what} {path}: {e.strerror}") from None


def tls_options(cert_path, key_path, client_ca_path=""):
    """
    The TLS server options: the certificate (and any chain after it in the
    file), its key, TLS >= 1.2; with ``client_ca_path``, a client
    certificate signed by one of its CAs is required.
    """
    cert_pem = _read(cert_path, "server.tls_cert")
    key_pem = _read(key_path, "server.tls_key")
    certs = _PEM_CERT.findall(cert_pem)
    if not certs:
        raise ListenerError(f"server.tls_cert {cert_path}: no PEM certificate in it")
    try:
        mine = PrivateCertificate.loadPEM(certs[0] + b"\n" + key_pem)
        chain = [Certificate.loadPEM(c).original for c in certs[1:]]
    except Exception as e:
        raise ListenerError(f"server.tls_cert/tls_key: not a usable pair: {e}") from None
    options = dict(privateKey=mine.privateKey.original, certificate=mine.original,
                   extraCertChain=chain, raiseMinimumTo=TLSVersion.TLSv1_2)
    if client_ca_path:
        authorities = _PEM_CERT.findall(_read(client_ca_path, "server.tls_client_ca"))
        if not authorities:
            raise ListenerError(f"server.tls_client_ca {client_ca_path}: no PEM certificate")
        options.update(verify=True, requireCertificate=True,
                       caCerts=[Certificate.loadPEM(c).original for c in authorities])
    return CertificateOptions(**options)


def tls_service(server, site, reactor):
    """The TLS listener of ``server`` (a ServerConfig) serving ``site``."""
    host, port = parse_tcp_address(server.tcp)
    endpoint = SSL4ServerEndpoint(
        reactor, port, tls_options(server.tls_cert, server.tls_key, server.tls_client_ca),
        backlog=LISTEN_BACKLOG, interface=host)
    service = StreamServerEndpointService(endpoint, site)
    service._raiseSynchronously = True  # as strports.service: a bad port fails start-up
    return service


class SocketGroup(Service):
    """
    Gives the Unix socket at ``path`` the group ``group`` once it listens
    (started after the socket's listener).
    """

    log = Logger()

    def __init__(self, path, group):
        self.path = path
        self.gid = group_id(group)

    def startService(self):
        super().startService()
        os.chown(self.path, -1, self.gid)
        self.log.info("socket {path} is group {gid}, mode 0660", path=self.path, gid=self.gid)


def group_id(group):
    """The id of a group name or number; ListenerError if there is none."""
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ListenerError(f"server.socket_group: no group named {group!r}") from None


def listener_services(config, site, reactor):
    """Every listener of ``config`` (and the socket's group), as services."""
    services = []
    for description in config.endpoint_strings():
        if description.startswith("ssl:"):
            services.append(tls_service(config.server, site, reactor))
        else:
            services.append(strports.service(description, site))
    if config.server.socket and config.server.socket_group:
        services.append(SocketGroup(config.server.socket, config.server.socket_group))
    return services
