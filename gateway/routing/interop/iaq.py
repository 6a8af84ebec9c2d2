"""Immigration Alien Query (IAQ) to the ICE LESC, its response (IAR), and the SRE's DHS lines.

DESIGN.md ("The interoperability rules"): on a DHS match ICE is notified by an IAQ in the Nlets
legacy text layout, carrying a priority level.  The gateway only informs: the text it adds of its
own (the layout, ``REM/``, the SRE lines) directs no arrest, detainer or other enforcement action;
the tests check it against :data:`ENFORCEMENT_TERMS` with :func:`check_informative`.  Data it relays
(a name, an immigration status as DHS records it) is reported as it is.

IAQ layout (Nlets "Legacy Text Examples - Immigration Alien Transactions (IAQ/IAR)", standards BRIEF
section 4).  7-bit upper-case ASCII, one field per line, each field ``PFX/value`` ended by a period;
values never contain a period (it ends the field) and are cut to the Nlets sizes::

    IAQ.NY0303000.AX.*G4NQ7ZK2XA.TXT      message type, sender ORI, destination AX (the LESC,
                                          ORI VTICE0900), *control field, TXT
    PUR/C.                                purpose: C (criminal justice)
    ATN/IDENT IAFIS INTEROPERABILITY.     attention (max 30): 2.006 ATN, else this name
    PHN/8025550100.                       inquirer's phone (max 20), only when known
    NAM/DOE,JOHN Q.                       2.018 NAM, "LAST,FIRST MIDDLE" (max 30)
    DOB/19800101.                         2.022 DOB, CCYYMMDD
    SEX/M.                                2.024 SEX
    POB/MM.                               2.020 POB, NCIC code (2)
    CUS/Y.                                in custody: a booking, so Y
    OFF/1204.                             NCIC code of the most serious current charge; "0399"
                                          (the generic code Nlets prescribes) when none is known
    ARN/012345678.                        DHS subject's Alien Registration Number, when known
    FBI/123456AB1.                        2.014 FBI, else the FBI subject's UCN (max 9)
    SID/NY12345678.                       2.015 SID, else the FBI subject's (max 10)
    REM/AUTOMATED IDENT MATCH, DHS ID IDENT-0001, PRIORITY LEVEL 1 (CONVICTION NCIC 0911).

Biographic fields come from the booking's Type-2 and fall back to the DHS, then the FBI subject.
``REM/`` (remarks, the Nlets prefix used by other message types) carries the notification: the DHS
subject id and the priority, ``PRIORITY LEVEL 1``..``3`` with the code of the most severe
conviction, or ``NO LEVEL: NOT A CRIMINAL ALIEN (NO CONVICTIONS)``.  (Nlets' ``PRI/`` means a
message's urgency, so the level does not go there.)  Whether the LESC accepts ``REM/`` in an IAQ is
not confirmed by the public material [bk]; it is the one field of our own.

Linking the IAR: the header's control field (Nlets: ``*`` and up to 10 characters after the
destination) is :func:`iaq_control` of the gateway's message id; Nlets returns the control field
with the response, and :func:`parse_iar` reads it back (``control``), so the IAR is linked to the
IAQ's message and through it to the booking's TCN.  :func:`iar_refers_to` compares.

IAR as read by :func:`parse_iar`: a first line ``IAR.<sender ORI>`` optionally followed in the same
line by ``.<destination ORI>``, ``.*<control>`` and ``.TXT``; or the Nlets output header (time /
sequence lines, the destination ORI ending the second, a ``*<control>`` line) and a ``TXT`` line;
then the text: free narrative with any ``PFX/value.`` fields.  Anything else raises ``ValueError``.

Pure: no I/O, no Twisted.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Iterable

from gateway.ansinist import Transaction

from .offenses import OffenseTable, PriorityResult, normalize_code

LESC_ORI = "VTICE0900"  # ICE Law Enforcement Support Center, Williston VT (Nlets)
IAQ_DESTINATION = "AX"  # Nlets: the IAQ destination "must be AX"
GENERIC_IAQ_OFFENSE = "0399"  # Nlets: "If no code is available use generic code 0399"
DEFAULT_ATTENTION = "IDENT IAFIS INTEROPERABILITY"
MAX_IAR_SIZE = 64 * 1024
MSG_MAX = 300  # EBTS 2.060 MSG
# Field sizes of the Nlets legacy IAQ.
_SIZES = {
    "ATN": 30,
    "PHN": 20,
    "NAM": 30,
    "DOB": 8,
    "SEX": 1,
    "POB": 2,
    "CUS": 1,
    "OFF": 4,
    "ARN": 9,
    "FBI": 9,
    "SID": 10,
    "REM": 200,
}
# Words of an enforcement instruction.  The gateway informs; its own text never carries them.
ENFORCEMENT_TERMS = (
    "ARREST",
    "APPREHEND",
    "DETAIN",
    "DETAINER",
    "DEPORT",
    "HOLD",
    "I-247",
    "REMOVAL",
    "REMOVE",
    "SEIZE",
    "TAKE INTO CUSTODY",
    "WARRANT",
)
_ENFORCEMENT = re.compile(r"\b(" + "|".join(re.escape(t) for t in ENFORCEMENT_TERMS) + r")\w*")
_ORI = re.compile(r"[A-Z0-9]{9}")
_CONTROL = re.compile(r"[A-Z0-9]{1,10}")
_ID = re.compile(r"[A-Z0-9]+")
_NOT_ALLOWED = re.compile(r"[^A-Z0-9 ,\-:;()'/&#]")
_LEADING_CODE = re.compile(r"\s*([0-9]{4})(?![0-9])")
# A field: at a line start or after a period, PFX/ then its value up to a period that ends it
# (followed by a blank, the end or the next PFX/) or to the end of the line.
_FIELD = re.compile(
    r"(?:^|(?<=\.))[ \t]*([A-Z]{3})/([^\n]*?)(?:\.(?=\s|$|[A-Z]{3}/)|[ \t]*$)",
    re.MULTILINE,
)
_HEADER_TIME = re.compile(r"\d{2}:\d{2} \d{2}/\d{2}/\d{4} \d+(?: ([A-Z0-9]{9}))?")


def _clean(value, size: int | None = None) -> str:
    """Upper-case 7-bit text with no period or control character, blanks collapsed, cut to size."""
    text = _NOT_ALLOWED.sub(" ", str(value).upper())
    text = " ".join(text.split())
    return text[:size].rstrip() if size else text


def check_informative(text: str) -> str:
    """``text`` unchanged; ``ValueError`` when it contains an enforcement term."""
    found = _ENFORCEMENT.search(text.upper())
    if found:
        raise ValueError(f"gateway text must inform only; it contains {found.group(0)!r}")
    return text


def iaq_control(message_id, key: bytes | None = None) -> str:
    """The IAQ control field (1-10 upper-case letters and digits) for a gateway message id.

    With ``key`` (the gateway always has one, kept in its data directory): ``G`` and 9 base32
    characters of HMAC-SHA256(key, id): 45 bits nobody without the key can derive from an id,
    so a forged IAR cannot name a real IAQ.  Without a key (tools, tests): a message id that
    already is such a string is used as it is, any other is hashed the same way unkeyed.
    """
    text = str(message_id)
    if key:
        digest = hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()
    elif _CONTROL.fullmatch(text):
        return text
    else:
        digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "G" + base64.b32encode(digest).decode("ascii")[:9]


def _name(value) -> str | None:
    if not value:
        return None
    text = _clean(value)
    text = re.sub(r"\s*,\s*", ",", text)  # NCIC: LAST,FIRST MIDDLE
    return text[: _SIZES["NAM"]].rstrip() or None


def _dob(value) -> str | None:
    """CCYYMMDD from an EBTS DOB (CCYYMMDD) or an ISO date."""
    if not value:
        return None
    text = str(value).strip()
    for fmt in ("%Y%m%d", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(text, fmt).strftime("%Y%m%d")
        except ValueError:
            continue
    return None


def _sex(value) -> str | None:
    text = _clean(value or "")[:1]
    return text if text in {"M", "F", "X", "U"} else None


def _pob(value) -> str | None:
    text = _clean(value or "")
    return text if re.fullmatch(r"[A-Z]{2}", text) else None


def _ident(value, size: int) -> str | None:
    text = _clean(value or "").replace(" ", "")
    return text if _ID.fullmatch(text) and len(text) <= size else None


def _arn(value) -> str | None:
    text = _clean(value or "").replace(" ", "").replace("-", "")
    text = text[1:] if text.startswith("A") else text
    return text if re.fullmatch(r"[0-9]{8,9}", text) else None


def booking_offense_codes(t2) -> list[str]:
    """NCIC codes that lead the booking's 2.047 ASL arrest offense literals (``1204 ROBBERY``)."""
    codes = []
    asl = t2.get("2.047") if t2 is not None else None
    for sub in asl.subfields if asl is not None else ():
        literal = sub[1] if len(sub) > 1 else sub[0]
        match = _LEADING_CODE.match(literal)
        if match and normalize_code(match.group(1)):
            codes.append(match.group(1))
    return codes


