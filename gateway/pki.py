"""A small private PKI for the gateway: a CA, the gateway's server certificate, agency identities.

Agencies are known by the SHA-256 fingerprint of their client certificate (CJIS Security Policy
5.6.2: identification and authentication of every peer).  Operators with a PKI of their own
configure ``[tls] cert/key/client_ca`` and register their agencies' fingerprints; for everyone
else ``ebts-gateway pki init`` / ``pki issue AGENCY`` make one here, and the gateway makes the
same on its first start without ``[tls]`` (secure by default).

Layout under ``DIR`` (the data directory's ``pki/`` by default; files 0600, folders 0700)::

    ca.crt  ca.key                      the private CA that signs the server and agency certificates
    server.crt  server.key              the gateway's own certificate (server, and client outbound)
    agencies/<NAME>.crt  <NAME>.key     one client identity per agency ORI (and ``LESC``)
    dask/ca.crt  ca.key                 a CA of the Dask cluster only (gallery shards)
    dask/<NAME>.crt  <NAME>.key         its members: scheduler, workers, the gateway as client

The Dask cluster has a CA of its own because Dask's TLS accepts any certificate its CA signed
(mutual TLS, no host name check): an agency's client certificate must not open the cluster.

Keys are ECDSA P-256, certificates SHA-256 signed; the CA lives ten years, others two.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LESC_NAME = "LESC"  # the identity file of the ICE LESC: agencies/LESC.crt
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HEX = re.compile(r"[0-9A-F]{64}")


class PKIError(ValueError):
    """A PKI file is missing, unreadable or does not fit; the message names the file."""


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.root / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.root / "server.key"

    def agency_cert(self, name: str) -> Path:
        return self.root / "agencies" / f"{name}.crt"

    def agency_key(self, name: str) -> Path:
        return self.root / "agencies" / f"{name}.key"


def normalize_fingerprint(value: str) -> str:
    """``ab:cd:...`` or ``ABCD...`` -> 64 upper-case hex digits; ValueError when it is not one."""
    text = value.replace(":", "").replace(" ", "").upper()
    if not _HEX.fullmatch(text):
        raise ValueError(f"not a SHA-256 fingerprint (64 hex digits, colons allowed): {value!r}")
    return text


def fingerprint(cert: x509.Certificate | bytes) -> str:
    """The SHA-256 fingerprint of a certificate (object, PEM or DER) as 64 upper-case hex digits."""
    if isinstance(cert, bytes):
        cert = load_certificate(cert)
    return cert.fingerprint(hashes.SHA256()).hex().upper()


def pretty(fp: str) -> str:
    """``AB:CD:...`` as operators paste it into a configuration."""
    return ":".join(fp[i : i + 2] for i in range(0, len(fp), 2))


def load_certificate(data: bytes) -> x509.Certificate:
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` as 0600 whatever the umask (created with that mode)."""
    _private_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _load_pair(cert_path: Path, key_path: Path):
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise PKIError(f"cannot read {cert_path} / {key_path}: {exc}") from None
    return cert, key


def _builder(subject: str, issuer: x509.Name | None, public_key, days: int):
    now = dt.datetime.now(dt.UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ebts-gateway"),
            x509.NameAttribute(NameOID.COMMON_NAME, subject),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def init_ca(root: Path, common_name: str = "ebts-gateway private CA") -> Paths:
    """Create the CA under ``root`` unless one is there; returns the layout."""
    paths = Paths(Path(root))
    if paths.ca_cert.exists() and paths.ca_key.exists():
        _load_pair(paths.ca_cert, paths.ca_key)
        return paths
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(common_name, None, key.public_key(), 3650)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
        .sign(key, hashes.SHA256())
    )
    _write_private(paths.ca_key, _key_pem(key))
    _write_private(paths.ca_cert, _cert_pem(cert))
    return paths


