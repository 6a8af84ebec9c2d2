"""Shared test helpers: where the test data lives, and what happens when the large data is absent.

Two sources of data:

- ``../shared`` beside the checkout (CI and the team have it): the whole conformance corpus
  (``conformance/``, 49 traditional files, 100 FBI XML templates...) and the evaluation images
  (``eval/``: FVC2000/2004, NBIS test data), about 70 MB, not redistributed with the project.
- ``tests/data/conformance``: a committed public subset of that corpus (NIST and FBI files, US
  public domain; see its PROVENANCE.md), laid out like ``../shared/conformance``. It is used when
  ``../shared/conformance`` is absent, so that a fresh clone runs the codec, validation, XML and
  daemon tests on real files.

The subset holds every traditional-encoding file of NIST origin in the corpus (44 of 49, see
``OUTSIDE_SUBSET``), the NBIS 2-2008 XML file and 10 of the 100 FBI templates.  Tests that walk the
corpus walk whichever of the two is present; those that count it compare with the count of that
one (``TRADITIONAL_COUNT``, ``TEMPLATE_COUNT``).

Without ``../shared``, a test that needs a file of it is *skipped* with a one-line reason (a
FileNotFoundError or a "missing" failure naming a path of the data folders becomes a skip), and the
few tests that need the whole corpus are skipped too. With ``../shared`` present, a missing file
is a failure as before.

The matcher tests that read FVC2000 DB2 set B images (``eval/``) read, without ``../shared``,
synthetic prints of ``gateway.synth`` standing in for them (``print_image``): FVC images are
real people's fingerprints and are never committed.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import shutil
import tempfile
from datetime import date
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# CI clones the project with shared/ beside it; developers have it at ../shared too.
SHARED = REPO.parent / "shared"
SUBSET = REPO / "tests" / "data" / "conformance"
FULL_CORPUS = (SHARED / "conformance").is_dir()
CONFORMANCE = SHARED / "conformance" if FULL_CORPUS else SUBSET
TRADITIONAL = CONFORMANCE / "traditional"
EVAL = SHARED / "eval"
FIXTURES = REPO / "fixtures" / "validation"
#: The corpus's traditional files that are not in the committed subset: not US government works
#: (OpenEBTS, node-nist, mdedonno; tests/data/conformance/PROVENANCE.md).
OUTSIDE_SUBSET = frozenset(
    {
        "misc/mdedonno-type-1.an2",
        "misc/node-nist-latent_with_minutiae.lffs",
        "misc/node-nist-sre_with_face.tdf",
        "misc/openebts-NISTFile.ebts",
        "misc/openebts-NISTFile2.ebts",
    }
)
#: Traditional files and FBI XML templates in whichever corpus is present.
TRADITIONAL_COUNT = 49 if FULL_CORPUS else 49 - len(OUTSIDE_SUBSET)
TEMPLATE_COUNT = 100 if FULL_CORPUS else 10
#: FVC2000 DB2 set B (256 x 364 at 500 ppi); without ../shared, synthetic prints stand in for
#: its images (416 x 416 at 500 ppi): see print_image.
FVC_DB2B = EVAL / "fvc2000-db2-b"
SYNTHETIC_PRINTS = not SHARED.is_dir()
PRINT_SIZE = (416, 416) if SYNTHETIC_PRINTS else (256, 364)

# Tests that need ../shared in a way the generic rule below cannot see: those that count or span
# the whole corpus (meaningless on the subset: the FBI templates' exact findings over all 100), and
# commands that report a missing file as exit 2.
NEEDS_SHARED = {
    "tests/test_conformance.py::"
    "test_fbi_templates_under_ebts10_only_their_real_count_contradictions": (
        "the whole conformance corpus"
    ),
}
SKIP_REASON = "needs {what} of ../shared (absent on this checkout; README, 'Test data')"


def fixture_data_file(expect: Path) -> Path:
    """The transaction file beside a fixture's ``NAME.expect.json``."""
    stem = expect.name[: -len(".expect.json")]
    (path,) = [p for p in FIXTURES.glob(stem + ".*") if not p.name.endswith(".expect.json")]
    return path


def fixture_today(expect: dict) -> date:
    """The validation date of a fixture's expectation (``"today": "YYYYMMDD"``)."""
    t = expect["today"]
    return date(int(t[:4]), int(t[4:6]), int(t[6:]))


