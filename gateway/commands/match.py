"""``ebts-gateway match A B [--fgp N] [--json] [--png OUT] [--threshold T | --gallery DIR |
--config FILE]``: the similarity of two fingerprints, the decision, and the evidence for it.

``A`` and ``B`` are each an image file (WSQ, JPEG, JPEG 2000, PNG, TIFF: anything the imaging
package or Pillow reads) or a transaction (either encoding), whose first finger image record
(Type-14 or Type-4) is used, or the one of finger position ``--fgp N``.  Images are brought to
500 ppi from their declared resolution before extraction (an image file without a resolution is
taken to be at 500 ppi).

Prints the score of :func:`gateway.matcher.compare` (0..1, higher is more alike), the decision and
the threshold it was made at, saying which: ``--threshold T``; else with ``--gallery DIR`` the
one-finger threshold of that gallery (its ``thresholds[1]``, calibrated by ``gallery calibrate``
on the scale of its searches: a one-finger search's score is this ``compare`` score); else with
``--config FILE`` the threshold the daemon of that configuration decides with (``[matcher]
threshold`` when set, else the one-finger threshold of its FBI gallery, or of its demo FBI
gallery); else the 1:1 threshold :data:`gateway.matcher.MATCH_THRESHOLD` (FMR 0.1 % on the FVC
sets).  Then the minutiae counts, the number of paired minutiae and the alignment of A onto B
(:func:`gateway.matcher.compare_detail`); ``--json`` prints one object instead.  ``--png OUT``
draws both prints side by side, every minutia marked and the pairs the score rests on joined
(Pillow).  Exit status 0, or 2 when an input, the gallery or the configuration cannot be read,
the gallery has no one-finger threshold on the search's score scale, or OUT cannot be written (a
message on stderr).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

NAME = "match"
HELP = "print the similarity score of two fingerprint images or transactions' fingers"

FINGER_TYPES = (14, 4)
_IMAGE_MAGIC = (
    b"\xff\xa0",  # WSQ
    b"\xff\xd8",  # JPEG
    b"\x89PNG",
    b"II*\x00",
    b"MM\x00*",  # TIFF
    b"\x00\x00\x00\x0cjP  ",  # JP2
    b"\xffO\xffQ",  # J2K codestream
)


class InputError(Exception):
    """An input that cannot be turned into a fingerprint image (message for stderr)."""


def add_arguments(parser) -> None:
    parser.add_argument("a", metavar="A", help="image file or transaction")
    parser.add_argument("b", metavar="B", help="image file or transaction")
    parser.add_argument(
        "--fgp",
        type=int,
        metavar="N",
        help="finger position to take from transactions (default: the first finger image)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--png", metavar="OUT", help="draw both prints side by side with the paired minutiae"
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--threshold",
        type=float,
        metavar="T",
        help="decision threshold on the score (default: the matcher's 1:1 threshold)",
    )
    which.add_argument(
        "--gallery",
        metavar="DIR",
        help="decide at the one-finger threshold of this gallery (or shard set)",
    )
    which.add_argument(
        "--config",
        metavar="FILE",
        help="decide at the threshold of this configuration's daemon ([matcher] threshold, "
        "else its FBI gallery's one-finger threshold)",
    )


def _gallery_threshold(path: str) -> tuple[float, str]:
    """The one-finger threshold of a gallery or shard set and where it came from; raises
    InputError when there is none on the search's score scale."""
    from gateway.matcher import shards
    from gateway.matcher.gallery import Gallery

    try:
        # a shard set in process: its shards mapped, no connection to a cluster
        g = shards.ShardedGallery(path) if shards.is_shard_set(path) else Gallery.load(path)
        problem = g.decision_problem()
    except (ValueError, OSError) as exc:
        raise InputError(str(exc)) from exc
    if problem is not None:
        raise InputError(problem)
    if 1 not in g.thresholds:
        raise InputError(
            f"{path}: no one-finger threshold (calibrated before they were made): run "
            f"`ebts-gateway gallery calibrate {path}`"
        )
    return g.thresholds[1], f"one-finger threshold of gallery {path}"


