"""The command line: --version, help texts, and the documented exit codes on bad input."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import subprocess
import sys

import pytest

from gateway import __version__
from gateway.cli import build_parser, main
from tests.conftest import REPO

SAMPLE = REPO / "fixtures" / "samples" / "demo-car.eft"


def _parsers(parser: argparse.ArgumentParser, path=("ebts-gateway",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_version_is_the_package_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"ebts-gateway {__version__}"
    assert importlib.metadata.version("ebts-gateway") == __version__


def test_every_command_and_argument_has_help():
    found = dict(_parsers(build_parser()))
    assert ("ebts-gateway", "gallery", "calibrate") in found
    for path, parser in found.items():
        assert parser.description, path
        for action in parser._actions:
            if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                assert action.help, (path, action.dest)


def test_run_help_names_ports_config_and_signals(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for word in ("2525", "8080", "8081", "--config", "SIGINT", "SIGTERM", "exit status"):
        assert word in text, word


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def test_convert_to_a_missing_folder_is_exit_2_with_one_line(capsys):
    assert main(["convert", str(SAMPLE), "/no/such/dir/x.xml", "--to", "xml"]) == 2
    assert "/no/such/dir/x.xml" in _one_line(capsys)


def test_convert_of_a_missing_file_is_exit_2(tmp_path, capsys):
    assert main(["convert", "/no/such/in.eft", str(tmp_path / "x.xml"), "--to", "xml"]) == 2
    assert "/no/such/in.eft" in _one_line(capsys)
    assert not (tmp_path / "x.xml").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["dump", "/no/such/file.eft"],
        ["validate", "/no/such/file.eft"],
        ["search", "/no/such/gallery", str(SAMPLE)],
        ["gallery", "info", "/no/such/gallery"],
        ["gallery", "calibrate", "/no/such/gallery"],
        ["run", "--config", "/no/such/gateway.toml"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_bad_paths_are_exit_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr()
    assert "/no/such/" in err.err + err.out
    assert "Traceback" not in err.err


def test_no_command_prints_help_and_exit_2(capsys):
    assert main([]) == 2
    assert "commands" in capsys.readouterr().out


def test_python_dash_m_gateway_is_the_same_command():
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"ebts-gateway {__version__}"


def test_offline_gallery_tools_see_the_daemons_enrolments_with_journal(tmp_path, capsys):
    from gateway.matcher import synthetic
    from gateway.store.enrolments import add_enrolment
    from gateway.store.journal import Journal

    gallery = tmp_path / "fbi"
    assert main(["gallery", "build", "--synthetic", "3", str(gallery)]) == 0
    journal = Journal(tmp_path / "journal.sqlite3")
    probe = synthetic.tenprint(synthetic.identity(5, 1), impression=0)
    with journal.transaction():
        templates = {p: t.to_bytes() for p, t in probe.items()}
        add_enrolment(journal.db, "M1", "fbi", "0000001GW", templates)
    journal.close()
    capsys.readouterr()

    assert main(["gallery", "info", str(gallery), "--json"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert alone["subjects"] == 3 and alone["enrolled_by_daemon"] is None
    assert alone["read"].startswith("gallery files only")
    journal_arg = ["--journal", str(tmp_path / "journal.sqlite3")]
    assert main(["gallery", "info", str(gallery), "--json", *journal_arg]) == 0
    both = json.loads(capsys.readouterr().out)
    assert both["subjects"] == 4 and both["enrolled_by_daemon"] == 1
    assert main(["gallery", "info", str(gallery), "--kind", "dhs", "--json", *journal_arg]) == 0
    assert json.loads(capsys.readouterr().out)["subjects"] == 3  # nothing enrolled into DHS
    assert main(["gallery", "info", str(gallery), "--journal", "/no/such/journal"]) == 2
    assert "/no/such/journal" in _one_line(capsys)

    assert main(["search", str(gallery), str(SAMPLE), "--json", *journal_arg]) == 0
    found = json.loads(capsys.readouterr().out)
    assert "1 subjects the daemon enrolled" in found["read"]
    assert main(["search", str(gallery), str(SAMPLE)]) == 0
    assert "searched: gallery files only" in capsys.readouterr().out
