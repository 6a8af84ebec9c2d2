"""SMTP intake and delivery: a thin Twisted adapter around the journal and the pipeline.

Intake: an ESMTP server (STARTTLS when a certificate is configured; SIZE announced) accepts one
EBTS file per MIME attachment (base64); several attachments give several transactions.  The
reply to DATA is 250 only after every attachment is committed to the journal; a message that is
not MIME or carries no attachment gets a 5xx with the reason.  Submissions and responses travel
as ``application/octet-stream`` attachments (OPM FIN 00-04 / FBI EFTS e-mail practice).

Delivery: :func:`send_response` builds the response e-mail and hands it to the outbound relay.
"""

from __future__ import annotations

import email
import email.policy
import io
import logging
import re
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import formatdate, make_msgid
from typing import Any, cast

from twisted.internet import defer
from twisted.internet.protocol import connectionDone
from twisted.mail import smtp
from twisted.python.failure import Failure
from zope.interface import implementer

from gateway.config import Limits
from gateway.routing.authz import Refused
from gateway.transports.tls import peer_fingerprint

from .limits import (
    COMMAND,
    IDLE,
    MESSAGE,
    Budget,
    abort_later,
    in_parser_thread,
    one_large_message_at_a_time,
)
from .mime import MimeLimitError, check_structure
from .spool import Spool

log = logging.getLogger("gateway.smtp")


class IntakeRejected(Exception):
    def __init__(self, code: int, text: str):
        super().__init__(text)
        self.code = code
        self.text = text


def extract_attachments(raw: bytes) -> list[tuple[str | None, bytes]]:
    """The (filename, bytes) of every attachment of a MIME message.

    Raises IntakeRejected (5xx) when the message is not MIME or has no attachment.
    """
    try:
        message = email.message_from_bytes(raw, policy=email.policy.default)
    except Exception:  # noqa: BLE001 - the email package raises many kinds: say it our way
        raise IntakeRejected(554, "5.6.0 message cannot be parsed as MIME") from None
    if message.get("MIME-Version") is None and not message.is_multipart():
        body = _nlets_body(message)
        if body is not None:
            return [(None, body)]
        raise IntakeRejected(554, "5.6.0 not a MIME message: send the EBTS file as an attachment")
    parts = []
    if message.is_multipart():
        parts = list(message.iter_attachments())
        # A part whose disposition is missing but whose type is binary is an attachment too.
        if not parts:
            parts = [p for p in message.walk() if p.get_content_maintype() == "application"]
    elif message.get_content_disposition() == "attachment" or (
        message.get_content_maintype() == "application"
    ):
        parts = [message]
    out = []
    for part in parts:
        try:
            data = part.get_payload(decode=True)
        except Exception:  # noqa: BLE001
            data = None
        if not data:
            continue
        out.append((part.get_filename(), bytes(data)))
    if not out:
        body = _nlets_body(message)
        if body is not None:
            return [(None, body)]
        raise IntakeRejected(554, "5.6.0 no attachment: send each EBTS file as a MIME attachment")
    return out


# Messages larger than this are read by the streaming scan (when they are one multipart).
LARGE_MESSAGE = 4 * 1024 * 1024
# RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with its code and CRLF.
MAX_REPLY_TEXT = 512 - len("250 ") - len("\r\n")
# RFC 5321 4.5.3.1.8: the minimum number of recipients a server must accept per message.
MAX_RECIPIENTS = 100


def _read_with_id(source, limits: Limits) -> tuple[list[tuple[str | None, bytes]], str | None]:
    """(attachments, the submission's Message-ID) of a message; runs in a thread."""
    attachments = read_message(source, limits)
    if isinstance(source, Spool):
        source.seek(0)
        head = source.read(65536)
    else:
        head = bytes(source[:65536])
    return attachments, submission_message_id(head)


