"""Synthetic CAR transactions: Type-1, an EBTS Type-2 of invented demographics, 10 rolled Type-14.

The subject is made up from the identity number: a name combined at random from short lists of
common given names and surnames, plausible but invented physical descriptors and an arrest
segment.  No Social Security number is produced (2.016 SOC is omitted), and 2.056 ICO states that
the subject is synthetic.  The Type-2 field list follows the EBTS 9.1 CAR requirements (mandatory:
2.005 RET, 2.018 NAM, 2.020 POB, 2.022 DOB, 2.024 SEX, 2.025 RAC, 2.027 HGT, 2.029 WGT, 2.031
EYE, 2.032 HAI, 2.045 DOA, 2.047 ASL, 2.073 CRI).  Fingerprints are impression ``impression`` of
positions 1-10 of the identity (:func:`gateway.synth.finger`), WSQ-compressed with the ``wsq``
Pillow plugin (its encoder has no options: it targets 0.75 bit per pixel at 500 ppi).
"""

from __future__ import annotations

import datetime as _dt
import io

import numpy as np

#: Domain tag of the demographics random stream (see masterprint for the others).
DEMOGRAPHICS_STREAM = 3

MALE_NAMES = (
    "JAMES", "JOHN", "ROBERT", "MICHAEL", "WILLIAM", "DAVID", "RICHARD", "JOSEPH", "THOMAS",
    "CHARLES", "CHRISTOPHER", "DANIEL", "MATTHEW", "ANTHONY", "MARK", "DONALD", "STEVEN", "PAUL",
    "ANDREW", "JOSHUA", "KEVIN", "BRIAN", "GEORGE", "EDWARD", "RONALD", "TIMOTHY", "JASON",
    "JEFFREY", "RYAN", "JACOB", "GARY", "NICHOLAS", "ERIC", "JOSE", "CARLOS", "LUIS", "JUAN",
)  # fmt: skip
FEMALE_NAMES = (
    "MARY", "PATRICIA", "JENNIFER", "LINDA", "ELIZABETH", "BARBARA", "SUSAN", "JESSICA", "SARAH",
    "KAREN", "LISA", "NANCY", "BETTY", "MARGARET", "SANDRA", "ASHLEY", "KIMBERLY", "EMILY",
    "DONNA", "MICHELLE", "CAROL", "AMANDA", "MELISSA", "DEBORAH", "MARIA", "ANA", "ROSA",
)  # fmt: skip
SURNAMES = (
    "SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "RODRIGUEZ",
    "MARTINEZ", "HERNANDEZ", "LOPEZ", "GONZALEZ", "WILSON", "ANDERSON", "THOMAS", "TAYLOR",
    "MOORE", "JACKSON", "MARTIN", "LEE", "PEREZ", "THOMPSON", "WHITE", "HARRIS", "SANCHEZ",
    "CLARK", "RAMIREZ", "LEWIS", "ROBINSON", "WALKER", "YOUNG", "ALLEN", "KING", "WRIGHT",
    "SCOTT", "TORRES", "NGUYEN", "HILL", "FLORES", "GREEN", "ADAMS", "NELSON", "BAKER",
)  # fmt: skip
LETTERS = "ABCDEFGHJKLMNPRSTW"

