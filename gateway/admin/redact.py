"""Redaction of the admin API's JSON for roles that never see personal fields.

A ``viewer`` (and an ``auditor`` looking at messages) sees counts, states, routing and
deliveries; never a subject's name, SSN, DOB, a finding's message (which may quote a value), a
candidate's subject id, a search score or a priority level (derived from convictions).  The
message API's answers pass through :func:`redact` after the query code has built them, so a
field added there later is dropped for these roles until it is listed here (allow-list).
"""

from __future__ import annotations

MESSAGE_KEYS = frozenset(
    {
        "id",
        "received_at",
        "updated_at",
        "transport",
        "peer",
        "encoding",
        "ori",
        "tcn",
        "tot",
        "dai",
        "state",
        "response_tot",
        "response_tcn",
        "duplicate_of",
    }
)
TRANSITION_KEYS = ("at", "from_state", "to_state", "destination", "outcome", "duration_ms")
DELIVERY_KEYS = ("kind", "destination", "state", "attempts", "last_error", "sent_at")
FINDING_KEYS = ("severity", "code", "location")
MAX_TEXT = 200


def _scalar(value):
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if value is None or isinstance(value, bool | int | float):
        return value
    return None


def _pick(item, keys) -> dict:
    if not isinstance(item, dict):
        return {}
    return {k: _scalar(item.get(k)) for k in keys if k in item}


def redact_summary(summary) -> dict | None:
    """What a search summary may show without personal fields."""
    if not isinstance(summary, dict):
        return None
    out: dict = {}
    if isinstance(summary.get("findings"), list):
        out["findings"] = [_pick(f, FINDING_KEYS) for f in summary["findings"]]
    if isinstance(summary.get("fingers"), list):
        out["fingers"] = [f for f in summary["fingers"] if isinstance(f, int)]
    for leg in ("fbi", "dhs"):
        value = summary.get(leg)
        if isinstance(value, dict):
            out[leg] = {k: bool(value[k]) for k in ("searched", "hit") if k in value}
    if "internal_error" in summary:
        out["internal_error"] = True
    return out


def redact_message(item) -> dict:
    if not isinstance(item, dict):
        return {}
    out = {k: _scalar(v) for k, v in item.items() if k in MESSAGE_KEYS}
    if "summary" in item:
        out["summary"] = redact_summary(item["summary"])
    if isinstance(item.get("transitions"), list):
        out["transitions"] = [_pick(t, TRANSITION_KEYS) for t in item["transitions"]]
    if isinstance(item.get("deliveries"), list):
        out["deliveries"] = [_pick(d, DELIVERY_KEYS) for d in item["deliveries"]]
    return out


def redact(body):
    """A message-API answer (a message, or ``{"messages": [...], ...}``) without personal fields."""
    if not isinstance(body, dict):
        return {}
    if "messages" in body:
        out = {k: v for k, v in body.items() if k != "messages" and _scalar(v) == v}
        rows = body["messages"] if isinstance(body["messages"], list) else []
        out["messages"] = [redact_message(m) for m in rows]
        return out
    if "error" in body and "id" not in body:
        return {"error": _scalar(body["error"])}
    return redact_message(body)
