"""Who may submit what: identities from client certificates, ORIs they may submit for.

Pure decisions (no I/O, no Twisted), used by the intake of every transport before it
acknowledges anything (CJIS Security Policy 5.5 access control, 5.6 identification and
authentication):

- an agency is known by the SHA-256 fingerprint of its client certificate (``[[agency]]
  certificate``, a list for rotation; else the identity issued under ``pki/agencies/ORI.crt``);
  it may submit for the ORI prefixes of ``submits_for`` (default: its own ORI);
- the ICE LESC is an identity of its own (``[lesc] certificate``) and is the only one whose Nlets
  text (IAR) is accepted;
- with ``[tls] mode = "off"`` (loopback only) there are no certificates: a submission is accepted
  for an ORI a configured agency may submit for, and belongs to that agency.

A refusal is a :class:`Refused` value carrying the reason, which names the ORI and the identity
(never a personal field).
"""

from __future__ import annotations

from dataclasses import dataclass

LESC = "LESC"


class Refused(Exception):
    """A submission refused before acceptance; ``reason`` is safe to show and to log."""

    def __init__(self, reason: str, *, code: str = "FORBIDDEN"):
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True)
class Identity:
    """An authenticated peer: ``kind`` is "agency", "lesc" or "local" (TLS off, loopback)."""

    kind: str
    name: str  # the agency's ORI, "LESC", or "local"
    fingerprint: str | None = None

    def __str__(self) -> str:
        if self.fingerprint:
            return f"{self.name} (certificate {self.fingerprint[:16]})"
        return self.name


LOCAL = Identity("local", "local")


def is_ansinist(payload: bytes) -> bool:
    """Whether ``payload`` looks like an ANSI/NIST-ITL transaction (traditional or XML)."""
    head = payload[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    # Traditional: the first field is 1.001 LEN (1.01 with the 2-digit tags of old writers).
    return head.startswith((b"1.001:", b"1.01:", b"1.001 :")) or head.startswith(b"<")


class Authorizer:
    """Identity and authorization decisions over one configuration."""

    def __init__(self, config, issued: dict[str, str] | None = None):
        """``issued``: name -> fingerprint of identities found under ``pki/agencies``."""
        self.config = config
        self.tls = getattr(config, "tls", None) is None or config.tls.mode != "off"
        issued = issued or {}
        self.by_fingerprint: dict[str, Identity] = {}
        for agency in config.agencies:
            prints = agency.certificates or ((issued[agency.ori],) if agency.ori in issued else ())
            for fp in prints:
                self.by_fingerprint[fp] = Identity("agency", agency.ori, fp)
        lesc = config.lesc_certificates or ((issued[LESC],) if LESC in issued else ())
        for fp in lesc:
            self.by_fingerprint[fp] = Identity("lesc", LESC, fp)

    def identify(self, fingerprint: str | None) -> Identity:
        """The identity of a peer from its verified certificate's fingerprint (None: none shown)."""
        if not self.tls:
            return LOCAL
        if fingerprint is None:
            raise Refused("a client certificate is required", code="NO_CERTIFICATE")
        identity = self.by_fingerprint.get(fingerprint.upper())
        if identity is None:
            raise Refused(
                f"certificate {fingerprint[:16]} is not registered to any agency",
                code="UNKNOWN_CERTIFICATE",
            )
        return identity

    def agency_for(self, identity: Identity, ori: str | None):
        """The agency a submission for ``ori`` belongs to, or :class:`Refused`."""
        if identity.kind == "lesc":
            raise Refused(f"identity {identity} may send IAR text only, not a transaction")
        if not ori:
            if identity.kind == "agency":
                return self.config.agency(identity.name)
            raise Refused("the transaction names no ORI (1.008) and the peer has no identity")
        if identity.kind == "agency":
            agency = self.config.agency(identity.name)
            if agency is not None and _allowed(agency, ori):
                return agency
            raise Refused(f"identity {identity} may not submit for ORI {ori}")
        # TLS off: the agency whose submits_for covers the ORI (the longest prefix wins).
        best = None
        for agency in self.config.agencies:
            for prefix in agency.submits_for:
                if ori.startswith(prefix) and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), agency)
        if best is None:
            raise Refused(f"ORI {ori} is not registered to any agency")
        return best[1]

    def may_send_nlets(self, identity: Identity) -> bool:
        """Only the LESC sends Nlets text (IAR); loopback without TLS is trusted for tests."""
        return identity.kind in ("lesc", "local")


def _allowed(agency, ori: str) -> bool:
    return any(ori.startswith(prefix) for prefix in agency.submits_for)


def destinations(agency, channel: str) -> list[tuple[str, str]]:
    """Where answers for ``agency`` go: its destination for ``channel`` first, else the other.

    Returns [(kind, address)], empty when the agency has no destination at all.
    """
    if agency is None:
        return []
    email = ("smtp", agency.response_email) if agency.response_email else None
    soap = ("soap", agency.response_soap) if agency.response_soap else None
    order = (soap, email) if channel == "soap" else (email, soap)
    for choice in order:
        if choice is not None:
            return [choice]
    return []
