"""``ebts-gateway replay DIR --to smtp://HOST:PORT``: send fixtures, compare the answers.

Every transaction file in DIR that has a ``NAME.expect.json`` beside it is sent to the gateway
(over SMTP as a MIME attachment, or over SOAP with ``--to soap://HOST:PORT``).  Responses come
back through the gateway's outbound relay: replay listens there itself (``--listen``, by default
127.0.0.1:2526, the embedded default relay) and matches each response to its fixture by TCR =
the fixture's TCN.  Over SOAP it serves receiveResponse itself (``--listen-soap``, register its
URL as the agency's ``response_soap``).  The expectation file says:

``response_tot``
    the TOT of the answer ("SRE", "ERRT") or null when no answer is due (e.g. CNA);
``srf`` (optional)
    2.059 of an SRE ("I" or "N");
``esi`` (optional)
    2.2037 ESI of an SRE: the DHS subject id on a DHS match, null when DHS did not match or
    was not searched;
``findings`` (optional)
    findings with a ``location``; each field tag named there must appear in an ERRT MSG line.

It prints a table and writes a JUnit XML report; exit 0 only when every outcome is as expected.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

NAME = "replay"
HELP = "send fixture transactions to a gateway and compare its responses with expectations"


def add_arguments(parser) -> None:
    parser.add_argument("directory", help="folder of fixtures (NAME.eft|.xml + NAME.expect.json)")
    parser.add_argument("--to", required=True, help="smtp://HOST:PORT or soap://HOST:PORT")
    parser.add_argument(
        "--listen",
        default="127.0.0.1:2526",
        help="where to receive the responses (the gateway's outbound relay)",
    )
    parser.add_argument(
        "--listen-soap",
        default="127.0.0.1:2527",
        help="with --to soap://: where to serve receiveResponse (register "
        "http://HOST:PORT/receiveResponse as the agency's response_soap)",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for all responses"
    )
    parser.add_argument(
        "--grace", type=float, default=3.0, help="seconds to wait for answers that must not come"
    )
    parser.add_argument("--junit", default="replay-junit.xml", help="JUnit XML report path")
    parser.add_argument("--sender", default="replay@localhost", help="envelope sender")
    parser.add_argument("--cert", help="client certificate (PEM) identifying the agency")
    parser.add_argument("--key", help="its private key (PEM)")
    parser.add_argument("--ca", help="the CA that signed the gateway's certificate (PEM)")
    parser.add_argument(
        "--data-dir",
        default="ebts-data",
        help="without --cert: use the demo identity a local gateway made here (pki/agencies)",
    )
    parser.add_argument(
        "--identity",
        default="NY0303000",
        help="without --cert: which identity of DATA_DIR/pki/agencies to use (default: the demo "
        "agency)",
    )


@dataclass
class Case:
    name: str
    path: Path
    expect: dict
    tcn: str | None = None
    response: bytes | None = None
    response_tot: str | None = None
    problems: list[str] = field(default_factory=list)
    sent_error: str | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.problems


def discover(directory: Path) -> list[Case]:
    cases = []
    for expect_path in sorted(directory.rglob("*.expect.json")):
        stem = expect_path.name[: -len(".expect.json")]
        candidates = [
            p
            for p in expect_path.parent.glob(stem + ".*")
            if p.name != expect_path.name and not p.name.endswith(".json")
        ]
        if len(candidates) != 1:
            continue
        try:
            expect = json.loads(expect_path.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"{expect_path}: not valid JSON: {exc}") from None
        name = str(candidates[0].relative_to(directory))
        cases.append(Case(name, candidates[0], expect))
    return cases


def _tcn_of(data: bytes) -> str | None:
    from gateway.ansinist import peek

    return peek(data).get("1.009")


def check(case: Case) -> None:
    """Compare what came back with the expectation (fills ``case.problems``)."""
    from gateway.ansinist import FormatError, read

    expected = case.expect.get("response_tot")
    if case.sent_error:
        case.problems.append(f"not accepted: {case.sent_error}")
        return
    if expected is None:
        if case.response is not None:
            case.problems.append(f"expected no answer, got {case.response_tot}")
        return
    if case.response is None:
        case.problems.append(f"expected {expected}, got no answer in time")
        return
    try:
        response = read(case.response)
    except FormatError as exc:
        case.problems.append(f"the response does not read: {exc}")
        return
    if response.tot != expected:
        case.problems.append(f"expected {expected}, got {response.tot}")
        return
    t2 = next((r for r in response.records if r.type == 2), None)
    if expected == "SRE" and "srf" in case.expect:
        srf = t2.value("2.059") if t2 is not None else None
        if srf != case.expect["srf"]:
            case.problems.append(f"expected SRF {case.expect['srf']}, got {srf}")
    if expected == "SRE" and "esi" in case.expect:
        esi = t2.value("2.2037") if t2 is not None else None
        if esi != case.expect["esi"]:
            case.problems.append(f"expected ESI {case.expect['esi']}, got {esi}")
    if expected == "ERRT":
        lines = " | ".join(
            sub[0] for sub in (t2["2.060"].subfields if t2 is not None and "2.060" in t2 else ())
        )
        tags = {
            f["location"].split("field ")[1].split()[0]
            for f in case.expect.get("findings", [])
            if "field " in f.get("location", "")
        }
        if len(case.expect.get("findings", [])) <= 10:
            for tag in sorted(tags):
                if tag not in lines:
                    case.problems.append(f"ERRT does not name field {tag}")


def junit(cases: list[Case], suite: str) -> bytes:
    from xml.sax.saxutils import escape, quoteattr

    failures = sum(not c.passed for c in cases)
    total = sum(c.seconds for c in cases)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<testsuite name={quoteattr(suite)} tests="{len(cases)}" failures="{failures}" '
        f'errors="0" time="{total:.3f}">',
    ]
    for c in cases:
        out.append(
            f'  <testcase classname="replay" name={quoteattr(c.name)} time="{c.seconds:.3f}">'
        )
        if not c.passed:
            text = "; ".join(c.problems)
            out.append(f"    <failure message={quoteattr(text)}>{escape(text)}</failure>")
        out.append("  </testcase>")
    out.append("</testsuite>")
    return ("\n".join(out) + "\n").encode()


def _is_port(text: str) -> bool:
    """A TCP port, 0 (any free one) to 65535, in ASCII digits ("²" passes str.isdigit())."""
    return text.isascii() and text.isdigit() and len(text) <= 5 and int(text) <= 65535


def run(args) -> int:
    directory = Path(args.directory)
    if not directory.is_dir():
        print(f"replay: {directory} is not a folder", file=sys.stderr)
        return 2
    target = urlparse(args.to)
    try:
        to_port = target.port  # ValueError past 65535
    except ValueError:
        to_port = None
    if target.scheme not in ("smtp", "soap") or not target.hostname or not to_port:
        print(
            f"replay: --to must be smtp://HOST:PORT or soap://HOST:PORT, not {args.to!r}",
            file=sys.stderr,
        )
        return 2
    host, _, port = args.listen.rpartition(":")
    if not host or not _is_port(port):
        print(f"replay: --listen must be HOST:PORT, not {args.listen!r}", file=sys.stderr)
        return 2
    cases = discover(directory)
    if not cases:
        print(f"replay: no fixtures with .expect.json in {directory}", file=sys.stderr)
        return 2

    from gateway.replay_io import (
        Receiver,
        SoapReceiver,
        client_context,
        demo_identity,
        send_smtp,
        send_soap,
    )

    cert, key, ca = args.cert, args.key, args.ca
    if cert is None and target.hostname in ("127.0.0.1", "localhost", "::1"):
        found = demo_identity(args.data_dir, args.identity)
        if found is not None:
            cert, key, ca = cert or found[0], key or found[1], ca or found[2]
    try:
        context = client_context(cert, key or cert, ca)
    except (OSError, ValueError) as exc:
        print(f"replay: cannot load the TLS identity: {exc}", file=sys.stderr)
        return 2

    if target.scheme == "soap":
        soap_host, _, soap_port = args.listen_soap.rpartition(":")
        if not soap_host or not _is_port(soap_port):
            print(
                f"replay: --listen-soap must be HOST:PORT, not {args.listen_soap!r}",
                file=sys.stderr,
            )
            return 2
        receiver: Receiver | SoapReceiver = SoapReceiver(soap_host, int(soap_port))
        where = args.listen_soap
    else:
        receiver = Receiver(host, int(port))
        where = args.listen
    try:
        receiver.start()
    except OSError as exc:
        print(f"replay: cannot listen on {where}: {exc}", file=sys.stderr)
        return 2
    try:
        by_tcn: dict[str | None, list[Case]] = {}
        started = {}
        for case in cases:
            data = case.path.read_bytes()
            case.tcn = _tcn_of(data)
            by_tcn.setdefault(case.tcn, []).append(case)
            started[case.name] = time.monotonic()
            try:
                if target.scheme == "smtp":
                    send_smtp(
                        target.hostname,
                        target.port,
                        data,
                        args.sender,
                        case.path.name,
                        context,
                    )
                else:
                    scheme = "https" if context is not None else "http"
                    send_soap(f"{scheme}://{target.hostname}:{target.port}", data, context)
            except Exception as exc:  # noqa: BLE001 - reported per case
                case.sent_error = str(exc)
        waiting = [c for c in cases if c.expect.get("response_tot") and not c.sent_error]
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            for tcr, tot, payload in receiver.take():
                for case in by_tcn.get(tcr, []):
                    if case.response is None:
                        case.response, case.response_tot = payload, tot
                        case.seconds = time.monotonic() - started[case.name]
                        break
            if all(c.response is not None for c in waiting):
                break
            time.sleep(0.1)
        time.sleep(args.grace)
        for tcr, tot, payload in receiver.take():
            for case in by_tcn.get(tcr, []):
                if case.response is None:
                    case.response, case.response_tot = payload, tot
    finally:
        receiver.stop()

    for case in cases:
        check(case)
    width = max(len(c.name) for c in cases)
    print(f"{'fixture':<{width}}  {'expected':<9} {'got':<9} result")
    for c in cases:
        got = c.response_tot or ("-" if not c.sent_error else "refused")
        verdict = "ok" if c.passed else "FAIL: " + "; ".join(c.problems)
        print(f"{c.name:<{width}}  {c.expect.get('response_tot') or '-':<9} {got:<9} {verdict}")
    failed = sum(not c.passed for c in cases)
    print(f"\n{len(cases) - failed} passed, {failed} failed")
    Path(args.junit).write_bytes(junit(cases, f"replay {args.to}"))
    return 0 if failed == 0 else 1