#: Places of birth (NCIC codes from the EBTS 9.1 POB/CTZ tables): US states, then countries.
US_STATES = ("NY", "CA", "TX", "FL", "IL", "PA", "OH", "GA", "NC", "MI", "AZ", "WA")
FOREIGN = ("MM", "GT", "EL", "HD", "DR", "CB", "II", "PI", "CD")
RACES = (("W", 0.62), ("B", 0.28), ("A", 0.04), ("I", 0.03), ("U", 0.03))
EYES = (("BRO", 0.55), ("BLU", 0.2), ("HAZ", 0.1), ("GRN", 0.08), ("GRY", 0.03), ("BLK", 0.04))
HAIR = (("BLK", 0.38), ("BRO", 0.38), ("BLN", 0.1), ("RED", 0.03), ("GRY", 0.06), ("BAL", 0.05))
SCARS = ("SC L ARM", "SC R ARM", "SC CHK", "SC BACK", "SC L CALF", "SC R CALF")
#: Arrest offences: NCIC category generic codes (``xx99``) with a literal.
OFFENSES = (
    ("1399", "ASSAULT", 0.22),
    ("2399", "LARCENY", 0.17),
    ("3599", "DANGEROUS DRUGS", 0.16),
    ("5499", "TRAFFIC OFFENSES", 0.12),
    ("2299", "BURGLARY", 0.08),
    ("4899", "OBSTRUCTING POLICE", 0.06),
    ("2699", "FRAUD", 0.05),
    ("5299", "WEAPON OFFENSES", 0.05),
    ("2499", "STOLEN VEHICLE", 0.04),
    ("1299", "ROBBERY", 0.03),
    ("1099", "KIDNAPPING", 0.01),
    ("0999", "HOMICIDE", 0.01),
)
#: Default agencies: a fictitious booking ORI and the FBI CJIS destination.
DEFAULT_ORI = "NY0303000"
DEFAULT_DAI = "WVIAFIS0Z"


def _letters(number: int) -> str:
    """``number`` written in base 26 with the letters A-Z (at least five of them): no digits."""
    out = ""
    while number or len(out) < 5:
        number, digit = divmod(number, 26)
        out = chr(ord("A") + digit) + out
    return out


def _pick(rng: np.random.Generator, table) -> str:
    codes = [c for c, _ in table]
    p = np.array([w for _, w in table], dtype=float)
    return codes[int(rng.choice(len(codes), p=p / p.sum()))]


def demographics(identity: int) -> dict[str, object]:
    """The invented subject of ``identity``: a dict of Type-2 values by mnemonic (deterministic).

    Keys: NAM, SEX, RAC, DOB, POB, CTZ, HGT, WGT, EYE, HAI, SMT (list), DOA, OFFENSES (list of
    ``(date of offence, NCIC code, literal)``), OCA.
    """
    if identity < 0:
        raise ValueError("identity must be non-negative")
    rng = np.random.default_rng(np.random.SeedSequence([DEMOGRAPHICS_STREAM, int(identity)]))
    sex = "M" if rng.random() < 0.74 else "F"
    given = rng.choice(MALE_NAMES if sex == "M" else FEMALE_NAMES)
    name = f"{rng.choice(SURNAMES)}, {given} {rng.choice(list(LETTERS))}"
    race = _pick(rng, RACES)
    arrest = _dt.date(2020, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 6 * 365)))
    age_days = int(rng.integers(18 * 365 + 5, 70 * 365))
    birth = arrest - _dt.timedelta(days=age_days)
    if rng.random() < 0.8:
        pob, ctz = str(rng.choice(US_STATES)), "US"
    else:
        pob = str(rng.choice(FOREIGN))
        ctz = pob if rng.random() < 0.8 else "US"
    inches = int(np.clip(np.rint(rng.normal(70 if sex == "M" else 64.5, 3.0)), 56, 83))
    height = f"{inches // 12}{inches % 12:02d}"
    weight = int(np.clip(np.rint(rng.normal(185 if sex == "M" else 150, 30)), 95, 380))
    n_off = 1 + int(rng.random() < 0.3) + int(rng.random() < 0.1)
    probs = np.array([w for *_, w in OFFENSES])
    offenses = []
    for k in rng.choice(len(OFFENSES), size=n_off, replace=False, p=probs / probs.sum()):
        code, literal, _ = OFFENSES[int(k)]
        when = arrest - _dt.timedelta(days=int(rng.integers(0, 30)))
        offenses.append((when.strftime("%Y%m%d"), code, literal))
    scars = sorted({str(s) for s in rng.choice(SCARS, size=int(rng.integers(0, 3)))})
    return {
        "NAM": name,
        "SEX": sex,
        "RAC": race,
        "DOB": birth.strftime("%Y%m%d"),
        "POB": pob,
        "CTZ": ctz,
        "HGT": height,
        "WGT": f"{weight:03d}",
        "EYE": _pick(rng, EYES),
        "HAI": _pick(rng, HAIR),
        "SMT": scars,
        "DOA": arrest.strftime("%Y%m%d"),
        "OFFENSES": offenses,
        "OCA": "SYN" + _letters(identity),
    }


