"""The numpy matcher: determinism, symmetry, serialisation, Type-9 export, ordering of scores.

No accuracy thresholds and no timings here: those live in ``benchmarks/accuracy.py``.
The prints are FVC2000 DB2 set B images, or synthetic prints in their place without
``../shared`` (tests/conftest.py, ``print_image``).
"""

from __future__ import annotations

import functools
import json
import re
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from gateway.matcher import Template, compare, extract
from tests.conftest import PRINT_SIZE, SYNTHETIC_PRINTS, TRADITIONAL, print_image

FINGERS = (101, 102, 103, 104)
# a crop of impression 101_1 that is print everywhere (the synthetic print is centred)
CROP = np.s_[138:278, 138:278] if SYNTHETIC_PRINTS else np.s_[120:260, 60:200]


def _pixels(finger: int, impression: int) -> np.ndarray:
    path = print_image(finger, impression)
    if not path.exists():
        pytest.fail(f"the FVC evaluation images are missing: {path}")
    return np.asarray(Image.open(path).convert("L"))


@pytest.fixture(scope="module")
def templates() -> dict[tuple[int, int], Template]:
    return {(f, i): extract(_pixels(f, i)) for f in FINGERS for i in (1, 2)}


def test_extraction_is_deterministic(templates):
    again = extract(_pixels(101, 1))
    assert again.to_bytes() == templates[101, 1].to_bytes()
    assert len(again) > 0


def test_template_fields(templates):
    t = templates[102, 1]
    m = t.minutiae
    assert m.shape == (len(t), 5)
    assert (m[:, 0] >= 0).all() and (m[:, 0] < t.width).all()
    assert (m[:, 1] >= 0).all() and (m[:, 1] < t.height).all()
    assert ((m[:, 2] >= 0) & (m[:, 2] < 2 * np.pi)).all()
    assert set(np.unique(m[:, 3])) <= {1.0, 2.0}
    assert ((m[:, 4] >= 0) & (m[:, 4] <= 1)).all()
    assert (t.width, t.height) == PRINT_SIZE


def test_compare_is_symmetric(templates):
    keys = list(templates)
    for a in keys[:4]:
        for b in keys:
            assert compare(templates[a], templates[b]) == compare(templates[b], templates[a])


def test_compare_with_itself_is_high(templates):
    t = templates[103, 2]
    assert compare(t, t) > 0.9
    assert 0.0 <= compare(t, templates[104, 1]) <= 1.0


def test_genuine_pairs_score_above_impostor_pairs_of_the_same_fingers(templates):
    for f in FINGERS:
        genuine = compare(templates[f, 1], templates[f, 2])
        impostors = [
            compare(templates[f, i], templates[g, j])
            for g in FINGERS
            if g != f
            for i in (1, 2)
            for j in (1, 2)
        ]
        assert genuine > max(impostors), (f, genuine, max(impostors))


def test_serialisation_round_trip(templates):
    t = templates[101, 2]
    data = t.to_bytes()
    assert data[:4] == b"GWFT" and data[4] == 3  # extracted templates carry a quality
    back = Template.from_bytes(data)
    assert back == t and back.quality == t.quality and 0 < t.quality <= 100
    assert back.to_bytes() == data
    np.testing.assert_array_equal(back.minutiae, t.minutiae)
    np.testing.assert_array_equal(back.block_mask, t.block_mask)
    other = templates[101, 1]
    assert compare(back, other) == compare(t, other)
    assert len(data) < 32 + 7 * len(t) + 4 * len(t.cores) + t.block_mask.size // 8 + 8


def _with_period(t: Template, period: float) -> Template:
    return Template(t.width, t.height, t.minutiae, t.block_mask, t.source_ppi, t.cores, period)


