"""The audit trail: a keyed hash chain that names the first altered record."""

from __future__ import annotations

import json
import sqlite3

import pytest

from gateway.cli import main
from gateway.store.audit import Audit, AuditError
from gateway.store.crypto import KeyFileError
from gateway.store.journal import Journal


class Clock:
    def __init__(self, now=1_800_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def _journal(tmp_path):
    return Journal(tmp_path / "data" / "journal.sqlite3")


def _config(tmp_path):
    path = tmp_path / "gateway.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    return str(path)


def test_chain_verifies_then_names_the_altered_record(tmp_path, capsys):
    journal = _journal(tmp_path)
    audit = Audit(journal)
    for i in range(5):
        audit.record("admin.login", actor="alice", user="alice", remote=f"127.0.0.{i}")
    assert audit.verify().ok and audit.verify().checked == 5
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        journal.db.execute("UPDATE audit SET actor = 'mallory' WHERE id = 3")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        journal.db.execute("DELETE FROM audit WHERE id = 3")
    journal.close()
    assert main(["audit", "verify", "--config", _config(tmp_path)]) == 0
    assert "whole: 5 records" in capsys.readouterr().out

    # a forger with sqlite3 (who must first drop the guard) alters one record
    db = sqlite3.connect(tmp_path / "data" / "journal.sqlite3")
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("""UPDATE audit SET fields = '{"remote":"10.9.9.9","user":"alice"}' WHERE id = 3""")
    db.commit()
    db.close()
    assert main(["audit", "verify", "--config", _config(tmp_path)]) == 1
    assert "broken at record 3" in capsys.readouterr().err


def test_removed_or_inserted_records_break_the_chain(tmp_path):
    journal = _journal(tmp_path)
    audit = Audit(journal)
    for _ in range(4):
        audit.record("gateway.start")
    journal.db.execute("DROP TRIGGER audit_no_delete")
    journal.db.execute("DELETE FROM audit WHERE id = 2")
    verdict = audit.verify()
    assert not verdict.ok and verdict.broken_id == 3 and "link" in verdict.reason


def test_records_hold_only_allowed_scalar_fields(tmp_path):
    audit = Audit(_journal(tmp_path))
    with pytest.raises(AuditError):
        audit.record("message.view", name="DOE, JOHN")
    rid = audit.record("message.view", message_id="M1", reason="x" * 1000 + "\nline")
    (record,) = list(audit.records(after_id=rid - 1))
    assert len(record["reason"]) == 300 and "\n" not in record["reason"]


def test_audit_key_is_private_and_checked(tmp_path):
    journal = _journal(tmp_path)
    Audit(journal).record("gateway.start")
    key = tmp_path / "data" / "audit.key"
    assert key.stat().st_mode & 0o777 == 0o600
    key.write_text("00" * 32 + "\n")
    with pytest.raises(KeyFileError, match="audit.key"):
        Audit(journal)
    key.unlink()
    with pytest.raises(KeyFileError, match="missing"):
        Audit(journal)


def test_purge_keeps_the_chain_verifiable_and_export_filters_by_date(tmp_path, capsys):
    journal = _journal(tmp_path)
    clock = Clock()
    audit = Audit(journal, clock=clock)
    for _ in range(3):
        audit.record("gateway.start")
    clock.now += 400 * 86400
    audit.record("gateway.stop")
    assert audit.purge(older_than_days=365) == 3
    verdict = audit.verify()
    assert verdict.ok and verdict.checked == 2  # gateway.stop and audit.purged
    purged = list(audit.records(event="audit.purged"))[0]
    assert purged["count"] == 3 and purged["last_id"] == 3
    journal.close()
    assert main(["audit", "export", "--config", _config(tmp_path), "--since", "2027-01-01"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["event"] for x in lines] == ["gateway.stop", "audit.purged"]
    assert main(["audit", "export", "--config", _config(tmp_path), "--since", "2099-01-01"]) == 0
    assert capsys.readouterr().out == ""


def test_deliveries_are_recorded_from_journal_events(tmp_path):
    journal = _journal(tmp_path)
    audit = Audit(journal)
    msg_id = journal.accept(b"x", transport="smtp")
    journal.respond(
        msg_id,
        response=b"answer",
        response_tot="SRE",
        response_tcn="T1",
        deliveries=[
            ("smtp", "bureau@ny.example", {"tot": "SRE"}),
            ("smtp", "lesc@ice.example", {"tot": "IAQ"}, b"iaq text"),
        ],
    )
    first, second = journal.due()
    journal.delivery_failed(first, "451 try later", retry_at=None)
    journal.delivered(second)
    events = [(r["event"], r.get("destination"), r.get("state")) for r in audit.records()]
    assert events == [
        ("delivery.failed", "bureau@ny.example", "FAILED"),
        ("iaq.sent", "lesc@ice.example", None),
    ]
    iar = journal.accept(b"IAR text", transport="smtp")
    journal.respond(iar, response=None, response_tot="IAR", response_tcn=None, deliveries=[])
    (received,) = audit.records(event="iar.received")
    assert received["message_id"] == iar and received["tot"] == "IAR"
    assert audit.verify().ok


def test_submission_records_carry_channel_peer_identity_and_reason(tmp_path):
    audit = Audit(_journal(tmp_path))
    audit.submission_accepted(
        channel="soap",
        peer="127.0.0.1",
        identity=None,
        ori="NY0303000",
        tcn="T1",
        message_id="M1",
    )
    audit.submission_refused(
        channel="smtp",
        peer="10.0.0.9",
        identity="CN=other agency",
        ori="CA0000000",
        tcn="T2",
        reason="ORI not allowed for this identity",
    )
    accepted, refused = audit.records()
    assert accepted["event"] == "submission.accepted" and "identity" not in accepted
    assert (accepted["channel"], accepted["ori"], accepted["message_id"]) == (
        "soap",
        "NY0303000",
        "M1",
    )
    assert refused["event"] == "submission.refused" and refused["actor"] == "CN=other agency"
    assert (
        refused["reason"] == "ORI not allowed for this identity" and refused["peer"] == "10.0.0.9"
    )
    assert audit.verify().ok