def wsq_bytes(pixels: np.ndarray) -> bytes:
    """WSQ-encode an 8-bit grey image with the ``wsq`` Pillow plugin (0.75 bpp, 500 ppi)."""
    import wsq  # noqa: F401 - registers the WSQ codec with Pillow
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buffer, "WSQ")
    return buffer.getvalue()


def car_transaction(
    identity: int,
    impression: int = 0,
    *,
    ori: str = DEFAULT_ORI,
    dai: str = DEFAULT_DAI,
    tcn: str | None = None,
    dat: str | None = None,
    ver: str = "0400",
):
    """A CAR (criminal tenprint submission, answer required) for the synthetic ``identity``.

    Type-1 (TOT CAR, native scanning resolution 19.69 ppmm), Type-2 with the invented
    demographics of :func:`demographics`, and ten Type-14 rolled impressions (FGP 1-10, WSQ20).
    ``tcn`` defaults to ``SYN`` + identity + impression and ``dat`` to the arrest date.
    """
    from gateway.ansinist import Transaction

    from . import PPI, finger

    subject = demographics(identity)
    date = dat or str(subject["DOA"])
    txn = Transaction.new(
        tot="CAR",
        dai=dai,
        ori=ori,
        tcn=tcn or f"SYN{identity:010d}{impression:03d}",
        dat=date,
        ver=ver,
        pry="4",
        nsr="19.69",
        ntr="19.69",
        dom=("NORAM", ""),
    )
    t2 = txn.add_record(2)
    t2["2.005"] = "Y"
    t2["2.009"] = str(subject["OCA"])
    t2["2.018"] = str(subject["NAM"])
    t2["2.020"] = str(subject["POB"])
    t2["2.021"] = str(subject["CTZ"])
    t2["2.022"] = str(subject["DOB"])
    t2["2.024"] = str(subject["SEX"])
    t2["2.025"] = str(subject["RAC"])
    if subject["SMT"]:
        t2["2.026"] = list(subject["SMT"])  # type: ignore[call-overload]
    t2["2.027"] = str(subject["HGT"])
    t2["2.029"] = str(subject["WGT"])
    t2["2.031"] = str(subject["EYE"])
    t2["2.032"] = str(subject["HAI"])
    t2["2.045"] = str(subject["DOA"])
    t2["2.047"] = [
        (when, f"{literal} - NCIC {code}")
        for when, code, literal in subject["OFFENSES"]  # type: ignore[attr-defined]
    ]
    t2["2.056"] = "SYNTHETIC TEST SUBJECT - NOT A REAL PERSON"
    t2["2.073"] = ori
    for position in range(1, 11):
        pixels = finger(identity, position, impression)
        height, width = pixels.shape
        t14 = txn.add_record(14)
        t14["14.003"] = "1"  # rolled, live-scan
        t14["14.004"] = ori
        t14["14.005"] = date
        t14["14.006"] = str(width)
        t14["14.007"] = str(height)
        t14["14.008"] = "1"  # pixels per inch
        t14["14.009"] = str(PPI)
        t14["14.010"] = str(PPI)
        t14["14.011"] = "WSQ20"
        t14["14.012"] = "8"
        t14["14.013"] = str(position)
        t14["14.999"] = wsq_bytes(pixels)
    return txn
