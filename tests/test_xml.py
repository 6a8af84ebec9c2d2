"""XML encoding: the FBI EBTS 10.0 templates, 2-2008 reading, traditional <-> XML, robustness."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway import ansinist
from gateway.ansinist import FormatError
from gateway.ansinist.layouts import BINARY_TYPES
from gateway.validation.schema import validate_xml_schema
from tests.conftest import CONFORMANCE, TRADITIONAL, corpus_files

TEMPLATES = sorted((CONFORMANCE / "xml" / "fbi-ebts10-ngi-templates").rglob("*.xml"))
NBIS_2008 = CONFORMANCE / "xml" / "nbis-itl-2-2008" / "All-Supported-Records-test-comp.xml"
LOSSLESS_TYPES = {1, 2, 4, 9, 10, 13, 14, 15, 17}
XML_TYPES = LOSSLESS_TYPES | {7, 8, 16, 99}


def values(txn) -> list:
    """Field values per record: LEN excluded; binary-record header fields compared as numbers
    (Types 3-8 store them as integers; FGP 255 = unused position)."""
    out = []
    for record in txn.records:
        fields = {}
        for key, field in record.fields.items():
            tag = key.partition("#")[0]  # a duplicate field is kept as "T.NNN#offset"
            if tag == f"{record.type}.001":
                continue
            if tag in fields:
                tag = f"{tag}#dup{len(fields)}"
            if field.binary:
                fields[tag] = bytes(field.raw)
            elif record.type in BINARY_TYPES:
                fields[tag] = tuple(int(s[0]) for s in field.subfields if s[0] != "255")
            else:
                fields[tag] = field.subfields
        out.append((record.type, fields))
    return out


def test_templates_found():
    assert len(TEMPLATES) == 100


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_template_round_trip(path):
    data = path.read_bytes()
    assert validate_xml_schema(data) == []
    txn = ansinist.read(data)
    assert txn.encoding == "xml"
    assert txn.records[0].type == 1 and txn.tot
    traditional = ansinist.write(txn, "traditional")
    back = ansinist.read(traditional)
    assert back.encoding == "traditional"
    assert values(back) == values(txn)
    xml = ansinist.write(back, "xml")
    assert validate_xml_schema(xml) == []
    again = ansinist.read(xml)
    assert values(again) == values(txn)
    # XML -> model -> XML is stable (the same element content).
    assert ansinist.write(again, "xml") == xml


def test_template_mapping_examples():
    car = next(p for p in TEMPLATES if "Template(CAR)" in p.name)
    txn = ansinist.read(car.read_bytes())
    t1, t2 = txn.records[0], txn.records[1]
    assert t1["1.004"].value == "CAR"
    assert t1["1.002"].value == "0500"
    assert t1["1.005"].value == "20070101"
    assert t1["1.013"].items == ("NORAM", "EBTS 10.0")
    assert t2["2.018"].value == "JONES, ANTHONY PAUL"
    assert t2["2.005"].value == "Y"
    assert [s[0] for s in t2["2.007"].subfields] == ["WV1000000", "NY030025P"]
    t14 = txn.records_of_type(14)[0]
    assert t14["14.011"].value
    assert t14.data is not None


def test_nbis_2008_schema_errors():
    findings = validate_xml_schema(NBIS_2008.read_bytes())
    assert [f.location.line for f in findings] == [193, 296, 1206]
    assert {f.code for f in findings} == {"L4_SCHEMA"}
    assert all(f.severity == "error" and f.location.path.startswith("/itl:") for f in findings)
    assert "CBEFFCategoryCode" in findings[2].location.path


def test_nbis_2008_reads():
    txn = ansinist.read(NBIS_2008.read_bytes())
    assert txn.encoding == "xml"
    assert txn.tot == "CAR"
    assert txn.ver == "0400"
    assert any(w.code == "XML_2008" for w in txn.warnings)


def _traditional_cases():
    cases = []
    for path in corpus_files():
        try:
            txn = ansinist.read(path.read_bytes())
        except FormatError:
            continue
        types = {r.type for r in txn.records}
        if types <= XML_TYPES and types & (LOSSLESS_TYPES - {1, 2}) or types == {1, 2}:
            cases.append(path)
    return cases


TRADITIONAL_CASES = _traditional_cases()


def test_traditional_cases_found():
    names = {p.name for p in TRADITIONAL_CASES}
    assert "type-14-tpcard-nqm.an2" in names and "type-17-iris.an2" in names
    assert len(TRADITIONAL_CASES) >= 20, TRADITIONAL


@pytest.mark.parametrize("path", TRADITIONAL_CASES, ids=lambda p: p.name)
def test_traditional_to_xml_and_back(path):
    txn = ansinist.read(path.read_bytes())
    xml = ansinist.write(txn, "xml")
    back = ansinist.read(xml)
    assert values(back) == values(txn)
    again = ansinist.read(ansinist.write(back, "traditional"))
    assert values(again) == values(txn)


def test_unmapped_field_is_kept_and_reported():
    txn = ansinist.Transaction.new(
        tot="CAR", dai="DAI000000", ori="ORI000000", tcn="T-1", dat="20260101"
    )
    t2 = txn.add_record(2)
    t2["2.018"] = "NO COMMA NAME"  # not "SURNAME, GIVEN": no exact XML form
    t2["2.064"] = [("A", "B"), ("C",)]  # no XML mapping at all
    xml = ansinist.write(txn, "xml")
    assert b"<?ansinist-field" in xml
    assert {w.tag for w in (w.location for w in txn.warnings)} >= {"2.018", "2.064"}
    back = ansinist.read(xml)
    assert values(back) == values(txn)


MALFORMED = {
    "truncated": None,
    "entity_bomb": b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
    b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">'
    b"]><r>&c;&c;&c;</r>",
    "xxe": b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b"<itl:NISTBiometricInformationExchangePackage "
    b'xmlns:itl="http://biometrics.nist.gov/standard/2011">&x;'
    b"</itl:NISTBiometricInformationExchangePackage>",
    "wrong_root": b"<html><body>not a package</body></html>",
    "not_xml": b"<\x00\x01\x02 binary \xff\xfe",
    "empty_package": b"<itl:NISTBiometricInformationExchangePackage xmlns:itl="
    b'"http://biometrics.nist.gov/standard/2011"/>',
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_xml_raises_format_error(case):
    data = MALFORMED[case]
    if data is None:
        data = TEMPLATES[0].read_bytes()[:1500]
    with pytest.raises(FormatError):
        ansinist.read(data)
    findings = validate_xml_schema(data)
    assert findings and findings[0].code == "L4_SCHEMA"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_robust_against_mutations(data):
    source = TEMPLATES[data.draw(st.integers(0, len(TEMPLATES) - 1))].read_bytes()
    cut = data.draw(st.integers(1, len(source)))
    junk = data.draw(st.binary(max_size=40))
    pos = data.draw(st.integers(0, cut))
    mutated = b"<" + source[1:cut][:pos] + junk + source[1:cut][pos:]
    try:
        txn = ansinist.read(mutated)
    except FormatError:
        return
    # Whatever is read can be written in both encodings.
    ansinist.write(txn, "xml")
    try:
        ansinist.write(txn, "traditional")
    except ValueError:
        pass  # e.g. a binary-record header value that does not fit its byte


def test_cli_convert_both_ways(tmp_path):
    src = TRADITIONAL / "nist-reference" / "type-14-tip-eji-wsq.an2"
    xml_out, trad_out = tmp_path / "out.xml", tmp_path / "out.an2"
    run = [sys.executable, "-m", "gateway", "convert"]
    assert subprocess.run([*run, str(src), str(xml_out), "--to", "xml"]).returncode == 0
    assert etree.fromstring(xml_out.read_bytes()).tag.endswith(ansinist.xml.ROOT_NAME)
    assert (
        subprocess.run([*run, str(xml_out), str(trad_out), "--to", "traditional"]).returncode == 0
    )
    assert values(ansinist.read(trad_out.read_bytes())) == values(ansinist.read(src.read_bytes()))