def _remarks(dhs_subject, priority: PriorityResult) -> str:
    if priority.level is None:
        status = priority.label
    else:
        status = f"PRIORITY LEVEL {priority.level}"
        best = priority.convictions[0] if priority.convictions else None
        if best is not None and normalize_code(best.code):
            status += f" (CONVICTION NCIC {best.code})"
    return f"AUTOMATED IDENT MATCH, DHS ID {_clean(dhs_subject.dhs_id)}, {status}"


def build_iaq(
    submission: Transaction,
    *,
    dhs_subject,
    fbi_subject,
    priority: PriorityResult,
    sender_ori: str,
    lesc_ori: str = LESC_ORI,
    message_id: str,
    table: OffenseTable | None = None,
    booking_offense: str | None = None,
    attention: str | None = None,
    phone: str | None = None,
    control: str | None = None,
) -> str:
    """The IAQ text (layout in the module docstring) notifying the LESC of a DHS match.

    ``sender_ori`` is the ORI the IAQ comes from (the booking agency's, or the gateway's when it
    queries on the agency's behalf); ``lesc_ori`` is the LESC's ORI, checked here and used by the
    transport (the legacy header addresses the LESC by its Nlets destination code ``AX``).
    ``booking_offense`` overrides the NCIC code found in 2.047 ASL; ``table`` picks the most serious
    of several (default table).  Raises ``ValueError`` for a bad ORI or a missing DHS subject.
    """
    sender = _clean(sender_ori).replace(" ", "")
    if not _ORI.fullmatch(sender):
        raise ValueError(f"sender ORI must be 9 letters or digits: {sender_ori!r}")
    if not _ORI.fullmatch(_clean(lesc_ori).replace(" ", "")):
        raise ValueError(f"LESC ORI must be 9 letters or digits: {lesc_ori!r}")
    if dhs_subject is None or not getattr(dhs_subject, "dhs_id", None):
        raise ValueError("an IAQ needs the matched DHS subject")
    table = table or OffenseTable.default()
    t2 = next((r for r in submission.records if r.type == 2), None)

    def booked(tag: str):
        return t2.value(tag) if t2 is not None else None

    subjects = [s for s in (dhs_subject, fbi_subject) if s is not None]

    def first(convert, booking_value, attr: str):
        value = convert(booking_value)
        for subject in subjects:
            if value is not None:
                break
            value = convert(getattr(subject, attr, None))
        return value

    offense = normalize_code(booking_offense) if booking_offense else None
    offense = offense or table.most_serious(booking_offense_codes(t2)) or GENERIC_IAQ_OFFENSE
    fbi = _ident(booked("2.014"), _SIZES["FBI"])
    if fbi is None and fbi_subject is not None:
        fbi = _ident(fbi_subject.ucn, _SIZES["FBI"])
    sid = _ident(booked("2.015"), _SIZES["SID"])
    if sid is None and fbi_subject is not None:
        sid = _ident(getattr(fbi_subject, "sid", None), _SIZES["SID"])

    fields: list[tuple[str, str | None]] = [
        ("PUR", "C"),
        ("ATN", _clean(attention or booked("2.006") or DEFAULT_ATTENTION, _SIZES["ATN"])),
        ("PHN", _clean(phone, _SIZES["PHN"]) if phone else None),
        ("NAM", first(_name, booked("2.018"), "name")),
        ("DOB", first(_dob, booked("2.022"), "dob")),
        ("SEX", first(_sex, booked("2.024"), "sex")),
        ("POB", first(_pob, booked("2.020"), "pob")),
        ("CUS", "Y"),
        ("OFF", offense),
        ("ARN", _arn(getattr(dhs_subject, "arn", None))),
        ("FBI", fbi),
        ("SID", sid),
        ("REM", _clean(_remarks(dhs_subject, priority), _SIZES["REM"])),
    ]
    header = f"IAQ.{sender}.{IAQ_DESTINATION}.*{control or iaq_control(message_id)}.TXT"
    lines = [header] + [f"{prefix}/{value}." for prefix, value in fields if value]
    return "\n".join(lines) + "\n"