def read_message(source, limits: Limits) -> list[tuple[str | None, bytes]]:
    """The attachments of a message (a :class:`Spool` or bytes), within ``limits``.

    Runs in a thread.  The structure is checked by a streaming scan first (depth and number of
    parts), then the ``email`` package reads it; more than ``limits.max_attachments``
    attachments refuse the whole message.  Raises :class:`IntakeRejected` with our words.
    """
    stream = source if isinstance(source, Spool) else io.BytesIO(source)
    stream.seek(0)
    large = isinstance(source, Spool) and source.size > LARGE_MESSAGE
    try:
        found = check_structure(
            stream,
            max_depth=limits.mime_max_depth,
            max_parts=limits.mime_max_parts,
            max_attachments=limits.max_attachments,
            collect=large,
        )
    except MimeLimitError as exc:
        raise IntakeRejected(554, f"5.6.0 {exc.text}; nothing was stored") from None
    if large and found["depth"] == 1 and found["files"]:
        # A large multipart message (the usual e-mail: a text part and the EBTS files) is read
        # from its spool by the scan itself, each file decoded once: the email package would
        # hold the message several times over.
        return [(None, data) for data in found["files"]]
    raw = source.getvalue() if isinstance(source, Spool) else source
    try:
        attachments = extract_attachments(raw)
    except RecursionError:  # the scan should have refused it; never Python's own words
        raise IntakeRejected(554, "5.6.0 MIME parts nested too deeply; nothing stored") from None
    if len(attachments) > limits.max_attachments:
        raise IntakeRejected(
            554,
            f"5.3.4 {len(attachments)} attachments: at most {limits.max_attachments} "
            "per message (max_attachments); nothing was stored",
        )
    return attachments


def stored_reply(ids: list[str]) -> bytes:
    """The 250 text for stored transactions: the count and as many ids as one line holds."""
    text = f"2.0.0 stored {len(ids)} transaction(s):"
    for n, msg_id in enumerate(ids):
        more = f" and {len(ids) - n} more"
        if len(text) + 1 + len(msg_id) + (len(more) if n < len(ids) - 1 else 0) > MAX_REPLY_TEXT:
            text += more
            break
        text += f" {msg_id}"
    return text.encode("ascii", "replace")


def _nlets_body(message) -> bytes | None:
    """The text body of an Nlets message (an IAR from the LESC), which has no attachment."""
    try:
        part = message.get_body(preferencelist=("plain",))
        text = part.get_content() if part is not None else None
    except Exception:  # noqa: BLE001
        return None
    if not text:
        return None
    head = text.lstrip()[:512].upper()
    if head.startswith("IAR.") or "\nIAR." in head:
        return text.encode("ascii", "replace")
    return None


@implementer(smtp.IMessage)
class _Collector:
    """Collects the DATA of one SMTP transaction (shared by all its recipients)."""

    def __init__(self, delivery: IntakeDelivery, sender: str, peer: str | None):
        self.delivery = delivery
        self.sender = sender
        self.peer = peer
        # past a small threshold the DATA goes to a 0600 file in the data directory
        self.spool: Spool | None = delivery.new_spool()
        self.size = 0
        self.too_big = False

    def lineReceived(self, line: bytes) -> None:  # noqa: N802 - Twisted API
        self.write(line + b"\r\n")

    def write(self, lines: bytes) -> None:
        """Whole lines of DATA (CRLF-terminated, dot-stuffing already removed)."""
        if self.too_big or self.spool is None:
            return
        self.size += len(lines)
        if self.size > self.delivery.max_size:
            self.too_big = True
            self.spool.close()
            return
        self.spool.write(lines)

    def eomReceived(self) -> defer.Deferred:  # noqa: N802 - Twisted API
        if self.too_big or self.spool is None:
            return defer.fail(
                smtp.SMTPServerError(
                    552, f"5.3.4 message exceeds the size limit of {self.delivery.max_size} bytes"
                )
            )
        spool, self.spool = self.spool, None
        d = self.delivery.store(spool, self.sender, self.peer)

        def removed(result):
            spool.close()  # after the commit, or the refusal
            return result

        return d.addBoth(removed)

    def connectionLost(self) -> None:  # noqa: N802 - Twisted API
        if self.spool is not None:  # DATA abandoned: the spool file goes
            self.spool.close()
            self.spool = None


@implementer(smtp.IMessage)
class _Ignore:
    """Second and later recipients of the same transaction: the data is stored once."""

    def lineReceived(self, line):  # noqa: N802
        pass

    def eomReceived(self):  # noqa: N802
        return defer.succeed(None)

    def connectionLost(self):  # noqa: N802
        pass


