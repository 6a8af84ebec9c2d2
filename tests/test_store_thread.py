"""The journal's store thread (issue 14): large payloads committed by a second connection.

``Journal.store_payload`` runs in one thread, ``accept_many`` with the :class:`StoredPayload`
on the reactor's connection; a crash between the two loses nothing that was acknowledged and
leaves an orphan payload that retention removes.  Crashes are real: a child process killed
with SIGKILL at the chosen point.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from gateway.store.crypto import CHUNK, Keyring, SealedBlobError
from gateway.store.journal import Journal, StoredPayload

BIG = os.urandom(3 * CHUNK + 12345)  # a few MB, not a multiple of the chunk


@pytest.fixture
def store():
    """The one store thread of a test (it owns the journal's second connection)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield lambda function, *args: pool.submit(function, *args).result()


def _journal(tmp_path) -> Journal:
    return Journal(tmp_path / "journal.sqlite3", key_file=tmp_path / "data.key")


def test_chunked_seal_makes_the_blob_seal_makes_and_open_checks_the_tag(tmp_path):
    ring = Keyring.create(tmp_path / "k")
    for size in (0, 1, CHUNK - 1, CHUNK, CHUNK + 1, len(BIG)):
        data = BIG[:size]
        blob = ring.seal_chunked(data, b"payload:x")
        assert ring.open(bytes(blob), b"payload:x") == data  # the one-call open reads it
        assert ring.open_chunked(ring.seal(data, b"payload:x"), b"payload:x") == data
        altered = bytearray(blob)
        altered[-1] ^= 1
        with pytest.raises(SealedBlobError):
            ring.open_chunked(altered, b"payload:x")
        with pytest.raises(SealedBlobError):
            ring.open_chunked(blob, b"payload:y")  # another row's associated data


def test_a_payload_stored_by_the_thread_is_accepted_and_read_back(tmp_path, store):
    journal = _journal(tmp_path)
    try:
        stored = store(journal.store_payload, BIG)
        assert stored == StoredPayload(journal.cipher.digest(BIG), len(BIG))
        (msg_id,) = journal.accept_many([stored], transport="smtp", agencies=["NY0303000"])
        msg = journal.message(msg_id)
        assert msg.payload == stored.digest and msg.state == "STORED"
        assert journal.transitions(msg_id)[0]["outcome"] == f"{len(BIG)} bytes via smtp"
        assert journal.payload(stored.digest) == BIG
        assert store(journal.read_payload, stored.digest) == BIG
        # the same bytes again: the row is used as it is
        assert store(journal.store_payload, BIG) == stored
        # the thread's connection is its own
        with pytest.raises(RuntimeError, match="another thread"):
            journal.read_payload(stored.digest)
    finally:
        journal.close()


def test_a_payload_purged_before_its_message_is_refused_and_nothing_stored(tmp_path, store):
    journal = _journal(tmp_path)
    try:
        stored = store(journal.store_payload, BIG)
        assert journal.purge(time.time() + 1) == (1, 0)  # an orphan: nothing refers to it
        with pytest.raises(KeyError, match="gone"):
            journal.accept_many([b"small", stored], transport="smtp")
        assert journal.messages() == []
        # sent again: stored anew, then accepted
        assert store(journal.store_payload, BIG) == stored
        (msg_id,) = journal.accept_many([stored], transport="smtp")
        assert journal.payload(journal.message(msg_id).payload) == BIG
    finally:
        journal.close()


CHILD = textwrap.dedent(
    """
    import os, signal, sys, threading
    from gateway.store.journal import Journal
    root, stage = sys.argv[1], sys.argv[2]
    data = open(os.path.join(root, "big.bin"), "rb").read()
    journal = Journal(os.path.join(root, "journal.sqlite3"),
                      key_file=os.path.join(root, "data.key"))
    journal.offload_checkpoints()
    out = []
    thread = threading.Thread(target=lambda: out.append(journal.store_payload(data)))
    thread.start(); thread.join()
    if stage == "accepted":
        (msg_id,) = journal.accept_many(out, transport="smtp")
        print("250", msg_id, flush=True)  # the acknowledgement
    else:
        print("stored", out[0].digest, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def _crash_child(tmp_path, stage: str) -> list[str]:
    (tmp_path / "big.bin").write_bytes(BIG)
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), stage],
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    return proc.stdout.decode().split()


def test_a_crash_between_the_thread_commit_and_the_message_commit_loses_nothing_acknowledged(
    tmp_path,
):
    _, digest = _crash_child(tmp_path, "stored")
    journal = _journal(tmp_path)
    try:
        assert journal.messages() == []  # nothing was acknowledged, nothing is there
        assert journal.payload(digest) == BIG  # the orphan ...
        assert journal.purge(time.time() + 1) == (1, 0)  # ... which retention removes
        with pytest.raises(KeyError):
            journal.payload(digest)
    finally:
        journal.close()


def test_a_crash_after_the_acknowledgement_keeps_the_message_and_its_payload(tmp_path):
    code, msg_id = _crash_child(tmp_path, "accepted")
    assert code == "250"
    journal = _journal(tmp_path)
    try:
        assert [m.id for m in journal.unfinished()] == [msg_id]
        assert journal.payload(journal.message(msg_id).payload) == BIG
    finally:
        journal.close()
