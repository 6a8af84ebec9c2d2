"""Redaction of the message API for viewers and auditors (allow-list, values never pass)."""

from __future__ import annotations

import json

from gateway.admin.redact import redact

DETAIL = {
    "id": "M1",
    "ori": "NY0303000",
    "tcn": "NY-1",
    "state": "RESPONDED",
    "reply_to": "someone@ny.example",
    "new_field_added_later": "DOE, JOHN",
    "summary": {
        "findings": [
            {
                "severity": "error",
                "code": "DATE",
                "location": "record 2 (Type-2) field 2.022",
                "message": "2.022 DOB 19801341 is not a date",
                "hint": "DOB 19801341",
            }
        ],
        "fingers": [1, 2],
        "fbi": {"candidate": "0000123GW", "score": 0.91, "hit": True},
        "dhs": {"searched": True, "why": "activated", "priority": "Level 1", "hit": True},
        "internal_error": "Traceback ... DOE, JOHN",
    },
    "transitions": [{"to_state": "STORED", "outcome": "x", "extra": "DOE"}],
    "deliveries": [{"destination": "bureau@ny.example", "state": "SENT", "meta": {"n": "DOE"}}],
}


def test_detail_keeps_routing_and_drops_every_value():
    out = redact(DETAIL)
    text = json.dumps(out)
    for secret in ("19801341", "DOE", "0000123GW", "0.91", "Level 1", "someone@"):
        assert secret not in text
    assert out["summary"] == {
        "findings": [
            {"severity": "error", "code": "DATE", "location": "record 2 (Type-2) field 2.022"}
        ],
        "fingers": [1, 2],
        "fbi": {"hit": True},
        "dhs": {"searched": True, "hit": True},
        "internal_error": True,
    }
    assert out["tcn"] == "NY-1" and out["transitions"] == [{"to_state": "STORED", "outcome": "x"}]


def test_list_keeps_counts_and_redacts_each_row():
    out = redact({"messages": [DETAIL, "junk"], "total": 2, "filters": {"name": "DOE"}})
    assert out["total"] == 2 and "filters" not in out
    assert out["messages"][1] == {} and "DOE" not in json.dumps(out)
    assert redact(["not", "a", "dict"]) == {}
