"""``ebts-gateway pki init|issue NAME|show``: a private CA and identities for operators without one.

``init`` makes the CA and the gateway's server certificate under ``DATA/pki`` (what the daemon
also does on its first start with TLS on and no ``[tls]`` files); ``issue NAME`` makes a client
certificate for an agency (its ORI) or the ICE LESC (``LESC``) and prints the SHA-256 fingerprint
to register as ``[[agency]] certificate`` (or ``[lesc] certificate``).  An identity issued under
``DATA/pki/agencies/ORI.crt`` is recognised without registering it; give the agency its ``.crt``,
``.key`` and ``ca.crt`` over a channel you trust.

``issue NAME --role dask`` makes a member of the Dask cluster of the gallery shards (``scheduler``,
``worker-1``..., and ``gateway``, the identity ``[matcher] scheduler = "tls://..."`` uses by
default) under ``DATA/pki/dask/``, signed by a CA of that cluster only (docs/scaling.md).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

NAME = "pki"
HELP = "make a private CA, the gateway's certificate and agency client certificates"


def add_arguments(parser) -> None:
    parser.add_argument("action", choices=["init", "issue", "show"], help="what to do")
    parser.add_argument(
        "name",
        nargs="?",
        help="with issue: the agency's ORI, or LESC; with --role dask: scheduler, worker-N, "
        "gateway",
    )
    parser.add_argument(
        "--role",
        choices=["agency", "dask"],
        default="agency",
        help="with issue: an agency client certificate (default), or a member of the Dask "
        "cluster of the gallery shards (DATA/pki/dask/, its own CA; docs/scaling.md)",
    )
    parser.add_argument("--config", help="TOML configuration (its data_dir and listeners)")
    parser.add_argument("--data-dir", help="override data_dir (the PKI lives in DATA/pki)")
    parser.add_argument(
        "--hostname",
        action="append",
        default=[],
        help="with init (or issue --role dask): a DNS name or IP address of the gateway (or "
        "the Dask member) for its certificate (repeatable; loopback names are always included)",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace an existing certificate (rotation)"
    )


def run(args) -> int:
    from gateway import pki
    from gateway.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"ebts-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    root = Path(args.data_dir or config.data_dir) / "pki"
    try:
        if args.action == "init":
            from gateway.transports.tls import hostnames

            bad = [name for name in args.hostname if _host_key(name) is None]
            if bad:
                print(
                    f"ebts-gateway pki: not a DNS name or IP address: {bad[0]!r}", file=sys.stderr
                )
                return 2
            names = tuple(dict.fromkeys([*args.hostname, *hostnames(config)]))
            paths = pki.init_ca(root)
            pki.issue_server(root, names, force=args.force)
            # the names the certificate holds: an existing one is kept without --force (this
            # printed the names asked for, not the ones a client would be checked against)
            held = _names_in(paths.server_cert)
            print(f"CA:     {paths.ca_cert}")
            print(f"server: {paths.server_cert} ({', '.join(held)})")
            have = {_host_key(name) for name in held}
            missing = [name for name in args.hostname if _host_key(name) not in have]
            if missing:
                print(
                    f"ebts-gateway pki: the existing server certificate was kept and does not "
                    f"name {', '.join(missing)}: add --force to issue a new one",
                    file=sys.stderr,
                )
                return 1
            return 0
        if args.action == "issue":
            if not args.name:
                what = (
                    "the Dask member (scheduler, worker-N, gateway)"
                    if args.role == "dask"
                    else "the agency (its ORI) or LESC"
                )
                print(f"ebts-gateway pki issue: name {what}", file=sys.stderr)
                return 2
            if args.role == "dask":
                ca, cert, key = pki.issue_dask(
                    root, args.name, tuple(args.hostname), force=args.force
                )
                print(f"certificate: {cert}")
                print(f"key:         {key}")
                print(f"CA:          {ca}")
                return 0
            pki.init_ca(root)
            paths, fp = pki.issue_client(root, args.name, force=args.force)
            print(f"certificate: {paths.agency_cert(args.name)}")
            print(f"key:         {paths.agency_key(args.name)}")
            print(f"CA:          {paths.ca_cert}")
            print(f"fingerprint: {pki.pretty(fp)}")
            return 0
        # show: every identity found, with its fingerprint
        folder = root / "agencies"
        if not folder.is_dir():
            print(f"no identities under {folder}", file=sys.stderr)
            return 1
        for cert in sorted(folder.glob("*.crt")):
            print(f"{cert.stem:<12} {pki.pretty(pki.fingerprint(cert.read_bytes()))}")
        return 0
    except pki.PKIError as exc:
        print(f"ebts-gateway pki: {exc}", file=sys.stderr)
        return 2


_DNS = re.compile(
    r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


def _host_key(name: str) -> str | None:
    """A host name or address as compared (lower case; an IP address in its short form), or
    None when it is neither (RFC 1123 2.1 labels; what a certificate's SAN can name)."""
    import ipaddress

    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    if len(name) > 253 or not _DNS.fullmatch(name):
        return None
    return name.lower()


def _names_in(cert_path: Path) -> list[str]:
    """The DNS names and IP addresses of a certificate's subjectAltName."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(name.value) for name in san]