def _issue(
    paths: Paths,
    cert_path: Path,
    key_path: Path,
    subject: str,
    *,
    server: bool,
    hostnames: tuple[str, ...] = (),
) -> x509.Certificate:
    ca_cert, ca_key = _load_pair(paths.ca_cert, paths.ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(subject, ca_cert.subject, key.public_key(), 730)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                # The server certificate also authenticates the gateway when it calls out
                # (SOAP receiveResponse pushes with a client certificate).
                [usage, ExtendedKeyUsageOID.CLIENT_AUTH] if server else [usage]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if hostnames:
        names: list[x509.GeneralName] = []
        for host in hostnames:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_private(key_path, _key_pem(key))
    _write_private(cert_path, _cert_pem(cert))
    return cert


def issue_server(
    root: Path,
    hostnames: tuple[str, ...] = ("localhost", "127.0.0.1", "::1"),
    *,
    force: bool = False,
) -> Paths:
    """The gateway's server certificate for ``hostnames`` (DNS names or IP addresses)."""
    paths = Paths(Path(root))
    if force or not (paths.server_cert.exists() and paths.server_key.exists()):
        _issue(
            paths,
            paths.server_cert,
            paths.server_key,
            hostnames[0],
            server=True,
            hostnames=hostnames,
        )
    return paths


def issue_client(root: Path, name: str, *, force: bool = False) -> tuple[Paths, str]:
    """A client identity ``agencies/NAME.crt`` (an agency ORI, or ``LESC``) and its fingerprint."""
    if not _NAME.fullmatch(name):
        raise PKIError(f"not a usable identity name (letters, digits, . _ -): {name!r}")
    paths = Paths(Path(root))
    cert_path, key_path = paths.agency_cert(name), paths.agency_key(name)
    if force or not (cert_path.exists() and key_path.exists()):
        cert = _issue(paths, cert_path, key_path, name, server=False)
    else:
        cert, _ = _load_pair(cert_path, key_path)
    return paths, fingerprint(cert)


def dask_paths(root: Path, name: str) -> tuple[Path, Path, Path]:
    """``(ca.crt, NAME.crt, NAME.key)`` of a Dask cluster member under ``root`` (DATA/pki)."""
    if not _NAME.fullmatch(name):
        raise PKIError(f"not a usable identity name (letters, digits, . _ -): {name!r}")
    folder = Path(root) / "dask"
    return folder / "ca.crt", folder / f"{name}.crt", folder / f"{name}.key"


def issue_dask(
    root: Path,
    name: str,
    hostnames: tuple[str, ...] = (),
    *,
    force: bool = False,
) -> tuple[Path, Path, Path]:
    """A Dask cluster member's certificate (``scheduler``, ``worker-1``, ``gateway``...),
    signed by the cluster's own CA (``DATA/pki/dask/ca.crt``, made on first use); returns
    ``(ca, cert, key)``.  Scheduler and workers both listen and connect, so every member
    carries both uses (server and client authentication); ``hostnames`` (plus loopback) go in
    its subject alternative names for the operator's own checks (Dask does not check them)."""
    ca, cert_path, key_path = dask_paths(root, name)
    paths = init_ca(ca.parent, "ebts-gateway Dask cluster CA")
    names = tuple(dict.fromkeys([*hostnames, "localhost", "127.0.0.1", "::1"]))
    if force or not (cert_path.exists() and key_path.exists()):
        _issue(paths, cert_path, key_path, name, server=True, hostnames=names)
    else:
        _load_pair(cert_path, key_path)
    return ca, cert_path, key_path


def issued_fingerprint(root: Path, name: str) -> str | None:
    """The fingerprint of ``agencies/NAME.crt`` under ``root`` when that file exists."""
    path = Paths(Path(root)).agency_cert(name)
    if not path.is_file():
        return None
    try:
        return fingerprint(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise PKIError(f"cannot read {path}: {exc}") from None


def secret(path: Path, size: int = 32) -> bytes:
    """A random key kept in ``path`` (0600), made on first use (IAQ control fields)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = os.urandom(size)
        _write_private(path, data)
        return data
    except OSError as exc:
        raise PKIError(f"cannot read the key file {path}: {exc.strerror or exc}") from None
    if len(data) < 16:
        raise PKIError(f"the key file {path} is too short ({len(data)} bytes)")
    return data


def ensure_default(root: Path, identities: tuple[str, ...], hostnames: tuple[str, ...]) -> Paths:
    """First start without ``[tls]``: the CA, the server certificate and demo identities."""
    paths = init_ca(root)
    issue_server(root, hostnames)
    for name in identities:
        issue_client(root, name)
    return paths
