"""The private CA and certificates of the secured local stack (``stack up --secure``),
generated at the first secure start under ``$AUDITPIPE_HOME/tls`` and reused after.

- ``ca.pem`` / ``ca.key``: a CA that exists only on this machine (EC P-256, 825 days);
- ``server.pem`` / ``server.key``: the services' certificate, for 127.0.0.1 and
  localhost (Kafka's listeners and ClickHouse's TLS front);
- ``client.pem`` / ``client.key``: a client certificate (CN ``auditpipe``) for mutual TLS;
- ``kafka-admin.password``, ``kafka-client.password``, ``clickhouse.password``: random
  passwords of the broker's own SCRAM user, the clients' SCRAM user and ClickHouse's
  ``default`` user.

Invariants: private keys and passwords are written with mode 0600 in a 0700 directory,
and never leave it (nothing of it is committed: it is made on each machine); a file that
exists is kept, so clients configured once keep working across restarts.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 825
CLIENT_NAME = "auditpipe"


@dataclass(frozen=True)
class StackTLS:
    """Paths of the secured stack's certificates and secrets."""

    root: Path

    @property
    def ca(self) -> Path:
        return self.root / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.root / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.root / "server.key"

    @property
    def client_cert(self) -> Path:
        return self.root / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.root / "client.key"

    def password(self, name: str) -> str:
        """The password ``name`` (made on first use)."""
        path = self.root / f"{name}.password"
        if not path.exists():
            _write_private(path, secrets.token_urlsafe(24).encode())
        return path.read_text().strip()

    def password_file(self, name: str) -> Path:
        self.password(name)
        return self.root / f"{name}.password"

    def ensure(self) -> None:
        """Make whatever is missing: the CA, then the server and client certificates."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        if not (self.ca.exists() and (self.root / "ca.key").exists()):
            key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "auditpipe local stack CA")])
            cert = (
                _builder(name, name, key.public_key())
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(_usage(ca=True), critical=True)
                .sign(key, hashes.SHA256())
            )
            _write_private(self.root / "ca.key", _key_pem(key))
            self.ca.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            for stale in (self.server_cert, self.client_cert):
                stale.unlink(missing_ok=True)  # signed by a CA that is gone
        if not self.server_cert.exists():
            self._issue(self.server_cert, self.server_key, "localhost", server=True)
        if not self.client_cert.exists():
            self._issue(self.client_cert, self.client_key, CLIENT_NAME, server=False)

    def issue_client(self, name: str) -> tuple[Path, Path]:
        """A further client certificate (CN ``name``) of this CA, e.g. for a collector
        host of its own; returns (certificate, key). Kafka's principal is ``User:CN=name``,
        which the secured broker's authorizer allows nothing without an ACL."""
        cert, key = self.root / f"client-{name}.pem", self.root / f"client-{name}.key"
        self._issue(cert, key, name, server=False)
        return cert, key

    def _issue(self, cert_path: Path, key_path: Path, common_name: str, server: bool) -> None:
        ca_key = serialization.load_pem_private_key((self.root / "ca.key").read_bytes(), None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca = x509.load_pem_x509_certificate(self.ca.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        # The broker presents its certificate as a client too (to its controller listener).
        purpose = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if server:
            purpose.append(ExtendedKeyUsageOID.SERVER_AUTH)
        builder = (
            _builder(subject, ca.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(purpose), critical=False)
        )
        if server:
            names: list[x509.GeneralName] = [
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
            ]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        _write_private(key_path, _key_pem(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def server_keystore(self) -> Path:
        """The server's key and certificate in one PEM file (Kafka's PEM keystore)."""
        path = self.root / "server-keystore.pem"
        _write_private(path, self.server_key.read_bytes() + self.server_cert.read_bytes())
        return path


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
    )


def _usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not ca,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # PKCS#8: the form Kafka's PEM keystore reads.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    """Write with mode 0600 from the start (never readable by others, not even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    path.chmod(0o600)