@implementer(smtp.IMessageDelivery)
class IntakeDelivery:
    def __init__(
        self, intake, max_size: int, peer: str | None, limits: Limits | None = None,
        spool_directory=None,
    ):  # fmt: skip
        self.intake = intake
        self.max_size = max_size
        self.peer = peer
        self.identity = None  # set by IntakeESMTP.do_MAIL from the client certificate
        self.limits = limits or Limits()
        self.spool_directory = spool_directory
        self._sender = ""
        self._collector: _Collector | None = None

    def receivedHeader(self, helo, origin, recipients):  # noqa: N802
        return None  # the stored bytes are the attachment, not the envelope

    def validateFrom(self, helo, origin):  # noqa: N802
        self._sender = str(origin) if origin else ""
        self._collector = None
        return origin

    def validateTo(self, user):  # noqa: N802
        def factory():
            if self._collector is None:
                self._collector = _Collector(self, self._sender, self.peer)
                return self._collector
            return _Ignore()

        return factory

    def new_spool(self) -> Spool:
        import tempfile

        directory = self.spool_directory or tempfile.gettempdir()
        return Spool(directory, self.limits.spool_threshold)

    def store(self, raw, sender: str, peer: str | None) -> defer.Deferred:
        """Read the message (a :class:`Spool` or bytes) in a thread, then commit it here
        (one spooled message at a time: see ``one_large_message_at_a_time``)."""
        large = isinstance(raw, Spool) and raw.on_disk
        return one_large_message_at_a_time(large, lambda: self._store(raw, sender, peer))

    def _store(self, raw, sender: str, peer: str | None) -> defer.Deferred:
        d = in_parser_thread(_read_with_id, raw, self.limits)  # never in the reactor thread

        def refused(failure):
            failure.trap(IntakeRejected)
            exc = failure.value
            log.info("rejected a message from %s: %s", peer, exc.text)
            raise smtp.SMTPServerError(exc.code, exc.text)

        d.addCallbacks(lambda read: self._accept(read[0], read[1], sender, peer), refused)
        return d

    def _accept(self, attachments, message_id, sender: str, peer: str | None) -> defer.Deferred:
        # large attachments are stored by the store thread; 250 only after the commit
        d = self.intake.accept_async(
            [data for _, data in attachments],
            transport="smtp",
            peer=peer,
            reply_to=sender or None,
            identity=self.identity,
            mail_message_id=message_id,
        )

        def failed(failure):
            if failure.check(Refused):  # logged by the intake; nothing was stored
                raise smtp.SMTPServerError(550, f"5.7.1 {failure.value.reason}")
            # storage failure: temporary, the client retries
            log.error("cannot store a message from %s: %s", peer, failure.getErrorMessage())
            raise smtp.SMTPServerError(451, "4.3.0 cannot store the message now")

        return d.addErrback(failed)


