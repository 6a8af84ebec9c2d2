"""The pure-numpy WSQ decoder (gateway.imaging.wsq) against NIST NBIS, and on hostile input.

Equality: the decoder repeats NBIS's float32 arithmetic in NBIS's order (dequantization, every
filter tap of the inverse transform, the final scaling), so the pixels are *identical* to the
NBIS decoder of the PyPI ``wsq`` package: the tests assert max |diff| == 0.
"""

from __future__ import annotations

import functools
import io
import struct

import numpy as np
import pytest

from gateway.imaging import wsq
from gateway.imaging.errors import CORRUPT, TOO_LARGE, ImagingError
from gateway.imaging.wsq import huffman, transform
from tests.conftest import CONFORMANCE, TRADITIONAL

nbis_plugin = pytest.importorskip("wsq")  # NBIS as a Pillow plugin: the reference decoder
Image = pytest.importorskip("PIL.Image")

WSQ_DIR = CONFORMANCE / "wsq"
needs_shared = pytest.mark.skipif(
    not CONFORMANCE.is_dir(), reason=f"the shared conformance data is absent: {CONFORMANCE}"
)
# MANIFEST.txt: the WSQ payloads of Type-4/13/14 records in these files decode with NBIS
RECORD_FILES = (
    "misc/openebts-NISTFile.ebts",
    "misc/openebts-NISTFile2.ebts",
    "nbis-an2kconvert/valid1.1.an2",
    "nbis-an2kconvert/valid1.8.an2",
    "nist-reference/type-14-tip-eji-wsq.an2",
    "nist-reference/type-4-14-slaps.an2",
    "nist-reference/type-14-amp-nqm-utf8.an2",
)


def nbis(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("L"))


def assert_same_as_nbis(data: bytes) -> None:
    ours = wsq.decode(data)
    ref = nbis(data)
    assert ours.dtype == np.uint8
    assert ours.shape == ref.shape
    diff = np.abs(ours.astype(np.int16) - ref)
    assert int(diff.max()) == 0, f"{np.count_nonzero(diff)} pixels differ, max {diff.max()}"


def _segments(data: bytes):
    """(marker, offset of the marker) of the marker segments before the first SOB data."""
    pos = 2
    out = [(wsq.SOI, 0)]
    while pos + 4 <= len(data):
        marker, length = struct.unpack(">HH", data[pos : pos + 4])
        out.append((marker, pos))
        if marker == wsq.SOB:
            break
        pos += 2 + length
    return out


# ------------------------------------------------------------------------------------------
# equality with NBIS


@needs_shared
@pytest.mark.parametrize("name", sorted(p.name for p in WSQ_DIR.glob("*.wsq")) or ["none"])
def test_conformance_wsq_files_equal_nbis(name):
    data = (WSQ_DIR / name).read_bytes()
    assert_same_as_nbis(data)
    header = wsq.read_header(data)
    ours = wsq.decode(data)
    assert ours.shape == (header.height, header.width)


@functools.cache
def _record_payloads() -> tuple[tuple[str, bytes], ...]:
    from gateway.ansinist import read

    found = []
    for name in RECORD_FILES:
        path = TRADITIONAL / name
        if not path.is_file():
            continue
        for number, record in enumerate(read(path.read_bytes()).records, 1):
            data = record.data
            if data is not None and bytes(data[:2]) == b"\xff\xa0":
                found.append((f"{name}#{number}", bytes(data)))
    return tuple(found)


@needs_shared
def test_wsq_payloads_of_records_equal_nbis():
    payloads = _record_payloads()
    assert len(payloads) >= 8
    for _name, data in payloads:
        assert_same_as_nbis(data)


@functools.cache
def _synthetic_finger() -> np.ndarray:
    from gateway.synth import finger

    return finger(11, 2, 0)


@functools.cache
def _encoded(height: int, width: int) -> bytes:
    from gateway.synth.transactions import wsq_bytes

    tiled = np.tile(_synthetic_finger(), (2, 2))  # 832 x 832
    return wsq_bytes(tiled[:height, :width])


# odd and even sizes (the subband tree splits odd lengths unevenly, inverted bands the other
# way round) down to 64 x 64, where the bands are too short for the 9-tap filter's simple
# symmetric extension and the reflections repeat
SIZES = [(416, 416), (415, 403), (333, 257), (257, 333), (201, 199), (128, 130), (97, 100),
         (64, 64), (600, 811)]  # fmt: skip


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_synthetic_fingers_equal_nbis(height, width):
    assert_same_as_nbis(_encoded(height, width))


def test_synthetic_car_finger_equals_nbis_and_header():
    data = _encoded(416, 416)  # what gateway.synth.car_transaction puts in its Type-14s
    header = wsq.read_header(data)
    assert (header.width, header.height) == (416, 416)
    assert header.ppi == 500
    assert (header.black, header.white) == (0, 255)
    assert header.scale > 0


