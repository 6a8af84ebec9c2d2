"""Retention: old payloads and responses of answered messages go; metadata and audit stay."""

from __future__ import annotations

import time

import pytest

from gateway.store.journal import Journal


def _answered(journal, data: bytes, response: bytes) -> str:
    msg_id = journal.accept(data, transport="smtp")
    journal.advance(msg_id, "DECODED", summary={"findings": [{"message": "x"}]})
    journal.respond(
        msg_id,
        response=response,
        response_tot="SRE",
        response_tcn="T",
        deliveries=[("smtp", "bureau@ny.example", {"tot": "SRE"})],
    )
    return msg_id


def test_purge_takes_only_answered_old_payloads_and_allows_the_same_bytes_again(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite3")
    done = _answered(journal, b"old submission", b"old answer")
    (item,) = journal.due()
    journal.delivered(item)
    queued = _answered(journal, b"answered, delivery queued", b"queued answer")
    open_id = journal.accept(b"still in flight", transport="smtp")
    _answered(journal, b"in flight twice", b"answer 3")
    journal.db.execute("UPDATE outbound SET state = 'SENT'")
    journal.db.execute("UPDATE outbound SET state = 'QUEUED' WHERE message_id = ?", (queued,))
    twin = journal.accept(b"in flight twice", transport="smtp")  # same bytes, unanswered

    later = time.time() + 1
    # done's submission and answer, queued's submission, the answer of the first twin; the
    # summaries of the three answered messages
    assert journal.purge(later, limit=100) == (4, 3)
    with pytest.raises(KeyError):
        journal.payload(journal.message(queued).payload)
    for digest in (journal.message(done).payload, journal.message(done).response):
        with pytest.raises(KeyError):
            journal.payload(digest)
    assert journal.message(done).summary is None
    assert journal.message(done).state == "RESPONDED" and journal.message(done).tcn is None
    assert [t["to_state"] for t in journal.transitions(done)][-1] == "RESPONDED"
    assert journal.payload(journal.message(queued).response) == b"queued answer"
    assert journal.payload(journal.message(open_id).payload) == b"still in flight"
    assert journal.payload(journal.message(twin).payload) == b"in flight twice"
    assert journal.purge(later, limit=100) == (0, 0)
    # a purge only takes what is older than its limit
    assert journal.purge(time.time() - 3600, limit=100) == (0, 0)
    # the same bytes submitted again after their purge are stored anew
    again = journal.accept(b"old submission", transport="smtp")
    assert journal.payload(journal.message(again).payload) == b"old submission"
    journal.close()
