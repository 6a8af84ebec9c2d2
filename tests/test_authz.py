"""Identity and authorization decisions (pure), and the private PKI."""

from __future__ import annotations

import stat

import pytest

from gateway import pki
from gateway.config import parse_config
from gateway.routing.authz import LOCAL, Authorizer, Refused, destinations, is_ansinist

FP_A, FP_B, FP_L = "A1" * 32, "B2" * 32, "C3" * 32


def _authz(**tls):
    config = parse_config(
        {
            "agency": [
                {"ori": "NY0303000", "certificate": FP_A, "response_email": "ny@x.example"},
                {
                    "ori": "TX0000000",
                    "certificate": [FP_B],
                    "submits_for": ["TX", "NM01"],
                    "response_soap": "https://tx.example/receiveResponse",
                },
                {"ori": "ZZ0000000"},
            ],
            "lesc": {"email": "lesc@ice.example", "certificate": FP_L},
            "tls": tls,
        }
    )
    return Authorizer(config), config


def test_identities_come_from_fingerprints():
    authz, _ = _authz()
    assert authz.identify(FP_A.lower()).name == "NY0303000"
    assert authz.identify(FP_L).kind == "lesc"
    with pytest.raises(Refused, match="client certificate is required"):
        authz.identify(None)
    with pytest.raises(Refused, match="is not registered to any agency"):
        authz.identify("D4" * 32)


def test_agencies_submit_for_their_prefixes_only():
    authz, config = _authz()
    tx = authz.identify(FP_B)
    assert authz.agency_for(tx, "NM0123456").ori == "TX0000000"
    assert authz.agency_for(tx, None).ori == "TX0000000"  # unreadable: answered to its owner
    with pytest.raises(Refused, match=r"may not submit for ORI NY0303000$"):
        authz.agency_for(tx, "NY0303000")
    with pytest.raises(Refused, match="IAR text only"):
        authz.agency_for(authz.identify(FP_L), "NY0303000")
    assert authz.may_send_nlets(authz.identify(FP_L))
    assert not authz.may_send_nlets(tx)


def test_without_tls_the_ori_names_the_agency():
    authz, _ = _authz(mode="off")
    assert authz.identify(None) is LOCAL
    assert authz.agency_for(LOCAL, "TX0000000").ori == "TX0000000"
    assert authz.agency_for(LOCAL, "NM0100000").ori == "TX0000000"
    with pytest.raises(Refused, match="ORI QQ7654321 is not registered"):
        authz.agency_for(LOCAL, "QQ7654321")
    with pytest.raises(Refused, match="names no ORI"):
        authz.agency_for(LOCAL, None)


def test_answers_follow_the_registration_and_the_channel():
    _, config = _authz()
    ny, tx, zz = config.agencies
    assert destinations(ny, "smtp") == [("smtp", "ny@x.example")]
    assert destinations(ny, "soap") == [("smtp", "ny@x.example")]  # its other channel
    assert destinations(tx, "smtp") == [("soap", "https://tx.example/receiveResponse")]
    assert destinations(zz, "smtp") == [] and destinations(None, "smtp") == []


def test_what_counts_as_an_ansinist_payload():
    assert is_ansinist(b"1.001:123\x1d1.002:0500")
    assert is_ansinist(b"\xef\xbb\xbf<?xml version='1.0'?><itl:NIST/>")
    assert not is_ansinist(b"IAR.VTICE0900.WVIAFIS0Z.TXT\n")
    assert not is_ansinist(b"%PDF-1.4")


def test_pki_files_are_private_and_fingerprints_stable(tmp_path):
    root = tmp_path / "pki"
    pki.ensure_default(root, ("NY0303000", pki.LESC_NAME), ("localhost", "127.0.0.1"))
    _, fp = pki.issue_client(root, "NY0303000")  # already there: the same identity
    assert fp == pki.issued_fingerprint(root, "NY0303000")
    assert pki.normalize_fingerprint(pki.pretty(fp)) == fp
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path
    with pytest.raises(pki.PKIError):
        pki.issue_client(root, "../escape")
    key = pki.secret(tmp_path / "k.key")
    assert len(key) == 32 and pki.secret(tmp_path / "k.key") == key
