"""
A throwaway test CA: a server certificate for localhost/127.0.0.1 and a
client certificate, written as PEM files.
"""

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(text):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _issue(subject, key, issuer, issuer_key, ca=False, usage=None, names=()):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_test_ca(directory):
    """
    Write ca.pem, server.pem, server.key, client.pem, client.key and
    other-ca.pem (an unrelated CA) into ``directory``; return their paths.
    """
    ca_key, other_key = _key(), _key()
    ca = _issue("sandboxd test CA", ca_key, "sandboxd test CA", ca_key, ca=True)
    other = _issue("another CA", other_key, "another CA", other_key, ca=True)
    server_key, client_key = _key(), _key()
    server = _issue("localhost", server_key, "sandboxd test CA", ca_key,
                    usage=ExtendedKeyUsageOID.SERVER_AUTH,
                    names=(x509.DNSName("localhost"),
                           x509.IPAddress(ipaddress.ip_address("127.0.0.1"))))
    client = _issue("tenant-client", client_key, "sandboxd test CA", ca_key,
                    usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    paths = {}
    for name, data in (("ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
                       ("other-ca.pem", other.public_bytes(serialization.Encoding.PEM)),
                       ("server.pem", server.public_bytes(serialization.Encoding.PEM)),
                       ("server.key", _pem_key(server_key)),
                       ("client.pem", client.public_bytes(serialization.Encoding.PEM)),
                       ("client.key", _pem_key(client_key))):
        path = paths[name] = os.path.join(directory, name)
        with open(path, "wb") as f:
            f.write(data)
    return paths
