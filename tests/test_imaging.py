"""gateway.imaging: every image of the corpus decodes to its declared size, bombs are refused
before decoding, and nothing but ImagingError ever leaves a decode function."""

from __future__ import annotations

import functools
import hashlib
import io
import random
import struct
import zlib

import numpy as np
import pytest

import gateway.ansinist as an
from gateway.ansinist import Location, Record
from gateway.imaging import (
    CODES,
    Decoder,
    Image,
    ImagingError,
    available_codecs,
    canonical_compression,
    check_record,
    decode,
    decode_record,
    load_image_file,
    ntr_of,
    read_header,
    register_decoder,
    to_500ppi,
    unregister_decoder,
)
from gateway.imaging.records import IMAGE_TYPES
from tests.conftest import CONFORMANCE, FULL_CORPUS, TRADITIONAL

WSQ_DIR = CONFORMANCE / "wsq"
IMAGES = CONFORMANCE / "images"

# MANIFEST.txt "WSQ IMAGES": decoded width x height.
WSQ_SIZES = {
    "jnbis-sample.wsq": (545, 622),
    "libbiomeval-img.wsq": (256, 256),
    "node-nist-Fingerprint_LeftPointer.wsq": (320, 480),
    "node-nist-Fingerprint_RightPointer.wsq": (320, 480),
    "node-nist-imageHeader_test.wsq": (320, 480),
    "openebts-finger8.wsq": (374, 374),
}
IMAGE_FILES = {
    "openebts-finger8.jp2": (374, 374, "JP2", False),
    "openebts-finger8.jpg": (374, 374, "JPEGB", False),
    "openebts-finger8.png": (374, 374, "PNG", False),
    "libbiomeval-img.jp2": (908, 1007, "JP2", False),
    "node-nist-imageHeader_test.jp2": (240, 320, "JP2", True),
}

# Image records whose pixels do not match their header, or that are not images: the corpus's
# own defects (each is asserted below as a finding, not skipped silently).
KNOWN_DEFECTS = {
    # Type-14 HLL/VLL 1800x1000 (1800x900) around 1600x976 (1600x800) WSQ streams.
    ("nbis-an2kconvert/valid1.8.an2", 3): "IMG_SIZE_MISMATCH",
    ("nbis-an2kconvert/valid1.8.an2", 4): "IMG_SIZE_MISMATCH",
    ("nbis-an2kconvert/valid1.8.an2", 5): "IMG_SIZE_MISMATCH",
    # Type-16 test record: VLL 24 for a 243x208 JPEG.
    ("nist-reference/rec01_rec02_rec16.nst.an2", 3): "IMG_SIZE_MISMATCH",
    # Type-6 declared 800x800 binary (80,000 bytes) carrying 262,144 bytes (a 512x512 gray?).
    ("nbis-an2kconvert/valid1.2.an2", 4): "IMG_RAW_SIZE_MISMATCH",
}
VECTOR_SIGNATURES = {("nbis-an2kconvert/sign_vec.an2", 2)}


@functools.cache
def _txn(name: str):
    return an.read((TRADITIONAL / name).read_bytes())


def _record(name: str, recno: int):
    txn = _txn(name)
    return txn.records[recno - 1], ntr_of(txn)


def _image_records():
    out = []
    for path in sorted(TRADITIONAL.glob("*/*")):
        name = f"{path.parent.name}/{path.name}"
        for recno, record in enumerate(_txn(name).records, 1):
            if record.type in IMAGE_TYPES:
                out.append((name, recno))
    return out


IMAGE_RECORDS = _image_records()


def _int(record, num):
    return int(record.value(f"{record.type}.{num:03d}"))


# -- corpus: standalone files -------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(WSQ_SIZES))
def test_wsq_files_decode_to_their_manifest_size(name):
    image = load_image_file(WSQ_DIR / name)
    assert (image.width, image.height) == WSQ_SIZES[name]
    assert image.pixels.dtype == np.uint8 and image.pixels.ndim == 2
    assert image.compression == "WSQ20" and image.bits == 8
    assert image.ppi == 500.0  # from the NISTCOM comment
    assert 40 < image.pixels.mean() < 250 and image.pixels.std() > 10  # a print, not a blank


