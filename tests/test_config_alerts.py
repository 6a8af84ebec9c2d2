"""``[alerts]`` keys: defaults, values, and a bad value named by its key (issue 19)."""

from __future__ import annotations

import pytest

from gateway.config import Alerts, ConfigError, parse_config


def test_defaults_send_nothing():
    assert parse_config({}).alerts == Alerts()
    assert Alerts().email == ()


def test_values():
    alerts = parse_config(
        {
            "alerts": {
                "email": ["oncall@ops.example", "desk@ops.example"],
                "max_wait": 60,
                "refusal_rate": 3,
                "period": 600,
                "check_seconds": 5,
            }
        }
    ).alerts
    assert alerts == Alerts(("oncall@ops.example", "desk@ops.example"), 60.0, 3, 600.0, 5.0)
    assert parse_config({"alerts": {"email": "one@ops.example"}}).alerts.email == (
        "one@ops.example",
    )


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"email": ["not-an-address"]}, "alerts.email"),
        ({"email": ["a@b.example, c@d.example"]}, "alerts.email"),
        ({"email": ["a@b.example\r\nBcc: x@y.example"]}, "alerts.email"),
        ({"email": 5}, "alerts.email"),
        ({"max_wait": 0}, "alerts.max_wait"),
        ({"max_wait": "10"}, "alerts.max_wait"),
        ({"refusal_rate": 2.5}, "alerts.refusal_rate"),
        ({"refusal_rate": 0}, "alerts.refusal_rate"),
        ({"period": -1}, "alerts.period"),
        ({"check_seconds": 0}, "alerts.check_seconds"),
        ({"recipients": []}, "alerts.recipients"),
    ],
)
def test_a_bad_value_names_its_key(table, key):
    with pytest.raises(ConfigError) as exc:
        parse_config({"alerts": table})
    assert str(exc.value).startswith(f"{key}:")
