"""Test-only transformation families: any length, never drawn for training, really transforming."""
from __future__ import annotations

import numpy as np
import pytest

from audioaudit.detector import augment as A

SR = 16000


def _tone(n: int, seed: int = 0) -> np.ndarray:
    t = np.arange(n) / SR
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)


@pytest.mark.parametrize("family", A.UNSEEN_FAMILIES)
@pytest.mark.parametrize("n", [1, 3, 64, 5751, SR, 3 * SR])
def test_unseen_family_takes_any_length(family, n):
    others = [_tone(700, 1), _tone(2 * SR, 2)]
    for strength in (0.0, 0.5, 1.0):
        y = A.transform(_tone(n), SR, family, strength, np.random.default_rng(n), others=others)
        lo, hi = A.length_range(n, family)
        assert y.dtype == np.float32 and np.isfinite(y).all() and lo <= len(y) <= hi


def test_unseen_families_are_never_training_views():
    assert set(A.UNSEEN_FAMILIES) == {"opus", "room", "layered", "phone", "compressor", "excerpt"}
    assert not set(A.UNSEEN_FAMILIES) & set(A.TRAINING_FAMILIES) and not set(A.UNSEEN_FAMILIES) & set(A.STANDARD_FAMILIES)
    rng = np.random.default_rng(0)
    drawn = {f for _ in range(300) for f in A.random_view(_tone(SR), SR, rng, others=[_tone(SR, 3)])[1]}
    assert drawn and not drawn & set(A.UNSEEN_FAMILIES)


@pytest.mark.parametrize("family", A.UNSEEN_FAMILIES)
def test_unseen_family_changes_the_clip_yet_keeps_it(family):
    x = _tone(2 * SR)
    y = A.transform(x, SR, family, 1.0, np.random.default_rng(1), others=[_tone(2 * SR, 5)])
    n = min(len(x), len(y))
    assert not np.allclose(x[:n], y[:n], atol=1e-3)  # severe end: audibly different
    # ... and the copy is still in there: the best cross-correlation of a 0.2 s piece of
    # the output with the source stays high (layered: the source sits somewhere inside)
    piece = y[len(y) // 2 : len(y) // 2 + SR // 5] if family != "excerpt" else y[: SR // 5]
    c = np.correlate(x, piece, "valid") / (np.linalg.norm(piece) * np.sqrt(np.convolve(x**2, np.ones(len(piece)), "valid")) + 1e-9)
    assert c.max() > 0.5, family
