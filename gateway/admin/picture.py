"""The match picture of a hit, drawn in a worker process (no Twisted here: picklable, pure).

For a submission whose FBI (or DHS) search hit, :func:`match_picture` decodes the probe's
finger images, takes the candidate's templates from the gallery (galleries keep templates, not
images, so the candidate side is its minutiae on a blank card at the same 500 ppi scale),
compares each finger both hold with :func:`gateway.matcher.compare_detail` and draws the best
one with :func:`gateway.commands.match.draw`: probe left, candidate right, paired minutiae in
red joined by green lines, the score and the decision threshold in the caption.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, cast

import numpy as np

MAX_SIDE = 1200  # pixels of the candidate's blank card, at most


def gallery_threshold(path: str | None, fingers: int) -> float | None:
    """The calibrated decision threshold of a probe of ``fingers`` fingers (the gallery's
    ``index.json``: per finger count, else its single threshold), None when unknown."""
    if not path:
        return None
    try:
        with open(Path(path) / "index.json", encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError):
        return None
    thresholds = index.get("thresholds") or {}
    value = thresholds.get(str(fingers), index.get("threshold"))
    return float(value) if isinstance(value, int | float) else None


def match_picture(
    payload: bytes,
    gallery_path: str,
    journal_path: str | None,
    leg: str,
    candidate: str,
    positions: tuple[int, ...],
    threshold: float | None,
    key_file: str | None = None,
) -> dict:
    """``{"png": bytes, "position": FGP, "score": float, "pairs": int}`` of the best-scoring
    finger of the probe against ``candidate``; ``{"error": text}`` when nothing can be drawn."""
    from gateway.ansinist import read
    from gateway.commands.match import draw
    from gateway.imaging import ImagingError, decode_record, finger_position, ntr_of, to_500ppi
    from gateway.matcher import compare_detail, extract
    from gateway.routing.processing import load_gallery

    try:
        txn = read(payload)
    except Exception:  # noqa: BLE001 - any unreadable payload: no picture
        return {"error": "the submission does not decode"}
    gallery = load_gallery(gallery_path, journal_path, leg, key_file=key_file)
    if candidate not in gallery:
        return {"error": "the candidate is no longer in the gallery"}
    enrolled = set(gallery.positions(candidate))
    ntr = ntr_of(txn)
    best = None
    seen: set[int] = set()
    for record in txn.records:
        if record.type not in (4, 14):
            continue
        fgp = finger_position(record)
        if fgp is None or fgp not in enrolled or fgp in seen:
            continue
        if positions and fgp not in positions:
            continue
        seen.add(fgp)
        try:
            image = to_500ppi(decode_record(record, ntr=ntr))
        except (ImagingError, ValueError):
            continue
        probe = extract(image.pixels, 500)
        other = gallery.template(candidate, fgp)
        if other is None:
            continue
        detail = compare_detail(probe, other)
        if best is None or detail["score"] > best[3]["score"]:
            best = (fgp, image.pixels, (probe, other), detail)
    if best is None:
        return {"error": "no finger of the probe is enrolled for the candidate"}
    fgp, pixels, templates, detail = best
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    extent = templates[1].minutiae[:, :2].max(axis=0) if len(templates[1].minutiae) else (0, 0)
    width = int(min(MAX_SIDE, max(pixels.shape[1], extent[0] + 40)))
    height = int(min(MAX_SIDE, max(pixels.shape[0], extent[1] + 40)))
    blank = np.full((height, width), 255, np.uint8)
    out = io.BytesIO()
    # draw() hands its first argument to PIL's Image.save, which takes a file object too
    draw(cast(Any, out), ((pixels, 500), (blank, 500)), templates, detail)
    if threshold is not None:
        _caption(out, f"FGP {fgp}; threshold {threshold:.4f}; candidate (right): gallery minutiae")
    return {
        "png": out.getvalue(),
        "position": fgp,
        "score": detail["score"],
        "pairs": len(detail["pairs"]),
    }


def _caption(buffer: io.BytesIO, text: str) -> None:
    """Add a second caption line under draw()'s first one."""
    from PIL import Image, ImageDraw

    buffer.seek(0)
    image = Image.open(buffer).convert("RGB")
    canvas = Image.new("RGB", (image.width, image.height + 16), "white")
    canvas.paste(image, (0, 16))
    ImageDraw.Draw(canvas).text((4, 2), text, fill="black")
    buffer.seek(0)
    buffer.truncate()
    canvas.save(buffer, "PNG")
