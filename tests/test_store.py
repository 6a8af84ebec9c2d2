"""The store's contract, run against both implementations: SQLite (embedded) and PostgreSQL
(a throwaway cluster of the test session's own, tests/pg.py)."""

from __future__ import annotations

import threading
import time

import pytest

from gateway.store import counters
from gateway.store.audit import Audit
from gateway.store.enrolments import read_enrolments
from gateway.store.journal import (
    DUPLICATE,
    FAILED,
    QUEUED,
    RESPONDED,
    SCHEMA_VERSION,
    SENT,
    STORED,
    Journal,
    MessageQuery,
)
from gateway.store.keys import rotate
from gateway.store.states import IllegalTransition, State, allowed
from gateway.store.users import Users

BACKENDS = ["sqlite", "postgresql"]


def _open(kind: str, tmp_path, request, node="n1", lease=30.0) -> Journal:
    if kind == "sqlite":
        return Journal(tmp_path / "journal.sqlite3", node=node, lease=lease)
    url = request.getfixturevalue("pg_url")
    return Journal(tmp_path / "journal.sqlite3", url=url, node=node, lease=lease)


@pytest.fixture(params=BACKENDS)
def journal(request, tmp_path):
    j = _open(request.param, tmp_path, request)
    yield j
    j.close()


def _car(tcn: str = "T1") -> bytes:
    return f"1.001:...{tcn}".encode()


def test_accept_store_and_read_back(journal):
    msg_id = journal.accept(_car(), transport="smtp", peer="127.0.0.1", agency="NY0303000")
    msg = journal.message(msg_id)
    assert msg.state == STORED and msg.agency == "NY0303000"
    assert msg.node == "n1" and msg.lease_until > time.time()
    assert journal.payload(msg.payload) == _car()
    assert [t["to_state"] for t in journal.transitions(msg_id)] == ["RECEIVED", "STORED"]
    assert journal.queue()[0] == 1


def test_schema_is_versioned(journal):
    assert int(journal.meta("schema_version")) == SCHEMA_VERSION


def test_illegal_transition_is_refused_and_nothing_written(journal):
    msg_id = journal.accept(_car(), transport="smtp")
    with pytest.raises(IllegalTransition):
        journal.advance(msg_id, "SEARCHED")  # STORED -> SEARCHED skips decoding
    assert journal.message(msg_id).state == STORED
    assert len(journal.transitions(msg_id)) == 2
    journal.advance(msg_id, "DECODED")
    journal.respond(msg_id, response=b"SRE", response_tot="SRE", response_tcn="R1", deliveries=[])
    with pytest.raises(IllegalTransition):
        journal.advance(msg_id, "VALIDATED")  # RESPONDED is terminal


def test_state_table():
    assert allowed(None, "RECEIVED") and not allowed(None, "STORED")
    assert allowed("STORED", "DECODED") and allowed("SEARCHED", "SEARCHED")
    assert not allowed("RESPONDED", "DUPLICATE") and not allowed("STORED", "NOSUCH")
    assert {s.value for s in State} >= {"RECEIVED", "RESPONDED", "DUPLICATE", "UNREADABLE"}


def test_an_answered_message_keeps_the_identity_it_was_answered_under(journal):
    """A late identify (a node whose lease ran out, still decoding a message another node
    answered) changes nothing: the console's counters counted the message when it was
    answered, under that ORI and TOT (a two-writer race once made them disagree)."""
    msg_id = journal.accept(_car(), transport="smtp", agency="NY0303000")
    journal.identify(msg_id, ori="NY0303000", tcn="T1", tot="CAR", dai="D", encoding="traditional")
    journal.respond(msg_id, response=None, response_tot=None, response_tcn=None, deliveries=[])
    journal.identify(msg_id, ori="TX0000000", tcn="T9", tot="FANC", dai="X", encoding="xml")
    msg = journal.message(msg_id)
    assert (msg.ori, msg.tcn, msg.tot) == ("NY0303000", "T1", "CAR")
    assert counters.stored(journal.db) == counters.recount(journal.db)


def test_respond_once_with_deliveries_and_links(journal):
    msg_id = journal.accept(_car(), transport="smtp")
    for _ in range(2):  # idempotent: the second is left as it is
        journal.respond(
            msg_id,
            response=b"SRE bytes",
            response_tot="SRE",
            response_tcn="R1",
            deliveries=[("smtp", "a@example.org", {"tot": "SRE"})],
            links=["CTRL1"],
        )
    msg = journal.message(msg_id)
    assert msg.state == RESPONDED and journal.payload(msg.response) == b"SRE bytes"
    assert len(journal.outbound_for(msg_id)) == 1
    assert journal.linked("CTRL1") == msg_id