# -- reading Nlets text ---------------------------------------------------------------------------


def _as_text(data, what: str) -> str:
    if isinstance(data, bytes | bytearray | memoryview):
        data = bytes(data)
        if len(data) > MAX_IAR_SIZE:
            raise ValueError(f"{what} is larger than {MAX_IAR_SIZE} bytes")
        try:
            data = data.decode("ascii")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{what} is not 7-bit ASCII (byte {exc.start})") from None
    if not isinstance(data, str):
        raise ValueError(f"{what} must be text, not {type(data).__name__}")
    if len(data) > MAX_IAR_SIZE:
        raise ValueError(f"{what} is longer than {MAX_IAR_SIZE} characters")
    bad = re.search(r"[^\t\n\r\x20-\x7f]", data)
    if bad:
        raise ValueError(f"{what} has a character outside 7-bit text at {bad.start()}")
    return data.replace("\r\n", "\n").replace("\r", "\n").replace("\x7f", "")


def _parse_nlets(data, mke: str) -> dict:
    text = _as_text(data, mke)
    lines = text.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        raise ValueError(f"{mke} is empty")
    first_line = lines[0].strip().upper()
    tokens = first_line.split(".")
    if tokens[0] != mke:
        raise ValueError(f"not an {mke}: message type {tokens[0][:8]!r}")
    if len(tokens) < 2 or not _ORI.fullmatch(tokens[1]):
        raise ValueError(f"{mke} sender ORI must be 9 letters or digits: {first_line[:40]!r}")
    sender = tokens[1]
    destination = control = None
    body_lines: list[str] | None = None
    header = [lines[0].strip()]
    rest = tokens[2:]
    for i, token in enumerate(rest):
        token = token.strip()
        if token == "TXT" or token.startswith("TXT "):
            parts = rest[i + 1 :] if token == "TXT" else [token[4:], *rest[i + 1 :]]
            tail = ".".join(parts)
            body_lines = [tail] + lines[1:]
            break
        if token.startswith("*"):
            control = token[1:]
        elif token and destination is None:
            destination = token
        elif token:
            raise ValueError(f"{mke} header has an unexpected part {token[:20]!r}")
    if body_lines is None:
        for index, line in enumerate(lines[1:], 1):
            stripped = line.strip().upper()
            if stripped == "TXT" or stripped.startswith("TXT "):
                body_lines = [stripped[3:]] + lines[index + 1 :]
                break
            header.append(line.strip())
            time = _HEADER_TIME.fullmatch(stripped)
            if stripped.startswith("*"):
                control = stripped[1:].rstrip(".")
            elif time is not None:
                destination = time.group(1) or destination
            elif stripped:
                raise ValueError(
                    f"{mke} header line {index + 1} is not understood: {stripped[:40]!r}"
                )
        else:
            raise ValueError(f"{mke} has no TXT marker ending its header")
    if control is not None and not _CONTROL.fullmatch(control):
        raise ValueError(f"{mke} control field must be 1-10 letters or digits: {control[:20]!r}")
    body = "\n".join(body_lines).strip()
    field_list = [(m.group(1), m.group(2).strip()) for m in _FIELD.finditer(body)]
    fields: dict[str, str] = {}
    for prefix, value in field_list:
        fields.setdefault(prefix, value)
    return {
        "type": mke,
        "sender_ori": sender,
        "destination": destination,
        "control": control,
        "header": header,
        "fields": fields,
        "field_list": field_list,
        "text": body,
    }


