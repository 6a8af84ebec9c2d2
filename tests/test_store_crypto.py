"""Encryption at rest: sealed blobs, key checks at start, private files, key rotation."""

from __future__ import annotations

import json
import os
import stat

import pytest

from gateway.cli import main
from gateway.store import keys as keys_module
from gateway.store.crypto import KeyFileError, Keyring, SealedBlobError, key_id
from gateway.store.enrolments import read_enrolments
from gateway.store.journal import Journal, JournalLocked
from tests.integration.cars import SYNTHETIC_TYPE2, make_car

NAME = b"DOEMARKER, JOHNATHAN Q"
SSN = b"987654325"  # 987-65-4320..4329: reserved for examples, never issued


def _car(tcn: str = "NY-ENC-000001") -> bytes:
    return make_car(
        tcn, fingers=1, type2={**SYNTHETIC_TYPE2, "2.018": NAME.decode(), "2.016": SSN.decode()}
    )


def _fill(journal: Journal, tcn: str = "NY-ENC-000001") -> str:
    msg_id = journal.accept(_car(tcn), transport="smtp", reply_to="livescan@ny.example")
    journal.advance(
        msg_id, "DECODED", summary={"findings": [{"message": f"2.016 SOC {SSN.decode()}"}]}
    )
    journal.respond(
        msg_id,
        response=b"SRE for " + NAME,
        response_tot="SRE",
        response_tcn="GW1",
        deliveries=[
            ("smtp", "bureau@ny.example", {"tot": "SRE"}),
            ("smtp", "lesc@ice.example", {"tot": "IAQ"}, b"IAQ NAM/" + NAME + b".SOC/" + SSN),
        ],
        enrol={"gallery": "fbi", "subject_id": "0000001GW", "templates": {1: b"T" + SSN}},
    )
    return msg_id


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_sealed_blobs_open_only_in_their_row(tmp_path):
    ring = Keyring.create(tmp_path / "k")
    blob = ring.seal(b"secret", b"payload:a")
    assert key_id(blob) == "k1" and b"secret" not in blob
    assert ring.open(blob, b"payload:a") == b"secret"
    with pytest.raises(SealedBlobError):
        ring.open(blob, b"payload:b")  # copied to another row
    altered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(SealedBlobError):
        ring.open(altered, b"payload:a")
    with pytest.raises(KeyFileError):
        Keyring.create(tmp_path / "k")  # never overwrites a key file


def test_journal_and_wal_hold_no_name_or_ssn_and_files_are_private(tmp_path):
    old = os.umask(0o022)
    try:
        data = tmp_path / "data"
        journal = Journal(data / "journal.sqlite3", data / "routing.log")
        msg_id = _fill(journal)
        # everything reads back
        assert NAME in journal.payload(journal.message(msg_id).payload)
        assert SSN.decode() in json.dumps(journal.message(msg_id).to_dict()["summary"])
        assert journal.payload(journal.message(msg_id).response) == b"SRE for " + NAME
        rows = read_enrolments(data / "journal.sqlite3", "fbi")
        assert rows[0][3] == b"T" + SSN
        files = [data / n for n in ("journal.sqlite3", "journal.sqlite3-wal", "data.key")]
        for path in files:
            blob = path.read_bytes()
            assert NAME not in blob and SSN not in blob, path.name
        for path in [*files, data / "routing.log", data / "journal.sqlite3-shm"]:
            assert _mode(path) == 0o600, path.name
        assert _mode(data) == 0o700
        journal.close()
    finally:
        os.umask(old)


def test_wrong_or_missing_key_stops_the_start_naming_the_key_file(tmp_path):
    data = tmp_path / "data"
    Journal(data / "journal.sqlite3").close()
    key = data / "data.key"
    saved = key.read_bytes()
    key.unlink()
    with pytest.raises(KeyFileError, match=str(key)):
        Journal(data / "journal.sqlite3")  # never a new key beside sealed data
    Keyring.create(key)  # another key file with the same key id
    with pytest.raises(KeyFileError, match="does not open"):
        Journal(data / "journal.sqlite3")
    key.write_text("{not json")
    with pytest.raises(KeyFileError, match="not JSON"):
        Journal(data / "journal.sqlite3")
    key.write_bytes(saved)
    Journal(data / "journal.sqlite3").close()


def test_run_exits_2_naming_the_key_file(tmp_path, capsys):
    data = tmp_path / "data"
    Journal(data / "journal.sqlite3").close()
    (data / "data.key").unlink()
    config = tmp_path / "gateway.toml"
    config.write_text(f'data_dir = "{data}"\n[gallery]\ndemo = false\n')
    assert main(["run", "--config", str(config)]) == 2
    assert str(data / "data.key") in capsys.readouterr().err


def test_rotation_keeps_every_payload_readable_and_resumes(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    journal = Journal(data / "journal.sqlite3")
    ids = [_fill(journal, f"NY-ENC-00000{i}") for i in range(5)]
    before = {i: journal.payload(journal.message(i).payload) for i in ids}
    journal.close()
    config = tmp_path / "gateway.toml"
    config.write_text(f'data_dir = "{data}"\n')

    # the daemon holds the journal: no rotation under its feet
    running = Journal(data / "journal.sqlite3")
    assert main(["keys", "rotate", "--config", str(config)]) == 2
    assert "stop it first" in capsys.readouterr().err
    running.close()

    # an interrupted rotation (after the first batch) ...
    real_open = Keyring.open
    calls = {"n": 0}

    def flaky(self, blob, aad):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_open(self, blob, aad)

    monkeypatch.setattr(Keyring, "open", flaky)
    locked = Journal(data / "journal.sqlite3", lock="exclusive")
    with pytest.raises(KeyboardInterrupt):
        keys_module.rotate(locked, batch=2)
    locked.close()
    monkeypatch.setattr(Keyring, "open", real_open)
    with pytest.raises(JournalLocked):  # the interrupted rotation left no lock behind?
        held = Journal(data / "journal.sqlite3", lock="exclusive")
        Journal(data / "journal.sqlite3")
    held.close()
    # ... is finished by running it again: the same target key, not a third one
    assert main(["keys", "rotate", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "resumed" in out and "current key k2" in out and "retired k1" in out
    ring = json.loads((data / "data.key").read_text())
    assert list(ring["keys"]) == ["k2"] and _mode(data / "data.key") == 0o600
    journal = Journal(data / "journal.sqlite3")
    for msg_id, payload in before.items():
        assert journal.payload(journal.message(msg_id).payload) == payload
        assert SSN.decode() in json.dumps(journal.message(msg_id).to_dict()["summary"])
    assert all(key_id(r[0]) == "k2" for r in journal.db.execute("SELECT data FROM payloads"))
    assert read_enrolments(data / "journal.sqlite3", "fbi")[0][3] == b"T" + SSN
    journal.close()
    # a second rotation starts a new key
    assert main(["keys", "rotate", "--config", str(config)]) == 0
    assert "current key k3" in capsys.readouterr().out
