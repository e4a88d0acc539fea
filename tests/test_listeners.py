"""
sandboxd/listeners.py: the TLS options (TLS >= 1.2, client CA), named
errors for unusable files, the Unix socket's group, and the listener set a
configuration gives.
"""

import os
import socket
import tempfile

from OpenSSL import SSL
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from sandboxd.config import ConfigError, parse_config
from sandboxd.listeners import ListenerError, SocketGroup, group_id, listener_services, tls_options
from tests.tlsutil import make_test_ca


class TLSOptionsTests(SynchronousTestCase):
    """
    The TLS context the listener serves with.
    """

    def setUp(self):
        self.directory = tempfile.mkdtemp()
        self.pems = make_test_ca(self.directory)

    def test_minimum_tls_1_2(self):
        """
        The context refuses SSLv3, TLS 1.0 and 1.1 (OpenSSL's no-protocol
        options are set) and does not ask for client certificates.
        """
        context = tls_options(self.pems["server.pem"], self.pems["server.key"]).getContext()
        for flag in (SSL.OP_NO_SSLv3, SSL.OP_NO_TLSv1, SSL.OP_NO_TLSv1_1):
            self.assertTrue(context.set_options(0) & flag, flag)
        self.assertEqual(context.get_verify_mode(), SSL.VERIFY_NONE)

    def test_client_ca_requires_a_certificate(self):
        """
        With a client CA, the context requires the peer's certificate.
        """
        context = tls_options(self.pems["server.pem"], self.pems["server.key"],
                              self.pems["ca.pem"]).getContext()
        mode = context.get_verify_mode()
        self.assertTrue(mode & SSL.VERIFY_PEER)
        self.assertTrue(mode & SSL.VERIFY_FAIL_IF_NO_PEER_CERT)

    def test_named_errors(self):
        """
        A missing file, a file without a certificate, a key that is not
        the certificate's: ListenerError naming the setting.
        """
        with self.assertRaises(ListenerError) as caught:
            tls_options(os.path.join(self.directory, "nope.pem"), self.pems["server.key"])
        self.assertIn("server.tls_cert", str(caught.exception))
        with self.assertRaises(ListenerError) as caught:
            tls_options(self.pems["server.key"], self.pems["server.key"])
        self.assertIn("server.tls_cert", str(caught.exception))
        with self.assertRaises(ListenerError) as caught:
            tls_options(self.pems["server.pem"], self.pems["client.key"])
        self.assertIn("not a usable pair", str(caught.exception))
        with self.assertRaises(ListenerError) as caught:
            tls_options(self.pems["server.pem"], self.pems["server.key"], self.pems["server.key"])
        self.assertIn("server.tls_client_ca", str(caught.exception))

    def test_listener_set(self):
        """
        A TLS configuration gives the Unix socket and one TLS endpoint
        service (not a strports ssl: one); with socket_group, a SocketGroup
        after them.
        """
        config = parse_config(
            f'[server]\nsocket = "{self.directory}/s.sock"\ntcp = "127.0.0.1:0"\n'
            f'tls_cert = "{self.pems["server.pem"]}"\ntls_key = "{self.pems["server.key"]}"\n'
            f'socket_group = "{os.getgid()}"\n')
        services = listener_services(config, object(), Clock())
        self.assertEqual(len(services), 3)
        self.assertIsInstance(services[1], StreamServerEndpointService)
        self.assertIsInstance(services[2], SocketGroup)


class SocketGroupTests(SynchronousTestCase):
    """
    The Unix socket's group.
    """

    def test_chown(self):
        """
        Started, it gives the socket the group (by number here); an unknown
        group name is a ListenerError naming server.socket_group.
        """
        path = os.path.join(tempfile.mkdtemp(), "s.sock")
        listening = socket.socket(socket.AF_UNIX)
        self.addCleanup(listening.close)
        listening.bind(path)
        # (Root may give any group; others only their own.)
        gid = 4242 if os.geteuid() == 0 else os.getgid()
        SocketGroup(path, str(gid)).startService()
        self.assertEqual(os.stat(path).st_gid, gid)
        with self.assertRaises(ListenerError) as caught:
            group_id("no-such-group-here")
        self.assertIn("server.socket_group", str(caught.exception))

    def test_config_rules(self):
        """
        tls_client_ca without tls_cert is refused at load, naming the key.
        """
        with self.assertRaises(ConfigError) as caught:
            parse_config('[server]\ntls_client_ca = "/x.pem"\n')
        self.assertEqual(caught.exception.key, "server.tls_cert")