def test_ridge_period_serialisation_and_gate(templates):
    from gateway.matcher import mcc

    a, b = templates[101, 1], templates[101, 2]
    plain_a, plain_b = _with_period(a, 0), _with_period(b, 0)
    raw = compare(plain_a, plain_b)
    pa = _with_period(a, 9.0)
    assert pa.period == 9.0 and plain_a.period == 0
    # version 2 (one byte more) with a period, version 1 without; both read back
    data = pa.to_bytes()
    assert data[4] == 2 and len(data) == len(plain_a.to_bytes()) + 1
    assert plain_a.to_bytes()[4] == 1
    back = Template.from_bytes(data)
    assert back == pa and back.period == 9.0 and back.to_bytes() == data
    assert Template.from_bytes(plain_a.to_bytes()).period == 0
    # quantised to 1/16 pixel as serialised
    assert _with_period(a, 9.0 + 1 / 20).period == 9.0 + 1 / 16
    # the period never reorders the operands: the digest is that of the version 1 form
    assert pa.key[:8] == plain_a.key[:8]
    # the gate: no change within PERIOD_TOL or with an unknown period, lower beyond, symmetric
    near = 9.0 * np.exp(mcc.PERIOD_TOL * 0.9)
    assert compare(pa, _with_period(b, near)) == raw
    assert compare(pa, plain_b) == raw
    ratio = mcc.PERIOD_TOL + 0.5 * mcc.PERIOD_FALL
    far_b = _with_period(b, 9.0 * np.exp(ratio))
    want = raw * mcc.period_factor(np.log(9.0), np.log(far_b.period))
    assert 0.4 * raw < compare(pa, far_b) == compare(far_b, pa) < 0.6 * raw
    assert abs(compare(pa, far_b) - want) < 1e-12
    assert compare(pa, _with_period(b, 9.0 * np.exp(ratio + mcc.PERIOD_FALL))) == 0.0
    # a version 2 template must carry a period
    body = bytearray(data[:-4])
    body[16] = 0  # the period byte, after the 16-byte header
    with pytest.raises(ValueError):
        Template.from_bytes(bytes(body) + struct.pack(">I", zlib.crc32(bytes(body))))


def test_quality_version_3_and_the_older_versions(templates):
    t = templates[103, 1]
    data = t.to_bytes()
    # version 3: the period byte, then the quality byte, after the 16-byte header
    assert data[4] == 3 and data[16] == round(t.period * 16) and data[17] == t.quality
    older = Template(t.width, t.height, t.minutiae, t.block_mask, t.source_ppi, t.cores, t.period)
    assert older.to_bytes()[4] == 2 and len(older.to_bytes()) == len(data) - 1
    back = Template.from_bytes(older.to_bytes())
    assert back.quality is None and back.period == t.period
    # the quality neither changes a score nor reorders the operands (the digest is the same)
    assert older.key == t.key
    other = templates[103, 2]
    assert compare(older, other) == compare(t, other)
    # a quality byte above 100 is refused
    body = bytearray(data[:-4])
    body[17] = 101
    with pytest.raises(ValueError, match="quality"):
        Template.from_bytes(bytes(body) + struct.pack(">I", zlib.crc32(bytes(body))))


def test_quality_is_zero_without_a_print_and_positive_for_a_real_crop():
    rng = np.random.default_rng(7)
    flat = np.full((300, 300), 200, np.uint8)
    noise = rng.integers(0, 256, (300, 300)).astype(np.uint8)
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(rng.normal(128, 60, (200, 200)), 2)
    smooth = np.clip((smooth - smooth.mean()) / smooth.std() * 50 + 128, 0, 255)
    for image in (flat, np.zeros((100, 100), np.uint8), noise, smooth.astype(np.uint8)):
        assert extract(image).quality == 0
    # a crop that is print everywhere (no background to segment against) is a print
    crop = _pixels(101, 1)[CROP]
    t = extract(crop)
    assert len(t) > 0 and t.quality > 0
    # the full impression scores higher than its crop
    assert extract(_pixels(101, 1)).quality > t.quality


def test_quality_ranks_broken_ridges_below_clear_ones(shared):
    """FVC2004 DB3_B 108_7: its ridge flow is as coherent as a clear print's, but its ridges are
    broken into grains; it is in two of the set's genuine failures at FMR 1 % (block-grid
    offsets 5 and 11), 103_6 in none.  The mean coherence alone (before session 9) gave them
    79 and 68 (offsets 0, 5 and 11); the filtered print's ridge clarity (the energy the
    filtering keeps, the pixels the two passes binarise differently) ranks them the other
    way: 72 and 81."""
    folder = shared / "eval" / "fvc2004-db3-b"
    quality = {}
    for name in ("108_7", "103_6"):
        t = extract(np.asarray(Image.open(folder / f"{name}.png").convert("L")), 500)
        quality[name] = t.quality
    assert 0 < quality["108_7"] < quality["103_6"] - 5, quality


