"""The pure libraries never import Twisted (DESIGN.md section 2)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "gateway"
# Packages (or single modules) that must stay free of Twisted; the matcher's pool and the
# routing pipeline are the Twisted boundaries and are not listed.
PURE = ["ansinist", "validation", "imaging", "matcher", "synth", "routing/rules.py"]
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
