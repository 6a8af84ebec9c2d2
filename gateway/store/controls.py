"""NGI control numbers (the SOAP intake's answers) and the message ids they stand for.

A control number is ``G`` + year + day of the year + a 12-digit durable counter
(``journal.next_number("ngi_control")``), e.g. ``G2026329000000000042`` (the pattern the NGI
WSDLs evidently mean: :data:`gateway.transports.soap.contract.CONTROL_NUMBER_PATTERN`).
"""

from __future__ import annotations

import datetime as dt
import time

CONTROL_NUMBER_PREFIX = "G"


class ControlNumbers:
    """NGI control numbers and the message ids they stand for, in the journal's database."""

    def __init__(self, journal):
        self.journal = journal  # its table: migration 11 of gateway.store.journal

    def allocate(self, today: dt.date | None = None) -> str:
        """A new control number from the durable counter ``ngi_control``."""
        number = self.journal.next_number("ngi_control")
        if number >= 10**12:
            raise RuntimeError("the ngi_control counter is exhausted")
        day = today or dt.datetime.now(dt.UTC).date()
        return f"{CONTROL_NUMBER_PREFIX}{day:%Y%j}{number:012d}"

    def record(self, control_number: str, message_id: str, service: str) -> None:
        # One statement in autocommit mode: committed (and fsync'd) when it returns.
        self.journal.db.execute(
            "INSERT INTO ngi_control_numbers (control_number, message_id, service, created_at)"
            " VALUES (?, ?, ?, ?)",
            (control_number, message_id, service, time.time()),
        )

    def message_id(self, control_number: str) -> str | None:
        row = self.journal.db.execute(
            "SELECT message_id FROM ngi_control_numbers WHERE control_number = ?",
            (control_number,),
        ).fetchone()
        return row[0] if row else None

    def control_number(self, message_id: str) -> str | None:
        row = self.journal.db.execute(
            "SELECT control_number FROM ngi_control_numbers WHERE message_id = ?",
            (message_id,),
        ).fetchone()
        return row[0] if row else None