def test_deliveries_are_claimed_once(journal, tmp_path, request):
    msg_id = journal.accept(_car(), transport="smtp")
    journal.respond(
        msg_id,
        response=b"x",
        response_tot="SRE",
        response_tcn="R1",
        deliveries=[("smtp", "a@example.org", {}), ("smtp", "b@example.org", {})],
    )
    first = journal.due()
    assert len(first) == 2
    other = _other_node(journal, tmp_path, request)
    try:
        assert other.due() == []  # held by n1's lease
        journal.delivered(first[0])
        journal.delivery_failed(first[1], "refused", retry_at=None)
        states = {o.destination: o.state for o in journal.outbound_for(msg_id)}
        assert states == {"a@example.org": SENT, "b@example.org": FAILED}
        with pytest.raises(IllegalTransition):
            journal.delivered(first[1])  # FAILED -> SENT: no
    finally:
        other.close()


def _other_node(journal: Journal, tmp_path, request, lease=30.0) -> Journal:
    if journal.url is None:
        return Journal(journal.path, node="n2", lease=lease)
    return Journal(tmp_path / "j2.sqlite3", url=journal.url, node="n2", lease=lease)


def test_claims_and_leases_between_nodes(journal, tmp_path, request):
    kept = journal.accept(_car("A"), transport="smtp")
    left = journal.accept_many([_car("B")], transport="smtp", claim=False)[0]
    other = _other_node(journal, tmp_path, request, lease=0.3)
    try:
        claimed = [m.id for m in other.claim(10)]
        assert claimed == [left]  # the one nobody held; n1's own claim stays n1's
        assert other.claim(10) == []
        time.sleep(0.4)  # n2 stops renewing: its lease runs out
        assert [m.id for m in journal.claim(10)] == [left]
        assert journal.holds(left) and not other.holds(left)
        assert other.renew() == 0
        journal.release([kept])
        assert [m.id for m in other.claim(10)] == [kept]
    finally:
        other.close()


def test_restart_takes_back_own_claims(journal):
    msg_id = journal.accept(_car(), transport="smtp")
    assert journal.claim(10) == []  # held (lease valid)
    assert [m.id for m in journal.claim(10, restart=True)] == [msg_id]


