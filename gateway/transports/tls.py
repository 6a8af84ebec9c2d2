"""TLS for every listener and every outbound call, with the policy set here, not by defaults.

NIST SP 800-52r2 (3.1, 3.3.1): TLS 1.2 or later; cipher suites with ephemeral ECDH key exchange and
AEAD encryption only (AES-GCM, ChaCha20-Poly1305; TLS 1.3 suites are all AEAD).  Servers ask for a
client certificate and verify it against ``[tls] client_ca``; the application then maps the
verified certificate's SHA-256 fingerprint to an identity (:mod:`gateway.routing.authz`).  A
certificate from another CA fails the handshake; no certificate at all is let through the
handshake so that the protocol can answer with a clear refusal (SMTP 530, SOAP fault).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet._sslverify import TLSVersion
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web import pages, resource
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from gateway import pki

log = logging.getLogger("gateway.tls")

# ECDHE key exchange with AEAD ciphers only (TLS 1.2); TLS 1.3 suites are negotiated separately.
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!SHA1:!SHA256:!SHA384"
_VERSIONS = {"1.2": TLSVersion.TLSv1_2, "1.3": TLSVersion.TLSv1_3}


def resolve(config):
    """The configuration with ``[tls]`` files filled in from the data directory's own PKI.

    Without ``[tls] cert/key/client_ca`` the gateway makes (once) a private CA, its server
    certificate and a client identity for every configured agency without a ``certificate``
    and for the LESC, under ``DATA/pki`` (files 0600).
    """
    tls = config.tls
    if not tls.enabled or tls.cert is not None:
        return config
    root = Path(config.data_dir) / "pki"
    names = [a.ori for a in config.agencies if not a.certificates]
    if not config.lesc_certificates and (config.lesc_email or config.lesc_soap):
        names.append(pki.LESC_NAME)
    paths = pki.ensure_default(root, tuple(names), hostnames(config))
    return replace(
        config,
        tls=replace(tls, cert=paths.server_cert, key=paths.server_key, client_ca=paths.ca_cert),
    )


def issued_identities(config) -> dict[str, str]:
    """name -> fingerprint of the identities issued under ``DATA/pki/agencies``."""
    root = Path(config.data_dir) / "pki"
    out = {}
    for agency in config.agencies:
        fp = pki.issued_fingerprint(root, agency.ori)
        if fp:
            out[agency.ori] = fp
    fp = pki.issued_fingerprint(root, pki.LESC_NAME)
    if fp:
        out[pki.LESC_NAME] = fp
    return out


def hostnames(config) -> tuple[str, ...]:
    names = ["localhost", "127.0.0.1", "::1"]
    for endpoint in (config.listen_smtp, config.listen_soap, config.listen_admin):
        parts = dict(p.split("=", 1) for p in endpoint.split(":")[2:] if "=" in p)
        interface = parts.get("interface", "").strip("[]")
        if interface and interface not in names and interface not in ("0.0.0.0", "::"):
            names.append(interface)
    if config.soap_public_url:
        from urllib.parse import urlsplit

        host = urlsplit(config.soap_public_url).hostname
        if host and host not in names:
            names.append(host)
    return tuple(names)


def _read_pem(path: Path, what: str):
    try:
        return path.read_bytes()
    except OSError as exc:
        raise pki.PKIError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


def server_options(tls) -> ssl.CertificateOptions:
    """The context factory of a listener: our chain, client certificates checked against the CA."""
    chain = _read_pem(tls.cert, "certificate")
    # crypto.Error (a certificate file holding a key, a key file holding a certificate) is not
    # an SSL.Error: each was a traceback and exit 1, now a message naming the file and exit 2
    try:
        certs = ssl.Certificate.loadPEM(chain)
    except (SSL.Error, crypto.Error) as exc:
        raise pki.PKIError(
            f"cannot load the TLS files: {tls.cert} is not a PEM certificate ({exc})"
        ) from None
    try:
        key = ssl.KeyPair.load(_read_pem(tls.key, "key"), crypto.FILETYPE_PEM)
    except (SSL.Error, crypto.Error) as exc:
        raise pki.PKIError(
            f"cannot load the TLS files: {tls.key} is not a PEM private key ({exc})"
        ) from None
    try:
        extra = [c.original for c in _pem_certificates(chain)[1:]]
    except (SSL.Error, crypto.Error, ValueError) as exc:
        raise pki.PKIError(
            f"cannot load the TLS files: {tls.cert} is not a PEM certificate chain ({exc})"
        ) from None
    try:
        authorities = [c for c in _pem_certificates(_read_pem(tls.client_ca, "client CA"))]
    except (SSL.Error, crypto.Error, ValueError) as exc:
        raise pki.PKIError(
            f"cannot load the TLS files: {tls.client_ca} is not a PEM certificate ({exc})"
        ) from None
    options = ssl.CertificateOptions(
        privateKey=key.original,
        certificate=certs.original,
        extraCertChain=extra,
        verify=True,
        caCerts=[c.original for c in authorities],
        requireCertificate=False,  # the protocol refuses a missing certificate in its own words
        raiseMinimumTo=_VERSIONS[tls.min_version],
        acceptableCiphers=ssl.AcceptableCiphers.fromOpenSSLCipherString(CIPHERS),
        enableSessions=False,
    )
    try:
        options.getContext()  # now, not at the first handshake: with the key of another
    except SSL.Error:  # certificate it started, listened and failed every handshake
        raise pki.PKIError(
            f"cannot load the TLS files: the key {tls.key} is not the key of the certificate "
            f"{tls.cert}"
        ) from None
    return options


def _pem_certificates(data: bytes) -> list[ssl.Certificate]:
    marker = b"-----BEGIN CERTIFICATE-----"
    out = []
    for block in data.split(marker)[1:]:
        out.append(ssl.Certificate.loadPEM(marker + block))
    if not out:
        raise ValueError("no PEM certificate found")
    return out


def wrap(factory, options):
    """``factory`` behind TLS from the first byte (HTTPS)."""
    return TLSMemoryBIOFactory(options, False, factory)


def peer_fingerprint(transport) -> str | None:
    """The SHA-256 fingerprint of the verified client certificate on ``transport``, or None."""
    get = getattr(transport, "getPeerCertificate", None)
    if get is None:
        return None
    try:
        cert = get()
    except Exception:  # noqa: BLE001 - no TLS session (yet)
        return None
    if cert is None:
        return None
    return cert.digest("sha256").decode("ascii").replace(":", "").upper()


def trust_root(config):
    """Whom outbound connections trust: ``[outbound] ca``, else our CA, else the platform."""
    path = config.outbound_ca or config.tls.client_ca
    if path is None:
        return ssl.platformTrust()
    return ssl.trustRootFromCertificates(_pem_certificates(_read_pem(Path(path), "CA")))


def client_certificate(config):
    """The gateway's own certificate, presented when it calls out (None when TLS is off)."""
    tls = config.tls
    if not tls.enabled or tls.cert is None:
        return None
    return ssl.PrivateCertificate.loadPEM(
        _read_pem(tls.cert, "certificate") + b"\n" + _read_pem(tls.key, "key")
    )


