"""Identities over real TLS sockets: who may submit, and where answers go (CJIS SP 5.5, 5.6, 5.10).

The gateway runs on its own PKI (made in the data directory on first start, as on the embedded
defaults); agencies present client certificates it issued.  Every refusal is asserted exactly,
and that nothing was stored (the journal has no message) or sent (the relay got nothing).
"""

from __future__ import annotations

import base64
import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage

import pytest
import pytest_twisted
from lxml import etree
from twisted.internet import reactor, task, threads

from gateway import pki
from gateway.ansinist import read
from gateway.transports.soap.client import submit_soap
from gateway.transports.soap.envelope import SoapFault
from tests.integration.cars import make_car
from tests.integration.helpers import gateway_config, started
from tests.integration.soap_helpers import ResponseReceiver

AGENCIES = [
    # The state bureau (SMTP answers) and a county (SOAP answers only), each with its own ORIs.
    {"ori": "NY0303000", "response_email": "bureau@ny.example"},
    {"ori": "TX0000000", "response_email": "dps@tx.example"},
    # A second agency that may submit for New York ORIs too (a CSA beside the bureau).
    {"ori": "NY0000001", "response_email": "csa@ny.example", "submits_for": ["NY"]},
]


async def _start(tmp_path, sink, *, agencies=AGENCIES, **extra):
    config = gateway_config(
        tmp_path,
        sink.port.getHost().port,
        agency=agencies,
        lesc={"email": "lesc@ice.example"},
        tls={"mode": "on", "min_version": extra.pop("min_version", "1.2")},
        **extra,
    )
    return await started(config)


def _identity(gateway, name: str) -> tuple[str, str, str]:
    root = gateway.config.data_dir / "pki"
    return (
        str(root / "agencies" / f"{name}.crt"),
        str(root / "agencies" / f"{name}.key"),
        str(root / "ca.crt"),
    )


def _context(gateway, name: str | None, *, ca: str | None = None, **versions) -> ssl.SSLContext:
    """A client context trusting the gateway's CA and presenting ``name``'s certificate."""
    cert, key, own_ca = _identity(gateway, name or "NY0303000")
    context = ssl.create_default_context(cafile=ca or own_ca)
    for attribute, value in versions.items():
        setattr(context, attribute, value)
    if name is not None:
        context.load_cert_chain(cert, key)
    return context


