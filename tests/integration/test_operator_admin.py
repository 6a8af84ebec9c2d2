"""The admin console and its JSON API as an operator and an auditor use them, with odd but
possible input (session 12), over a real socket."""

from __future__ import annotations

import json
import logging

import pytest
import pytest_twisted

from tests.integration.helpers import admin_login, gateway_config, http_request, started


@pytest_twisted.async_yield_fixture
async def gateway(tmp_path, sink):
    gateway = await started(gateway_config(tmp_path, sink.port.getHost().port))
    yield gateway
    await gateway.stopService()


@pytest.mark.parametrize(
    "query, parameter, words",
    [
        # str.isdigit() admits these, int() does not: each was a 500 "Processing Failed"
        ("limit=%C2%B2", "limit", "from 1 to 1000"),  # superscript two
        ("limit=%E2%91%A0", "limit", "from 1 to 1000"),  # circled one
        ("offset=%C2%B2", "offset", "from 0 to 1000000000"),
        ("limit=%EF%BC%95", "limit", "from 1 to 1000"),  # a fullwidth 5 was taken as 5
        # one range in the message whatever side it is passed on (0 said 1, 5000 said 0)
        ("limit=0", "limit", "from 1 to 1000"),
        ("limit=5000", "limit", "from 1 to 1000"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_message_browser_counts_are_ascii_digits(gateway, caplog, query, parameter, words):
    admin = await admin_login(gateway, "operator")
    with caplog.at_level(logging.ERROR):
        status, _headers, body = await admin.get("/api/messages?" + query)
    assert status == 400, body
    answer = json.loads(body)
    assert answer["parameter"] == parameter and words in answer["error"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest_twisted.ensureDeferred
async def test_audit_api_takes_unicode_digits_as_absent(gateway, caplog):
    admin = await admin_login(gateway, "auditor")
    with caplog.at_level(logging.ERROR):
        answer = await admin.get_json("/api/audit?limit=%C2%B2&before_id=%E2%91%A0")
    # the audit API's numbers are lenient (a bad one is its default): the newest records
    assert answer["records"] and answer["records"][0]["event"] == "admin.login"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("method", ["HEAD", "GET"])
@pytest.mark.parametrize("path", ["/logout", "/api/messages/M1/reprocess"])
@pytest_twisted.ensureDeferred
async def test_post_only_pages_answer_other_methods_405(gateway, caplog, method, path):
    admin = await admin_login(gateway, "operator")
    with caplog.at_level(logging.ERROR):
        status, headers, _body = await http_request(
            admin.port, method, path, headers=admin._headers()
        )
    assert status == 405 and headers["allow"] == "POST"  # HEAD was a 500 with a traceback
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert await admin.get_json("/api/session")  # the session lives on: nothing was done