def client_options(config, hostname: str):
    """Options for an outbound TLS connection to ``hostname``: its certificate is checked."""
    return ssl.optionsForClientTLS(
        hostname,
        trustRoot=trust_root(config),
        clientCertificate=client_certificate(config),
        extraCertificateOptions={
            "raiseMinimumTo": _VERSIONS[config.tls.min_version],
            "acceptableCiphers": ssl.AcceptableCiphers.fromOpenSSLCipherString(CIPHERS),
        },
    )


@implementer(IPolicyForHTTPS)
class OutboundPolicy:
    """HTTPS policy of SOAP pushes: the agency's server certificate is checked against our trust."""

    def __init__(self, config):
        self.config = config

    def creatorForNetloc(self, hostname, port):  # noqa: N802 - Twisted API
        return client_options(self.config, hostname.decode("ascii"))


class ClientCertificateRequired(resource.Resource):
    """Wraps a resource tree: 403 for a request whose connection shows no client certificate.

    The handshake has already verified any certificate against ``[tls] client_ca``; the admin
    console adds its own login on top (a certificate is the device, the login the person).
    """

    def __init__(self, inner: resource.Resource):
        super().__init__()
        self.inner = inner

    def _refused(self, request) -> bool:
        return peer_fingerprint(getattr(request.channel, "transport", None)) is None

    def getChildWithDefault(self, path, request):  # noqa: N802 - Twisted API
        if self._refused(request):
            return _FORBIDDEN
        return self.inner.getChildWithDefault(path, request)

    def render(self, request):
        if self._refused(request):
            return _FORBIDDEN.render(request)
        return self.inner.render(request)


_FORBIDDEN = pages.errorPage(403, "Forbidden", "a client certificate is required")
