"""Biographic records of gallery subjects: FBI subjects with criminal histories, DHS subjects.

The fingerprint templates of the FBI and DHS galleries live in ``gateway.matcher``; this module
keeps the biographic side beside them, keyed by the same subject id (FBI UCN, DHS IDENT id):

- :class:`FbiSubject`: UCN, name, DOB, sex, place of birth and a criminal history of
  :class:`ArrestEvent` (date, ORI, offenses with NCIC codes, dispositions);
- :class:`DhsSubject`: DHS id (IDENT FIN / encounter id), immigration status, name, DOB ...;
- :class:`SubjectStore`: a JSON-lines file of such records (append-only; the last line of an id
  wins; :meth:`SubjectStore.compact` rewrites it);
- :func:`synthetic_fbi_subject` / :func:`synthetic_dhs_subject`: deterministic SYNTHETIC subjects
  for demos and tests, with invented names and histories (marked ``synthetic``); never real people.

Dates are ISO ``YYYY-MM-DD`` strings.  ``from_dict`` raises ``ValueError`` naming the bad key.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from .offenses import describe

# -- records --------------------------------------------------------------------------------------


def _req_str(data: Mapping, key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}.{key}: must be a non-empty string, not {value!r}")
    return value


def _opt_str(data: Mapping, key: str, where: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{where}.{key}: must be a string or null, not {value!r}")
    return value


def _opt_date(data: Mapping, key: str, where: str) -> str | None:
    value = _opt_str(data, key, where)
    if value is not None:
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{where}.{key}: must be a date YYYY-MM-DD, not {value!r}") from None
    return value


def _list(data: Mapping, key: str, where: str) -> list:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"{where}.{key}: must be a list, not {type(value).__name__}")
    return value


def _mapping(value, where: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: must be an object, not {type(value).__name__}")
    return value


@dataclass(frozen=True)
class Offense:
    """One charged offense: NCIC offense code and the literal as recorded."""

    code: str
    literal: str = ""

    def to_dict(self) -> dict:
        return {"code": self.code, "literal": self.literal}

    @classmethod
    def from_dict(cls, data, where: str = "offense") -> Offense:
        data = _mapping(data, where)
        return cls(_req_str(data, "code", where), _opt_str(data, "literal", where) or "")


@dataclass(frozen=True)
class Disposition:
    """The disposition of an offense (``offense_code`` None: of every offense of the arrest)."""

    offense_code: str | None
    disposition: str  # CONVICTED, DISMISSED, ACQUITTED, PENDING, DEFERRED ...
    date: str | None = None

    def to_dict(self) -> dict:
        return {
            "offense_code": self.offense_code,
            "disposition": self.disposition,
            "date": self.date,
        }

    @classmethod
    def from_dict(cls, data, where: str = "disposition") -> Disposition:
        data = _mapping(data, where)
        return cls(
            _opt_str(data, "offense_code", where),
            _req_str(data, "disposition", where),
            _opt_date(data, "date", where),
        )


@dataclass(frozen=True)
class ArrestEvent:
    """One arrest cycle of a criminal history."""

    date: str | None
    ori: str | None
    offenses: tuple[Offense, ...] = ()
    dispositions: tuple[Disposition, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "offenses", tuple(self.offenses))
        object.__setattr__(self, "dispositions", tuple(self.dispositions))

    def to_dict(self) -> dict:
        return {
            "date": self.date,
            "ori": self.ori,
            "offenses": [o.to_dict() for o in self.offenses],
            "dispositions": [d.to_dict() for d in self.dispositions],
        }

    @classmethod
    def from_dict(cls, data, where: str = "event") -> ArrestEvent:
        data = _mapping(data, where)
        return cls(
            _opt_date(data, "date", where),
            _opt_str(data, "ori", where),
            tuple(
                Offense.from_dict(o, f"{where}.offenses[{i}]")
                for i, o in enumerate(_list(data, "offenses", where))
            ),
            tuple(
                Disposition.from_dict(d, f"{where}.dispositions[{i}]")
                for i, d in enumerate(_list(data, "dispositions", where))
            ),
        )


@dataclass(frozen=True)
class FbiSubject:
    """A subject of the FBI repository (UCN) with a criminal history."""

    ucn: str
    name: str  # "LAST,FIRST MIDDLE" as in EBTS 2.018 NAM
    dob: str | None = None
    sex: str | None = None  # EBTS/NCIC: M, F, X, U
    pob: str | None = None  # NCIC place-of-birth code
    history: tuple[ArrestEvent, ...] = ()
    sid: str | None = None  # state identification number, when known
    synthetic: bool = False

    kind = "fbi"

    def __post_init__(self):
        object.__setattr__(self, "history", tuple(self.history))

    @property
    def id(self) -> str:
        return self.ucn

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "ucn": self.ucn,
            "name": self.name,
            "dob": self.dob,
            "sex": self.sex,
            "pob": self.pob,
            "sid": self.sid,
            "synthetic": self.synthetic,
            "history": [e.to_dict() for e in self.history],
        }

    @classmethod
    def from_dict(cls, data, where: str = "fbi_subject") -> FbiSubject:
        data = _mapping(data, where)
        if data.get("kind", cls.kind) != cls.kind:
            raise ValueError(f"{where}.kind: expected {cls.kind!r}, not {data.get('kind')!r}")
        return cls(
            ucn=_req_str(data, "ucn", where),
            name=_req_str(data, "name", where),
            dob=_opt_date(data, "dob", where),
            sex=_opt_str(data, "sex", where),
            pob=_opt_str(data, "pob", where),
            history=tuple(
                ArrestEvent.from_dict(e, f"{where}.history[{i}]")
                for i, e in enumerate(_list(data, "history", where))
            ),
            sid=_opt_str(data, "sid", where),
            synthetic=bool(data.get("synthetic", False)),
        )


@dataclass(frozen=True)
class DhsSubject:
    """A subject of the DHS repository (IDENT)."""

    dhs_id: str  # IDENT FIN / encounter id: the 2.2037 ESI of the SRE
    immigration_status: str | None
    name: str | None
    dob: str | None = None
    sex: str | None = None
    pob: str | None = None  # NCIC place-of-birth code
    arn: str | None = None  # Alien Registration Number (8-9 digits), when known
    synthetic: bool = False

    kind = "dhs"

    @property
    def id(self) -> str:
        return self.dhs_id

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "dhs_id": self.dhs_id,
            "immigration_status": self.immigration_status,
            "name": self.name,
            "dob": self.dob,
            "sex": self.sex,
            "pob": self.pob,
            "arn": self.arn,
            "synthetic": self.synthetic,
        }

    @classmethod
    def from_dict(cls, data, where: str = "dhs_subject") -> DhsSubject:
        data = _mapping(data, where)
        if data.get("kind", cls.kind) != cls.kind:
            raise ValueError(f"{where}.kind: expected {cls.kind!r}, not {data.get('kind')!r}")
        return cls(
            dhs_id=_req_str(data, "dhs_id", where),
            immigration_status=_opt_str(data, "immigration_status", where),
            name=_req_str(data, "name", where),
            dob=_opt_date(data, "dob", where),
            sex=_opt_str(data, "sex", where),
            pob=_opt_str(data, "pob", where),
            arn=_opt_str(data, "arn", where),
            synthetic=bool(data.get("synthetic", False)),
        )


Subject = FbiSubject | DhsSubject
_KINDS: dict[str, type[FbiSubject] | type[DhsSubject]] = {"fbi": FbiSubject, "dhs": DhsSubject}


def subject_from_dict(data, where: str = "subject") -> Subject:
    """An :class:`FbiSubject` or :class:`DhsSubject` from its ``to_dict()`` form (by ``kind``)."""
    data = _mapping(data, where)
    kind = data.get("kind")
    if kind not in _KINDS:
        raise ValueError(f"{where}.kind: must be 'fbi' or 'dhs', not {kind!r}")
    return _KINDS[kind].from_dict(data, where)


# -- store ----------------------------------------------------------------------------------------


class SubjectStore:
    """Subject records in a JSON-lines file, keyed by subject id (UCN or DHS id).

    Each :meth:`put` appends one line (``{"kind": ..., ...}``) and each :meth:`remove` a
    tombstone (``{"kind": ..., "id": ..., "deleted": true}``); on open the last line of an id wins.
    A final line without its newline (a write cut short) is ignored; any other unreadable line
    raises ``ValueError`` naming the file and line.  :meth:`compact` rewrites the file atomically.
    Not safe for several writers at once: one process owns a store.
    """

    def __init__(self, path: str | os.PathLike, *, durable: bool = True):
        self.path = Path(path)
        self.durable = durable
        self._subjects: dict[str, Subject] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        torn = lines.pop() if lines else b""  # text after the last newline: a torn write
        del torn
        for lineno, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            where = f"{self.path}:{lineno}"
            try:
                item = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise ValueError(f"{where}: not a JSON line ({exc})") from None
            if isinstance(item, Mapping) and item.get("deleted") is True:
                self._subjects.pop(_req_str(item, "id", where), None)
                continue
            subject = subject_from_dict(item, where)
            self._subjects[subject.id] = subject

    def _append(self, item: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(item, ensure_ascii=True, separators=(",", ":")) + "\n"
        with self.path.open("ab") as f:
            f.write(line.encode("ascii"))
            f.flush()
            if self.durable:
                os.fsync(f.fileno())

    def put(self, subject: Subject) -> None:
        if not isinstance(subject, FbiSubject | DhsSubject):
            raise TypeError("put() takes an FbiSubject or a DhsSubject")
        self._append(subject.to_dict())
        self._subjects[subject.id] = subject

    def remove(self, subject_id: str) -> bool:
        subject = self._subjects.pop(subject_id, None)
        if subject is None:
            return False
        self._append({"kind": subject.kind, "id": subject_id, "deleted": True})
        return True

    def get(self, subject_id: str, default=None) -> Subject | None:
        return self._subjects.get(subject_id, default)

    def __getitem__(self, subject_id: str) -> Subject:
        return self._subjects[subject_id]

    def __contains__(self, subject_id) -> bool:
        return subject_id in self._subjects

    def __iter__(self) -> Iterator[Subject]:
        return iter(list(self._subjects.values()))

    def __len__(self) -> int:
        return len(self._subjects)

    def compact(self) -> None:
        """Rewrite the file with one line per live subject (temporary file, fsync, rename)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("wb") as f:
            for subject in self._subjects.values():
                line = json.dumps(subject.to_dict(), ensure_ascii=True, separators=(",", ":"))
                f.write(line.encode("ascii") + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


# -- synthetic subjects ---------------------------------------------------------------------------

# Common given names and surnames, combined at random: invented people.  Records made here carry
# synthetic=True and an "X" middle initial.
_FIRST_M = ("JOHN", "JAMES", "CARLOS", "LUIS", "DAVID", "MICHAEL", "JOSE", "PETER", "ALI", "KWAME")
_FIRST_F = ("MARY", "MARIA", "ANNA", "LINDA", "SARAH", "ROSA", "ELENA", "GRACE", "AMINA", "LIN")
_LAST = (
    "SMITH",
    "JOHNSON",
    "GARCIA",
    "MARTINEZ",
    "BROWN",
    "LOPEZ",
    "NGUYEN",
    "KOWALSKI",
    "OKAFOR",
    "PATEL",
    "MILLER",
    "HERNANDEZ",
)
# NCIC place-of-birth codes (NIEM fbi:POBCodeSimpleType): GT Guatemala, HD Honduras, EL El Salvador,
# MM Mexico, DR Dominican Republic, PI Philippines, JM Jamaica, PO Poland, NG Nigeria, II India,
# CA California, TX Texas.
_POB = ("GT", "HD", "EL", "MM", "DR", "PI", "JM", "PO", "NG", "II", "CA", "TX")
_STATUSES = (
    "LAWFUL PERMANENT RESIDENT",
    "NONIMMIGRANT VISA HOLDER",
    "REFUGEE OR ASYLEE",
    "NATURALIZED CITIZEN",
    "STATUS UNDETERMINED",
)
_ORIS = ("NY0303000", "NY0400000", "CA0194200", "TX2270000")


@dataclass(frozen=True)
class SyntheticProfile:
    """A criminal-history pattern: arrest events of (NCIC code, final disposition) charges, and the
    priority level the default offense table gives it."""

    events: tuple[tuple[tuple[str, str], ...], ...]
    level: int | None


# Every level, and the cases that must give none (charges only, pending, deferred).
SYNTHETIC_PROFILES: dict[str, SyntheticProfile] = {
    "homicide_convicted": SyntheticProfile(((("0911", "CONVICTED"),),), 1),
    "drug_sale_convicted": SyntheticProfile(
        ((("3562", "DISMISSED"),), (("3530", "CONVICTED"),)), 1
    ),
    "drug_possession_convicted": SyntheticProfile(
        ((("3562", "CONVICTED"),), (("3532", "CONVICTED"),)), 3
    ),
    "robbery_charged_only": SyntheticProfile(
        ((("1204", "DISMISSED"),), (("1299", "ACQUITTED"),)), None
    ),
    "burglary_convicted": SyntheticProfile(((("2204", "CONVICTED"), ("2399", "DISMISSED")),), 2),
    "fraud_and_dui_convicted": SyntheticProfile(
        ((("5404", "CONVICTED"),), (("2699", "CONVICTED"),)), 2
    ),
    "assault_pending": SyntheticProfile(((("1399", "PENDING"),),), None),
    "traffic_convicted": SyntheticProfile(((("5404", "CONVICTED"),),), 3),
    "kidnap_deferred_larceny_convicted": SyntheticProfile(
        ((("1006", "DEFERRED"),), (("2399", "CONVICTED"),)), 2
    ),
    "no_history": SyntheticProfile((), None),
}
_PROFILE_NAMES = tuple(SYNTHETIC_PROFILES)


def _rng(kind: str, subject_id: str, seed: int) -> random.Random:
    # A str seed is hashed with SHA-512 by random.Random: the same on every run and platform.
    return random.Random(f"{kind}:{subject_id}:{seed}")


def _person(rng: random.Random) -> tuple[str, str, str]:
    sex = rng.choice("MF")
    first = rng.choice(_FIRST_M if sex == "M" else _FIRST_F)
    name = f"{rng.choice(_LAST)},{first} X"
    dob = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(365 * 50))
    return name, dob.isoformat(), sex