class IntakeESMTP(smtp.ESMTP):
    """ESMTP that announces SIZE, refuses MAIL FROM with a SIZE beyond the limit and, with TLS on,
    requires STARTTLS and a registered client certificate before MAIL (RFC 3207 section 4)."""

    max_size = 64 * 1024 * 1024
    require_tls = False
    delivery: IntakeDelivery  # set by IntakeFactory.buildProtocol

    def extensions(self):
        ext = super().extensions()
        ext[b"SIZE"] = [str(self.max_size).encode()]
        return ext

    def do_MAIL(self, rest):  # noqa: N802 - Twisted API
        for param in rest.split()[1:]:
            key, _, value = param.partition(b"=")
            if key.upper() == b"SIZE" and value.isdigit() and int(value) > self.max_size:
                self.sendCode(552, b"5.3.4 message size exceeds the fixed maximum message size")
                return
        if self.require_tls and not self.startedTLS:
            self.sendCode(530, b"5.7.0 Must issue a STARTTLS command first")
            return
        try:
            self.delivery.identity = self.factory.intake.identify(
                peer_fingerprint(self.transport) if self.require_tls else None,
                transport="smtp",
                peer=self.delivery.peer,
            )
        except Refused as exc:
            code = b"5.7.0" if exc.code == "NO_CERTIFICATE" else b"5.7.1"
            self.sendCode(530, code + b" " + exc.reason.encode("ascii", "replace"))
            return
        return super().do_MAIL(rest)

    def do_RCPT(self, rest):  # noqa: N802 - Twisted API
        # RFC 5321 4.5.3.1.8: at least 100 recipients must be buffered; past our limit each
        # further one gets 452 (4.5.3.1.10), which a client takes as "send the rest in another
        # transaction".  Answers never go to a recipient, and each accepted one is held for the
        # transaction: 300,000 took 250 MB and held the reactor 8 s.
        if len(self._to) >= MAX_RECIPIENTS:
            self.sendCode(
                452, b"4.5.3 too many recipients: at most %d per message" % MAX_RECIPIENTS
            )
            return
        return super().do_RCPT(rest)

    limits: Limits = Limits()
    budget: Budget | None = None

    def connectionMade(self):  # noqa: N802 - Twisted API
        self.budget = Budget(self.limits, self._budget_exceeded)
        super().connectionMade()

    def dataReceived(self, data):  # noqa: N802 - Twisted API
        budget = self.budget
        if budget is None:
            return super().dataReceived(data)
        if budget.spent:
            return None  # closing: nothing more is read
        budget.feed(len(data))
        collector = getattr(self.delivery, "_collector", None)
        if self.mode == smtp.DATA and isinstance(collector, _Collector):
            self._data_block(data, collector)
        else:
            super().dataReceived(data)
        if self.mode == smtp.DATA:
            budget.enter(MESSAGE)
        elif self._buffer and self._held is None:
            budget.enter(COMMAND)  # a command line has begun and must end in time
        else:
            budget.enter(IDLE)

    def _data_block(self, data: bytes, collector: _Collector) -> None:
        """DATA handled a block at a time, not a line at a time: the reactor's cost per byte
        of a large message is a search and a copy, so a flood of DATA leaves it free for other
        connections and /health.  The complete lines are un-stuffed (RFC 5321 4.5.2: a leading
        period is removed) and spooled at once; the end-of-data line, and whatever follows
        it, go through Twisted's own line handling, which answers the message."""
        block = self._buffer + data
        self._buffer = b""
        if block.startswith(b".\r\n"):
            end = 0
        else:
            found = block.find(b"\r\n.\r\n")
            end = found + 2 if found >= 0 else -1
        if end >= 0:
            lines, rest = block[:end], block[end:]
        else:
            cut = block.rfind(b"\r\n") + 2  # 0 when there is no complete line yet
            lines, rest = block[:cut], block[cut:]
        if lines:
            if lines.startswith(b"."):
                lines = lines[1:]
            collector.write(lines.replace(b"\r\n.", b"\r\n"))
            self.resetTimeout()
        if end >= 0 or len(rest) > self.MAX_LENGTH:
            super().dataReceived(rest)  # the final dot (or an overlong line): Twisted's way
        else:
            self._buffer = rest

    def _budget_exceeded(self, reason: str) -> None:
        assert self.budget is not None  # only the budget itself calls this
        text = f"4.4.2 {self.host.decode('ascii', 'replace')} {self.budget.describe(reason)}"
        log.info("closing an SMTP session from %s: %s", self._helo and self._helo[1], text)
        self.sendCode(421, text.encode("ascii", "replace"))
        # mypy does not follow zope.interface methods seen through ITransport
        cast(Any, self.transport).loseConnection()
        abort_later(self.transport)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802 - Twisted API
        if self.budget is not None:
            self.budget.spent = True
            self.budget.cancel()
        super().connectionLost(reason)

    def sendCode(self, code, message=b""):  # noqa: N802 - Twisted API
        # RFC 5321 4.5.3.1.5: no reply line longer than 512 octets, whatever its text.
        lines = [line[:MAX_REPLY_TEXT] for line in message.splitlines()] or [b""]
        super().sendCode(code, b"\n".join(lines))

    def state_DATA(self, line):  # noqa: N802 - Twisted API
        if line == b"." and not self.datafailed:  # the client now waits for our answer
            self.setTimeout(None)
            # RFC 2920 3.1: a client may send the next MAIL, RCPT and DATA (or QUIT) right
            # behind the message.  They are held until the message's reply is sent, then read
            # in order (Twisted read on: MAIL's 250 came before the reply to DATA, and QUIT
            # closed the connection before it).  Reading pauses meanwhile.
            self._held = []
            cast(Any, self.transport).pauseProducing()  # an IPushProducer (zope-typed)
        return super().state_DATA(line)

    _held: list[bytes] | None = None  # lines read behind a message whose reply is pending

    def lineReceived(self, line):  # noqa: N802 - Twisted API
        if self._held is not None:
            self._held.append(line)
            return None
        return super().lineReceived(line)

    # RFC 5321 4.5.1: NOOP and VRFY are part of the minimum implementation; HELP is listed too.
    def do_NOOP(self, rest):  # noqa: N802 - Twisted API
        self.sendCode(250, b"2.0.0 OK")

    def do_VRFY(self, rest):  # noqa: N802
        if not rest.strip():
            self.sendCode(501, b"5.5.4 syntax: VRFY <address>")
            return
        # RFC 5321 3.5.3: 252 when the server will not verify but accepts mail for the address.
        self.sendCode(252, b"2.5.0 cannot VRFY user, but will accept the message")

    def do_HELP(self, rest):  # noqa: N802
        self.sendCode(
            214,
            b"2.0.0 EBTS gateway: send each EBTS file (traditional or XML) as a MIME attachment\n"
            b"commands: EHLO HELO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT\n"
            b"250 after DATA means every attachment is stored; the answer comes by e-mail",
        )

    def _messageHandled(self, resultList):  # noqa: N802 - Twisted internal, answers DATA
        try:
            self._answer_data(resultList)
        finally:
            held, self._held = self._held, None
            if held is not None and self.transport is not None:
                self.transport.resumeProducing()
                for line in held:  # the commands sent behind the message (state_DATA)
                    if self.transport.disconnecting:
                        break
                    self.lineReceived(line)

    def _answer_data(self, resultList) -> None:  # noqa: N803 - Twisted's name
        self.setTimeout(self.timeout)  # the idle clock again, once the answer is given
        # Twisted answers every failure with "550 Could not send e-mail"; say why instead.
        for success, result in resultList:
            if not success:
                error = result.value
                if isinstance(error, smtp.SMTPServerError):
                    self.sendCode(error.code, str(error.resp).encode("ascii", "replace"))
                else:
                    log.error("intake failed: %s", result.getTraceback())
                    self.sendCode(451, b"4.3.0 internal error, try again later")
                return
        ids = [i for ok, r in resultList if ok and r for i in r]
        self.sendCode(250, stored_reply(ids))