@pytest.mark.parametrize("name", sorted(IMAGE_FILES))
def test_other_image_files_decode(name):
    width, height, code, colour = IMAGE_FILES[name]
    image = load_image_file(IMAGES / name)
    assert (image.width, image.height, image.compression, image.is_color) == (
        width,
        height,
        code,
        colour,
    )
    assert image.pixels.shape == ((height, width, 3) if colour else (height, width))


def test_one_finger_in_four_codecs_gives_the_same_picture():
    finger = [load_image_file(IMAGES / f"openebts-finger8.{ext}") for ext in ("jp2", "jpg", "png")]
    finger.append(load_image_file(WSQ_DIR / "openebts-finger8.wsq"))
    flat = [f.pixels.astype(float).ravel() for f in finger]
    for a in flat:
        for b in flat:
            assert np.corrcoef(a, b)[0, 1] > 0.98


def test_wsq_checksum_is_stable():
    image = load_image_file(WSQ_DIR / "openebts-finger8.wsq")
    assert image.sha256() == "d5077a9ce5a90ca650c37f44b6ca3358ca9eb2ef4e8a55792b1d60eef0f6781e"


def test_file_format_is_told_by_magic_not_by_name(tmp_path):
    disguised = tmp_path / "finger.wsq"
    disguised.write_bytes((IMAGES / "openebts-finger8.png").read_bytes())
    assert load_image_file(disguised).compression == "PNG"
    text = tmp_path / "notes.png"
    text.write_bytes(b"just some text, not an image at all")
    with pytest.raises(ImagingError) as err:
        load_image_file(text)
    assert err.value.code == "IMG_NO_HEADER"
    with pytest.raises(ImagingError) as err:
        load_image_file(tmp_path / "missing.jp2")
    assert err.value.code == "IMG_FILE"


# -- corpus: every image record -----------------------------------------------------------------
def test_the_corpus_has_every_kind_of_image_record():
    kinds = set()
    for name, recno in IMAGE_RECORDS:
        record, _ = _record(name, recno)
        kinds.add(record.type)
    assert {3, 4, 5, 6, 7, 8, 10, 13, 14, 15, 16, 17} <= kinds
    # 119 in the committed subset (the 44 NIST files): all of them there
    assert len(IMAGE_RECORDS) > 120 if FULL_CORPUS else len(IMAGE_RECORDS) == 119


def test_every_image_record_decodes_to_its_declared_size():
    codes, decoded = {}, {}
    for name, recno in IMAGE_RECORDS:
        record, ntr = _record(name, recno)
        if (name, recno) in VECTOR_SIGNATURES:
            with pytest.raises(ImagingError) as err:
                decode_record(record, ntr=ntr, recno=recno)
            assert err.value.code == "IMG_NOT_AN_IMAGE"
            continue
        if KNOWN_DEFECTS.get((name, recno)) == "IMG_RAW_SIZE_MISMATCH":
            with pytest.raises(ImagingError) as err:
                decode_record(record, ntr=ntr, recno=recno)
            assert err.value.code == "IMG_RAW_SIZE_MISMATCH"
            assert err.value.location == Location(recno, record.type, f"{record.type}.009")
            continue
        # The corpus repeats payloads (Type-4 and Type-14 cards of the same prints): each
        # distinct payload is decoded once, each record's HLL/VLL is checked against it.
        digest = hashlib.sha256(bytes(record.data)).digest() + bytes([record.type])
        if digest not in decoded:
            decoded[digest] = decode_record(record, ntr=ntr, recno=recno)
        image = decoded[digest]
        assert image.pixels.dtype == np.uint8
        codes.setdefault(image.compression, 0)
        codes[image.compression] += 1
        size = (_int(record, 6), _int(record, 7))
        if (name, recno) in KNOWN_DEFECTS:
            assert (image.width, image.height) != size
        else:
            assert (image.width, image.height) == size, (name, recno)
        # Finger, palm and signature records come out gray; faces keep their colour.
        if record.type in (3, 4, 5, 6, 7, 8, 13, 14, 15):
            assert image.pixels.ndim == 2
    # Every codec of the corpus was exercised (TIFF = CCITT fax in legacy Type-5/8 records).
    assert set(codes) == {"NONE", "WSQ20", "JPEGB", "JPEGL", "PNG", "TIFF"}