def test_bytes_like_input():
    data = _encoded(128, 130)
    ref = wsq.decode(data)
    assert np.array_equal(wsq.decode(bytearray(data)), ref)
    assert np.array_equal(wsq.decode(memoryview(data)), ref)


# ------------------------------------------------------------------------------------------
# limits


def test_max_pixels_is_checked_from_the_frame_header():
    data = _encoded(201, 199)
    with pytest.raises(ImagingError) as err:
        wsq.decode(data, max_pixels=201 * 199 - 1)
    assert err.value.code == TOO_LARGE
    assert wsq.decode(data, max_pixels=201 * 199).shape == (201, 199)


def _with_size(data: bytes, height: int, width: int) -> bytes:
    sof = next(pos for marker, pos in _segments(data) if marker == wsq.SOF)
    return data[: sof + 6] + struct.pack(">HH", height, width) + data[sof + 10 :]


def test_huge_declared_size_is_refused_before_decoding():
    data = _with_size(_encoded(128, 130), 65535, 65535)
    with pytest.raises(ImagingError) as err:
        wsq.decode(data)
    assert err.value.code == TOO_LARGE
    assert wsq.read_header(data).width == 65535  # the header alone is still readable


def test_declared_size_larger_than_the_data():
    data = _with_size(_encoded(128, 130), 3000, 3000)  # 9 Mpx from a 128 x 130 stream
    with pytest.raises(ImagingError) as err:
        wsq.decode(data)
    assert err.value.code == CORRUPT
    assert "coefficients" in err.value.message


@pytest.mark.parametrize(("height", "width"), [(0, 0), (0, 130), (128, 0)])
def test_zero_sizes(height, width):
    with pytest.raises(ImagingError) as err:
        wsq.decode(_with_size(_encoded(128, 130), height, width))
    assert err.value.code == CORRUPT


def test_too_small_for_the_filters():
    # NBIS reads outside the bands for splits shorter than the filters' centre: refused here
    with pytest.raises(ImagingError) as err:
        wsq.decode(_with_size(_encoded(64, 64), 40, 40))
    assert err.value.code == CORRUPT


# ------------------------------------------------------------------------------------------
# hostile input: every failure is an ImagingError, never anything else


def _decode_or_error(data: bytes):
    """The decoded image, or the ImagingError (any other exception fails the test)."""
    try:
        image = wsq.decode(data, max_pixels=1 << 20)
    except ImagingError as err:
        assert err.code in (CORRUPT, TOO_LARGE), err
        assert "decoder failure" not in err.message, err.message  # the catch-all: a bug
        assert "byte" in err.message or err.code == TOO_LARGE, err.message
        return err
    assert image.dtype == np.uint8 and image.ndim == 2
    return image


def test_truncations_at_many_offsets():
    data = _encoded(128, 130)
    offsets = sorted({*range(0, 64), *range(0, len(data), 37), len(data) - 1, len(data) - 2})
    for cut in offsets:
        result = _decode_or_error(data[:cut])
        assert isinstance(result, ImagingError), cut  # no EOI: always an error


def test_empty_and_garbage():
    for data in (b"", b"\xff", b"\xff\xa0", b"\xff\xa0\xff", b"\x00" * 100, b"GIF89a" * 10):
        assert isinstance(_decode_or_error(data), ImagingError)
    rng = np.random.default_rng(5)
    for _ in range(50):
        garbage = (
            b"\xff\xa0" + rng.integers(0, 256, int(rng.integers(0, 400))).astype(np.uint8).tobytes()
        )
        assert isinstance(_decode_or_error(garbage), ImagingError)


def test_corrupted_table_lengths():
    data = _encoded(128, 130)
    for marker, pos in _segments(data):
        if marker == wsq.SOI:
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        for bad in (0, 1, 2, length - 1, length + 1, length + 100, 0xFFFF):
            mutated = data[: pos + 2] + struct.pack(">H", bad) + data[pos + 4 :]
            _decode_or_error(mutated)


@pytest.mark.parametrize("marker", [wsq.DTT, wsq.DQT, wsq.DHT, wsq.SOF])
def test_missing_tables(marker):
    data = _encoded(128, 130)
    cut = data
    while True:  # drop every segment with this marker (DHT comes once per block)
        found = [(m, p) for m, p in _segments(cut) if m == marker]
        if not found:
            idx = cut.find(struct.pack(">H", marker), 2)
            if marker != wsq.DHT or idx < 0:
                break
            found = [(marker, idx)]
        _m, pos = found[0]
        (length,) = struct.unpack(">H", cut[pos + 2 : pos + 4])
        cut = cut[:pos] + cut[pos + 2 + length :]
    with pytest.raises(ImagingError) as err:
        wsq.decode(cut)
    assert err.value.code == CORRUPT


def test_missing_eoi_and_blocks():
    data = _encoded(128, 130)
    assert data.endswith(b"\xff\xa1")
    with pytest.raises(ImagingError):
        wsq.decode(data[:-2])
    sob = next(pos for marker, pos in _segments(data) if marker == wsq.SOB)
    with pytest.raises(ImagingError):
        wsq.decode(data[:sob] + b"\xff\xa1")


