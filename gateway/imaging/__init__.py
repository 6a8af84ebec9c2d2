"""Fingerprint and face images of ANSI/NIST-ITL records: decode, check, normalise (pure).

Public API::

    image = decode(data, "WSQ20", width=800, height=750)     # bytes -> Image
    image = decode_record(record, ntr="19.69")                # Types 3-8, 10, 13-17
    findings = check_record(record, ntr="19.69")              # HLL/VLL, CGA, BPX vs the pixels
    image = to_500ppi(image)                                   # resample from THPS/TVPS/SLC or NTR
    position = finger_position(record)                         # FGP 1-10 of a Type-4/14, or None
    image = load_image_file(path)                              # .wsq .jp2 .jpg .png .tif, by magic

``Image`` holds ``pixels`` (numpy ``uint8``, HxW gray or HxWx3 colour), ``ppi``, ``compression``
(canonical code), ``width``, ``height`` and ``bits`` (BPX of the source).  Every failure is an
:class:`ImagingError` (a ``ValueError`` with ``code``, ``message``, ``location``, ``hint``);
sizes are checked against ``max_side`` (default 4000 pixels) before anything is decompressed.

Decoders are pluggable (:func:`register_decoder`, :func:`available_codecs`).  WSQ is decoded
by our own numpy decoder (:mod:`.wsq`: pixel-identical to NBIS, about twice as fast, safe on
hostile input); the native WSQ (NBIS, PyPI ``wsq``, for images above 4096 x 4096 only) and
lossless-JPEG (imagecodecs ljpeg) decoders crash on some damaged streams, so by default they
run in a short-lived forked child (:func:`.codecs.isolated`); a crash or a hang there is an
``IMG_DECODE_FAILED`` error.  No Twisted and no I/O here, except
:func:`load_image_file` reading its one file (and the pipe to such a child).
"""

from __future__ import annotations

from .codecs import (
    CODES,
    NUMERIC_CODES,
    Decoder,
    available_codecs,
    canonical_compression,
    decoders_for,
    find_decoder,
    register_decoder,
    unregister_decoder,
)
from .errors import ImagingError
from .files import load_image_file
from .headers import StreamHeader, read_header, sniff
from .image import DEFAULT_MAX_SIDE, Image, decode
from .records import (
    IMAGE_TYPES,
    check_record,
    declared,
    declared_pixels,
    decode_record,
    finger_position,
    ntr_of,
    record_ppi,
)
from .resample import TARGET_PPI, to_500ppi

__all__ = [
    "CODES",
    "DEFAULT_MAX_SIDE",
    "IMAGE_TYPES",
    "NUMERIC_CODES",
    "TARGET_PPI",
    "Decoder",
    "Image",
    "ImagingError",
    "StreamHeader",
    "available_codecs",
    "canonical_compression",
    "check_record",
    "declared",
    "declared_pixels",
    "decode",
    "decode_record",
    "decoders_for",
    "find_decoder",
    "finger_position",
    "load_image_file",
    "ntr_of",
    "read_header",
    "record_ppi",
    "register_decoder",
    "sniff",
    "to_500ppi",
    "unregister_decoder",
]
