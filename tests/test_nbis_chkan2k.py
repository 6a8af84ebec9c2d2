"""NIST NBIS chkan2k and our validator on every corpus file: where they agree, and why not.

chkan2k's results are stored in ``tests/golden/chkan2k/chkan2k.json`` (README there).  Both judge
the file against ANSI/NIST-ITL only (our profile "none"); chkan2k treats a field newer than the
declared VER as an error, which we do in strict mode (quirk FIELD_NEWER), so that is how we compare.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.validation import Strictness, validate_bytes
from tests.conftest import (
    FULL_CORPUS,
    OUTSIDE_SUBSET,
    TRADITIONAL,
    TRADITIONAL_COUNT,
    corpus_files,
)

GOLDEN = json.loads(
    (Path(__file__).resolve().parent / "golden" / "chkan2k" / "chkan2k.json").read_text()
)

# Files where the verdicts differ; in each case the comment says which tool is wrong and why.
DISAGREE = {
    # chkan2k stops at any 1.015 DCS ("alternate character sets not supported"): it cannot read
    # these files at all. They are valid; chkan2k is wrong (1-2007 8.1.15 defines DCS).
    "misc/mdedonno-type-1.an2": "nbis",
    "misc/openebts-NISTFile2.ebts": "nbis",
    "nbis-an2kconvert/face_jpb_DOM_GMT_DCS.an2": "nbis",
    "nist-reference/type-14-amp-nqm-utf8.an2": "nbis",
    # VER 0500 and the EFS fields 9.300+: chkan2k's tables stop at 1-2007 (VER 0400); these are
    # valid ANSI/NIST-ITL 1-2011 files. chkan2k is wrong.
    "misc/libbiomeval-type9-efs.an2k": "nbis",
    "nist-reference/type-8-sig-fax.an2": "nbis",
    "nist-reference/type-8-sig-raw.an2": "nbis",
    # 17.999 "cannot decode image": this NBIS build (without PNG) cannot decode the PNG iris
    # images; they decode (Pillow). Image decoding is no field rule: chkan2k is wrong.
    "nist-reference/type-10-14-17-piv-index-iris.an2": "nbis",
    "nist-reference/type-17-iris.an2": "nbis",
    # 10.003 IMT "TATTOO": chkan2k's list spells it "TATOO" (default.conf); NBIS an2kconvert and
    # EBTS 9.1 accept "TATTOO". chkan2k is wrong.
    "nist-reference/type-10-branded-tattoo-mark.an2": "nbis",
    # 13.015 PPC "TIP": chkan2k's list lacks TIP, which NBIS an2kconvert's own validator and 1-2007
    # (PPC full finger view FV1-FV4 or TIP) accept. chkan2k is wrong.
    "nist-reference/type-13-tip-eji-wsq.an2": "nbis",
    # 14.015 PPC with 4 subfields ("max = 1") and rolled (IMP 3) EJI/tip images at position 19:
    # chkan2k allows one PPC subfield in Type-14 but 12 in Type-13, and forbids rolling position 19,
    # both against 1-2007 (PPC one subfield per segment; EJI and tips are rolled). chkan2k is wrong.
    "nist-reference/type-14-tip-eji-wsq.an2": "nbis",
    # Type-7 header bytes reported as "unknown field 7.003-7.009": ANSI/NIST defines only LEN and
    # IDC for Type-7, the rest is user-defined and allowed (1-2011 8.7). chkan2k is wrong.
    "nist-reference/type-7-latent.an2": "nbis",
}


def _ours_valid(name: str) -> bool:
    data = (TRADITIONAL / name).read_bytes()
    strictness = Strictness.default().with_actions(FIELD_NEWER="reject")
    return validate_bytes(data, profile="none", strictness=strictness).valid


def test_golden_covers_the_corpus():
    names = {p.relative_to(TRADITIONAL).as_posix() for p in corpus_files()}
    # without ../shared, the committed subset: every file but those it leaves out
    expected = set(GOLDEN) if FULL_CORPUS else set(GOLDEN) - OUTSIDE_SUBSET
    assert names == expected and len(names) == TRADITIONAL_COUNT


# every file of the corpus; without ../shared, those of the committed subset
@pytest.mark.parametrize("name", sorted(GOLDEN if FULL_CORPUS else set(GOLDEN) - OUTSIDE_SUBSET))
def test_chkan2k_and_ours(name):
    result = GOLDEN[name]
    nbis_valid = result["readable"] and not result["errors"]
    ours = _ours_valid(name)
    if name in DISAGREE:
        # The tool named wrong is the one that calls the file invalid.
        assert DISAGREE[name] == "nbis" and not nbis_valid and ours
    else:
        assert ours == nbis_valid


def test_they_agree_on_most_files():
    assert len(GOLDEN) - len(DISAGREE) == 36