def test_quality_terms_of_the_filtered_print():
    from gateway.matcher import features as fx

    bmask = np.zeros((10, 10), bool)
    bmask[2:8, 2:8] = True
    coh = np.full((10, 10), 0.7)
    mid = (fx.QUALITY_DISAGREE_MID, fx.QUALITY_ENERGY_MID)
    neutral = fx.finger_quality(bmask, coh, 20)  # unknown terms (one pass) count as their MID
    assert neutral == fx.finger_quality(bmask, coh, 20, 1.0, *mid) > 0
    # less energy kept or more pixels turned over by the second pass: a lower quality
    assert fx.finger_quality(bmask, coh, 20, 1.0, mid[0], mid[1] - 0.1) < neutral
    assert fx.finger_quality(bmask, coh, 20, 1.0, mid[0] + 0.02, mid[1]) < neutral
    assert fx.finger_quality(bmask, coh, 20, 1.0, mid[0] - 0.01, mid[1] + 0.1) > neutral
    # ridge flow no clearer than noise is no print, whatever the filtered print looks like
    assert fx.finger_quality(bmask, np.full((10, 10), fx.QUALITY_COH_LO), 20, 1.0, 0.0, 1.0) == 0
    # and the quality rises from 0 with the coherence, not in a step (whatever the ridge terms)
    big = np.ones((20, 20), bool)  # (an area term of 1)
    above = [
        fx.finger_quality(big, np.full((20, 20), fx.QUALITY_COH_LO + e), 20, 1.0, 0.0, 1.0)
        for e in (0.005, 0.02, 0.05, 0.1, 0.2)
    ]
    assert above[0] <= 3 and above == sorted(above) and above[-1] > 50
    assert fx.finger_quality(bmask, coh, 0, 1.0, *mid) == 0
    assert fx.finger_quality(np.zeros((10, 10), bool), coh, 20, 1.0, *mid) == 0
    # at most 100, at least 0
    assert fx.finger_quality(bmask, np.ones((10, 10)), 20, 1.0, 0.0, 1.0) <= 100
    assert fx.finger_quality(bmask, coh, 20, 1.0, 1.0, 0.0) == 0


