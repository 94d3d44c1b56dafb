"""Every transformation family takes every clip length the corpus loader takes.

A property test over lengths from 1 sample to 30 s at 16 and 22.05 kHz and strengths
0…1: finite float32 mono, never empty, the length within ``augment.length_range``, for
``transform`` and for ``random_view`` chains, with and without a pool of ``others``
of other lengths. Plus the regressions behind it: a shift longer than the clip (the
crash of a 150-epoch run's calibration), a 5 ms fade silencing a short clip, resampling
round trips of a few samples, MP3 round trips that came back ``MP3_DELAY`` samples late.
"""
from __future__ import annotations

import numpy as np
import pytest

from audioaudit.detector import augment as A

RATES = (16000, 22050)
SAMPLES = (1, 2, 3, 7, 64, 511, 1000, 5751)
SECONDS = (0.25, 1.0, 3.0, 30.0)
CASES = [(sr, n) for sr in RATES for n in (*SAMPLES, *(int(round(s * sr)) for s in SECONDS))]


def _clip(n: int, seed: int = 0) -> np.ndarray:
    """A tone plus noise (both ends of the spectrum, never silent), peak ~0.4."""
    rng = np.random.default_rng([seed, n])
    t = np.arange(n)
    return (0.3 * np.sin(0.07 * t + rng.uniform(0, 6)) + 0.1 * rng.standard_normal(n)).astype(np.float32)


def _others(sr: int) -> list[np.ndarray]:
    return [_clip(1, 1), _clip(3, 2), _clip(int(0.3 * sr), 3), _clip(2 * sr, 4)]


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def _check(y: np.ndarray, lo: int, hi: int, what: str) -> None:
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.ndim == 1, what
    assert y.size >= 1 and lo <= len(y) <= hi, f"{what}: length {len(y)} not in [{lo}, {hi}]"
    assert np.all(np.isfinite(y)), what


def test_length_range_is_documented_per_family():
    for name, fam in A.FAMILIES.items():
        lo, hi = fam.length_ratio
        assert 0 < lo <= hi, name
        assert (lo, hi) == (1.0, 1.0) or name in ("crop", "speed", "stretch", "layered", "excerpt"), name
        assert A.length_range(1, name)[0] == 1  # never empty
    assert A.length_range(10, "crop") == (5, 9) and A.length_range(1000, "gain") == (1000, 1000)
    assert A.length_range(100, "stretch") == (83, 125) and A.length_range(1, "speed") == (1, 2)


@pytest.mark.parametrize("sr,n", CASES, ids=[f"{sr}Hz-{n}" for sr, n in CASES])
def test_every_family_takes_every_length(sr, n):
    x = _clip(n)
    others = _others(sr)
    draw = np.random.default_rng([sr, n])
    strengths = (0.0, 1.0, float(draw.random()))
    long = n > 3 * sr
    for family, fam in A.FAMILIES.items():
        lo, hi = A.length_range(n, family)
        pools = [others] if fam.needs_others or long else [(), others]  # others only reach mix/partial
        for s in strengths:
            for pool in pools:
                what = f"{family} at strength {s:.2f}, {n} samples at {sr} Hz, {len(pool)} others"
                y = A.transform(x, sr, family, s, np.random.default_rng([n, 7]), others=pool)
                _check(y, lo, hi, what)
                if n >= 2 and family != "highpass":  # a 2-sample "clip" is all DC to a 2 kHz high-pass
                    assert _rms(y) > 0.01 * _rms(x), f"{what}: silenced"
                if not fam.needs_others and pool:
                    y0 = A.transform(x, sr, family, s, np.random.default_rng([n, 7]))
                    np.testing.assert_array_equal(y, y0)  # the pool only matters to the mixing families


@pytest.mark.parametrize("sr,n", CASES, ids=[f"{sr}Hz-{n}" for sr, n in CASES])
def test_random_view_takes_every_length(sr, n):
    x = _clip(n, 5)
    seeds = range(2) if n > 3 * sr else range(6)
    for seed in seeds:
        for pool in ((), _others(sr)):
            for max_strength in (1.0, 0.0):
                y, ops = A.random_view(x, sr, np.random.default_rng([seed, n]), others=pool, n_ops=(1, 3),
                                       max_strength=max_strength)
                lo = hi = n
                for f in ops:
                    lo, hi = A.length_range(lo, f)[0], A.length_range(hi, f)[1]
                _check(y, lo, hi, f"{ops} on {n} samples at {sr} Hz")
                assert 1 <= len(ops) <= 3


def test_shift_longer_than_the_clip_regression():
    """0.6 s clips at 22.05 kHz, cropped, then shifted by up to 0.5 s: audiomentations'
    Shift raised "operands could not be broadcast together with shapes (5751,) (0,)"."""
    for n in (5751, 1000, 110, 3):
        x = _clip(n)
        for s in np.linspace(0.0, 1.0, 21):
            for seed in range(4):
                y = A.transform(x, 22050, "shift", float(s), np.random.default_rng(seed))
                assert len(y) == n
                if n > 1:  # at least half the clip is still in the frame, in place
                    assert np.count_nonzero(y) >= n // 2 - 1  # (the fade starts at 0)


def test_shift_keeps_half_the_clip_in_the_frame():
    x = _clip(1000)
    y = A.transform(x, 16000, "shift", 1.0, np.random.default_rng(0))  # 0.5 s asked of a 62 ms clip
    k = 500
    delayed, advanced = np.array_equal(y[:k], np.zeros(k)), np.array_equal(y[-k:], np.zeros(k))
    assert delayed != advanced
    kept = y[k:] if delayed else y[:k]
    src = x[:k] if delayed else x[k:]
    np.testing.assert_allclose(kept[80:-80], src[80:-80], atol=1e-6)  # the 5 ms fade touches only the stitch


@pytest.mark.parametrize("sr", RATES)
@pytest.mark.parametrize("n", [700, 5751, 22050])
@pytest.mark.parametrize("strength", [0.0, 1.0])
def test_mp3_round_trip_is_aligned_with_the_input(sr, n, strength):
    """At low bitrates libsndfile writes no LAME info tag, so the decoder keeps the codec
    delay: the view used to be the input delayed by 1105 samples (or none of it at all
    for clips shorter than that)."""
    t = np.arange(n) / sr
    x = (0.4 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 3 * t + 0.5)).astype(np.float32)
    y = A.transform(x, sr, "mp3", strength, np.random.default_rng(0))
    assert len(y) == n
    from scipy.signal import correlate

    best = int(np.argmax(correlate(y, x, mode="full"))) - (n - 1)  # y lags x by ``best`` samples
    assert abs(best) <= 2, best  # aligned (the encoder's filters may move the peak by a sample)
    assert float(np.corrcoef(x, y)[0, 1]) > 0.9


def test_resample_round_trip_of_a_few_samples_keeps_them():
    for n in (1, 2, 3, 7):
        x = np.full(n, 0.5, np.float32)
        y = A.transform(x, 22050, "resample", 1.0, np.random.default_rng(0))  # via 4.41 kHz
        assert len(y) == n and _rms(y) > 0.1 * _rms(x), (n, y)
