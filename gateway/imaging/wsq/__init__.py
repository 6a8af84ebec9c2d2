"""A pure-numpy decoder for FBI WSQ fingerprint images (CJIS IAFIS-IC-0110, WSQ Gray-scale
Fingerprint Image Compression Specification, version 3).

Public API::

    pixels = decode(data, max_pixels=None)   # bytes -> numpy uint8 (height, width)
    header = read_header(data)               # width, height, ppi, black, white ... (cheap)

Modules: :mod:`.stream` (markers, segments, tables, frame header), :mod:`.geometry` (splits
and subbands), :mod:`.huffman` (entropy-coded data), :mod:`.transform` (inverse wavelet
transform), :mod:`.decoder` (:func:`decode`).  Pure numpy: no Twisted, no I/O.

Every problem with the input raises :class:`gateway.imaging.errors.ImagingError` with code
``IMG_CORRUPT`` (or ``IMG_TOO_LARGE`` when the frame header declares more than ``max_pixels``
pixels; that is checked before anything big is allocated).  Messages name the byte offset and
the marker segment where decoding stopped.  The output is pixel-identical to NIST NBIS
(``wsq_decode_mem``, the C decoder of the PyPI ``wsq`` package) on conforming streams: every
floating-point step is done in float32 in NBIS's order of operations.

Stream structure (spec clause 3/4; all integers big-endian)
---------------------------------------------------------
A WSQ file is a sequence of marker segments, in the style of JPEG::

    SOI  FFA0                      start of image, no length
    COM  FFA8  Lc  text            comment; "NIST_COM" comments carry PPI etc.
    DTT  FFA4  Lt  ...             transform table: the two analysis filters (half of each,
                                   they are symmetric) as sign / decimal scale / uint32 value
    DQT  FFA5  Lq  ...             quantization table: bin centre C, then for the 64
                                   subbands the bin width Q and zero-bin width Z (0 = absent)
    DHT  FFA6  Lh  {Th BITS[16] HUFFVAL[n]}...   Huffman tables, JPEG style (Annex C canonical)
    SOF  FFA2  Lf  A B Y X  Em M Er R  Ev Sf     frame: black, white, height, width, shift M,
                                                 scale R, encoder number, software id
    SOB  FFA3  Ls  Td  <entropy-coded data>       block header + Huffman-coded coefficients
    ... tables and further blocks (normally 3 blocks: subbands 0-18, 19-51, 52-59) ...
    EOI  FFA1                      end of image

Decimal fields are an unsigned integer and a power-of-ten exponent (value / 10**scale); NBIS
divides by 10 one step at a time in float32, and so do we (the low bits matter).

Coefficients and subbands
-------------------------
The image is decomposed by a 2-D separable wavelet transform into 64 subbands (spec Figure 3),
along a fixed tree of 20 two-dimensional splits (the "w_tree" of NBIS; :func:`_geometry`
builds it).  Each split cuts a rectangle into a top-left / top-right / bottom-left /
bottom-right quadrant; at odd lengths the low-pass half gets the extra sample, except in bands
that were high-pass filtered before (spectral inversion: there the high band comes first,
spec clause A.2).  Subbands 60-63 are never transmitted (they are zero).  Subband ``k`` is
present iff its Q is non-zero; its coefficients follow each other row by row, the subbands in
increasing order, across all blocks (the block boundaries carry no meaning for the order).

Huffman coding (clause 5)
-------------------------
Symbols of the canonical Huffman code (codes up to 16 bits, byte stuffing: 0xFF is followed
by 0x00 inside coded data) mean::

    1..100   a run of that many zero coefficients
    101/102  next 8 bits: a positive / negative coefficient
    103/104  next 16 bits: a positive / negative coefficient
    105/106  next 8 / 16 bits: a run of zeros of that length
    107..254 the coefficient symbol - 180 (-73 .. 74)

The decoder looks the code up at *every* bit position at once (a table indexed by the next
L bits, L = longest code) and then follows the chain of real symbol starts from bit 0 by
pointer doubling, so no Python loop runs per symbol.

Dequantization (clause 4.3): ``q * (p - C) + Z/2`` for p > 0, ``q * (p + C) - Z/2`` for p < 0,
0 for p = 0.

Inverse transform (clause A): every split is undone by a vertical then a horizontal synthesis
(two-channel polyphase filtering with symmetric extension of each band; whole-sample at the
low band's left edge, half-sample at the high band's, the right edges depending on the parity
of the length).  Filter taps are applied in NBIS's order so that the float32 sums round alike.
Pixels are ``value * R + M``, rounded half up, clipped to 0..255.

Where this decoder and NBIS part ways (all on broken or unusual streams)
-----------------------------------------------------------------------
* Segment lengths are checked against their content (NBIS ignores them except for DHT/COM).
* Fewer coefficients than the subbands need is an error (NBIS reads uninitialised memory);
  more than the pixel count is an error (NBIS writes past its buffer); extra coefficients
  in between are ignored, as NBIS does.  A bit pattern that starts no Huffman code is an
  error unless it is the last 16 bits of a block (NBIS then meets the marker and stops).
* Splits shorter than the filters' centre (images under about 48 pixels a side) are refused:
  NBIS reads outside the band there.  Only odd filter lengths 3..31 are accepted (WSQ uses
  9 / 7; NBIS also has an even-length variant).  Images above HARD_MAX_PIXELS are refused.

Memory: about 40 bytes per pixel of float32 work space, kept per thread between decodes for
images up to ``_KEEP_BYTES`` (fresh large arrays page-fault on every use, which costs
milliseconds per image), plus a few bytes per bit of coded data for the Huffman stage.
"""

from __future__ import annotations

from .decoder import decode
from .stream import (
    COM,
    DHT,
    DQT,
    DRT,
    DTT,
    EOI,
    HARD_MAX_PIXELS,
    SOB,
    SOF,
    SOI,
    WsqHeader,
    read_header,
)

__all__ = [
    "WsqHeader",
    "decode",
    "read_header",
    "HARD_MAX_PIXELS",
    "SOI",
    "EOI",
    "SOF",
    "SOB",
    "DTT",
    "DQT",
    "DHT",
    "DRT",
    "COM",
]
