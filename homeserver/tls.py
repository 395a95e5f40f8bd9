"""Self-signed TLS certificates for development and tests, and the server SSL context."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path


def host_of(server_name: str) -> str:
    """The host part of a server name (IPv6 literals keep no brackets)."""
    if server_name.startswith("["):
        return server_name[1 : server_name.index("]")]
    return server_name.rsplit(":", 1)[0] if server_name.count(":") == 1 else server_name


def write_self_signed(server_name: str, cert_path: Path, key_path: Path) -> None:
    """Write a self-signed certificate valid for the server name's host, for 10 years."""
    # cryptography is imported here, not at the top: a running server only loads the
    # certificate through ``ssl``, and the library's bindings are ~9 MiB of resident memory.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    host = host_of(server_name)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def server_ssl_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx
