"""Configuration: embedded defaults, the commented example, and errors that name the key."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.config import ConfigError, load_config, parse_config
from tests.conftest import REPO


def test_embedded_defaults_are_loopback():
    config = load_config(None)
    for endpoint in (config.listen_smtp, config.listen_soap, config.listen_admin):
        assert "interface=127.0.0.1" in endpoint
    assert config.outbound_relay == ("127.0.0.1", 2526)
    assert config.demo_gallery and config.profile == "ebts-10"


def test_example_file_parses():
    config = load_config(REPO / "examples" / "gateway.toml")
    assert config.agency("NY0303000").response_email == "ident-bureau@ny.example"
    assert config.jurisdictions[0].dhs_activated == dt.date(2009, 10, 27)
    assert config.data_dir == (REPO / "examples" / "ebts-data")


def test_quality_floor_keys():
    config = parse_config({"matcher": {"min_quality": 30, "min_fingers": 8}})
    assert (config.min_quality, config.min_fingers) == (30, 8)
    assert (parse_config({}).min_quality, parse_config({}).min_fingers) == (1, 6)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"listen": {"smtp": "2525"}}, "listen.smtp"),
        ({"listen": {"imap": "tcp:143"}}, "listen.imap"),
        ({"outbound": {"smtp_relay": "nohost"}}, "outbound.smtp_relay"),
        ({"outbound": {"retry_initial": -1}}, "outbound.retry_initial"),
        ({"agency": [{"response_email": "a@b.example"}]}, "agency[1].ori"),
        ({"agency": [{"ori": "X", "response_email": "nobody"}]}, "agency[1].response_email"),
        ({"agency": [{"ori": "X"}, {"ori": "X"}]}, "agency[2].ori"),
        (
            {"jurisdiction": [{"ori_prefix": "NY", "dhs_activated": "sometime"}]},
            "jurisdiction[1].dhs_activated",
        ),
        ({"validation": {"profile": "ebts-11"}}, "validation.profile"),
        ({"smtp": {"tls_cert": "/nonexistent.pem"}}, "smtp.tls_cert"),
        ({"tls": {"mode": "maybe"}}, "tls.mode"),
        ({"tls": {"min_version": "1.1"}}, "tls.min_version"),
        ({"tls": {"cert": "/nonexistent.pem"}}, "tls.key"),
        (
            {"tls": {"mode": "off"}, "listen": {"smtp": "tcp:2525:interface=0.0.0.0"}},
            "tls.mode",
        ),
        ({"tls": {"mode": "off"}, "listen": {"soap": "tcp:8080"}}, "tls.mode"),
        ({"agency": [{"ori": "X", "certificate": "AB:CD"}]}, "agency[1].certificate"),
        ({"agency": [{"ori": "X", "submits_for": []}]}, "agency[1].submits_for"),
        ({"lesc": {"certificate": ["zz" * 32]}}, "lesc.certificate"),
        ({"soap": {"public_url": "ftp://x"}}, "soap.public_url"),
        ({"outbound": {"tls": "yes"}}, "outbound.tls"),
        ({"workers": 0}, "workers"),
        ({"colour": "blue"}, "colour"),
        ({"matcher": {"min_quality": 101}}, "matcher.min_quality"),
        ({"matcher": {"min_quality": True}}, "matcher.min_quality"),
        ({"matcher": {"min_fingers": 0}}, "matcher.min_fingers"),
        ({"matcher": {"min_fingers": 6.5}}, "matcher.min_fingers"),
    ],
)
def test_errors_name_the_key(raw, key):
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert info.value.key == key
    assert str(info.value).startswith(key)


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_agency_identities_and_prefixes():
    fp = "ab:" * 31 + "cd"
    config = parse_config(
        {
            "agency": [
                {"ori": "NY0303000", "certificate": [fp, "EF" * 32]},
                {"ori": "TX0000000", "submits_for": ["TX", "NM01"]},
            ],
            "lesc": {"certificate": "12" * 32},
        }
    )
    ny, tx = config.agencies
    assert ny.certificates == ("AB" * 31 + "CD", "EF" * 32) and ny.submits_for == ("NY0303000",)
    assert tx.certificates == () and tx.submits_for == ("TX", "NM01")
    assert config.lesc_certificates == ("12" * 32,)
    assert config.tls.mode == "on" and config.tls.min_version == "1.2"


def test_tls_off_is_allowed_on_loopback_only():
    config = parse_config({"tls": {"mode": "off"}})  # the default listeners are on loopback
    assert not config.tls.enabled
