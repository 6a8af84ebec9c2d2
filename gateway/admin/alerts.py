"""Alerts by e-mail (``[alerts]``): the on-call admin hears of trouble without watching.

:class:`AlertChecker` runs every ``check_seconds`` and sends one e-mail through the outbound
relay (the one answers take) to ``[alerts] email`` when

- ``delivery``: a delivery gave up (FAILED after its attempts) since the last such alert;
- ``wait:processing`` / ``wait:outbound``: the oldest item of a queue (accepted and not
  answered; an answer waiting for delivery) has waited longer than ``max_wait`` seconds;
- ``refusals:<ORI>``: one agency's submissions were refused ``refusal_rate`` times or more
  within the last ``period`` seconds (identity or ORI checks at intake, from the audit trail).

Each alert (key above) is sent at most once per ``period``; the times of the last ones are
kept in the journal's meta table, so a restart does not repeat them.  An alert names message
ids, ORIs, TCNs, destinations and counts, never a personal field.  A failure to send is logged
and tried again at the next check.
"""

from __future__ import annotations

import json
import logging
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from twisted.application import service
from twisted.internet import defer, task
from twisted.mail import smtp

from gateway.store import metrics

log = logging.getLogger("gateway.alerts")
META = "alerts_last_sent"
MAX_KEYS = 500  # remembered alert keys (the oldest are forgotten first)


class AlertChecker(service.Service):
    """The ``[alerts]`` timer of a running gateway (see the module docstring)."""

    name = "alerts"

    def __init__(self, gateway, *, send=None, clock=None):
        self.gateway = gateway
        self.settings = gateway.config.alerts
        self.send = send or self._send_mail
        self.clock = clock
        self.loop: task.LoopingCall | None = None
        self.sent = 0
        self._checking: defer.Deferred | None = None

    # -- service ------------------------------------------------------------------------------
    def startService(self):  # noqa: N802 - Twisted API
        super().startService()
        self.loop = task.LoopingCall(self._tick)
        if self.clock is not None:
            self.loop.clock = self.clock
        self.loop.start(self.settings.check_seconds, now=False)

    def stopService(self):  # noqa: N802
        super().stopService()
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        return self._checking

    def _tick(self):
        if self._checking is None:
            self._checking = defer.ensureDeferred(self.check())

            def done(result):
                self._checking = None
                return None

            def failed(failure):
                log.error("alert check failed: %s", failure.getErrorMessage())

            self._checking.addErrback(failed).addBoth(done)

    # -- the conditions -----------------------------------------------------------------------
    def _last(self) -> dict[str, float]:
        raw = self.gateway.journal.meta(META)
        try:
            value = json.loads(raw) if raw else {}
        except (TypeError, ValueError):
            return {}
        return {k: float(v) for k, v in value.items()} if isinstance(value, dict) else {}

    def due(self, now: float | None = None) -> list[tuple[str, str, str]]:
        """The alerts to send now: (key, subject, body) each, after the once-per-period rule."""
        now = time.time() if now is None else now
        s = self.settings
        db = self.gateway.journal.db
        last = self._last()
        out = []

        def allowed(key: str) -> bool:
            return now - last.get(key, float("-inf")) >= s.period

        if allowed("delivery"):
            since = max(last.get("delivery", 0.0), now - s.period)
            failed = metrics.failed_deliveries(db, since=since)
            if failed:
                lines = [
                    f"- message {f['message_id']} (ORI {f['ori'] or '-'}, TCN {f['tcn'] or '-'}): "
                    f"{f['kind']} to {f['destination']}, gave up after {f['attempts']} attempts "
                    f"at {metrics.iso_utc(f['failed_at'])}"
                    for f in failed
                ]
                out.append(
                    (
                        "delivery",
                        f"{len(failed)} deliveries failed",
                        "These answers could not be delivered and will not be retried:\n"
                        + "\n".join(lines)
                        + "\n\nReprocessing does not resend them: check the destination, "
                        "then see each message in the console.",
                    )
                )
        for queue, age in metrics.oldest_waiting(db, now).items():
            key = f"wait:{queue}"
            if age > s.max_wait and allowed(key):
                what = (
                    "accepted and not answered"
                    if queue == "processing"
                    else "an answer waiting for delivery"
                )
                out.append(
                    (
                        key,
                        f"the {queue} queue's oldest item has waited {age:.0f} s",
                        f"The oldest item of the {queue} queue ({what}) has waited {age:.0f} "
                        f"seconds, more than [alerts] max_wait = {s.max_wait:g}.",
                    )
                )
        for ori, count in sorted(metrics.refusals(db, since=now - s.period).items()):
            key = f"refusals:{ori}"
            if count >= s.refusal_rate and allowed(key):
                out.append(
                    (
                        key,
                        f"{count} submissions of {ori} refused",
                        f"{count} submissions for ORI {ori} were refused within the last "
                        f"{s.period:g} seconds ([alerts] refusal_rate = {s.refusal_rate}). "
                        "The reasons are in the audit trail (event submission.refused).",
                    )
                )
        return out

    async def check(self, now: float | None = None) -> list[str]:
        """Send the alerts that are due; returns their keys."""
        if not self.settings.email:
            return []
        now = time.time() if now is None else now
        sent = []
        for key, subject, body in self.due(now):
            try:
                await self.send(f"EBTS gateway alert: {subject}", body)
            except Exception as exc:  # noqa: BLE001 - the relay may be down: try at the next check
                log.warning("alert %s not sent (%s); will try again", key, exc)
                continue
            log.warning("alert sent: %s", subject)
            sent.append(key)
            self.sent += 1
        if sent:
            last = self._last()
            last.update(dict.fromkeys(sent, now))
            newest = sorted(last.items(), key=lambda kv: kv[1])[-MAX_KEYS:]
            self.gateway.journal.set_meta(META, json.dumps(dict(newest)))
        return sent

    # -- sending ------------------------------------------------------------------------------
    def _send_mail(self, subject: str, body: str) -> defer.Deferred:
        config = self.gateway.config
        message = EmailMessage()
        message["From"] = config.outbound_from
        message["To"] = ", ".join(self.settings.email)
        message["Subject"] = subject
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid(domain=config.smtp_domain)
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
        message.set_content(body + "\n\n-- \nebts-gateway [alerts]\n")
        data = message.as_bytes()
        host, port = config.outbound_relay
        if config.outbound_tls:
            from gateway.transports.smtp import _send_tls

            return defer.DeferredList(
                [_send_tls(config, host, port, to, data) for to in self.settings.email],
                fireOnOneErrback=True,
                consumeErrors=True,
            )
        return smtp.sendmail(
            host,
            config.outbound_from,
            list(self.settings.email),
            data,
            port=port,
            requireAuthentication=False,
            requireTransportSecurity=False,
        )
