"""Synthetic fingerprints and CAR transactions (gateway.synth)."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest

import gateway.synth as synth
from gateway.ansinist import read, write
from gateway.synth import fields
from gateway.synth.masterprint import master as cached_master


def _dominant_period(patch: np.ndarray) -> float:
    """Ridge period (pixels) of a square patch: the peak of its radially summed power spectrum,
    refined by the power-weighted mean radius around the peak."""
    patch = patch.astype(float) - patch.mean()
    n = patch.shape[0]
    window = np.outer(np.hanning(n), np.hanning(n))
    power = np.abs(np.fft.fftshift(np.fft.fft2(patch * window))) ** 2
    yy, xx = np.mgrid[0:n, 0:n] - n // 2
    radius = np.hypot(yy, xx)
    ring = np.rint(radius).astype(int)
    profile = np.bincount(ring.ravel(), power.ravel())
    profile[:3] = 0  # the DC and the shading
    peak = int(np.argmax(profile[: n // 2]))
    near = (radius > peak - 1.5) & (radius < peak + 1.5)
    r = float((radius[near] * power[near]).sum() / power[near].sum())
    return n / r


def test_finger_is_deterministic_even_after_the_cache_is_cleared():
    first = synth.finger(3, 2, 1)
    cached_master.cache_clear()
    again = synth.finger(3, 2, 1)
    assert np.array_equal(first, again)


def test_image_format():
    img = synth.finger(1, 1, 0)
    assert img.shape == (synth.SIZE, synth.SIZE) == (416, 416)
    assert img.dtype == np.uint8
    assert synth.PPI == 500
    # White background around the finger, dark ridges on it.
    border = np.concatenate([img[:8].ravel(), img[-8:].ravel()])
    assert np.median(border) > 200
    assert np.percentile(img, 5) < 110


def test_identities_positions_and_impressions_differ():
    base = synth.finger(10, 3, 0).astype(float)
    for other in (synth.finger(11, 3, 0), synth.finger(10, 4, 0), synth.finger(10, 3, 1)):
        assert not np.array_equal(base, other)
    masters = [
        cached_master(10, 3).ridges,
        cached_master(11, 3).ridges,
        cached_master(10, 4).ridges,
    ]
    # Different fingers have unrelated ridge patterns: near-zero correlation of the masters.
    for a, b in ((0, 1), (0, 2), (1, 2)):
        r = np.corrcoef(masters[a].ravel(), masters[b].ravel())[0, 1]
        assert abs(r) < 0.2


def test_same_finger_same_master():
    m1 = synth.master(20, 7)
    m2 = synth.master(20, 7)
    assert m1 is m2 or np.array_equal(m1.ridges, m2.ridges)
    assert m1.cls in synth.CLASSES
    assert not m1.ridges.flags.writeable


@pytest.mark.parametrize("identity", [0, 5, 42])
def test_ridge_period_is_realistic(identity):
    m = synth.master(identity, 2)
    cx, cy = (int(round(v)) for v in m.geometry.centre)
    for dx, dy in ((0, 60), (-60, 20), (60, 20)):  # below the core region, where ridges are regular
        patch = m.ridges[cy + dy - 48 : cy + dy + 48, cx + dx - 48 : cx + dx + 48]
        assert 7.5 <= _dominant_period(patch) <= 11.5
    img = synth.finger(identity, 2, 0)
    ys, xs = np.nonzero(img < 128)
    cy, cx = int(np.median(ys)), int(np.median(xs))
    patch = img[cy - 48 : cy + 48, cx - 48 : cx + 48]
    assert 7.5 <= _dominant_period(patch) <= 11.5


def test_impression_rotation_is_bounded():
    angles = np.array([synth.capture(7, 1, k).rotation for k in range(60)])
    assert synth.MAX_ROTATION == 20.0
    assert np.all(np.abs(angles) <= synth.MAX_ROTATION)
    assert angles.std() > 3.0  # they do vary


def test_rendering_follows_the_declared_rotation():
    """Straight horizontal ridges rendered with each capture come out turned by its rotation."""
    from gateway.synth.impression import impression_params, impression_rng, render
    from gateway.synth.masterprint import Master

    n = fields.CANVAS
    ys = np.arange(n, dtype=np.float32)[:, None] * np.ones((1, n), np.float32)
    straight = Master(
        identity=0,
        position=1,
        geometry=fields.Geometry("arch", (), (), (n / 2, n / 2), (170.0, 200.0)),
        ridges=np.cos(2 * np.pi * ys / 9.5).astype(np.float32),
        mask=np.ones((n, n), np.float32),
        period=np.full((n // 2, n // 2), 9.5, np.float32),
        skin=0.0,
    )
    checked = 0
    for k in range(1, 30):
        rng = impression_rng(0, 1, k)
        params = impression_params(straight, k, rng)
        if abs(params.rotation) < 8:
            continue
        img = render(straight, params, rng).astype(float)
        gy, gx = np.gradient(img)
        z = (gx - 1j * gy) ** 2  # doubled gradient angle, y axis pointing up
        # Look only around the contact centre, where the skin is not dragged.
        a = np.radians(params.rotation)
        dx, dy = params.contact_centre
        u = dx * np.cos(a) + dy * np.sin(a) + img.shape[1] / 2 + params.shift[0]
        v = -dx * np.sin(a) + dy * np.cos(a) + img.shape[0] / 2 + params.shift[1]
        yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
        near = np.hypot(xx - u, yy - v) < 40
        normal = np.degrees(np.angle(z[near].sum())) / 2  # ridge normal, degrees
        measured = (normal - 90 + 90) % 180 - 90  # horizontal ridges have a vertical normal
        assert abs(measured - params.rotation) < 4, (params.rotation, measured)  # + skin jitter
        checked += 1
    assert checked >= 3


def test_class_frequencies():
    counts = dict.fromkeys(synth.CLASSES, 0)
    n = 3000
    for i in range(n):
        geom = fields.draw_geometry(np.random.default_rng(i), 1 + i % 10)
        counts[geom.cls] += 1
    for cls, expected in zip(synth.CLASSES, synth.CLASS_FREQUENCIES, strict=True):
        assert abs(counts[cls] / n - expected) < 0.03, (cls, counts[cls] / n)


@pytest.mark.parametrize("bad", [(-1, 1, 0), (1, 0, 0), (1, 11, 0), (1, 1, -1)])
def test_bad_arguments(bad):
    with pytest.raises(ValueError):
        synth.finger(*bad)


@pytest.fixture(scope="module")
def car():
    return synth.car_transaction(4242)


def test_car_round_trips(car):
    import wsq  # noqa: F401
    from PIL import Image

    data = write(car)
    back = read(data)
    assert back.tot == "CAR" and back.ver == "0400"
    assert [r.type for r in back.records] == [1, 2] + [14] * 10
    assert write(back) == data
    positions = []
    for record in back.records_of_type(14):
        assert record.value("14.011") == "WSQ20"
        assert record.value("14.009") == record.value("14.010") == "500"
        with Image.open(io.BytesIO(bytes(record.data))) as im:
            pixels = np.asarray(im)
        assert pixels.shape == (int(record.value("14.007")), int(record.value("14.006")))
        assert pixels.shape == (416, 416)
        positions.append(int(record.value("14.013")))
        # WSQ is lossy but close to the generated image.
        original = synth.finger(4242, positions[-1], 0).astype(float)
        assert np.abs(pixels - original).mean() < 12
    assert positions == list(range(1, 11))


def test_car_type2_is_synthetic_and_complete(car):
    t2 = car.records[1]
    mandatory = ["2.005", "2.018", "2.020", "2.022", "2.024", "2.025", "2.027", "2.029"]
    mandatory += ["2.031", "2.032", "2.045", "2.047", "2.073"]
    for tag in mandatory:
        assert tag in t2, tag
    assert "2.016" not in t2  # never a social security number
    ssn_like = re.compile(r"(?<!\d)\d{3}[- ]?\d{2}[- ]?\d{4}(?!\d)")
    for field in t2:
        assert not ssn_like.search(field.text), field
    assert re.fullmatch(r"[A-Z]+, [A-Z]+ [A-Z]", t2.value("2.018"))
    assert "SYNTHETIC" in t2.value("2.056")
    assert car.records[1].value("2.022") < car.records[1].value("2.045")


def test_car_is_deterministic():
    a = synth.transactions.demographics(77)
    b = synth.transactions.demographics(77)
    assert a == b
    assert a != synth.transactions.demographics(78)