def _mail(*attachments: bytes, text: str | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "livescan@attacker.example"
    message["To"] = "ident@gateway.example"
    message["Subject"] = "EBTS"
    if text is not None:
        message.set_content(text)
        return message
    message.set_content("EBTS file attached")
    for data in attachments:
        message.add_attachment(data, maintype="application", subtype="octet-stream")
    return message


def _smtp(port: int, message: EmailMessage, context: ssl.SSLContext | None, starttls=True):
    """Send over SMTP (STARTTLS with ``context``); returns ("ok", refused) or (code, text)."""

    def blocking():
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo()
            if starttls:
                client.starttls(context=context)
                client.ehlo()
            try:
                return "ok", client.send_message(message)
            except smtplib.SMTPSenderRefused as exc:
                return exc.smtp_code, exc.smtp_error.decode()
            except smtplib.SMTPDataError as exc:
                return exc.smtp_code, exc.smtp_error.decode()

    return threads.deferToThread(blocking)


def _msg_lines(txn) -> list[str]:
    """The 2.060 MSG lines of a response."""
    return [item for sub in txn.records[1]["2.060"].subfields for item in sub]


async def _nothing_stored_or_sent(gateway, sink, seconds: float = 1.0):
    await task.deferLater(reactor, seconds, lambda: None)
    assert gateway.journal.messages() == []
    assert sink.messages == []


@pytest_twisted.ensureDeferred
async def test_plain_mail_before_starttls_is_refused(tmp_path, sink):
    gateway = await _start(tmp_path, sink)
    try:
        message = _mail(make_car("NY-TLS-000001", fingers=1))
        code, text = await _smtp(gateway.port("smtp"), message, None, starttls=False)
        assert (code, text) == (530, "5.7.0 Must issue a STARTTLS command first")
        await _nothing_stored_or_sent(gateway, sink)
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_no_client_certificate_is_refused(tmp_path, sink):
    gateway = await _start(tmp_path, sink)
    try:
        message = _mail(make_car("NY-TLS-000002", fingers=1))
        code, text = await _smtp(gateway.port("smtp"), message, _context(gateway, None))
        assert (code, text) == (530, "5.7.0 a client certificate is required")
        await _nothing_stored_or_sent(gateway, sink)
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_certificate_of_another_ca_fails_the_handshake(tmp_path, sink):
    gateway = await _start(tmp_path, sink)
    try:
        # A look-alike: same agency name, issued by a CA the gateway does not trust.
        other = tmp_path / "other-pki"
        pki.init_ca(other)
        paths, _ = pki.issue_client(other, "NY0303000")
        context = _context(gateway, None)
        context.load_cert_chain(paths.agency_cert("NY0303000"), paths.agency_key("NY0303000"))
        message = _mail(make_car("NY-TLS-000003", fingers=1))
        with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
            await _smtp(gateway.port("smtp"), message, context)
        await _nothing_stored_or_sent(gateway, sink)
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_certificate_not_registered_to_an_agency_is_refused(tmp_path, sink):
    gateway = await _start(tmp_path, sink)
    try:
        # Issued by the gateway's own CA, but to a name no [[agency]] has.
        pki.issue_client(gateway.config.data_dir / "pki", "ROGUE0000")
        message = _mail(make_car("NY-TLS-000004", fingers=1))
        code, text = await _smtp(gateway.port("smtp"), message, _context(gateway, "ROGUE0000"))
        assert code == 530 and text.startswith("5.7.1 certificate ")
        assert text.endswith(" is not registered to any agency")
        await _nothing_stored_or_sent(gateway, sink)
    finally:
        await gateway.stopService()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
@pytest_twisted.ensureDeferred
async def test_tls_1_0_and_1_1_are_refused(tmp_path, sink, version):
    gateway = await _start(tmp_path, sink)
    try:
        context = _context(gateway, "NY0303000")
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = version
        try:
            context.set_ciphers("ALL:@SECLEVEL=0")
        except ssl.SSLError:
            pass
        message = _mail(make_car("NY-TLS-000005", fingers=1))
        with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
            await _smtp(gateway.port("smtp"), message, context)
        await _nothing_stored_or_sent(gateway, sink)
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_tls_1_3_minimum_refuses_1_2(tmp_path, sink):
    gateway = await _start(tmp_path, sink, min_version="1.3")
    try:
        context = _context(gateway, "NY0303000", maximum_version=ssl.TLSVersion.TLSv1_2)
        message = _mail(make_car("NY-TLS-000006", fingers=1))
        with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
            await _smtp(gateway.port("smtp"), message, context)
        await _nothing_stored_or_sent(gateway, sink)
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_cipher_policy_is_ecdhe_with_aead_only(tmp_path, sink):
    gateway = await _start(tmp_path, sink)
    try:
        port = gateway.port("smtp")

        def negotiate(ciphers):
            context = _context(gateway, "NY0303000", maximum_version=ssl.TLSVersion.TLSv1_2)
            context.set_ciphers(ciphers)
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                client.starttls(context=context)
                return client.sock.version(), client.sock.cipher()[0]

        version, cipher = await threads.deferToThread(negotiate, "DEFAULT")
        assert version == "TLSv1.2" and cipher.startswith("ECDHE-")
        assert "GCM" in cipher or "CHACHA20" in cipher
        for weak in ("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384", "AES128-GCM-SHA256"):
            with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
                await threads.deferToThread(negotiate, weak)
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_agency_a_cannot_submit_for_agency_b(tmp_path, sink):
    gateway = await _start(tmp_path, sink)
    try:
        message = _mail(make_car("NY-TLS-000007", fingers=1))  # ORI NY0303000
        code, text = await _smtp(gateway.port("smtp"), message, _context(gateway, "TX0000000"))
        assert code == 550
        assert text.startswith("5.7.1 identity TX0000000 (certificate ")
        assert text.endswith(" may not submit for ORI NY0303000")
        await _nothing_stored_or_sent(gateway, sink)
        assert gateway.intake.refused == 1
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_one_refused_attachment_refuses_the_whole_message(tmp_path, sink):
    gateway = await _start(tmp_path, sink)
    try:
        own = make_car("TX-TLS-000008", fingers=1, ori="TX0000000")
        foreign = make_car("NY-TLS-000008", fingers=1)
        message = _mail(own, foreign)
        code, text = await _smtp(gateway.port("smtp"), message, _context(gateway, "TX0000000"))
        assert code == 550 and "may not submit for ORI NY0303000" in text
        await _nothing_stored_or_sent(gateway, sink)
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_answer_goes_to_the_registered_address_never_the_sender(tmp_path, sink):
    gateway = await _start(tmp_path, sink)
    try:
        message = _mail(make_car("NY-TLS-000009", fingers=1))
        result = await _smtp(gateway.port("smtp"), message, _context(gateway, "NY0303000"))
        assert result == ("ok", {})
        await sink.wait_for(1)
        await task.deferLater(reactor, 1.0, lambda: None)
        assert [m["to"] for m in sink.messages] == ["bureau@ny.example"]
        answer = read(sink.messages[0]["attachments"][0])
        assert answer.tcr == "NY-TLS-000009"
        (msg,) = gateway.journal.messages()
        assert msg.agency == "NY0303000" and msg.identity.startswith("NY0303000 (certificate ")
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_forged_iar_from_an_agency_is_refused(tmp_path, sink):
    gateway = await _start(tmp_path, sink)
    try:
        iar = "IAR.VTICE0900.WVIAFIS0Z.*GABCDEFGHI.TXT\nSUBJECT RECORD LOCATED.\n"
        message = _mail(text=iar)
        code, text = await _smtp(gateway.port("smtp"), message, _context(gateway, "NY0303000"))
        assert code == 550
        assert text.startswith("5.7.1 identity NY0303000 (certificate ")
        assert text.endswith("may not send Nlets text (IAR): only the LESC does")
        await _nothing_stored_or_sent(gateway, sink)
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_lesc_identity_sends_iar_but_no_transaction(tmp_path, sink):
    gateway = await _start(tmp_path, sink)
    try:
        iar = "IAR.VTICE0900.WVIAFIS0Z.*GABCDEFGHI.TXT\nSUBJECT RECORD LOCATED.\n"
        lesc = _context(gateway, "LESC")
        assert await _smtp(gateway.port("smtp"), _mail(text=iar), lesc) == ("ok", {})
        code, text = await _smtp(gateway.port("smtp"), _mail(make_car("NY-TLS-000010")), lesc)
        assert code == 550 and text.endswith("may send IAR text only, not a transaction")
        await task.deferLater(reactor, 1.0, lambda: None)
        (msg,) = gateway.journal.messages()
        assert msg.identity.startswith("LESC") and msg.agency is None
        # Its control field names no IAQ the gateway sent: kept, forwarded nowhere.
        assert sink.messages == []
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_duplicate_tcn_with_other_bytes_gets_an_errt_naming_1009(tmp_path, sink):
    gateway = await _start(tmp_path, sink)
    try:
        ny = _context(gateway, "NY0303000")
        first = make_car("NY-TLS-000011", fingers=1)
        assert (await _smtp(gateway.port("smtp"), _mail(first), ny))[0] == "ok"
        await sink.wait_for(1)
        sre = read(sink.messages[0]["attachments"][0])
        # The same bytes again: the same answer again, to the same registered address.
        assert (await _smtp(gateway.port("smtp"), _mail(first), ny))[0] == "ok"
        await sink.wait_for(2)
        assert sink.messages[1]["attachments"][0] == sink.messages[0]["attachments"][0]
        # Other content under the same (ORI, TCN): an ERRT naming 1.009, not the SRE.
        other = make_car("NY-TLS-000011", fingers=2)
        assert other != first
        assert (await _smtp(gateway.port("smtp"), _mail(other), ny))[0] == "ok"
        await sink.wait_for(3)
        errt = read(sink.messages[2]["attachments"][0])
        assert sre.tot == "SRE" and errt.tot == "ERRT" and errt.tcr == "NY-TLS-000011"
        assert any("1.009" in line for line in _msg_lines(errt))
        assert [m["to"] for m in sink.messages] == ["bureau@ny.example"] * 3
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_reused_tcn_from_another_agency_never_gets_the_first_answer(tmp_path, sink):
    gateway = await _start(tmp_path, sink)
    try:
        car = make_car("NY-TLS-000012", fingers=1)
        bureau, csa = _context(gateway, "NY0303000"), _context(gateway, "NY0000001")
        assert (await _smtp(gateway.port("smtp"), _mail(car), bureau))[0] == "ok"
        await sink.wait_for(1)
        # The CSA may submit for NY ORIs, and replays the bureau's bytes to get its answer.
        assert (await _smtp(gateway.port("smtp"), _mail(car), csa))[0] == "ok"
        await sink.wait_for(2)
        await task.deferLater(reactor, 1.0, lambda: None)
        to_csa = [m for m in sink.messages if m["to"] == "csa@ny.example"]
        assert len(sink.messages) == 2 and len(to_csa) == 1
        answer = read(to_csa[0]["attachments"][0])
        assert answer.tot == "ERRT"
        assert any("1.009" in line for line in _msg_lines(answer))
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_agency_without_any_destination_is_refused_at_intake(tmp_path, sink):
    agencies = [{"ori": "NY0303000"}]  # registered, but nowhere to answer
    gateway = await _start(tmp_path, sink, agencies=agencies)
    try:
        message = _mail(make_car("NY-TLS-000013", fingers=1))
        code, text = await _smtp(gateway.port("smtp"), message, _context(gateway, "NY0303000"))
        assert (code, text) == (
            550,
            "5.7.1 agency NY0303000 has no registered destination for answers",
        )
        await _nothing_stored_or_sent(gateway, sink)
    finally:
        await gateway.stopService()


# -- SOAP over HTTPS ---------------------------------------------------------------------------


def _soap_url(gateway, service: str = "NativeEBTSService") -> str:
    return f"https://localhost:{gateway.port('soap')}/ngi/{service}"


@pytest.fixture
def receiver():
    r = ResponseReceiver()
    r.start()
    yield r
    r.stop()


@pytest_twisted.ensureDeferred
async def test_soap_refusals(tmp_path, sink):
    gateway = await _start(tmp_path, sink)
    try:
        url = _soap_url(gateway)

        def call(payload, context):
            try:
                return submit_soap(url, payload, context=context)
            except SoapFault as fault:
                return fault.error_code, fault.detail_message or fault.message

        car = make_car("NY-TLS-000020", fingers=1)
        no_cert = await threads.deferToThread(call, car, _context(gateway, None))
        assert no_cert == ("INVALID_REQUEST", "not accepted: a client certificate is required")
        foreign = await threads.deferToThread(call, car, _context(gateway, "TX0000000"))
        assert foreign[0] == "INVALID_REQUEST"
        assert foreign[1].endswith("may not submit for ORI NY0303000")
        junk = await threads.deferToThread(
            call, b"%PDF-1.4 not a transaction", _context(gateway, "NY0303000")
        )
        assert junk == (
            "INVALID_REQUEST",
            "the payload is not an ANSI/NIST-ITL transaction (1.001: or XML)",
        )
        await _nothing_stored_or_sent(gateway, sink)
        assert gateway.journal.next_number("ngi_control") == 1  # no control number was spent
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_soap_answer_goes_to_the_registered_service_over_https(tmp_path, sink, receiver):
    agencies = [{"ori": "NY0303000", "response_soap": receiver.url}]
    gateway = await _start(tmp_path, sink, agencies=agencies)
    try:
        car = make_car("NY-TLS-000021", fingers=1)
        ncn = await threads.deferToThread(
            submit_soap, _soap_url(gateway), car, context=_context(gateway, "NY0303000")
        )
        assert ncn.startswith("G")
        (call,) = await receiver.wait_for(1)
        assert read(call["payload"]).tcr == "NY-TLS-000021"
        assert sink.messages == []
    finally:
        await gateway.stopService()


def _zeep(gateway, name: str | None):
    """A zeep client of NativeEBTSService over HTTPS, with ``name``'s client certificate."""
    import requests
    import zeep
    from zeep.transports import Transport

    cert, key, ca = _identity(gateway, name or "NY0303000")
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify (requests issue 3829)
    session.verify = ca
    if name is not None:
        session.cert = (cert, key)
    url = f"https://127.0.0.1:{gateway.port('soap')}/ngi/NativeEBTSService?wsdl"
    return zeep.Client(url, transport=Transport(session=session))


@pytest_twisted.ensureDeferred
async def test_zeep_with_a_client_certificate(tmp_path, sink, receiver):
    import requests
    import zeep

    agencies = [{"ori": "NY0303000", "response_soap": receiver.url}, AGENCIES[1]]
    gateway = await _start(tmp_path, sink, agencies=agencies)
    try:
        car = make_car("NY-TLS-000023", fingers=1)
        encoded = base64.b64encode(car).decode()  # zeep would encode bytes twice (issue 1008)

        def call(name):
            try:
                return _zeep(gateway, name).service.submitRequest(encoded)
            except zeep.exceptions.Fault as fault:
                return "fault", fault.message
            except requests.exceptions.SSLError as exc:
                return "handshake", str(exc)

        # The WSDL is public; a submission without a certificate is not.
        assert await threads.deferToThread(call, None) == (
            "fault",
            "INVALID_REQUEST: not accepted: a client certificate is required",
        )
        refused = await threads.deferToThread(call, "TX0000000")
        assert refused[0] == "fault" and refused[1].endswith("may not submit for ORI NY0303000")
        control_number = await threads.deferToThread(call, "NY0303000")
        assert control_number.startswith("G")
        (answer,) = await receiver.wait_for(1)
        assert read(answer["payload"]).tcr == "NY-TLS-000023"
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_soap_agency_without_a_service_gets_its_answer_by_email(tmp_path, sink):
    gateway = await _start(tmp_path, sink)
    try:
        car = make_car("NY-TLS-000022", fingers=1)
        await threads.deferToThread(
            submit_soap, _soap_url(gateway), car, context=_context(gateway, "NY0303000")
        )
        await sink.wait_for(1)
        assert [m["to"] for m in sink.messages] == ["bureau@ny.example"]
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_wsdl_address_never_comes_from_the_host_header(tmp_path, sink):
    gateway = await _start(tmp_path, sink, soap={"public_url": "https://ebts.state.example:8443"})
    try:
        context = _context(gateway, "NY0303000")

        def fetch():
            request = urllib.request.Request(
                _soap_url(gateway) + "?wsdl", headers={"Host": "evil.example"}
            )
            with urllib.request.urlopen(request, timeout=30, context=context) as response:
                return response.read()

        wsdl = etree.fromstring(await threads.deferToThread(fetch))
        addresses = [e.get("location") for e in wsdl.iter() if e.get("location")]
        assert addresses and all(
            a == "https://ebts.state.example:8443/ngi/NativeEBTSService" for a in addresses
        )
    finally:
        await gateway.stopService()


@pytest_twisted.ensureDeferred
async def test_admin_speaks_https_only(tmp_path, sink):
    gateway = await _start(tmp_path, sink)
    try:
        port = gateway.port("admin")

        def plain():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10):
                    return "answered"
            except (urllib.error.URLError, ConnectionError, OSError):
                return "refused"

        def tls(name, path="/health"):
            context = _context(gateway, name)
            try:
                with urllib.request.urlopen(
                    f"https://localhost:{port}{path}", timeout=10, context=context
                ) as response:
                    return response.status
            except urllib.error.HTTPError as exc:
                with exc:
                    return exc.code

        assert await threads.deferToThread(plain) == "refused"
        assert await threads.deferToThread(tls, None) == 403
        assert await threads.deferToThread(tls, None, "/login") == 403
        assert await threads.deferToThread(tls, "NY0303000") == 200
        # a certificate is the device; the API still wants a login session
        assert await threads.deferToThread(tls, "NY0303000", "/api/stats") == 401
    finally:
        await gateway.stopService()
