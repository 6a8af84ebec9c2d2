"""The NGI services' compiled schemas (gateway.transports.soap.contract), without a socket."""

from __future__ import annotations

import pytest
from lxml import etree

from gateway.transports.soap import contract as soap_contract
from gateway.transports.soap.envelope import CONTROL_NUMBER


def _control_number(text: str) -> etree._Element:
    element = etree.Element(CONTROL_NUMBER)
    element.text = text
    return element


@pytest.mark.parametrize("name", ["NGIUserService", "NGIResponseService"])
def test_the_compiled_schema_carries_the_corrected_control_number_pattern(name):
    # The bundle's pattern matches no control number as written; the compiled schema must have
    # the corrected one (letter, year, day 001-366, 12 digits), wherever NGIControlNumberType is.
    compiled = soap_contract._prepare(soap_contract.SERVICES[name])
    assert compiled.validate(_control_number("G2026340000000000123")) == []
    for wrong in ("G2026367000000000123", "G2026340", "^G2026340000000000123$"):
        assert compiled.validate(_control_number(wrong)), wrong