@pytest.mark.parametrize("key", sorted(KNOWN_DEFECTS))
def test_corpus_defects_are_reported_as_findings(key):
    record, ntr = _record(*key)
    findings = check_record(record, ntr=ntr, recno=key[1])
    assert KNOWN_DEFECTS[key] in {f.code for f in findings}
    assert all(f.severity == "error" for f in findings if f.code == KNOWN_DEFECTS[key])


@pytest.mark.parametrize(
    "key",
    [
        ("nist-reference/type-4-tpcard.an2", 3),  # Type-4 WSQ
        ("nist-reference/type-9-4-iafis.an2", 4),  # Type-4 raw GCA 0
        ("nist-reference/type-10-14-17-piv-index-iris.an2", 5),  # Type-14 JPEGL
        ("nist-reference/type-17-iris.an2", 3),  # Type-17 PNG
        ("nist-reference/type-10-sap10.an2", 3),  # Type-10 JPEGB colour
        ("nist-reference/type-14-tpcard-nqm.an2", 3),  # Type-14 WSQ20
        ("nist-reference/type-6.an2", 3),  # Type-6 1-bit raw
        ("misc/openebts-NISTFile2.ebts", 4),  # Type-14 WSQ20 1576x1572
    ],
)
def test_clean_records_have_no_findings(key):
    record, ntr = _record(*key)
    assert check_record(record, ntr=ntr, recno=key[1]) == []


def test_quirky_records_give_warnings_only():
    record, ntr = _record("nbis-an2kconvert/valid1.11.an2", 6)  # CGA "WSQ", repeated 14.999
    findings = check_record(record, ntr=ntr, recno=6)
    assert [(f.severity, f.code) for f in findings] == [("warning", "IMG_DATA_PREFIX")]
    record, ntr = _record("nbis-an2kconvert/type_5_wvu.an2", 3)  # GCA 0 carrying a fax TIFF
    findings = check_record(record, ntr=ntr, recno=3)
    assert [(f.severity, f.code) for f in findings] == [("warning", "IMG_COMPRESSION_MISMATCH")]
    assert check_record(_record("nbis-an2kconvert/sign_vec.an2", 2)[0]) == []


def test_raw_records_are_their_bytes():
    record, ntr = _record("nist-reference/type-9-4-iafis.an2", 4)
    image = decode_record(record, ntr=ntr)
    assert (image.width, image.height, image.compression) == (800, 768, "NONE")
    assert image.pixels.tobytes() == bytes(record.data)
    record, _ = _record("nist-reference/type-7-latent.an2", 3)
    assert decode_record(record).pixels.tobytes() == bytes(record.data)


def test_lossless_decodes_have_fixed_checksums():
    # JPEGL and PNG are lossless: any correct decoder gives these exact pixels.
    cases = {
        ("nist-reference/type-10-14-17-piv-index-iris.an2", 5): (
            "139e62af46dd550c3f127452e68baa84fe4ddd32eefbdd0c8267f7bc24ecd503"
        ),
        ("nist-reference/type-10-14-17-piv-index-iris.an2", 6): (
            "e507ea513bb14a60187851722bbd4970e4203cb0c6b1ce805ce33f79fc641695"
        ),
        ("nist-reference/type-17-iris.an2", 3): (
            "38face9c3f81a3b887c6a32469a9d7dfbbb2c8bf1019a7dbd05336f1375f7c05"
        ),
        ("nist-reference/type-5.an2", 3): (
            "9c92968efca1c43350acab3a9795b17c1812cc799f3c2466ca1edd457a42dcf8"
        ),
        ("nist-reference/type-8-sig-fax.an2", 3): (
            "183f8c3beec45307da4e5c3f52ab0a9196eae55a6a566d3562649dcd0b4427d4"
        ),
    }
    for key, digest in cases.items():
        record, ntr = _record(*key)
        assert decode_record(record, ntr=ntr).sha256() == digest, key


def test_jpegl_agrees_with_a_second_lossless_decoder():
    import imagecodecs

    record, _ = _record("nist-reference/type-10-14-17-piv-index-iris.an2", 5)
    image = decode_record(record)
    assert image.compression == "JPEGL"
    assert np.array_equal(image.pixels, imagecodecs.jpegsof3_decode(bytes(record.data)))


