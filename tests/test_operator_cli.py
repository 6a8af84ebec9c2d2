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
from gateway.config import load_config
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


@pytest.fixture(scope="module")
def pki_files(tmp_path_factory):
    data = tmp_path_factory.mktemp("pki")
    assert main(["pki", "init", "--data-dir", str(data)]) == 0
    assert main(["pki", "issue", "NY0303000", "--data-dir", str(data)]) == 0
    return data / "pki"


@pytest.mark.parametrize(
    "cert, key, ca, words",
    [
        ("server.key", "server.key", "ca.crt", "server.key is not a PEM certificate"),
        ("server.crt", "ca.crt", "ca.crt", "ca.crt is not a PEM private key"),
        ("server.crt", "server.key", "server.key", "server.key is not a PEM certificate"),
        (
            "server.crt",
            "agencies/NY0303000.key",
            "ca.crt",
            "NY0303000.key is not the key of the certificate",
        ),
    ],
    ids=["key as certificate", "certificate as key", "key as client CA", "another's key"],
)
def test_tls_files_of_the_wrong_kind_stop_the_start_naming_the_file(
    tmp_path, capsys, pki_files, cert, key, ca, words
):
    from gateway.transports.tls import server_options

    config = tmp_path / "gateway.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[gallery]\ndemo = false\n'
        f'[tls]\ncert = "{pki_files / cert}"\nkey = "{pki_files / key}"\n'
        f'client_ca = "{pki_files / ca}"\n'
    )
    # the mismatched key was found only at the first handshake, after a start that said
    # "listening": server_options() itself refuses it now (run would not have returned)
    with pytest.raises(ValueError, match=words):
        server_options(load_config(str(config)).tls)
    if "not the key" not in words:  # the others were a traceback and exit 1
        assert main(["run", "--config", str(config)]) == 2
        err = capsys.readouterr().err
        assert "ebts-gateway: cannot start: cannot load the TLS files: " in err and words in err


def test_pki_init_says_when_the_kept_certificate_lacks_a_hostname(tmp_path, capsys):
    data = str(tmp_path / "data")
    assert main(["pki", "init", "--data-dir", data]) == 0
    capsys.readouterr()
    # it printed the asked names and exit 0, but the certificate was kept without them
    assert main(["pki", "init", "--data-dir", data, "--hostname", "gw.state.example"]) == 1
    out, err = capsys.readouterr()
    assert "gw.state.example" not in out and "does not name gw.state.example" in err
    assert "--force" in err
    argv = ["pki", "init", "--data-dir", data, "--hostname", "GW.state.example", "--force"]
    assert main(argv) == 0
    assert main(["pki", "init", "--data-dir", data, "--hostname", "gw.state.example"]) == 0
    assert "(gw.state.example, localhost" in capsys.readouterr().out.lower()
    assert main(["pki", "init", "--data-dir", data, "--hostname", "bad host!"]) == 2
    assert "not a DNS name or IP address: 'bad host!'" in capsys.readouterr().err