def test_claims_are_exclusive_under_concurrency(journal, tmp_path, request):
    ids = journal.accept_many([_car(f"C{i}") for i in range(60)], transport="smtp", claim=False)
    nodes = [_other_node(journal, tmp_path, request) for _ in range(3)]
    for n, node in enumerate(nodes):
        node.node = f"c{n}"
    got: list[list[str]] = [[] for _ in nodes]

    def worker(n: int) -> None:
        for _ in range(30):
            got[n].extend(m.id for m in nodes[n].claim(3))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(len(nodes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for node in nodes:
        node.close()
    everything = [i for g in got for i in g]
    assert sorted(everything) == sorted(ids)  # each exactly once


def test_meta_text_and_bytes(journal):
    journal.set_meta("a", "text")
    journal.set_meta("b", b"\x00\x01bytes")
    journal.set_meta("a", "again")
    assert journal.meta("a") == "again" and journal.meta("b") == b"\x00\x01bytes"
    journal.set_meta("a", None)
    assert journal.meta("a") is None


def test_counters_and_queries(journal):
    assert [journal.next_number("x") for _ in range(3)] == [1, 2, 3]
    ids = [journal.accept(_car(f"Q{i}"), transport="soap") for i in range(5)]
    for msg_id, tcn in zip(ids, ["ABC1", "ABC2", "XYZ", "abc3", "Q"], strict=True):
        journal.identify(msg_id, ori="NY0303000", tcn=tcn, tot="CAR", dai=None, encoding="ansi")
    rows, total = journal.find_messages(MessageQuery(tcn="abc"), limit=2)
    assert total == 3 and len(rows) == 2
    _, total = journal.find_messages(MessageQuery(state="stored", tot="car"))
    assert total == 5
    journal.respond(ids[0], response=b"E", response_tot="ERRT", response_tcn="R", deliveries=[])
    assert journal.find_messages(MessageQuery(outcome="errt"))[1] == 1
    assert journal.stats()["messages"][STORED] == 4


def test_duplicate_and_previous_response(journal):
    first = journal.accept(_car(), transport="smtp")
    journal.identify(first, ori="O", tcn="T", tot="CAR", dai=None, encoding="ansi")
    journal.respond(first, response=b"A", response_tot="SRE", response_tcn="R", deliveries=[])
    second = journal.accept(_car(), transport="smtp")
    journal.identify(second, ori="O", tcn="T", tot="CAR", dai=None, encoding="ansi")
    assert journal.previous_response("O", "T", exclude=second).id == first
    journal.respond(
        second,
        response=b"A",
        response_tot="SRE",
        response_tcn="R",
        deliveries=[],
        duplicate_of=first,
    )
    assert journal.message(second).state == DUPLICATE


def test_audit_chain_and_append_only(journal):
    audit = Audit(journal)
    for i in range(3):
        audit.record("test.event", channel="cli", detail=f"n{i}")
    assert audit.verify().ok and audit.count() >= 3
    with pytest.raises(Exception, match="append-only"), journal.transaction():
        journal.db.execute("UPDATE audit SET event = 'x'")
    assert audit.verify().ok


def test_users(journal):
    users = Users(journal)
    users.add("alice", "operator", "a long passphrase 123")
    assert users.get("alice").role == "operator"
    assert [u.name for u in users.list()] == ["alice"]


def test_enrolments_read_by_workers(journal):
    msg_id = journal.accept(_car(), transport="smtp")
    journal.respond(
        msg_id,
        response=b"S",
        response_tot="SRE",
        response_tcn="R",
        deliveries=[],
        enrol={"gallery": "fbi", "subject_id": "U1", "templates": {1: b"t1", 2: b"t2"}},
    )
    rows = read_enrolments(journal.location, "fbi", 0, key_file=str(journal.key_file))
    assert [(r[1], r[2], r[3]) for r in rows] == [("U1", 1, b"t1"), ("U1", 2, b"t2")]
    assert read_enrolments(journal.location, "fbi", rows[-1][0], key_file=None) == []


def test_purge_and_key_rotation(journal):
    msg_id = journal.accept(_car(), transport="smtp")
    journal.respond(msg_id, response=b"S", response_tot="SRE", response_tcn="R", deliveries=[])
    before = journal.payload(journal.message(msg_id).payload)
    result = rotate(journal)
    assert result.resealed["payloads"] >= 2
    assert journal.payload(journal.message(msg_id).payload) == before
    assert journal.purge(time.time() + 1) == (2, 0)
    with pytest.raises(KeyError):
        journal.payload(journal.message(msg_id).payload)


def test_due_respects_queue_order(journal):
    msg_id = journal.accept(_car(), transport="smtp")
    journal.respond(
        msg_id, response=b"x", response_tot="SRE", response_tcn="R", deliveries=[("smtp", "a", {})]
    )
    (item,) = journal.outbound_for(msg_id)
    assert item.state == QUEUED
    assert journal.next_due_time() is not None


def test_events_after_commit_only(journal):
    seen: list[str] = []
    journal.after_commit(lambda event, fields: seen.append(event))
    msg_id = journal.accept(_car(), transport="smtp")
    assert seen == ["state", "state"]  # RECEIVED, STORED
    seen.clear()
    with pytest.raises(RuntimeError), journal.transaction():
        journal.advance(msg_id, "DECODED")
        raise RuntimeError("rolled back")
    assert seen == []  # nothing happened: nobody hears of it
    journal.respond(
        msg_id, response=b"x", response_tot="SRE", response_tcn="R", deliveries=[("smtp", "a", {})]
    )
    assert seen == ["state", "delivery_queued", "state", "responded"]


def test_first_submission_of_a_tcn_is_unique_across_nodes(journal, tmp_path, request):
    other = _other_node(journal, tmp_path, request)
    try:
        results: list[str] = []

        def accept(j: Journal) -> None:
            for _ in range(3):
                results.append(j.accept_many([_car()], transport="smtp", keys=[("O1", "T1")])[0])

        threads = [threading.Thread(target=accept, args=(j,)) for j in (journal, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        first = journal.first_of("O1", "T1")
        assert first is not None and first.id in results
        assert other.first_of("O1", "T1").id == first.id
        assert len(results) == 6
        (count,) = journal.db.execute("SELECT COUNT(*) FROM first_submissions").fetchone()
        assert count == 1
    finally:
        other.close()


def test_a_node_name_is_held_by_one_live_node(journal, tmp_path, request):
    from gateway.store.journal import NodeNameInUse

    journal.register_node()
    journal.register_node()  # the same process again (a restart in place): fine
    journal.db.execute("UPDATE nodes SET pid = pid + 1 WHERE name = ?", (journal.node,))
    with pytest.raises(NodeNameInUse, match="in use by a live node"):
        journal.register_node()  # another process under this name, seen just now
    journal.db.execute("UPDATE nodes SET seen_at = seen_at - 3600 WHERE name = ?", (journal.node,))
    journal.register_node()  # that process stopped renewing: the name is free again
    assert [n["name"] for n in journal.nodes()] == [journal.node]