def test_binary_images_are_black_ink_on_white():
    record, ntr = _record("nist-reference/type-6.an2", 3)
    image = decode_record(record, ntr=ntr)
    assert image.bits == 1 and set(np.unique(image.pixels)) == {0, 255}
    assert 0.5 < (image.pixels == 255).mean() < 0.85  # ridges are the minority


# -- resolution ---------------------------------------------------------------------------------
def test_resolution_comes_from_slc_thps_or_ntr():
    record, ntr = _record("nist-reference/type-14-tpcard-nqm.an2", 3)  # SLC 2, 197 px/cm
    image = decode_record(record, ntr=ntr)
    assert image.ppi == pytest.approx(500.38)
    assert to_500ppi(image) is image  # within 1 %
    record, ntr = _record("nist-reference/type-4-tpcard.an2", 3)  # NTR 19.69 ppmm
    assert decode_record(record, ntr=ntr).ppi == pytest.approx(500.126)
    record, ntr = _record("nist-reference/type-10-sap10.an2", 3)  # SLC 0: no scale
    image = decode_record(record, ntr=ntr)
    assert image.ppi is None and to_500ppi(image) is image


def test_to_500ppi_resamples_both_ways():
    record, ntr = _record("misc/node-nist-latent_with_minutiae.lffs", 4)  # 1000 ppi, 777x1132
    down = to_500ppi(decode_record(record, ntr=ntr))
    assert (down.width, down.height, down.ppi) == (388, 566, 500.0)
    record, ntr = _record("nist-reference/type-3.an2", 3)  # NTR 9.84 ppmm = 250 ppi, 402x376
    up = to_500ppi(decode_record(record, ntr=ntr))
    assert (up.width, up.height) == (804, 752) and up.pixels.dtype == np.uint8
    square = Image(np.zeros((100, 200), np.uint8), 1000.0, "NONE", 8, ppi_y=500.0)
    assert to_500ppi(square).pixels.shape == (100, 100)
    colour = Image(np.zeros((10, 10, 3), np.uint8), 250.0, "JPEGB", 24)
    assert to_500ppi(colour).pixels.shape == (20, 20, 3)


def test_to_500ppi_will_not_blow_up_an_image():
    tiny_scale = Image(np.zeros((200, 200), np.uint8), 10.0, "NONE", 8)
    with pytest.raises(ImagingError) as err:
        to_500ppi(tiny_scale)
    assert err.value.code == "IMG_TOO_LARGE"


# -- decompression bombs ------------------------------------------------------------------------
@pytest.fixture
def no_decoder_may_run(monkeypatch):
    """Every decoder replaced by one that fails the test when called."""
    import gateway.imaging.codecs as codecs

    def forbidden(data, header):
        raise AssertionError("a decoder ran on data that should have been refused")

    registry = {code: [Decoder(code, "forbidden", forbidden)] for code in (*CODES, "TIFF")}
    monkeypatch.setattr(codecs, "_REGISTRY", registry)


def _patched_wsq_sof(width: int, height: int) -> bytes:
    data = bytearray((WSQ_DIR / "openebts-finger8.wsq").read_bytes())
    sof = data.index(b"\xff\xa2")
    struct.pack_into(">HH", data, sof + 6, height, width)  # FFA2 L A B Y X (height first)
    return bytes(data)


def _png(width: int, height: int, idat: bytes) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_bombs_are_refused_before_decoding(no_decoder_may_run):
    jpeg = bytearray((IMAGES / "openebts-finger8.jpg").read_bytes())
    sof = jpeg.index(b"\xff\xc0")
    struct.pack_into(">HH", jpeg, sof + 5, 60000, 60000)
    j2k = bytearray((IMAGES / "openebts-finger8.jp2").read_bytes())
    siz = j2k.index(b"\xff\x4f\xff\x51") + 8
    struct.pack_into(">II", j2k, siz, 60000, 60000)
    ihdr = j2k.index(b"ihdr") + 4
    struct.pack_into(">II", j2k, ihdr, 60000, 60000)  # HEIGHT, WIDTH
    bombs = {
        "WSQ20": _patched_wsq_sof(60000, 60000),
        "PNG": _png(60000, 60000, zlib.compress(b"\0" * 60001)),
        "JPEGB": bytes(jpeg),
        "JP2": bytes(j2k),
    }
    for code, data in bombs.items():
        assert read_header(data).width == 60000
        with pytest.raises(ImagingError) as err:
            decode(data, code)
        assert err.value.code == "IMG_TOO_LARGE", code
    # Declared sizes are checked first, whatever the data.
    with pytest.raises(ImagingError) as err:
        decode(b"\0" * 16, "NONE", width=60000, height=60000)
    assert err.value.code == "IMG_TOO_LARGE"
    with pytest.raises(ImagingError) as err:
        decode(_patched_wsq_sof(300, 300), 1, width=5000, height=300)
    assert err.value.code == "IMG_TOO_LARGE"


