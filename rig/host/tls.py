"""TLS for the host: a self-signed test certificate made by `rig host init`, and SSL contexts.

The certificate names 127.0.0.1, ::1 and localhost so a terminal (or a test) on this machine can
verify it with the certificate itself as trust anchor. TEST MATERIAL: never deploy it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CERT_NAME = "host.crt"
KEY_NAME = "host.key"


class TlsError(RuntimeError):
    """A certificate that cannot be made or loaded; the message names the file and the fix."""


def cert_paths(folder: Path) -> tuple[Path, Path]:
    """(certificate, private key) paths inside a TLS folder."""
    return folder / CERT_NAME, folder / KEY_NAME


def make_self_signed(
    folder: Path, *, names: tuple[str, ...] = ("localhost", "127.0.0.1", "::1"), days: int = 825
) -> tuple[Path, Path]:
    """Write a P-256 self-signed server certificate and its key (mode 0600) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "posrig reference host (TEST)"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "posrig test material"),
        ]
    )
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = cert_paths(folder)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


def server_context(folder: Path) -> ssl.SSLContext:
    """Server-side context (TLS 1.2+) from the folder's certificate and key."""
    cert_path, key_path = cert_paths(folder)
    if not cert_path.is_file() or not key_path.is_file():
        raise TlsError(
            f"{cert_path} or {key_path} is missing; run `rig host init --data DIR` to make them"
        )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert_path, key_path)
    except (ssl.SSLError, OSError) as e:
        raise TlsError(f"{cert_path}: cannot load certificate and key ({e}); re-run init") from None
    return ctx


def client_context(cafile: Path | str) -> ssl.SSLContext:
    """Client-side context trusting `cafile` (the host's certificate) with name checks on."""
    try:
        ctx = ssl.create_default_context(cafile=str(cafile))
    except (ssl.SSLError, OSError) as e:
        raise TlsError(f"{cafile}: cannot load the host certificate ({e})") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def fingerprint(cert_path: Path) -> str:
    """SHA-256 fingerprint of a PEM certificate (hex, for `rig host init` output)."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return cert.fingerprint(hashes.SHA256()).hex().upper()
