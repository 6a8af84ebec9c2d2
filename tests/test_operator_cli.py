"""The operator's command line on a damaged or mistyped data directory (session 12).

Each case is one an on-call admin meets: a journal cut short by a full disk or a bad copy, a
file that is not a database, a typo in ``--data-dir``.  The commands answer one line naming
the file and exit 2; none leaves a new journal behind where there was none.
"""

from __future__ import annotations

import io
import sys

import pytest

from gateway.cli import main
from gateway.store.journal import Journal, JournalUnreadable


def _damaged(tmp_path, how: str):
    data = tmp_path / "data"
    Journal(data / "journal.sqlite3").close()
    path = data / "journal.sqlite3"
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:3000])
    elif how == "not a database":
        path.write_bytes(b"hello\n")
    else:  # a directory where the file belongs
        path.unlink()
        path.mkdir()
    return data


@pytest.mark.parametrize("how", ["truncated", "not a database", "a directory"])
@pytest.mark.parametrize(
    "argv",
    [["user", "list"], ["audit", "verify"], ["audit", "export"], ["keys", "rotate"]],
)
def test_journal_commands_name_a_damaged_journal(tmp_path, capsys, how, argv):
    data = _damaged(tmp_path, how)
    assert main([*argv, "--data-dir", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(data / "journal.sqlite3") in err and "restore it from a backup" in err


def test_run_exits_2_on_a_damaged_journal(tmp_path, capsys):
    data = _damaged(tmp_path, "truncated")
    config = tmp_path / "gateway.toml"
    config.write_text(f'data_dir = "{data}"\n[gallery]\ndemo = false\n[tls]\nmode = "off"\n')
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "cannot start: journal" in err and "malformed" in err


def test_a_damaged_journal_releases_its_lock(tmp_path):
    data = _damaged(tmp_path, "not a database")
    with pytest.raises(JournalUnreadable):
        Journal(data / "journal.sqlite3")
    (data / "journal.sqlite3").unlink()
    # the failed open held the shared lock no longer: a rotation's exclusive one is free
    Journal(data / "journal.sqlite3", lock="exclusive").close()


@pytest.mark.parametrize("argv", [["list"], ["disable", "bob"], ["passwd", "bob"]])
def test_user_commands_do_not_create_a_journal(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long enough password\n"))
    typo = tmp_path / "dta"
    assert main(["user", *argv, "--data-dir", str(typo)]) == 2
    assert f"no journal at {typo / 'journal.sqlite3'}" in capsys.readouterr().err
    assert not typo.exists()


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--to", "smtp://127.0.0.1:99999"], "--to must be smtp://HOST:PORT"),
        (["--to", "smtp://127.0.0.1:2525", "--listen", "127.0.0.1:\u00b2"], "--listen must be"),
        (["--to", "smtp://127.0.0.1:2525", "--listen", "127.0.0.1:99999"], "--listen must be"),
        (
            ["--to", "soap://127.0.0.1:8080", "--listen-soap", "127.0.0.1:70000"],
            "--listen-soap must be",
        ),
    ],
)
def test_replay_refuses_a_bad_port_in_one_line(tmp_path, capsys, argv, words):
    folder = tmp_path / "fixtures"
    folder.mkdir()
    (folder / "a.eft").write_bytes(b"1.001:")
    (folder / "a.expect.json").write_text('{"response_tot": "SRE"}')
    # each was a traceback: int("²"), bind() of port 99999, urlparse's port property
    assert main(["replay", *argv, str(folder)]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and err.count("\n") == 1