def test_a_real_png_bomb_is_refused_quickly():
    # 5000 x 5000 zero pixels deflate to about 25 kB.
    rows = (b"\0" + b"\0" * 5000) * 5000
    bomb = _png(5000, 5000, zlib.compress(rows, 9))
    assert len(bomb) < 40_000
    with pytest.raises(ImagingError) as err:
        decode(bomb, "PNG")
    assert err.value.code == "IMG_TOO_LARGE"
    assert decode(bomb, "PNG", max_side=5000).pixels.shape == (5000, 5000)


def test_max_side_is_configurable():
    data = (WSQ_DIR / "jnbis-sample.wsq").read_bytes()
    with pytest.raises(ImagingError) as err:
        decode(data, "WSQ20", max_side=600)
    assert err.value.code == "IMG_TOO_LARGE"
    assert decode(data, "WSQ20", max_side=622).height == 622


def test_raw_buffer_must_fit_the_geometry():
    with pytest.raises(ImagingError) as err:
        decode(b"\x80" * 99, "NONE", width=10, height=10)
    assert err.value.code == "IMG_RAW_SIZE_MISMATCH"
    with pytest.raises(ImagingError) as err:
        decode(b"\x80" * 1000, "NONE", width=10, height=10)  # ten times too much
    assert err.value.code == "IMG_RAW_SIZE_MISMATCH"
    assert decode(b"\x80" * 105, "NONE", width=10, height=10).height == 10  # padding < 1 row


# -- codecs: raw depths, registry, codes --------------------------------------------------------
def test_raw_depths():
    one_bit = decode(bytes([0b10100000, 0b01000000]), "NONE", width=3, height=2, bits=1)
    assert one_bit.pixels.tolist() == [[0, 255, 0], [255, 0, 255]] and one_bit.bits == 1
    deep = np.array([[0, 4095], [65535, 256]], ">u2").tobytes()
    sixteen = decode(deep, 0, width=2, height=2, bits=16)
    assert sixteen.pixels.tolist() == [[0, 15], [255, 1]] and sixteen.bits == 16
    rgb = decode(bytes(range(12)), "NONE", width=2, height=2, bits=24)
    assert rgb.pixels.shape == (2, 2, 3) and rgb.to_gray().pixels.shape == (2, 2)
    with pytest.raises(ImagingError):
        decode(b"\0" * 8, "NONE", width=2, height=2, bits=12)
    with pytest.raises(ImagingError):
        decode(b"\0" * 8, "NONE")


def test_deep_samples_are_scaled_to_8_bits():
    import imagecodecs
    from PIL import Image as PILImage

    ramp = (np.arange(48 * 64).reshape(48, 64) % 4096).astype(np.uint16)  # 12-bit
    lossy = decode(imagecodecs.jpeg8_encode(ramp, bitspersample=12, level=95), "JPEGB")
    assert lossy.bits == 12 and lossy.compression == "JPEGB"
    assert np.abs(lossy.pixels.astype(int) - (ramp >> 4)).mean() < 3
    lossless = decode(imagecodecs.ljpeg_encode(ramp, bitspersample=12), "JPEGL")
    assert lossless.bits == 12 and np.array_equal(lossless.pixels, (ramp >> 4).astype(np.uint8))
    buffer = io.BytesIO()
    PILImage.fromarray((ramp * 16).astype(np.uint16)).save(buffer, "PNG")
    deep_png = decode(buffer.getvalue(), "PNG")
    assert deep_png.bits == 16 and np.array_equal(deep_png.pixels, (ramp >> 4).astype(np.uint8))