class IntakeFactory(smtp.SMTPFactory):
    """Builds an :class:`IntakeESMTP` per connection."""

    protocol = IntakeESMTP

    def __init__(
        self,
        intake,
        *,
        domain: str,
        max_size: int,
        tls_context=None,
        require_tls=False,
        limits=None,
        spool_directory=None,
    ):
        super().__init__()
        self.intake = intake
        self.domain = domain  # type: ignore[assignment]  # a str here; SMTPFactory types bytes
        self.max_size = max_size
        self.tls_context = tls_context
        self.require_tls = require_tls and tls_context is not None
        self.limits = limits or Limits()
        self.spool_directory = spool_directory

    def buildProtocol(self, addr):  # noqa: N802 - Twisted API
        proto = IntakeESMTP(contextFactory=self.tls_context)
        proto.factory = self
        proto.host = self.domain.encode()  # type: ignore[attr-defined]  # the str above
        proto.max_size = self.max_size
        proto.require_tls = self.require_tls
        proto.delivery = IntakeDelivery(
            self.intake,
            self.max_size,
            getattr(addr, "host", None),
            self.limits,
            self.spool_directory,
        )
        proto.limits = self.limits
        # SMTP.timeout is inferred int from its default (600); setTimeout takes seconds as a float
        proto.timeout = self.limits.idle_timeout  # type: ignore[assignment]
        return proto


_MSGID = re.compile(r"<[!-;=?-~]{1,250}>")  # RFC 5322 msg-id: printable, no space, no < >


