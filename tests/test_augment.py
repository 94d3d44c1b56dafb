"""Copy transformations: every family runs, is seeded, and does what it says."""
from __future__ import annotations

import numpy as np
import pytest

from audioaudit.detector import augment as A

SR = 16000


def _tone(seconds=1.0, f0=440.0, sr=SR, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * f0 * t) * np.exp(-1.5 * t) + 0.01 * rng.standard_normal(len(t))
    return x.astype(np.float32)


def _others():
    return [_tone(0.7, 1300.0, seed=1), (0.1 * np.random.default_rng(2).standard_normal(SR)).astype(np.float32)]


def _spectral_centroid(x, sr=SR):
    mag = np.abs(np.fft.rfft(x))
    f = np.fft.rfftfreq(len(x), 1 / sr)
    return float((mag * f).sum() / mag.sum())


def test_registry_is_consistent():
    assert set(A.STANDARD_FAMILIES) <= set(A.FAMILIES)
    assert {"pitch", "stretch"}.isdisjoint(A.STANDARD_FAMILIES)
    for name, fam in A.FAMILIES.items():
        assert fam.name == name and fam.description
        assert fam.value(0.0) == fam.mild and fam.value(1.0) == fam.severe
        assert fam.value(2.0) == fam.severe  # strength is clipped into [0, 1]


@pytest.mark.parametrize("family", sorted(A.FAMILIES))
@pytest.mark.parametrize("strength", [0.0, 1.0])
def test_every_family_is_seeded_finite_float32(family, strength):
    x = _tone()
    y1 = A.transform(x, SR, family, strength, np.random.default_rng(7), others=_others())
    y2 = A.transform(x, SR, family, strength, np.random.default_rng(7), others=_others())
    assert y1.dtype == np.float32 and y1.ndim == 1 and len(y1) > 0
    assert np.all(np.isfinite(y1))
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(y1, x)  # it changed something
    np.testing.assert_array_equal(x, _tone())  # the input is left alone


def test_global_random_state_is_restored():
    import random

    random.seed(3)
    np.random.seed(3)
    a = (random.random(), np.random.rand())
    random.seed(3)
    np.random.seed(3)
    A.transform(_tone(), SR, "noise_colour", 0.5, np.random.default_rng(0))
    assert (random.random(), np.random.rand()) == a


def test_strength_orders_severity():
    x = _tone()
    rng = lambda: np.random.default_rng(0)  # noqa: E731

    def err(fam, s):
        y = A.transform(x, SR, fam, s, rng(), others=_others())
        return float(np.mean((y[: len(x)] - x[: len(y)]) ** 2))

    for fam in ("noise_white", "noise_colour", "mix", "clipping", "lowpass"):
        assert err(fam, 1.0) > err(fam, 0.0), fam
    assert len(A.transform(x, SR, "crop", 1.0, rng())) == len(x) // 2
    assert len(A.transform(x, SR, "crop", 0.0, rng())) == int(round(0.9 * len(x)))


def test_noise_hits_the_requested_snr():
    x = _tone(2.0)
    y = A.transform(x, SR, "noise_white", 1.0, np.random.default_rng(0))  # 5 dB
    snr = 10 * np.log10(np.mean(x**2) / np.mean((y - x) ** 2))
    assert abs(snr - 5.0) < 0.5


def test_speed_changes_length_and_pitch_together():
    x = _tone(1.0, 1000.0)
    y = A.transform(x, SR, "speed", 1.0, np.random.default_rng(0))  # rate 1 ± 0.12
    ratio = len(x) / len(y)
    assert abs(abs(ratio - 1) - 0.12) < 0.01
    peak = lambda z: np.argmax(np.abs(np.fft.rfft(z, 4 * SR))) / 4.0  # noqa: E731  (Hz)
    assert abs(peak(y) / peak(x) - ratio) < 0.01