def test_compression_codes():
    assert canonical_compression("WSQ") == "WSQ20"
    assert canonical_compression("wsq20") == "WSQ20"
    assert [canonical_compression(n) for n in range(7)] == list(CODES)
    assert canonical_compression("3") == "JPEGL"
    for bad in ("LZW", 7, -1, None, "", True):
        with pytest.raises(ImagingError) as err:
            canonical_compression(bad)
        assert err.value.code == "IMG_UNKNOWN_COMPRESSION"


def test_every_standard_codec_is_available_here():
    assert available_codecs() == {code: True for code in (*CODES, "TIFF")}


def test_decoders_are_pluggable():
    calls = []

    def fake(data, header):
        calls.append(header)
        return np.full((header.height, header.width), 7, np.uint8)

    mine = Decoder("PNG", "fake", fake)
    register_decoder(mine, prefer=True)
    try:
        image = load_image_file(IMAGES / "openebts-finger8.png")
    finally:
        unregister_decoder(mine)
    assert calls and image.pixels.max() == 7
    assert load_image_file(IMAGES / "openebts-finger8.png").pixels.max() > 7


def test_an_unavailable_codec_is_a_value(monkeypatch):
    import gateway.imaging.codecs as codecs

    def broken_probe():
        raise ImportError("no such library")

    gone = Decoder("JPEGL", "missing", lambda data, header: None, broken_probe)
    assert gone.available is False
    monkeypatch.setitem(codecs._REGISTRY, "JPEGL", [gone])
    record, _ = _record("nist-reference/type-10-14-17-piv-index-iris.an2", 5)
    with pytest.raises(ImagingError) as err:
        decode_record(record, recno=5)
    assert err.value.code == "IMG_CODEC_UNAVAILABLE"
    assert err.value.location == Location(5, 14, "14.999")
    [finding] = check_record(record, recno=5)
    assert (finding.severity, finding.code) == ("warning", "IMG_CODEC_UNAVAILABLE")


# -- findings on built records ------------------------------------------------------------------
def _type14(**overrides) -> Record:
    record = Record(14)
    data = (WSQ_DIR / "openebts-finger8.wsq").read_bytes()
    fields = {"14.006": "374", "14.007": "374", "14.008": "1", "14.009": "500"}
    fields.update({"14.010": "500", "14.011": "WSQ20", "14.012": "8", "14.999": data})
    fields.update(overrides)
    for tag, value in fields.items():
        if value is not None:
            record[tag] = value
    return record


def test_check_record_reports_each_disagreement():
    assert check_record(_type14()) == []
    codes = {f.code: f for f in check_record(_type14(**{"14.006": "380"}), recno=3)}
    assert codes["IMG_SIZE_MISMATCH"].location == Location(3, 14, "14.006")
    codes = {f.code: f for f in check_record(_type14(**{"14.012": "16"}), recno=3)}
    assert codes["IMG_BPX_MISMATCH"].location == Location(3, 14, "14.012")
    codes = {f.code for f in check_record(_type14(**{"14.011": "JPEGB"}))}
    assert codes == {"IMG_COMPRESSION_MISMATCH"}
    codes = {f.code for f in check_record(_type14(**{"14.011": "LZW"}))}
    assert codes == {"IMG_UNKNOWN_COMPRESSION"}
    codes = {f.code for f in check_record(_type14(**{"14.006": "wide"}))}
    assert codes == {"IMG_BAD_GEOMETRY"}
    codes = {f.code for f in check_record(_type14(**{"14.999": None}))}
    assert codes == {"IMG_NO_DATA"}
    assert check_record(Record(2)) == []


def test_jp2l_must_be_reversible():
    lossy = (IMAGES / "openebts-finger8.jp2").read_bytes()  # 9-7 wavelet
    assert read_header(lossy).process == "irreversible"
    assert check_record(_type14(**{"14.011": "JP2", "14.999": lossy})) == []
    [finding] = check_record(_type14(**{"14.011": "JP2L", "14.999": lossy}))
    assert (finding.code, finding.location.tag) == ("IMG_COMPRESSION_MISMATCH", "14.011")
    lossless = (IMAGES / "libbiomeval-img.jp2").read_bytes()  # 5-3 wavelet
    fields = {"14.006": "908", "14.007": "1007", "14.011": "JP2L", "14.999": lossless}
    assert check_record(_type14(**fields)) == []