def submission_message_id(raw: bytes) -> str | None:
    """The Message-ID of a submission e-mail when it is a well-formed one (else None).

    Kept to be named in the answer's In-Reply-To and References; anything else (missing, too
    long, folded, with spaces or line breaks) is dropped rather than repeated in a header.
    """
    try:
        headers = BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw[:65536])
        value = str(headers.get("Message-ID", "")).strip()
    except Exception:  # noqa: BLE001 - the email package raises many kinds
        return None
    return value if _MSGID.fullmatch(value) else None


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def answer_names(payload: bytes, *, tcn: str | None = None, fallback: str) -> tuple[str, str]:
    """(subject, attachment file name) of an EBTS answer.

    The answer's TCR (1.010) is the submission's TCN: "EBTS SRE for TCN NY-0000123" and
    ``NY-0000123.sre.eft`` (``.xml`` for an XML answer). Without a TCR (an ERRT for a TCN that
    broke a rule) ``tcn``, the submission's TCN as the journal has it, is used; without either
    (a file whose TCN could not be read) ``fallback``, the gateway's message id.
    """
    from gateway.ansinist import detect_encoding, peek

    values = peek(payload)
    tot = (values.get("1.004") or "response").strip()[:8] or "response"
    tcn = (values.get("1.010") or tcn or "").strip()[:40]
    ext = "xml" if detect_encoding(payload) == "xml" else "eft"
    stem = _UNSAFE_NAME.sub("_", tcn or fallback)
    subject = f"EBTS {tot} for TCN {tcn}" if tcn else f"EBTS {tot} for submission {fallback}"
    return subject, f"{stem}.{_UNSAFE_NAME.sub('_', tot).lower()}.{ext}"


def build_response_email(
    *,
    sender: str,
    to: str,
    payload: bytes,
    filename: str,
    subject: str,
    message_id: str | None = None,
    text: bool = False,
    in_reply_to: str | None = None,
) -> bytes:
    """The e-mail carrying a response: EBTS files as an attachment, Nlets text as the body.

    ``in_reply_to``: the submission's Message-ID, named in In-Reply-To and References (RFC 5322
    3.6.4) so that the answer threads with the submission in the agency's mailbox."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    # A stable Message-ID per delivery lets receivers drop a redelivery after a crash.
    message["Message-ID"] = message_id or make_msgid(domain="ebts-gateway")
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    if text:  # IAQ / IAR: Nlets 7-bit text travels as the message body
        message.set_content(payload.decode("ascii", "replace"))
        return message.as_bytes(policy=email.policy.default)
    message.set_content("EBTS response attached.\r\n")
    message.add_attachment(
        payload, maintype="application", subtype="octet-stream", filename=filename
    )
    # LF line ends: twisted.mail.smtp.sendmail turns them into CRLF on the wire.
    return message.as_bytes(policy=email.policy.default)


def _send_tls(config, host: str, port: int, to: str, data: bytes) -> defer.Deferred:
    """Send through the relay with STARTTLS required and its certificate checked."""
    from io import BytesIO

    from twisted.internet import reactor as _reactor

    from gateway.transports.tls import client_options

    # the global reactor provides its interfaces through zope.interface, which mypy does not follow
    reactor: Any = _reactor
    d: defer.Deferred[Any] = defer.Deferred()
    factory = smtp.ESMTPSenderFactory(
        None,
        None,
        config.outbound_from,
        [to],
        BytesIO(data),
        d,
        retries=0,
        contextFactory=client_options(config, host),
        heloFallback=False,
        requireAuthentication=False,
        requireTransportSecurity=True,
    )
    factory.domain = config.smtp_domain.encode()
    reactor.connectTCP(host, port, factory, timeout=30)
    return d


def smtp_sender(config, journal=None):
    """The outbound sender of ``smtp`` deliveries, through the configured relay.

    With the ``journal``, an answer refers to the submission e-mail (In-Reply-To/References).
    """
    host, port = config.outbound_relay

    def send(item, payload: bytes) -> defer.Deferred:
        import json

        meta = json.loads(item.meta or "{}")
        text = bool(meta.get("text"))
        submission = None
        if journal is not None and not text:
            try:
                submission = journal.message(item.message_id)
            except KeyError:
                submission = None
        if text:  # IAQ / IAR: the pipeline names them
            subject, filename = meta.get("subject") or "Nlets", meta.get("filename", "nlets.txt")
        else:
            tcn = submission.tcn if submission is not None else meta.get("tcn")
            subject, filename = answer_names(payload, tcn=tcn, fallback=item.message_id)
        in_reply_to = submission.mail_message_id if submission is not None else None
        data = build_response_email(
            sender=config.outbound_from,
            to=item.destination,
            payload=payload,
            filename=filename,
            subject=subject,
            message_id=f"<{item.message_id}.{item.id}@{config.smtp_domain}>",
            text=text,
            in_reply_to=in_reply_to,
        )
        if not config.outbound_tls:
            return smtp.sendmail(
                host,
                config.outbound_from,
                [item.destination],
                data,
                port=port,
                requireAuthentication=False,
                requireTransportSecurity=False,
            )
        return _send_tls(config, host, port, item.destination, data)

    return send