def parse_iar(text) -> dict:
    """An Immigration Alien Response as a dict.

    Keys: ``type`` ("IAR"), ``sender_ori``, ``destination`` (or None), ``control`` (the IAQ's
    control field echoed back, or None), ``header`` (its lines), ``fields`` (prefix -> first value),
    ``field_list`` (every ``(prefix, value)`` in order), ``text`` (everything after TXT).  Anything
    that is not an IAR (wrong type, not 7-bit text, no sender ORI, no TXT, bad control field, over
    64 KiB) raises ``ValueError`` saying why, and nothing else.
    """
    return _parse_nlets(text, "IAR")


def parse_iaq(text) -> dict:
    """An IAQ (ours or another's) in the same dict form as :func:`parse_iar`."""
    return _parse_nlets(text, "IAQ")


def iar_refers_to(iar: dict, message_id) -> bool:
    """Whether a parsed IAR answers the IAQ sent for gateway message ``message_id``."""
    return bool(iar.get("control")) and iar.get("control") == iaq_control(message_id)


def build_iar(iaq_text: str, *, text: str | Iterable[str], lesc_ori: str = LESC_ORI) -> str:
    """An IAR answering ``iaq_text`` as the LESC would (for test peers and replays).

    Addressed to the IAQ's sender, echoing its control field; ``text`` is the response narrative
    (lines or one string) placed after TXT as it is.
    """
    query = parse_iaq(iaq_text)
    body = text if isinstance(text, str) else "\n".join(text)
    control = f".*{query['control']}" if query["control"] else ""
    return f"IAR.{lesc_ori}.{query['sender_ori']}{control}.TXT\n{body.rstrip()}\n"


# -- SRE lines ------------------------------------------------------------------------------------


def dhs_messages(dhs_subject, priority: PriorityResult) -> list[str]:
    """The 2.060 MSG lines of an SRE reporting a DHS match (informative only, <= 300 chars each)."""
    status = _clean(getattr(dhs_subject, "immigration_status", None) or "NOT RECORDED")
    lines = [
        f"DHS IDENT MATCH: SUBJECT ID {_clean(dhs_subject.dhs_id)}",
        f"IMMIGRATION STATUS: {status}",
        (
            f"ICE LESC NOTIFIED, PRIORITY LEVEL {priority.level}"
            if priority.level is not None
            else "ICE LESC NOTIFIED, NO LEVEL: NOT A CRIMINAL ALIEN (NO CONVICTIONS)"
        ),
    ]
    return [line[:MSG_MAX] for line in lines]