def test_errors_of_records_carry_their_location():
    record = _type14(**{"14.999": b"\xff\xa0 this is no WSQ"})
    with pytest.raises(ImagingError) as err:
        decode_record(record, recno=4)
    assert err.value.location == Location(4, 14, "14.999")
    assert err.value.hint.startswith("record 4 (Type-14) field 14.999")
    assert isinstance(err.value, ValueError)


# -- fuzzing: nothing but ImagingError ----------------------------------------------------------
def _sample(code: str) -> tuple[bytes, dict]:
    """The stream fuzzed for ``code`` and its geometry (read only for that code: each file
    the committed subset lacks skips only its own codec's case)."""

    def piv(recno: int) -> bytes:
        return bytes(_txn("nist-reference/type-10-14-17-piv-index-iris.an2").records[recno].data)

    samples = {
        "WSQ20": lambda: ((WSQ_DIR / "libbiomeval-img.wsq").read_bytes(), {}),
        "JPEGB": lambda: (piv(2), {}),
        "JPEGL": lambda: (piv(4), {}),
        "PNG": lambda: (piv(3), {}),
        "JP2": lambda: ((IMAGES / "openebts-finger8.jp2").read_bytes(), {}),
        "TIFF": lambda: (bytes(_txn("nist-reference/type-8-sig-fax.an2").records[2].data), {}),
        "NONE": lambda: (bytes(range(256)) * 4, {"width": 32, "height": 32}),
    }
    return samples[code]()


