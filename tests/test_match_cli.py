"""`ebts-gateway match A B` decides at the threshold it says: --threshold, a gallery's one-finger
threshold (--gallery, or the configured gallery with --config), else MATCH_THRESHOLD."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import pytest

from gateway.cli import main

synth = pytest.importorskip("gateway.synth")


def _cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """Two impressions of one synthetic finger as PNG files, and a calibrated gallery."""
    from PIL import Image

    root = tmp_path_factory.mktemp("match")
    files = []
    for impression in (0, 1):
        path = root / f"f{impression}.png"
        Image.fromarray(synth.finger(5, 2, impression)).save(path, dpi=(500, 500))
        files.append(path)
    gallery = root / "gallery"
    assert _cli("gallery", "build", "--synthetic", 30, "--seed", 4, gallery)[0] == 0
    assert _cli("gallery", "calibrate", gallery, "--searches", 4)[0] == 0
    return root, files, gallery


def test_match_decides_at_the_gallery_threshold(setting):
    from gateway.matcher import MATCH_THRESHOLD
    from gateway.matcher.gallery import Gallery

    root, (a, b), gallery = setting
    one = Gallery.load(gallery).thresholds[1]
    rc, out, _ = _cli("match", a, b, "--gallery", gallery, "--json")
    got = json.loads(out)
    assert rc == 0 and got["threshold"] == one
    assert got["threshold_source"] == f"one-finger threshold of gallery {gallery}"
    assert got["decision"] == ("match" if got["score"] >= one else "no match")
    rc, out, _ = _cli("match", a, b)
    assert rc == 0 and f"at threshold {MATCH_THRESHOLD:g} (1:1 threshold" in out
    # the configured gallery, or the configured threshold, decides as the daemon would
    config = root / "gateway.toml"
    body = f'data_dir = "{root / "data"}"\n[gallery]\nfbi = "{gallery}"\n'
    config.write_text(body)
    rc, out, _ = _cli("match", a, b, "--config", config)
    assert rc == 0 and f"at threshold {one:g} (one-finger threshold of gallery {gallery})" in out
    config.write_text(f"{body}[matcher]\nthreshold = 0.25\n")
    rc, out, _ = _cli("match", a, b, "--config", config)
    assert rc == 0 and f"at threshold 0.25 ([matcher] threshold of {config})" in out


def test_match_refuses_a_threshold_it_cannot_trust(setting, tmp_path):
    root, (a, b), gallery = setting
    old = tmp_path / "old"
    from gateway.matcher.gallery import Gallery

    g = Gallery.load(gallery)
    g.save(old)
    index = json.loads((old / "index.json").read_text())
    del index["score_scale"]  # calibrated before the scale was recorded
    (old / "index.json").write_text(json.dumps(index))
    rc, out, err = _cli("match", a, b, "--gallery", old)
    assert rc == 2 and not out and f"run `ebts-gateway gallery calibrate {old}`" in err
    g.thresholds = {}  # ten-finger threshold only: not the one of a single finger
    g.save(old)
    rc, _, err = _cli("match", a, b, "--gallery", old)
    assert rc == 2 and "no one-finger threshold" in err
    rc, _, err = _cli("match", a, b, "--gallery", tmp_path / "none")
    assert rc == 2 and "not a gallery" in err
    with pytest.raises(SystemExit):  # one source of threshold at a time
        _cli("match", a, b, "--gallery", gallery, "--threshold", 0.1)
