"""Fréchet audio distance: closed forms, a reference implementation, per-class, and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg
import soundfile as sf
from typer.testing import CliRunner

from audioaudit.generation.fad import fad, fad_per_class, frechet_distance, gaussian_stats


def _scipy_fd(mu1, s1, mu2, s2):
    """The textbook formula with scipy's sqrtm (Heusel et al. 2017), as a reference."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean))


def test_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 0.25]), np.array([4.0, 1.0, 0.25])
    expect = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expect, rel=1e-12)


def test_matches_sqrtm_reference_on_full_covariances():
    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = m1 @ m1.T + 0.1 * np.eye(6), m2 @ m2.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_scipy_fd(mu1, s1, mu2, s2), rel=1e-8)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-8)


def test_fad_of_sets():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 8))
    assert fad(x, x).fad == pytest.approx(0.0, abs=1e-9)
    shift = np.full(8, 0.5)
    assert fad(x, x + shift).fad == pytest.approx(float(shift @ shift), rel=1e-9)  # same covariance
    r = fad(x[:20], rng.normal(size=(10, 8)) * 2)
    assert r.n_a == 20 and r.n_b == 10 and r.dim == 8 and r.fad > 0
    few = fad(rng.normal(size=(5, 64)), rng.normal(size=(7, 64)))  # singular covariances (N < dim)
    assert np.isfinite(few.fad) and few.fad > 0
    with pytest.raises(ValueError, match="N >= 2"):
        gaussian_stats(x[:1])
    with pytest.raises(ValueError, match="sizes differ"):
        fad(x, x[:, :4])


def test_fad_per_class():
    rng = np.random.default_rng(2)
    a = np.concatenate([rng.normal(size=(50, 4)), rng.normal(size=(50, 4)) + 3])
    b = np.concatenate([rng.normal(size=(60, 4)), rng.normal(size=(60, 4))])
    la, lb = ["x"] * 50 + ["y"] * 50, ["x"] * 60 + ["y"] * 60
    per = fad_per_class(a, la, b, lb)
    assert set(per) == {"x", "y"} and per["x"].fad < 1.0 < per["y"].fad
    assert fad_per_class(a, [None] * 100, b, lb) == {}


def _tones(folder, freqs, cls=None, sr=16000):
    d = folder / cls if cls else folder
    d.mkdir(parents=True, exist_ok=True)
    t = np.arange(sr) / sr
    for i, f in enumerate(freqs):
        sf.write(str(d / f"t{i}.wav"), (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32), sr)


def test_fad_cli_with_the_mel_encoder(tmp_path):
    from audioaudit.cli import app

    gen, ref = tmp_path / "gen", tmp_path / "ref"
    _tones(gen, [300, 330, 360])
    (gen / "metadata.csv").write_text("path,class\nt0.wav,low\nt1.wav,low\nt2.wav,low\n")
    _tones(ref, [310, 340, 370], "low")
    _tones(ref, [2000, 2500], "high")
    out = tmp_path / "fad.json"
    r = CliRunner().invoke(app, ["fad", str(gen), str(ref), "--encoder", "mel", "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["overall"]["fad"] > 0 and doc["overall"]["n_a"] == 3 and doc["overall"]["n_b"] == 5
    assert set(doc["per_class"]) == {"low"} and doc["per_class"]["low"]["fad"] < doc["overall"]["fad"]
