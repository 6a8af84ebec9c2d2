"""Layer rules: the pure libraries never import Twisted (DESIGN.md section 2); all SQL is in
gateway/store."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "gateway"
# Packages (or single modules) that must stay free of Twisted; the matcher's pool and the
# routing pipeline are the Twisted boundaries and are not listed.
PURE = ["ansinist", "validation", "imaging", "matcher", "synth", "routing/rules.py"]
# Free of Twisted too: what runs in the worker processes, and the SOAP envelope and blocking
# client (the replay command and tests use them without a reactor).
PURE += [
    "routing/processing.py",
    "routing/answers",
    "routing/interop",
    "transports/soap/envelope.py",
    "transports/soap/client.py",
    "transports/soap/contract.py",
]
ALLOWED_IN_MATCHER = {"pool.py"}


def _pure_files():
    for name in PURE:
        path = ROOT / name
        if path.suffix == ".py":
            if path.exists():
                yield path
            continue
        if not path.is_dir():
            continue
        for file in sorted(path.rglob("*.py")):
            if name == "matcher" and file.name in ALLOWED_IN_MATCHER:
                continue
            yield file


def _imports(file: Path):
    tree = ast.parse(file.read_text(), filename=str(file))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_pure_packages_do_not_import_twisted_in_source():
    files = list(_pure_files())
    assert any(f.parent.name == "ansinist" for f in files)
    offenders = [
        f"{file.relative_to(ROOT.parent)} imports {name}"
        for file in files
        for name in _imports(file)
        if name == "twisted" or name.startswith("twisted.")
    ]
    assert offenders == []


def test_importing_the_codec_loads_no_twisted():
    code = (
        "import sys, gateway.ansinist, gateway.cli\n"
        "import importlib.util as u\n"
        "for name in ('gateway.validation', 'gateway.imaging', 'gateway.matcher'):\n"
        "    if u.find_spec(name): __import__(name)\n"
        "print(any(m == 'twisted' or m.startswith('twisted.') for m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- all SQL lives in gateway/store ---------------------------------------------------------------

STORE = ROOT / "store"
DATABASE_MODULES = ("sqlite3", "psycopg", "psycopg2", "psycopg_pool")
EXECUTE = ("execute", "executemany", "executescript")
# Known exceptions (none left since the console's SQL moved into gateway/store): the list
# may shrink, never grow.
SQL_EXCEPTIONS: set[str] = set()


def _outside_store():
    for file in sorted(ROOT.rglob("*.py")):
        rel = file.relative_to(ROOT).as_posix()
        if file.is_relative_to(STORE) or rel in SQL_EXCEPTIONS:
            continue
        yield rel, ast.parse(file.read_text(), filename=str(file))


def _database_imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            if name.split(".")[0] in DATABASE_MODULES:
                yield node.lineno, name


def _db_executes(tree: ast.AST):
    """``X.db.execute(...)`` (a journal's connection) and ``db.execute(...)``."""
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in EXECUTE:
            continue
        target = node.func.value
        if (isinstance(target, ast.Attribute) and target.attr == "db") or (
            isinstance(target, ast.Name) and target.id == "db"
        ):
            yield node.lineno, ast.unparse(node.func)


def test_no_database_module_is_imported_outside_the_store():
    offenders = [
        f"gateway/{rel}:{line} imports {name}"
        for rel, tree in _outside_store()
        for line, name in _database_imports(tree)
    ]
    assert offenders == []


def test_no_sql_is_executed_outside_the_store():
    offenders = [
        f"gateway/{rel}:{line} calls {call}(...)"
        for rel, tree in _outside_store()
        for line, call in _db_executes(tree)
    ]
    assert offenders == []


def test_the_sql_checks_see_what_they_look_for():
    tree = ast.parse(
        "import sqlite3\nfrom psycopg import sql\nimport json\n"
        "self.journal.db.execute('x')\ndb.executemany('y', [])\nself.cursor.execute('z')\n"
    )
    assert [name for _, name in _database_imports(tree)] == ["sqlite3", "psycopg"]
    assert [call for _, call in _db_executes(tree)] == ["self.journal.db.execute", "db.executemany"]
    assert "admin/console.py" in {rel for rel, _ in _outside_store()}
    assert "admin/auth.py" in {rel for rel, _ in _outside_store()}


def test_each_known_exception_still_needs_it():
    stale = []
    for rel in sorted(SQL_EXCEPTIONS):
        tree = ast.parse((ROOT / rel).read_text())
        if not (list(_database_imports(tree)) or list(_db_executes(tree))):
            stale.append(rel)
    assert stale == [], "no SQL left there: remove it from SQL_EXCEPTIONS"