def test_bit_flips():
    data = _encoded(128, 130)
    rng = np.random.default_rng(1)
    positions = [*range(2, 120), *rng.integers(120, len(data), 120).tolist()]
    for pos in positions:
        for bit in (0, 7):
            mutated = bytearray(data)
            mutated[pos] ^= 1 << bit
            _decode_or_error(bytes(mutated))


def test_seeded_random_mutations():
    """A few hundred random mutations: byte changes, insertions, deletions, splices."""
    sources = [_encoded(128, 130), _encoded(64, 64)]
    rng = np.random.default_rng(20261125)
    for case in range(300):
        data = bytearray(sources[case % 2])
        for _ in range(int(rng.integers(1, 6))):
            kind = int(rng.integers(0, 4))
            pos = int(rng.integers(0, len(data)))
            if kind == 0:
                data[pos] = int(rng.integers(0, 256))
            elif kind == 1:
                data[pos:pos] = bytes(rng.integers(0, 256, int(rng.integers(1, 9))).tolist())
            elif kind == 2:
                del data[pos : pos + int(rng.integers(1, 9))]
            else:
                data[pos : pos + 2] = b"\xff" + bytes([0xA0 + int(rng.integers(0, 10))])
        _decode_or_error(bytes(data))


def test_escape_symbols_match_nbis():
    # large black and white squares give coefficients beyond +/-73 (escape symbols 101/102)
    # and long zero runs (105/106); a fine checkerboard saturates pixels (clipping to 0..255)
    from gateway.synth.transactions import wsq_bytes

    yy, xx = np.mgrid[0:160, 0:176]
    assert_same_as_nbis(wsq_bytes(np.where((xx // 40 + yy // 40) % 2, 255, 0).astype(np.uint8)))
    assert_same_as_nbis(wsq_bytes(np.where((xx // 7 + yy // 5) % 2, 250, 3).astype(np.uint8)))


def test_read_header_without_nistcom():
    data = _encoded(128, 130)
    segments = _segments(data)
    com = [(m, p) for m, p in segments if m == wsq.COM]
    assert com
    pos = com[0][1]
    (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
    stripped = data[:pos] + data[pos + 2 + length :]
    header = wsq.read_header(stripped)
    assert header.ppi is None
    assert (header.width, header.height) == (130, 128)
    assert np.array_equal(wsq.decode(stripped), wsq.decode(data))


def test_closed_form_extension_matches_the_reference_walk():
    """The symmetric extension of long bands (closed form) against the step-by-step walk of
    NBIS's join_lets pointers, for every line length where the closed form is used."""
    lsz, hsz = 7, 9
    for n in range(24, 300):
        plan = transform._line_plan(n, lsz, hsz)
        odd = n % 2
        loc, hoc = (lsz - 1) // 4, (hsz + 1) // 4 - 1
        lotap, hotap = ((lsz - 1) // 2) % 2, ((hsz + 1) // 2) % 2
        bands = (
            (plan.llen, loc, (0, 0) if odd else (0, 1), lsz, lotap, (lotap if odd else lotap + 1)),
            (plan.hlen, hoc, (1, 1) if odd else (1, 0), hsz, hotap, (hotap if odd else hotap + 1)),
        )
        for b, (nb, start, (rl, rr), flen, otap, tail) in enumerate(bands):
            walk = transform._walk(nb, start, rl, rr, flen, otap, plan.hlen, tail)
            assert len(walk) == n
            for parity, (_count, terms) in enumerate(plan.classes):
                outs = walk[parity::2]
                mine = [(tap, off) for band, tap, off in terms if band == b]
                for j, (tap, off) in enumerate(mine):
                    expect = [o[j] for o in outs]
                    got = plan.ext[b][off : off + len(outs)]
                    assert [t for _i, t in expect] == [tap] * len(outs)
                    assert got.tolist() == [i for i, _t in expect], (n, b, parity, j)


def test_line_plan_refuses_bands_shorter_than_the_filter_centre():
    assert transform._line_plan(3, 7, 9) is None
    assert transform._line_plan(4, 7, 9) is not None


def test_long_blocks_are_decoded_in_parts(monkeypatch):
    data = _encoded(333, 257)
    whole = wsq.decode(data)
    monkeypatch.setattr(huffman, "_CHUNK_BYTES", 53)  # many parts, symbols crossing each border
    assert np.array_equal(wsq.decode(data), whole)
    assert_same_as_nbis(data)


def test_more_coded_data_than_pixels_is_refused():
    data = _encoded(64, 64)
    sob = next(pos for marker, pos in _segments(data) if marker == wsq.SOB)
    padded = data[: sob + 5] + b"\x55" * (64 * 64 + 70000) + data[sob + 5 :]
    with pytest.raises(ImagingError) as err:
        wsq.decode(padded)
    assert err.value.code == CORRUPT