def corpus_files() -> list[Path]:
    """The traditional-encoding conformance files (49; 44 in the committed subset)."""
    return sorted(p for p in TRADITIONAL.glob("*/*") if p.is_file())


@functools.cache
def _synthetic_prints_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="ebts-synthetic-prints-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def run_with_memory_limit(code: str, limit: int = 1_200_000_000):
    """Run the Python ``code`` in a child process whose address space is limited to ``limit``
    bytes (``RLIMIT_AS``, set before anything is imported; one BLAS thread, whose buffers count
    against it): the limit is the child's own.  Returns the ``subprocess.CompletedProcess``
    (stdout and stderr as text)."""
    import subprocess
    import sys

    prefix = f"import resource\nresource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))\n"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    env["MKL_NUM_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, "-c", prefix + code], capture_output=True, text=True, env=env, timeout=600
    )


def print_image(finger: int, impression: int) -> Path:
    """The image file of impression ``impression`` of finger ``finger`` of FVC2000 DB2 set B
    (``eval/fvc2000-db2-b/F_I.tif``); without ``../shared``, a synthetic print in its place:
    ``gateway.synth.finger(finger, 2, impression)`` (identity ``finger``, FGP 2) as a PNG,
    rendered once per session.  The same finger gives mated impressions, another finger a
    non-mated one, as in FVC."""
    if not SYNTHETIC_PRINTS:
        return FVC_DB2B / f"{finger}_{impression}.tif"
    path = _synthetic_prints_dir() / f"synthetic-{finger}_{impression}.png"
    if not path.exists():
        from PIL import Image

        from gateway import synth

        Image.fromarray(synth.finger(finger, 2, impression)).save(path)
    return path


@pytest.fixture(scope="session")
def shared() -> Path:
    """``../shared``; the test is skipped when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(SKIP_REASON.format(what="the data"))
    return SHARED


def pytest_collection_modifyitems(config, items):
    if SHARED.is_dir():
        return
    for item in items:
        what = NEEDS_SHARED.get(item.nodeid)
        if what is not None:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON.format(what=what)))


_DATA_PATH = re.compile("(" + "|".join(re.escape(str(p)) for p in (SHARED, SUBSET)) + r")/(\S+)")


def missing_data(exc: BaseException) -> str | None:
    """The data file a test failed for want of, when ``../shared`` is absent; else None.

    Recognised: a FileNotFoundError for a path under ``../shared`` or the committed subset (also
    as the cause of another error, e.g. an ImagingError "cannot read"), and a ``pytest.fail`` whose
    message names such a path (the FVC helpers say "... are missing: PATH").
    """
    if SHARED.is_dir():
        return None
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, FileNotFoundError):
        cause = cause.__cause__
    if cause is not None:
        exc = cause
    if isinstance(exc, FileNotFoundError):
        text = str(exc.filename or "")
    elif isinstance(exc, pytest.fail.Exception):
        text = str(exc.msg)
    else:
        return None
    found = _DATA_PATH.search(text)
    if found is None:
        return None
    root = "conformance" if found.group(1) == str(SUBSET) else ""
    return "/".join(p for p in (root, found.group(2).rstrip(".,:;'\")")) if p)


def _skip_for_missing_data(exc: BaseException) -> None:
    what = missing_data(exc)
    if what is not None:
        pytest.skip(SKIP_REASON.format(what=what))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    try:
        return (yield)
    except BaseException as exc:
        _skip_for_missing_data(exc)
        raise


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    try:
        return (yield)
    except BaseException as exc:
        _skip_for_missing_data(exc)
        raise


@pytest.fixture(scope="session")
def pg_cluster():
    """A throwaway PostgreSQL cluster (tests/pg.py) for the session; a test that needs it and
    cannot start it fails with the reason (install the Debian package 'postgresql')."""
    from tests.pg import Cluster, PostgresUnavailable

    try:
        cluster = Cluster().start()
    except PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL is needed by this test: {exc}", pytrace=False)
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster, request):
    """A new, empty database on the session's cluster."""
    import re as _re

    name = "t_" + _re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40]
    name += f"_{os.getpid()}_{next(_PG_COUNTER)}"
    return pg_cluster.create_database(name)


_PG_COUNTER = __import__("itertools").count()