def synthetic_fbi_subject(ucn: str, seed: int = 0, *, profile: str | None = None) -> FbiSubject:
    """An invented FBI subject with a criminal history (deterministic in ``ucn`` and ``seed``).

    ``profile`` (a key of :data:`SYNTHETIC_PROFILES`) picks the history; by default it is drawn.
    """
    rng = _rng("fbi", ucn, seed)
    name, dob, sex = _person(rng)
    pob = rng.choice(_POB)
    chosen = profile or rng.choice(_PROFILE_NAMES)
    if chosen not in SYNTHETIC_PROFILES:
        raise ValueError(
            f"unknown synthetic profile {chosen!r}; one of {', '.join(_PROFILE_NAMES)}"
        )
    born = dt.date.fromisoformat(dob)
    day = born + dt.timedelta(days=365 * 19 + rng.randrange(365 * 10))
    history = []
    for charges in SYNTHETIC_PROFILES[chosen].events:
        arrest = day
        offenses = tuple(Offense(code, describe(code) or "") for code, _ in charges)
        disposed = arrest + dt.timedelta(days=30 + rng.randrange(300))
        dispositions = tuple(
            Disposition(
                code, disposition, None if disposition == "PENDING" else disposed.isoformat()
            )
            for code, disposition in charges
        )
        history.append(ArrestEvent(arrest.isoformat(), rng.choice(_ORIS), offenses, dispositions))
        day = disposed + dt.timedelta(days=200 + rng.randrange(900))
    sid = f"NY{rng.randrange(10**7, 10**8)}"
    return FbiSubject(ucn, name, dob, sex, pob, tuple(history), sid=sid, synthetic=True)


def synthetic_dhs_subject(dhs_id: str, seed: int = 0) -> DhsSubject:
    """An invented DHS subject (deterministic in ``dhs_id`` and ``seed``)."""
    rng = _rng("dhs", dhs_id, seed)
    name, dob, sex = _person(rng)
    arn = f"{rng.randrange(10**8, 10**9):09d}" if rng.random() < 0.6 else None
    return DhsSubject(
        dhs_id=dhs_id,
        immigration_status=rng.choice(_STATUSES),
        name=name,
        dob=dob,
        sex=sex,
        pob=rng.choice(_POB),
        arn=arn,
        synthetic=True,
    )


__all__ = [
    "ArrestEvent",
    "DhsSubject",
    "Disposition",
    "FbiSubject",
    "Offense",
    "SYNTHETIC_PROFILES",
    "Subject",
    "SyntheticProfile",
    "SubjectStore",
    "subject_from_dict",
    "synthetic_dhs_subject",
    "synthetic_fbi_subject",
]
