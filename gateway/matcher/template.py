"""The fingerprint template: minutiae plus the print's block mask, serialisable and exportable.

Binary layout (all integers big-endian), version 1::

    magic "GWFT" | version u8 | flags u8 (0) | width u16 | height u16 | source ppi u16 (x10 fixed
    point is not used: whole ppi) | block rows u8 | block cols u8 | minutiae u16 |
    [version 2: ridge period u8 (1/16 pixel at 500 ppi)] |
    [version 3: ridge period u8 (0: unknown) | finger quality u8 (0-100)] |
    n x (x u16, y u16, theta u8 [2 pi / 256], type u8 [1 ending, 2 bifurcation], quality u8
    [0-100]) | cores u8 | cores x (x u16, y u16) | block mask bits (rows x cols, MSB first,
    padded to a byte) | CRC-32 u32 of all preceding bytes

Version 3 is written when the finger quality is known (templates from
:func:`gateway.matcher.extract`), else version 2 when the median ridge period is known, else
version 1; all three are read (a version 1 template has no period, and its comparisons skip the
ridge-period gate of :func:`gateway.matcher.mcc.score`; a version 1 or 2 template has no quality:
``quality`` is None).

Coordinates are pixels at 500 ppi (x right, y down, origin top-left).  The cylinders used by
:func:`gateway.matcher.compare` are recomputed from these values (deterministically) on load.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from typing import Any

import numpy as np

from . import mcc
from .features import BIFURCATION, ENDING, HOP, pixel_mask

MAGIC = b"GWFT"
VERSION = 3  # the newest version written (2 or 1 when the quality or the period is unknown)
_PERIOD_UNIT = 16  # the ridge period is stored in 1/16 pixel (u8: up to 15.9 pixels)
_HEAD = struct.Struct(">4sBBHHHBBH")
_MINUTIA = np.dtype([("x", ">u2"), ("y", ">u2"), ("t", "u1"), ("k", "u1"), ("q", "u1")])
_TYPE9_KIND = {ENDING: "A", BIFURCATION: "B"}


class Template:
    """Minutiae of one finger impression and the descriptors the comparison needs.

    ``minutiae`` is an (n, 5) float array: x, y (pixels at 500 ppi), theta (radians, image
    coordinates), type (1 ridge ending, 2 bifurcation), quality (0..1).  ``period`` is the
    median ridge period in pixels at 500 ppi (0: unknown); ``quality`` the finger quality 0-100
    (:func:`gateway.matcher.features.finger_quality`; None: unknown, older templates).
    """

    __slots__ = (
        "width",
        "height",
        "source_ppi",
        "minutiae",
        "block_mask",
        "cores",
        "period",
        "quality",
        "_prep",
        "_key",
    )

    def __init__(
        self,
        width,
        height,
        minutiae,
        block_mask,
        source_ppi: float = 500.0,
        cores=(),
        period=0.0,
        quality: int | None = None,
    ):
        self.width = int(width)
        self.height = int(height)
        self.source_ppi = float(source_ppi)
        m = np.asarray(minutiae, np.float64).reshape(-1, 5)
        # quantise exactly as serialised, so a round trip never changes a score
        q = np.empty((m.shape[0], 5), np.float64)
        q[:, 0] = np.clip(np.rint(m[:, 0]), 0, 65535)
        q[:, 1] = np.clip(np.rint(m[:, 1]), 0, 65535)
        q[:, 2] = (np.rint(m[:, 2] % (2 * np.pi) / (2 * np.pi) * 256) % 256) * (2 * np.pi / 256)
        q[:, 3] = m[:, 3]
        q[:, 4] = np.clip(np.rint(m[:, 4] * 100), 0, 100) / 100
        self.minutiae = q
        self.block_mask = np.asarray(block_mask, bool)
        c = np.asarray(cores, np.float64).reshape(-1, 2)[:255]
        self.cores = np.clip(np.rint(c), 0, 65535)
        p = float(period) if period and np.isfinite(period) else 0.0
        self.period = min(max(round(p * _PERIOD_UNIT), 0), 255) / _PERIOD_UNIT
        self.quality = None if quality is None else min(max(int(quality), 0), 100)
        self._prep: mcc.Prepared | None = None
        self._key: bytes | None = None

    def __len__(self) -> int:
        return self.minutiae.shape[0]

    def __repr__(self) -> str:
        return f"<Template {self.width}x{self.height} minutiae={len(self)}>"

    def __eq__(self, other) -> bool:
        if not isinstance(other, Template):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]  # equal by value, mutable: not hashable

    # -- comparison support ------------------------------------------------------------------
    @property
    def prepared(self) -> mcc.Prepared:
        """The cylinders and geometry used by :func:`gateway.matcher.compare` (built once)."""
        if self._prep is None:
            m = self.minutiae
            mask = pixel_mask(self.block_mask, (self.height, self.width))
            self._prep = mcc.Prepared(m[:, 0], m[:, 1], m[:, 2], mask, m[:, 4], self.period)
        return self._prep

    def prepare(self) -> Template:
        """Build the comparison descriptors now (they are otherwise built on first use)."""
        _ = self.prepared
        return self

    @property
    def key(self) -> bytes:
        """A digest of the serialised template (orders the operands of a comparison): of its
        version 1 form (without the ridge period, so that the period does not reorder the
        operands of any comparison), then the period in 1/16 pixel."""
        if self._key is None:
            digest = hashlib.blake2b(self._serialise(False), digest_size=8).digest()
            self._key = digest + bytes([int(round(self.period * _PERIOD_UNIT))])
        return self._key

    # -- serialisation -----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The compact binary form (see the module documentation)."""
        return self._serialise(True)

    def _serialise(self, full: bool) -> bytes:
        """The binary form; without ``full``, the version 1 form (no period, no quality)."""
        rows, cols = self.block_mask.shape
        n = len(self)
        period = int(round(self.period * _PERIOD_UNIT)) if full else 0
        quality = self.quality if full else None
        version = 3 if quality is not None else 2 if period else 1
        head = _HEAD.pack(
            MAGIC,
            version,
            0,
            self.width,
            self.height,
            int(round(min(self.source_ppi, 65535))),
            rows,
            cols,
            n,
        )
        if version == 3:
            head += struct.pack(">BB", period, quality)
        elif period:
            head += struct.pack(">B", period)
        rec = np.zeros(n, _MINUTIA)
        m = self.minutiae
        rec["x"] = m[:, 0]
        rec["y"] = m[:, 1]
        rec["t"] = np.rint(m[:, 2] / (2 * np.pi) * 256) % 256
        rec["k"] = m[:, 3]
        rec["q"] = np.rint(m[:, 4] * 100)
        cores = struct.pack(">B", len(self.cores)) + self.cores.astype(">u2").tobytes()
        bits = np.packbits(self.block_mask.ravel()).tobytes()
        body = head + rec.tobytes() + cores + bits
        return body + struct.pack(">I", zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data) -> Template:
        """Parse :meth:`to_bytes` output; anything else raises ValueError."""
        try:
            data = bytes(data)
        except Exception as exc:  # noqa: BLE001 - any non-bytes input is a value error here
            raise ValueError(f"not a template: {type(data).__name__}") from exc
        if len(data) < _HEAD.size + 4:
            raise ValueError("not a template: too short")
        magic, version, _flags, width, height, ppi, rows, cols, n = _HEAD.unpack_from(data)
        if magic != MAGIC:
            raise ValueError("not a template: bad magic")
        if version not in (1, 2, 3):
            raise ValueError(f"unsupported template version {version}")
        start = _HEAD.size + (version - 1)  # the minutiae
        period = data[_HEAD.size] / _PERIOD_UNIT if version >= 2 else 0.0
        if version == 2 and period == 0:
            raise ValueError("template version 2 without a ridge period")
        quality = data[_HEAD.size + 1] if version == 3 else None
        if quality is not None and quality > 100:
            raise ValueError(f"template quality {quality} out of range")
        nbits = rows * cols
        offset = start + n * _MINUTIA.itemsize
        if len(data) < offset + 1:
            raise ValueError("template truncated")
        ncores = data[offset]
        size = offset + 1 + 4 * ncores + (nbits + 7) // 8 + 4
        if len(data) != size:
            raise ValueError(f"template length {len(data)} != {size}")
        (crc,) = struct.unpack_from(">I", data, size - 4)
        if zlib.crc32(data[: size - 4]) != crc:
            raise ValueError("template checksum mismatch")
        if width == 0 or height == 0 or ppi == 0:
            raise ValueError("template has an empty image")
        if rows != -(-height // HOP) + 1 or cols != -(-width // HOP) + 1:
            raise ValueError("template block mask does not fit its image size")
        rec = np.frombuffer(data, _MINUTIA, n, start)
        if n and (
            rec["x"].max() >= width
            or rec["y"].max() >= height
            or not np.isin(rec["k"], (ENDING, BIFURCATION)).all()
            or rec["q"].max() > 100
        ):
            raise ValueError("template minutia out of range")
        cores = np.frombuffer(data, ">u2", 2 * ncores, offset + 1).reshape(-1, 2)
        bits = np.frombuffer(data, np.uint8, (nbits + 7) // 8, offset + 1 + 4 * ncores)
        mask = np.unpackbits(bits)[:nbits].reshape(rows, cols).astype(bool)
        m = np.stack(
            [rec["x"], rec["y"], rec["t"] * (2 * np.pi / 256), rec["k"], rec["q"] / 100.0],
            axis=1,
        ).astype(np.float64)
        return cls(width, height, m, mask, ppi, cores, period, quality)

    # -- ANSI/NIST-ITL Type-9 ---------------------------------------------------------------
    def to_type9_fields(
        self, idc: int = 0, impression: int = 0, position: int = 0, pattern: str = "UC"
    ) -> dict[str, list[tuple[str, ...]]]:
        """Type-9 standard-format minutiae fields (legacy block 9.005-9.012).

        Coordinates are in units of 0.01 mm from the bottom-left corner (y upwards), the
        direction in degrees counter-clockwise from the x axis (0-359).  ``9.001`` LEN and
        ``9.002`` IDC are left to the writer; ``9.008`` CRP lists the cores found (omitted when
        none), ``9.011`` RDG says ridge counts are absent.  Qualities map 0..1 to 2..63.
        """
        rows = []
        for index, (x, y, t, k, q) in enumerate(self.minutiae, start=1):
            deg = int(round(np.degrees(-t))) % 360  # y up: angles turn the other way
            xyt = f"{self._xy(x, y)}{deg:03d}"
            quality = 2 + int(round(q * 61))  # 0 and 1 are reserved (manual / no method)
            rows.append((str(index), xyt, str(quality), _TYPE9_KIND.get(int(k), "D")))
        fields: dict[str, Any] = {
            "9.003": [(str(impression),)],
            "9.004": [("S",)],
            "9.005": [("EBTS-GATEWAY", "A")],
            "9.006": [(str(position),)],
            "9.007": [("T", pattern)],
            "9.008": [(self._xy(x, y),) for x, y in self.cores],
            "9.010": [(str(len(self)),)],
            "9.011": [("0",)],
            "9.012": rows,
        }
        if not self.cores.size:
            del fields["9.008"]
        return fields

    def _xy(self, x, y) -> str:
        """XXXXYYYY: 0.01 mm units from the bottom-left corner."""
        mm100 = 25.4 / 500.0 * 100
        xx = min(int(round(x * mm100)), 9999)
        yy = min(int(round((self.height - 1 - y) * mm100)), 9999)
        return f"{xx:04d}{yy:04d}"


def compare_many(probe: Template, candidates, batches=None) -> np.ndarray:
    """``compare(probe, c)`` for every template ``c`` of ``candidates`` (float64 array), with
    the operands ordered by digest exactly as :func:`gateway.matcher.compare` does.

    The candidates are packed into two :class:`mcc.Batch` (those scored as second operand and
    those scored as first operand), or ``batches`` as returned by :func:`candidate_batches`
    when the same candidates serve several probes.  Scores equal the one-pair ones up to float
    rounding (see :func:`mcc.score_many`).
    """
    candidates = list(candidates)
    if batches is None:
        batches = candidate_batches(candidates, probe.key)
    out = np.zeros(len(candidates))
    for rows, batch, first in batches:
        if rows.size:
            out[rows] = mcc.score_many(probe.prepared, batch, first)
    return out


def candidate_batches(candidates, key: bytes):
    """The candidates packed for :func:`compare_many` with a probe whose digest is ``key``:
    ``[(rows, batch, first), ...]`` where the probe is the first operand when ``first``."""
    second = np.array([key <= c.key for c in candidates], bool)
    out = []
    for first, sel in ((True, second), (False, ~second)):
        rows = np.flatnonzero(sel)
        batch = mcc.Batch.from_prepared([candidates[i].prepared for i in rows])
        out.append((rows, batch, first))
    return out