def test_lowpass_removes_highs_and_mp3_keeps_length():
    x = _tone(1.0, 440.0) + 0.2 * _tone(1.0, 6000.0, seed=3)
    y = A.transform(x, SR, "lowpass", 1.0, np.random.default_rng(0))  # 1 kHz cutoff
    assert _spectral_centroid(y) < 0.6 * _spectral_centroid(x)
    m = A.transform(x, SR, "mp3", 1.0, np.random.default_rng(0))
    assert len(m) == len(x)


def test_partial_copy_contains_a_span_of_the_clip():
    from scipy.signal import correlate

    x = _tone(1.0, 440.0) + 0.05 * np.random.default_rng(9).standard_normal(SR).astype(np.float32)
    host = [(0.05 * np.random.default_rng(5).standard_normal(SR // 2)).astype(np.float32)]
    y = A.transform(x, SR, "partial", 1.0, np.random.default_rng(1), others=host)  # half the clip
    assert len(y) == len(x)
    # some 0.1 s stretch of x appears verbatim in y (the pasted span) ...
    best = 0.0
    for s in range(0, len(x) - 1600, 800):
        w = x[s : s + 1600]
        c = correlate(y, w, mode="valid") / np.sum(w**2)
        best = max(best, float(np.max(c)))
    assert best > 0.99
    # ... and most of y is the host, not the clip
    assert abs(float(np.corrcoef(x, y)[0, 1])) < 0.9


def test_families_needing_others_say_so():
    with pytest.raises(ValueError, match="others"):
        A.transform(_tone(), SR, "mix", 0.5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown"):
        A.transform(_tone(), SR, "nope", 0.5, np.random.default_rng(0))


def test_random_view_is_seeded_and_ordered():
    x = _tone()
    y1, ops1 = A.random_view(x, SR, np.random.default_rng(4), n_ops=(2, 3), others=_others())
    y2, ops2 = A.random_view(x, SR, np.random.default_rng(4), n_ops=(2, 3), others=_others())
    assert ops1 == ops2 and 2 <= len(ops1) <= 3
    np.testing.assert_array_equal(y1, y2)
    orders = [A.FAMILIES[f].order for f in ops1]
    assert orders == sorted(orders)
    _, ops = A.random_view(x, SR, np.random.default_rng(0), families=["mix", "partial", "gain"], n_ops=(3, 3))
    assert ops == ["gain"]  # no pool of others: mixing families are left out


def test_random_view_max_strength_scales_the_strengths(monkeypatch):
    x = _tone()
    seen = []
    real = A.transform

    def spy(wave, sr, family, strength, rng, *, others=()):
        seen.append((family, strength))
        return real(wave, sr, family, strength, rng, others=others)

    monkeypatch.setattr(A, "transform", spy)

    def first_ops(max_strength):
        firsts = []
        for seed in range(16):
            seen.clear()
            A.random_view(x, SR, np.random.default_rng(seed), families=A.STANDARD_FAMILIES, n_ops=(1, 2),
                          others=_others(), max_strength=max_strength)
            firsts.append(seen[0])
            assert all(0 <= s <= max_strength for _, s in seen)
        return firsts

    full, half = first_ops(1.0), first_ops(0.5)
    # the same draws, the strength halved (later ops' draws may differ: a transform's own
    # random use can depend on its strength)
    assert [f for f, _ in half] == [f for f, _ in full]
    np.testing.assert_allclose([s for _, s in half], [0.5 * s for _, s in full])
    assert max(s for _, s in full) > 0.5
    assert all(s == 0.0 for _, s in first_ops(0.0))  # every family at its mild end
    monkeypatch.setattr(A, "transform", real)
    # max_strength=1 is the old behaviour, bit for bit
    y1, _ = A.random_view(x, SR, np.random.default_rng(7), n_ops=(2, 2), others=_others())
    y2, _ = A.random_view(x, SR, np.random.default_rng(7), n_ops=(2, 2), others=_others(), max_strength=1.0)
    np.testing.assert_array_equal(y1, y2)