def test_from_bytes_of_garbage_raises_value_error(templates):
    data = templates[104, 2].to_bytes()
    rng = np.random.default_rng(4)
    bad = [b"", b"GWFT", b"\x00" * 40, bytes(rng.integers(0, 256, 300, dtype=np.uint8))]
    bad += [data[:n] for n in (5, 20, len(data) // 2, len(data) - 1)]
    bad.append(data + b"\x00")
    for pos in (0, 4, 8, 20, len(data) // 2, len(data) - 2):  # single flipped bits
        flipped = bytearray(data)
        flipped[pos] ^= 0x10
        bad.append(bytes(flipped))
    # a valid checksum over nonsense: a minutia outside the image
    body = bytearray(data[:-4])
    struct.pack_into(">H", body, 18, 60000)  # x of the first minutia (after period, quality)
    bad.append(bytes(body) + struct.pack(">I", zlib.crc32(bytes(body))))
    for _ in range(200):
        bad.append(bytes(rng.integers(0, 256, int(rng.integers(0, 600)), dtype=np.uint8)))
    for blob in bad:
        with pytest.raises(ValueError):
            Template.from_bytes(blob)
    with pytest.raises(ValueError):
        Template.from_bytes(12345)


def test_type9_fields(templates):
    t = templates[102, 2]
    fields = t.to_type9_fields(impression=0, position=3)
    assert {"9.003", "9.004", "9.005", "9.006", "9.007", "9.010", "9.012"} <= set(fields)
    assert fields["9.004"] == [("S",)]
    assert fields["9.006"] == [("3",)]
    assert fields["9.010"] == [(str(len(t)),)]
    mrc = fields["9.012"]
    assert len(mrc) == len(t)
    for n, sub in enumerate(mrc, start=1):
        index, xyt, quality, kind = sub
        assert index == str(n)
        assert re.fullmatch(r"\d{11}", xyt)
        assert 0 <= int(xyt[8:]) <= 359
        assert 2 <= int(quality) <= 63
        assert kind in ("A", "B", "C", "D")
    for sub in fields.get("9.008", []):
        assert re.fullmatch(r"\d{8}", sub[0])
    # x in 0.01 mm from the left, y from the bottom: the first minutia
    x, y = t.minutiae[0, :2]
    assert int(mrc[0][1][:4]) == round(x * 25.4 / 500 * 100)
    assert int(mrc[0][1][4:8]) == round((t.height - 1 - y) * 25.4 / 500 * 100)
    # the codec takes the values as they are
    from gateway.ansinist import Record

    record = Record(9)
    for tag, value in fields.items():
        record[tag] = value
    assert record["9.012"].subfields == tuple(tuple(s) for s in mrc)


def test_other_resolutions_are_rescaled():
    pixels = _pixels(101, 1)
    width, height = PRINT_SIZE
    big = np.asarray(Image.fromarray(pixels).resize((2 * width, 2 * height), Image.BILINEAR))
    t = extract(big, ppi=1000)
    assert abs(t.width - width) <= 1 and abs(t.height - height) <= 1
    assert t.source_ppi == 1000


@functools.lru_cache(maxsize=1)
def _synthetic_pairs():
    """(enrolled template, probe pixels, probe template) of four synthetic genuine pairs."""
    from gateway import synth

    out = []
    for identity, position in ((1, 1), (2, 2), (3, 1), (3, 2)):
        probe = synth.finger(identity, position, 1)
        out.append((extract(synth.finger(identity, position, 0)), probe, extract(probe)))
    return out


@pytest.mark.parametrize("ppi", [300, 400, 569, 700, 1000])
def test_genuine_scores_survive_other_resolutions(ppi):
    """A synthetic impression rescaled to ``ppi`` (bicubic) and declared so keeps its genuine
    score against another impression at 500 ppi: each at least 40 % of the score at 500 ppi,
    their mean at least 75 % (450-650 ppi extract at the image's own resolution and scale the
    features, others rescale the image).  Measured with the two filtering passes (0.5.0):
    0.45-1.20, means 0.78-1.0; with one pass it was 0.77-1.49.  The clean "easy" synthetic
    prints lose more to the second pass's merge than real prints: on rescaled FVC prints the
    two passes keep genuine scores as well as one did (the test below, docs/matcher.md)."""
    ratios = []
    for enrolled, probe, at500 in _synthetic_pairs():
        image = Image.fromarray(probe)
        size = (round(image.width * ppi / 500), round(image.height * ppi / 500))
        scaled = extract(np.asarray(image.resize(size, Image.BICUBIC)), ppi)
        assert abs(scaled.width - image.width) <= 1 and abs(scaled.height - image.height) <= 1
        assert abs(scaled.period / at500.period - 1) < 0.1
        ratios.append(compare(enrolled, scaled) / compare(enrolled, at500))
    assert min(ratios) >= 0.4 and np.mean(ratios) >= 0.75, ratios


@pytest.mark.slow
@pytest.mark.parametrize(("folder", "ext"), [("fvc2000-db1-b", "tif"), ("fvc2004-db3-b", "png")])
def test_rescaled_fvc_prints_keep_their_genuine_scores(shared, folder, ext):
    """Issue 17's resolution bullet on real prints: impression 2 of each finger rescaled to
    300-1000 ppi (bicubic) and declared so, compared with impression 1 at 500 ppi.  Over the
    pairs that score at least 0.05 at 500 ppi, the mean ratio to the 500 ppi score is at least
    0.85 at every resolution and no pair falls under 0.35 (measured: means 0.89-1.20, lowest
    pair 0.38 at 300 ppi; one filtering pass gave means 0.85-1.04, lowest 0.45)."""
    root = shared / "eval" / folder

    def pixels(finger, impression):
        return np.asarray(Image.open(root / f"{finger}_{impression}.{ext}").convert("L"))

    ratios: dict[int, list[float]] = {}
    for finger in range(101, 111):
        enrolled, probe = extract(pixels(finger, 1)), pixels(finger, 2)
        base = compare(enrolled, extract(probe))
        if base < 0.05:
            continue
        image = Image.fromarray(probe)
        for ppi in (300, 400, 700, 1000):
            size = (round(image.width * ppi / 500), round(image.height * ppi / 500))
            scaled = extract(np.asarray(image.resize(size, Image.BICUBIC)), ppi)
            ratios.setdefault(ppi, []).append(compare(enrolled, scaled) / base)
    assert all(len(r) >= 8 for r in ratios.values()), ratios
    for ppi, r in ratios.items():
        assert np.mean(r) >= 0.85 and min(r) >= 0.35, (ppi, r)


def test_blank_and_bad_images():
    blank = extract(np.full((300, 300), 200, np.uint8))
    assert len(blank) == 0
    assert compare(blank, blank) == 0.0
    with pytest.raises(ValueError):
        extract(np.zeros((20, 20), np.uint8))
    with pytest.raises(ValueError):
        extract(np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ValueError):
        extract(np.zeros((100, 100), np.uint8), ppi=0)


def test_match_command(capsys):
    from gateway.cli import main

    a, b = print_image(101, 1), print_image(101, 2)
    assert main(["match", str(a), str(b), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert 0 < out["score"] <= 1
    assert out["a"]["minutiae"] > 0


def test_compare_detail_explains_the_score(templates):
    from gateway.matcher import compare_detail

    a, b, other = templates[101, 1], templates[101, 2], templates[102, 1]
    d = compare_detail(a, b)
    assert d["score"] == compare(a, b)
    pairs = d["pairs"]
    assert len(pairs) >= 4
    # each pair names real minutiae, one-to-one, best first
    assert all(0 <= i < len(a) and 0 <= j < len(b) for i, j, _ in pairs)
    assert len({i for i, _, _ in pairs}) == len({j for _, j, _ in pairs}) == len(pairs)
    sims = [s for _, _, s in pairs]
    assert sims == sorted(sims, reverse=True)
    # the score is the mean of the pairs' relaxed similarities (times the period gate)
    assert d["score"] == pytest.approx(np.mean(sims) * d["period_factor"], rel=1e-5)
    # the alignment carries the paired minutiae of a onto those of b: for a genuine pair the
    # residual is a few pixels, far smaller than for an impostor pair
    al = d["alignment"]
    ia = [i for i, _, _ in pairs]
    jb = [j for _, j, _ in pairs]
    c, s_ = np.cos(al["rotation"]), np.sin(al["rotation"])
    moved = a.minutiae[ia, :2] @ np.array([[c, -s_], [s_, c]]).T + [al["dx"], al["dy"]]
    rms = np.sqrt(np.mean(np.sum((moved - b.minutiae[jb, :2]) ** 2, 1)))
    assert rms == pytest.approx(al["residual"]) and al["residual"] < 10
    assert compare_detail(a, other)["alignment"]["residual"] > 2 * al["residual"]
    # the other order names the same pairs, swapped
    back = compare_detail(b, a)
    assert back["score"] == d["score"]
    assert [(j, i) for i, j, _ in back["pairs"]] == [(i, j) for i, j, _ in pairs]


def test_match_command_draws_the_pairs(tmp_path, capsys):
    from gateway.cli import main
    from gateway.matcher import MATCH_THRESHOLD

    a, b = print_image(101, 1), print_image(101, 2)
    if not a.exists():
        raise FileNotFoundError(a)
    out = tmp_path / "pairs.png"
    assert main(["match", str(a), str(b), "--png", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"match at threshold {MATCH_THRESHOLD:g}" in text and "alignment A -> B" in text
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 2 * PRINT_SIZE[0] and im.height >= PRINT_SIZE[1]
        px = np.asarray(im.convert("RGB")).astype(int)
    # the pair lines and marks are drawn in colour on the grey prints
    green = (px[..., 1] > 150) & (px[..., 0] < 80) & (px[..., 2] < 110)
    red = (px[..., 0] > 200) & (px[..., 1] < 60) & (px[..., 2] < 60)
    assert green.sum() > 50 and red.sum() > 50
    # an impostor pair is "no match" at the default threshold, "match" at a threshold of 0
    other = print_image(102, 1)
    assert main(["match", str(a), str(other), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["decision"] == "no match" and got["threshold"] == MATCH_THRESHOLD
    assert main(["match", str(a), str(other), "--json", "--threshold", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["decision"] == "match"
    assert main(["match", str(a), str(b), "--png", str(tmp_path / "no" / "such.png")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_match_command_unreadable_input(tmp_path, capsys):
    from gateway.cli import main

    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"this is neither an image nor a transaction")
    assert main(["match", str(junk), str(print_image(101, 1))]) == 2
    err = capsys.readouterr().err
    assert "junk.bin" in err and "Traceback" not in err
    assert main(["match", str(tmp_path / "missing.tif"), str(junk)]) == 2
    assert "missing.tif" in capsys.readouterr().err


def test_match_command_on_transactions(capsys):
    from gateway.cli import main

    # one Type-4 record, finger 10 (the same bytes as eval/nbis-an2k-testdata/valid1.1.an2)
    txn = TRADITIONAL / "nbis-an2kconvert" / "valid1.1.an2"
    assert main(["match", str(txn), str(txn), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["score"] > 0.9
    assert "Type-4" in out["a"]["source"]
    assert main(["match", str(txn), str(txn), "--fgp", "3"]) == 2
    assert "finger position 3" in capsys.readouterr().err


def test_local_similarity_matches_the_direct_formula(templates):
    """The fused products of ``mcc`` give MCC's ``1 - |a - b| / (|a| + |b|)`` over the cells
    valid in both cylinders (0 when too few are common or directions differ by > 90 deg)."""
    from gateway.matcher import mcc
    from gateway.matcher.features import pixel_mask

    def direct(t):
        m = t.minutiae
        mask = pixel_mask(t.block_mask, (t.height, t.width))
        values, cells, ok = mcc.cylinders(m[:, 0], m[:, 1], m[:, 2], mask)
        sel = np.nonzero(ok)[0]
        if sel.size > mcc.MAX_CYLINDERS:
            sel = np.sort(sel[np.argsort(-m[sel, 4], kind="stable")[: mcc.MAX_CYLINDERS]])
        v = values[sel].astype(np.float64).reshape(sel.size, -1, mcc.ND)
        return v, cells[sel].astype(bool), m[sel, 2]

    a, b = templates[101, 1], templates[101, 2]
    va, ca, ta = direct(a)
    vb, cb, tb = direct(b)
    want = np.zeros((len(va), len(vb)))
    cos = np.cos(ta[:, None] - tb[None, :])
    for i in range(len(va)):
        for j in range(len(vb)):
            common = ca[i] & cb[j]
            if common.sum() < mcc.MIN_COMMON * mcc._DISC_CELLS or cos[i, j] < 0:
                continue
            x, y = va[i][common], vb[j][common]
            den = np.linalg.norm(x) + np.linalg.norm(y)
            want[i, j] = 1 - np.linalg.norm(x - y) / den if den else 1.0
    got = mcc.local_similarity(a.prepared, b.prepared)
    assert got.shape == want.shape
    boundary = np.abs(cos) < 1e-6  # exactly 90 degrees apart: either answer is right
    assert np.abs(got - want)[~boundary].max() < 1e-3


def test_compare_of_tiny_templates_is_finite_and_symmetric(templates):
    t = templates[102, 1]
    tiny = [Template(t.width, t.height, t.minutiae[:n], t.block_mask) for n in (0, 1, 2, 3, 6)]
    for a in tiny + [t]:
        for b in tiny + [t]:
            s = compare(a, b)
            assert np.isfinite(s) and 0.0 <= s <= 1.0
            assert s == compare(b, a)


def test_one_score_scale_for_match_and_search(templates, capsys):
    """The score `ebts-gateway match A B` prints is the candidate score a 1:N search gives for
    the same pair: the default search scores its candidates with compare (``rescore``), as
    ``second_stage="compare"`` does; one scale for 1:1, search and thresholds."""
    from gateway.cli import main
    from gateway.matcher import synthetic
    from gateway.matcher.gallery import Gallery

    assert main(["match", str(print_image(101, 1)), str(print_image(101, 2)), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)["score"]
    g = Gallery()
    synthetic.populate(g, 30, seed=5)
    g.add("MATE", 3, templates[101, 2])
    g.add("OTHER", 3, templates[102, 1])
    probe = {3: templates[101, 1]}
    fast = g.search(probe, top=3, rescore=0)
    one = g.search(probe, top=3)
    full = g.search(probe, top=3, second_stage="compare")
    assert one[0].subject_id == full[0].subject_id == "MATE"
    for cands in (one, full):
        assert cands[0].score == pytest.approx(printed, abs=1e-5)
        assert cands[0].finger_scores == {
            3: pytest.approx(compare(templates[101, 1], templates[101, 2]), abs=1e-5)
        }
    # every rescored candidate is on the compare scale (the fast stage's is another)
    for c in one:
        assert c.score == pytest.approx(compare(probe[3], g.template(c.subject_id, 3)), abs=1e-5)
    assert fast[0].score != pytest.approx(one[0].score, abs=1e-3)


def test_the_second_filtering_pass_keeps_genuine_above_impostor(monkeypatch):
    # features.SECOND_PASS_BW (on by default since 0.5.0, docs/matcher.md "Session 7" and
    # "Session 8"): the templates stay deterministic and ordered (each finger's genuine pair
    # above its impostor pairs)
    from gateway.matcher import features

    assert np.pi / 4 == features.SECOND_PASS_BW
    monkeypatch.setattr(features, "SECOND_PASS_BW", None)
    first = extract(_pixels(101, 1)).to_bytes()
    monkeypatch.setattr(features, "SECOND_PASS_BW", np.pi / 4)
    two = {(f, i): extract(_pixels(f, i)) for f in FINGERS for i in (1, 2)}
    assert extract(_pixels(101, 1)).to_bytes() == two[101, 1].to_bytes()
    assert two[101, 1].to_bytes() != first  # the pass is on: other minutiae
    for f in FINGERS:
        genuine = compare(two[f, 1], two[f, 2])
        impostors = [
            compare(two[f, i], two[g, j]) for g in FINGERS if g != f for i in (1, 2) for j in (1, 2)
        ]
        assert genuine > 1.5 * float(np.median(impostors)), (f, genuine, impostors)


def test_the_merged_second_pass_keeps_synthetic_genuine_above_every_impostor(monkeypatch):
    """The second pass's minutiae alone (``SECOND_PASS_KEEP = None``, session 7) put synthetic
    finger 103's genuine pair (0.030) under its best impostor (0.033), as they raised FVC2004
    DB4's impostor tail; with the first pass's minutiae kept where its skeleton was clean
    (session 8) the genuine pair is 0.075 against 0.034, and every synthetic finger's genuine
    pair is above all its impostor pairs.  Synthetic prints whether or not ../shared is here."""
    from gateway import synth
    from gateway.matcher import features

    monkeypatch.setattr(features, "SECOND_PASS_BW", np.pi / 4)
    assert features.SECOND_PASS_KEEP is not None
    two = {(f, i): extract(synth.finger(f, 2, i)) for f in FINGERS for i in (1, 2)}
    for f in FINGERS:
        genuine = compare(two[f, 1], two[f, 2])
        impostors = [
            compare(two[f, i], two[g, j]) for g in FINGERS if g != f for i in (1, 2) for j in (1, 2)
        ]
        assert genuine > max(impostors), (f, genuine, impostors)


def test_a_template_of_many_minutiae_is_prepared_in_bounded_memory():
    """A template may hold up to 65,535 minutiae (a noisy image at the size limit gives 50,000).
    The cylinders' neighbour count once took an all-pairs matrix of them (20,000 minutiae: over
    6 GB); under a 1.2 GB address-space limit (a child process) preparing and comparing such a
    template must finish, with at most MAX_CYLINDERS cylinders."""
    from tests.conftest import run_with_memory_limit

    run = run_with_memory_limit("""
import numpy as np
from gateway.matcher import Template, compare, mcc
n, rng = 20000, np.random.default_rng(2)
m = np.stack([rng.uniform(20, 2500, n), rng.uniform(20, 2500, n), rng.uniform(0, 6.28, n),
              rng.integers(1, 3, n), rng.uniform(0.5, 1, n)], 1)
t = Template(2540, 2540, m, np.ones((160, 160), bool), period=9.0, quality=50)
small = Template(2540, 2540, m[:60], np.ones((160, 160), bool), period=9.0, quality=50)
assert t.prepared.n == mcc.MAX_CYLINDERS
print(compare(t, small))
""")
    assert run.returncode == 0, run.stderr[-2000:]
    assert 0.0 <= float(run.stdout) <= 1.0