def _configured_threshold(path: str) -> tuple[float, str]:
    """The threshold the daemon of configuration ``path`` decides a one-finger search with."""
    from gateway.config import ConfigError, load_config

    try:
        config = load_config(path)
    except ConfigError as exc:
        raise InputError(f"{path}: configuration error: {exc}") from exc
    if config.match_threshold is not None:
        return config.match_threshold, f"[matcher] threshold of {path}"
    gallery = config.gallery_fbi
    if gallery is None and config.demo_gallery and config.gallery_dhs is None:
        from gateway.demo import gallery_path

        gallery = gallery_path(config.data_dir, "fbi")
        if not (gallery / "demo.json").exists():
            raise InputError(f"{path}: the demo FBI gallery is not built yet ({gallery})")
    if gallery is None:
        raise InputError(f"{path}: no FBI gallery and no [matcher] threshold configured")
    return _gallery_threshold(str(gallery))


def decision_threshold(args) -> tuple[float, str]:
    """(threshold, what it is) for ``args``; raises InputError."""
    from gateway.matcher import MATCH_THRESHOLD

    if args.threshold is not None:
        return args.threshold, "--threshold"
    if args.gallery is not None:
        return _gallery_threshold(args.gallery)
    if args.config is not None:
        return _configured_threshold(args.config)
    return MATCH_THRESHOLD, "1:1 threshold, FMR 0.1 % on FVC"


def _position(record) -> list[int]:
    tag = "4.004" if record.type == 4 else "14.013"
    field = record.get(tag)
    out = []
    if field is not None:
        for sub in field.subfields:
            for item in sub:
                try:
                    out.append(int(item))
                except ValueError:
                    pass
    return out


def _from_transaction(path: str, data: bytes, fgp: int | None):
    """(pixels, ppi, description) of the chosen finger record of a transaction."""
    from gateway.ansinist import FormatError, read

    try:
        txn = read(data)
    except FormatError as exc:
        raise InputError(f"{path}: not an image or a transaction: {exc.message}") from exc
    for recno, record in enumerate(txn.records, start=1):
        if record.type not in FINGER_TYPES:
            continue
        positions = _position(record)
        if fgp is not None and fgp not in positions:
            continue
        pixels, ppi = _decode_record(path, txn, record, recno)
        where = f"record {recno} (Type-{record.type}, FGP {'/'.join(map(str, positions))})"
        return pixels, ppi, where
    which = f"of finger position {fgp}" if fgp is not None else "(Type-14 or Type-4)"
    raise InputError(f"{path}: no finger image record {which}")


def _decode_record(path: str, txn, record, recno: int):
    try:
        import gateway.imaging as imaging
    except ImportError:  # the imaging package is not there: Pillow on the image field
        imaging = None  # type: ignore[assignment]
    if imaging is not None:
        try:
            image = imaging.decode_record(record, ntr=imaging.ntr_of(txn), recno=recno)
            image = imaging.to_500ppi(image)
        except ValueError as exc:
            raise InputError(f"{path}: {exc}") from exc
        return _gray(image.pixels), image.ppi or 500.0
    field = record.get(f"{record.type}.999") or record.get(f"{record.type}.009")
    if field is None:
        raise InputError(f"{path}: record {recno} has no image data")
    return _pillow(path, bytes(field.raw))


def _gray(pixels):
    import numpy as np

    pixels = np.asarray(pixels)
    if pixels.ndim == 3:
        pixels = pixels[..., :3].mean(axis=2).round().astype(np.uint8)
    return pixels


def _pillow(path: str, data: bytes):
    import io

    import numpy as np
    from PIL import Image

    try:
        import wsq  # noqa: F401 - registers the WSQ plugin with Pillow
    except ImportError:  # pragma: no cover - wsq is a dependency
        pass
    try:
        with Image.open(io.BytesIO(data)) as im:
            dpi = im.info.get("dpi")
            pixels = np.asarray(im.convert("L"))
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for a bad image
        raise InputError(f"{path}: cannot decode the image: {exc}") from exc
    ppi = float(dpi[0]) if dpi and dpi[0] and float(dpi[0]) > 72 else 500.0
    return pixels, ppi


def _from_image(path: str, data: bytes):
    try:
        import gateway.imaging as imaging
    except ImportError:
        imaging = None  # type: ignore[assignment]
    if imaging is not None:
        try:
            image = imaging.load_image_file(path, gray=True)
            if image.ppi:
                image = imaging.to_500ppi(image)
        except ValueError as exc:
            raise InputError(f"{path}: {exc}") from exc
        return _gray(image.pixels), image.ppi or 500.0, "image"
    pixels, ppi = _pillow(path, data)
    return pixels, ppi, "image"


