"""The [store], [admin] and [retention] sections: defaults, and errors naming the key."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, parse_config


def test_defaults():
    config = parse_config({})
    assert config.store.key_file is None
    assert config.admin.hosts is None and config.admin.lockout_attempts == 5
    assert (config.admin.lockout_minutes, config.admin.session_idle_minutes) == (10, 30)
    assert (config.retention.payload_days, config.retention.audit_days) == (90, 365)


def test_values(tmp_path):
    config = parse_config(
        {
            "store": {"key_file": "keys/data.key"},
            "admin": {"hosts": ["Console.Example:8081", "console.example"]},
            "retention": {"payload_days": 0.5, "check_hours": 1},
        },
        base=tmp_path,
    )
    assert config.store.key_file == tmp_path / "keys" / "data.key"
    assert config.admin.hosts == ("console.example:8081", "console.example")
    assert config.retention.payload_days == 0.5 and config.retention.check_hours == 1


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"store": {"key": "x"}}, "store.key"),
        ({"store": {"key_file": ""}}, "store.key_file"),
        ({"admin": {"hosts": "localhost"}}, "admin.hosts"),
        ({"admin": {"hosts": ["a b"]}}, "admin.hosts"),
        ({"admin": {"lockout_attempts": 0}}, "admin.lockout_attempts"),
        ({"admin": {"session_idle_minutes": -1}}, "admin.session_idle_minutes"),
        ({"retention": {"payload_days": 0}}, "retention.payload_days"),
        ({"retention": {"audit_days": 0.5}}, "retention.audit_days"),
        ({"retention": {"keep": 1}}, "retention.keep"),
    ],
)
def test_bad_values_name_the_key(raw, key):
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert err.value.key == key
