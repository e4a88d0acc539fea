"""
A real TLS listener (``twistd -n sandboxd`` with server.tls_cert/tls_key
from a test CA): the SDK and ``sbx`` work over https/wss with the CA file,
plain HTTP and unverified clients fail, and with server.tls_client_ca a
client without a certificate is refused.
"""

import asyncio
import http.client
import json
import os
import ssl
import subprocess
import sys
import warnings

from twisted.trial.unittest import SynchronousTestCase

from sandbox import Client, create_sandbox
from sandbox.errors import DaemonUnavailableError
from tests.daemon import Daemon
from tests.tlsutil import make_test_ca

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tls_daemon(client_ca=False):
    """A Daemon whose TCP listener speaks TLS with a test CA's certificate."""
    daemon = Daemon(min_base=1)
    pems = make_test_ca(daemon.dir)
    with open(daemon.config) as f:
        text = f.read()
    tcp = f'tcp = "127.0.0.1:{daemon.port}"\n'
    extra = f'tls_cert = "{pems["server.pem"]}"\ntls_key = "{pems["server.key"]}"\n'
    if client_ca:
        extra += f'tls_client_ca = "{pems["ca.pem"]}"\n'
    with open(daemon.config, "w") as f:
        f.write(text.replace(tcp, tcp + extra, 1))
    return daemon, pems


def _https(port, context, path="/health"):
    connection = http.client.HTTPSConnection("localhost", port, timeout=30, context=context)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


class TLSListenerTests(SynchronousTestCase):
    """
    TLS without client certificates.
    """

    def setUp(self):
        self.daemon, self.pems = tls_daemon()
        self.daemon.start()
        self.addCleanup(self.daemon.stop)
        self.url = f"https://localhost:{self.daemon.port}"

    def test_sdk_over_https_and_wss(self):
        """
        The SDK, given the CA file, creates a sandbox over https and runs a
        command in it over wss.
        """

        async def go():
            async with Client(self.url, ca_file=self.pems["ca.pem"]) as client:
                async with await create_sandbox(client=client) as sandbox:
                    return await sandbox.process.exec_("echo over-tls")

        result = asyncio.run(go())
        self.assertEqual((result.exit_code, result.stdout.strip()), (0, "over-tls"))

    def test_sdk_without_the_ca_fails(self):
        """
        Without the CA file (the system's trust store) the SDK refuses the
        server's certificate.
        """

        async def go():
            async with Client(self.url) as client:
                return await client.health()

        with self.assertRaises(DaemonUnavailableError) as caught:
            asyncio.run(go())
        self.assertIn("certificate", str(caught.exception).lower())

    def test_sbx_over_https(self):
        """
        ``sbx --ca-file`` creates, runs a command (wss) and removes over https.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
        env["PYTHONPATH"] = ROOT

        def sbx(*args):
            return subprocess.run(
                [sys.executable, "-m", "sbx.main", "--endpoint", self.url,
                 "--ca-file", self.pems["ca.pem"], *args],
                env=env, cwd=ROOT, capture_output=True, timeout=120)

        created = sbx("create")
        self.assertEqual(created.returncode, 0, created.stderr)
        sandbox_id = created.stdout.decode().strip()
        ran = sbx("exec", sandbox_id, "echo", "via-sbx")
        self.assertEqual((ran.returncode, ran.stdout), (0, b"via-sbx\n"), ran.stderr)
        self.assertEqual(sbx("rm", sandbox_id).returncode, 0)

    def test_plain_http_fails_and_old_tls_refused(self):
        """
        Plain HTTP to the TLS port gets no HTTP answer; a client that
        offers at most TLS 1.1 fails its handshake; TLS 1.2 works.
        """
        connection = http.client.HTTPConnection("127.0.0.1", self.daemon.port, timeout=10)
        with self.assertRaises((http.client.HTTPException, OSError)):
            connection.request("GET", "/health")
            connection.getresponse()
        connection.close()
        context = ssl.create_default_context(cafile=self.pems["ca.pem"])
        # (Security level 0 so that this client really offers TLS 1.1: the
        # refusal is then the server's.)
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            _https(self.daemon.port, context)
        context = ssl.create_default_context(cafile=self.pems["ca.pem"])
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        self.assertEqual(_https(self.daemon.port, context)[0], 200)


class ClientCertificateTests(SynchronousTestCase):
    """
    TLS with server.tls_client_ca.
    """

    def setUp(self):
        self.daemon, self.pems = tls_daemon(client_ca=True)
        self.daemon.start()
        self.addCleanup(self.daemon.stop)

    def test_client_without_certificate_refused(self):
        """
        A client with no certificate is refused in the handshake; one with
        a certificate from the CA is served.
        """
        context = ssl.create_default_context(cafile=self.pems["ca.pem"])
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            _https(self.daemon.port, context)
        context.load_cert_chain(self.pems["client.pem"], self.pems["client.key"])
        self.assertEqual(_https(self.daemon.port, context)[0], 200)