def _mutants(data: bytes, rng: random.Random, count: int):
    yield b""
    yield data[:1]
    yield data[: len(data) // 2]
    for _ in range(count):
        mutant = bytearray(data)
        roll = rng.random()
        if roll < 0.3:
            mutant = mutant[: rng.randrange(1, len(mutant))]
        elif roll < 0.6:  # flips in the headers and tables
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(min(len(mutant), 1024))
                mutant[i] ^= 1 << rng.randrange(8)
        else:
            for _ in range(rng.randint(1, 12)):
                mutant[rng.randrange(len(mutant))] = rng.randrange(256)
        yield bytes(mutant)


# Pillow warns about the damaged TIFF tags it skips; that is expected here.
@pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")
@pytest.mark.parametrize("code", ["WSQ20", "JPEGB", "JPEGL", "PNG", "JP2", "TIFF", "NONE"])
def test_fuzzed_streams_raise_only_imaging_errors(code):
    data, geometry = _sample(code)
    rng = random.Random(hashlib.sha256(code.encode()).digest())
    outcomes = {"decoded": 0, "refused": 0}
    others = (("WSQ20", {}), ("NONE", {"width": 64, "height": 64}))
    for n, mutant in enumerate(_mutants(data, rng, 30)):
        # As itself; some also as another codec and as raw pixels of a plausible geometry.
        for compression, kwargs in ((code, geometry), *(others if n % 4 == 0 else ())):
            try:
                image = decode(mutant, compression, **kwargs)
            except ImagingError as err:
                assert err.code.startswith("IMG_")
                outcomes["refused"] += 1
            else:
                assert image.pixels.dtype == np.uint8 and image.pixels.size > 0
                outcomes["decoded"] += 1
    assert outcomes["refused"] > 0


@pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")
@pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")
@pytest.mark.parametrize(
    "name",
    [
        "misc/openebts-NISTFile.ebts",  # Type-4 WSQ
        "nist-reference/type-8-sig-fax.an2",  # Type-8 TIFF fax
        "nist-reference/type-5.an2",  # Type-5 1-bit raw
        "nbis-an2kconvert/valid1.3.an2",  # Type-10 JPEGB
    ],
)
def test_fuzzed_records_raise_only_imaging_errors(name):
    """Whole transactions mutated: headers (HLL, VLL, GCA, CGA) and image bytes alike."""
    source = (TRADITIONAL / name).read_bytes()
    rng = random.Random(name)
    checked = 0
    for n in range(40):
        mutant = bytearray(source)
        for _ in range(rng.randint(1, 6)):
            # Half the flips land in the first 400 bytes, where the record headers are.
            i = rng.randrange(400 if n % 2 else len(mutant))
            mutant[i] = rng.randrange(256)
        try:
            txn = an.read(bytes(mutant))
        except an.FormatError:
            continue
        ntr = ntr_of(txn)
        for recno, record in enumerate(txn.records, 1):
            if record.type not in IMAGE_TYPES:
                continue
            try:
                decode_record(record, ntr=ntr, recno=recno)
            except ImagingError as err:
                assert err.location.record == recno
            findings = check_record(record, ntr=ntr, recno=recno)  # never raises
            assert all(f.severity in ("error", "warning") for f in findings)
            checked += 1
    assert checked > 10


def test_a_stream_that_corrupts_the_nbis_heap_is_survived(monkeypatch):
    # One flipped bit in the entropy-coded data: NBIS writes out of bounds and then reports an
    # error, dies of SIGSEGV or returns pixels, depending on the heap it inherited.  Our numpy
    # decoder (first in line) finds the invalid code; NBIS runs in a forked child, so whichever
    # happens there, this process goes on.
    from gateway.imaging import codecs

    data = bytearray((WSQ_DIR / "node-nist-Fingerprint_LeftPointer.wsq").read_bytes())
    assert data[878] == 222
    data[878] = 223
    with pytest.raises(ImagingError, match="invalid Huffman code") as err:
        decode(bytes(data), "WSQ20")
    assert err.value.code == "IMG_CORRUPT"

    nbis = [d for d in codecs.decoders_for("WSQ20") if "NBIS" in d.name]
    assert nbis[0].isolated
    monkeypatch.setattr(codecs, "_REGISTRY", {**codecs._REGISTRY, "WSQ20": nbis})
    for _ in range(6):
        try:
            image = decode(bytes(data), "WSQ20")
        except ImagingError as err:
            assert err.code == "IMG_DECODE_FAILED"
        else:
            assert image.pixels.ndim == 2 and image.pixels.dtype == np.uint8


@pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")
def test_garbage_raises_only_imaging_errors():
    rng = random.Random(4)
    for _ in range(60):
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
        magic = rng.choice([b"", b"\xff\xa0", b"\xff\xd8", b"\x89PNG\r\n\x1a\n", b"II*\x00"])
        for code in ("WSQ20", "JPEGB", "JPEGL", "JP2", "JP2L", "PNG", "NONE", 4):
            with pytest.raises(ImagingError):
                decode(magic + junk, code, width=4000, height=4000)


def test_prefer_in_process_puts_every_isolated_decoder_last(monkeypatch):
    """A worker process decodes in process: no fork per image (the daemon's parent keeps the
    isolated decoders first)."""
    from gateway.imaging import codecs

    monkeypatch.setattr(codecs, "_REGISTRY", {k: list(v) for k, v in codecs._REGISTRY.items()})
    # default: hostile input cannot kill us (ours is pure numpy; the native ones are forked)
    assert [d.isolated for d in codecs.decoders_for("WSQ20")] == [False, True, False]
    assert codecs.decoders_for("JPEGL")[0].isolated
    codecs.prefer_in_process()
    for code in ("WSQ20", "JPEGL"):
        line = codecs.decoders_for(code)
        assert not line[0].isolated, code
        assert [d.isolated for d in line] == sorted(d.isolated for d in line)


@pytest.mark.parametrize(
    ("rtype", "value", "expected"),
    [
        (14, [("3",)], 3),
        (14, [("13",)], None),  # plain four fingers: not a rolled position
        (14, [("0",)], None),  # unknown
        (4, [("255",), ("7",)], 7),  # 4.004's unused bytes are 255 (BRIEF 1.4)
        (4, [("7",), ("255",)], 7),
        (4, [("X",)], None),
        (4, None, None),
    ],
)
def test_finger_position_of_type4_and_type14(rtype, value, expected):
    from gateway.imaging import finger_position

    record = an.Record(rtype)
    if value is not None:
        record["4.004" if rtype == 4 else "14.013"] = value
    assert finger_position(record) == expected


@pytest.mark.parametrize("code", ["\u00b2", "9" * 5000])
def test_a_compression_code_int_cannot_read_is_unknown(code):
    # "²" passes str.isdigit() and int() refuses it (as it refuses 5,000 digits): a ValueError
    # instead of the decoder's own error
    from gateway.imaging import ImagingError
    from gateway.imaging.codecs import canonical_compression

    with pytest.raises(ImagingError):
        canonical_compression(code)
