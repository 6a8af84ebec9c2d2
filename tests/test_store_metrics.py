"""The console's figures over a journal built through the store API (gateway.store.metrics)."""

from __future__ import annotations

import time

import pytest

from gateway.store import metrics
from gateway.store.journal import Journal

DELIVERY = [("smtp", "bureau@ny.example", {"tot": "SRE"})]


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "journal.sqlite3")
    metrics.ensure_indexes(j)
    yield j
    j.close()


def _message(journal, tcn, *, ori="NY0303000", steps=(), **respond):
    msg_id = journal.accept(tcn.encode(), transport="smtp", agency="NY0303000")
    journal.identify(msg_id, ori=ori, tcn=tcn, tot="CAR", dai="WVIAFIS0Z", encoding="traditional")
    for state, outcome, destination in steps:
        journal.advance(msg_id, state, outcome=outcome, destination=destination)
    if respond:
        respond.setdefault("response_tcn", "GW1")
        respond.setdefault("deliveries", DELIVERY)
        journal.respond(msg_id, **respond)
    return msg_id


def _traffic(journal) -> dict:
    ids = {}
    searched = [("DECODED", "1 record", None), ("VALIDATED", "0 warnings", None)]
    ids["hit"] = _message(
        journal,
        "T1",
        steps=[*searched, ("SEARCHED", "hit", "FBI")],
        response=b"SRE 1",
        response_tot="SRE",
    )
    ids["no_hit"] = _message(
        journal,
        "T2",
        steps=[*searched, ("SEARCHED", "no hit; enrolled 10 fingers", "FBI")],
        response=b"SRE 2",
        response_tot="SRE",
    )
    ids["errt"] = _message(
        journal,
        "T3",
        ori="WV0000000",
        steps=[("DECODED", "1 record", None), ("REJECTED", "2 errors", None)],
        response=b"ERRT 3",
        response_tot="ERRT",
    )
    ids["crash"] = _message(
        journal,
        "T4",
        steps=[("REJECTED", "WORKER_CRASH", None)],
        response=b"ERRT 4",
        response_tot="ERRT",
    )
    ids["duplicate"] = _message(
        journal, "T1", response=b"SRE 1", response_tot="SRE", duplicate_of=ids["hit"]
    )
    ids["cna"] = _message(journal, "T6", response=None, response_tot=None, deliveries=[])
    ids["pending"] = _message(journal, "T7", steps=[("DECODED", "1 record", None)])
    # the no-hit's answer could not be delivered
    (item,) = journal.outbound_for(ids["no_hit"])
    journal.delivery_failed(item, "550 no such mailbox", retry_at=None)
    return ids


def test_counts_per_outcome_agency_and_tot(journal):
    _traffic(journal)
    counts = metrics.counts(journal.db, since=time.time() - 60)
    assert counts["total"] == 7
    assert counts["by_outcome"] == {
        "sre_hit": 1,
        "sre_no_hit": 1,
        "errt": 1,
        "duplicate": 1,
        "refused": 0,
        "undeliverable": 1,
        "failed": 1,
        "pending": 1,
        "other": 1,
    }
    ny = counts["by_agency"]["NY0303000"]
    assert ny["total"] == 6 and ny["sre_hit"] == 1 and ny["undeliverable"] == 1
    assert counts["by_agency"]["WV0000000"]["errt"] == 1
    assert counts["by_tot"] == {"CAR": 7}
    assert metrics.counts(journal.db, since=time.time() + 60)["total"] == 0


def test_refusals_come_from_the_audit_trail(journal):
    from gateway.store.audit import Audit

    audit = Audit(journal)
    for _ in range(3):
        audit.submission_refused(
            channel="smtp",
            peer="127.0.0.1",
            identity="NY0303000",
            ori="TX0000000",
            tcn="X",
            reason="identity NY0303000 may not submit for ORI TX0000000",
        )
    assert metrics.refusals(journal.db) == {"TX0000000": 3}
    assert metrics.refusals(journal.db, since=time.time() + 1) == {}
    assert metrics.counts(journal.db)["by_agency"]["TX0000000"]["refused"] == 3


def test_series_queues_and_what_alerts_watch(journal):
    ids = _traffic(journal)
    now = time.time()
    hour = metrics.series(journal.db, metrics.WINDOWS["hour"], now + 1)
    assert len(hour["buckets"]) == 60 and hour["answered"] == 6
    last = hour["buckets"][-1]
    assert last["answered"] == 6 and last["per_minute"] == 6.0
    # ERRT (2, one a crash) and the undeliverable SRE, over six answers
    assert last["error_rate"] == round(3 / 6, 4)
    assert last["p50_s"] is not None and last["p99_s"] >= last["p50_s"]
    assert all(b["answered"] == 0 and b["p50_s"] is None for b in hour["buckets"][:-1])
    later = metrics.series(journal.db, metrics.WINDOWS["hour"], now + 7200)
    assert later["answered"] == 0 and later["error_rate"] is None

    queues = metrics.queues(journal.db, now + 10)
    assert queues["processing"]["count"] == 1
    assert queues["processing"]["by_state"]["DECODED"]["oldest_s"] >= 9
    assert queues["outbound"]["count"] == 4 and queues["outbound"]["failed"] == 1
    waits = metrics.oldest_waiting(journal.db, now + 100)
    assert waits["processing"] >= 99 and waits["outbound"] >= 99
    (failed,) = metrics.failed_deliveries(journal.db, since=now - 60)
    assert failed["message_id"] == ids["no_hit"] and failed["tcn"] == "T2"
    assert failed["attempts"] == 1
    assert metrics.failed_deliveries(journal.db, since=now + 60) == []