def load(path: str, fgp: int | None):
    """(pixels, ppi, description) of one input; raises InputError."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if not data:
        raise InputError(f"{path}: empty file")
    if data.startswith(_IMAGE_MAGIC):
        return _from_image(path, data)
    return _from_transaction(path, data, fgp)


def draw(path: str, images, templates, detail) -> None:
    """Both prints side by side (A left, B right), minutiae as small marks (ending: circle,
    bifurcation: square, with a tick along the direction), the scored pairs in colour and
    joined by lines.  Coordinates of templates are at 500 ppi; each image is drawn at its own
    resolution."""
    import math

    from PIL import Image, ImageDraw

    (pa, ppi_a), (pb, ppi_b) = images
    ia = Image.fromarray(pa).convert("RGB")
    ib = Image.fromarray(pb).convert("RGB")
    gap = 16
    canvas = Image.new("RGB", (ia.width + gap + ib.width, max(ia.height, ib.height) + 18), "white")
    canvas.paste(ia, (0, 18))
    canvas.paste(ib, (ia.width + gap, 18))
    d = ImageDraw.Draw(canvas)
    offsets = ((0, 18, ppi_a / 500.0), (ia.width + gap, 18, ppi_b / 500.0))

    def point(side, m):
        ox, oy, k = offsets[side]
        return ox + m[0] * k, oy + m[1] * k

    paired = [{i for i, _, _ in detail["pairs"]}, {j for _, j, _ in detail["pairs"]}]
    for side, tpl in enumerate(templates):
        for n, m in enumerate(tpl.minutiae):
            x, y = point(side, m)
            colour = (220, 30, 30) if n in paired[side] else (40, 110, 220)
            r = 4
            box = [x - r, y - r, x + r, y + r]
            (d.ellipse if int(m[3]) == 1 else d.rectangle)(box, outline=colour, width=2)
            d.line([x, y, x + 9 * math.cos(m[2]), y + 9 * math.sin(m[2])], fill=colour, width=2)
    for i, j, _ in detail["pairs"]:
        d.line(
            [point(0, templates[0].minutiae[i]), point(1, templates[1].minutiae[j])],
            fill=(30, 170, 60),
            width=1,
        )
    d.text((4, 3), f"score {detail['score']:.4f}, {len(detail['pairs'])} pairs", fill="black")
    canvas.save(path, "PNG")


def run(args) -> int:
    from gateway.matcher import compare_detail, extract

    try:
        threshold, source = decision_threshold(args)
    except InputError as exc:
        print(f"ebts-gateway: {exc}", file=sys.stderr)
        return 2
    templates = []
    described = []
    images = []
    for path in (args.a, args.b):
        try:
            pixels, ppi, where = load(path, args.fgp)
            templates.append(extract(pixels, ppi))
            images.append((pixels, ppi))
        except InputError as exc:
            print(str(exc), file=sys.stderr)
            return 2
        except ValueError as exc:  # extract refuses the image (too small, not gray)
            print(f"{path}: {exc}", file=sys.stderr)
            return 2
        described.append(where)
    detail = compare_detail(*templates)
    score = detail["score"]
    decision = "match" if score >= threshold else "no match"
    if args.png:
        try:
            draw(args.png, images, templates, detail)
        except OSError as exc:
            print(f"{args.png}: cannot write: {exc.strerror or exc}", file=sys.stderr)
            return 2
    align = detail["alignment"]
    if args.json:
        out = {
            "a": {
                "file": args.a,
                "source": described[0],
                "minutiae": len(templates[0]),
                "quality": templates[0].quality,
            },
            "b": {
                "file": args.b,
                "source": described[1],
                "minutiae": len(templates[1]),
                "quality": templates[1].quality,
            },
            "score": round(score, 6),
            "threshold": threshold,
            "threshold_source": source,
            "decision": decision,
            "pairs": [[i, j, round(s, 6)] for i, j, s in detail["pairs"]],
            "alignment": align,
        }
        print(json.dumps(out))
    else:
        print(
            f"score {score:.4f}  {decision} at threshold {threshold:g} ({source})  "
            f"({len(templates[0])} / {len(templates[1])} minutiae, quality "
            f"{templates[0].quality} / {templates[1].quality}, {len(detail['pairs'])} pairs)"
        )
        if align is not None:
            print(
                f"alignment A -> B: rotation {math.degrees(align['rotation']):.1f} degrees, "
                f"shift ({align['dx']:.1f}, {align['dy']:.1f}) px, residual "
                f"{align['residual']:.1f} px"
            )
    return 0
