"""Admin users: roles, scrypt hashes, the password rule and the CLI (password from stdin)."""

from __future__ import annotations

import io
import sys

import pytest

from gateway.cli import main
from gateway.store.audit import Audit
from gateway.store.journal import Journal
from gateway.store.users import UserError, Users, check_password


def _cli(monkeypatch, capsys, tmp_path, *argv, stdin=""):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(["user", *argv, "--data-dir", str(tmp_path / "data")])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_user_commands(tmp_path, monkeypatch, capsys):
    code, _out, err = _cli(
        monkeypatch, capsys, tmp_path, "add", "ann", "--role", "viewer", stdin="short\n"
    )
    assert code == 1 and "12 characters" in err
    code, out, _err = _cli(
        monkeypatch,
        capsys,
        tmp_path,
        "add",
        "ann",
        "--role",
        "viewer",
        stdin="a long enough password\n",
    )
    assert code == 0 and "added with role viewer" in out
    code, _out, err = _cli(
        monkeypatch,
        capsys,
        tmp_path,
        "add",
        "ann",
        "--role",
        "auditor",
        stdin="a long enough password\n",
    )
    assert code == 1 and "exists" in err
    code, _out, _err = _cli(
        monkeypatch,
        capsys,
        tmp_path,
        "add",
        "bob",
        "--role",
        "operator",
        stdin="another good password\n",
    )
    code, out, _err = _cli(monkeypatch, capsys, tmp_path, "disable", "bob")
    assert code == 0
    code, out, _err = _cli(monkeypatch, capsys, tmp_path, "list")
    assert out.splitlines() == ["ann\tviewer\tactive", "bob\toperator\tdisabled"]
    code, out, _err = _cli(
        monkeypatch, capsys, tmp_path, "passwd", "ann", stdin="a brand new password\n"
    )
    assert code == 0
    code, _out, err = _cli(
        monkeypatch, capsys, tmp_path, "passwd", "carl", stdin="a brand new password\n"
    )
    assert code == 1 and "no user carl" in err

    journal = Journal(tmp_path / "data" / "journal.sqlite3")
    users = Users(journal)
    stored = users.get("ann").password
    assert stored.startswith("scrypt$") and "brand new" not in stored
    assert check_password(stored, "a brand new password")
    assert not check_password(stored, "a long enough password")
    audit = Audit(journal)
    events = [(r["event"], r.get("user")) for r in audit.records()]
    assert events == [
        ("user.added", "ann"),
        ("user.added", "bob"),
        ("user.disabled", "bob"),
        ("user.password_changed", "ann"),
    ]
    assert "password" not in str(list(audit.records())).replace("password_changed", "")
    with pytest.raises(UserError):
        users.add("bad name", "viewer", "a long enough password")
    with pytest.raises(UserError):
        users.add("dora", "admin", "a long enough password")
    journal.close()
