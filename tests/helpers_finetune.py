"""A tiny procedural corpus for the fine-tuning tests: five kinds of sound, every clip
different (chirps, noise bursts, harmonic tones with envelopes, click trains, AM/FM)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

SR = 16000


def _chirp(rng, t):
    f0, f1 = rng.uniform(200, 800), rng.uniform(1500, 5000)
    k = (f1 - f0) / t[-1]
    return np.sin(2 * np.pi * (f0 * t + 0.5 * k * t**2)) * np.hanning(len(t))


def _bursts(rng, t):
    x = np.zeros_like(t)
    for _ in range(int(rng.integers(2, 6))):
        s = int(rng.integers(0, len(t) - 1600))
        n = int(rng.integers(400, 1600))
        x[s : s + n] += rng.standard_normal(n) * np.exp(-np.arange(n) / rng.uniform(100, 600))
    return x


def _harmonic(rng, t):
    f0 = rng.uniform(100, 600)
    amps = rng.uniform(0.1, 1.0, size=6)
    env = np.exp(-t / rng.uniform(0.1, 0.8)) * (1 - np.exp(-t / 0.005))
    return sum(a * np.sin(2 * np.pi * f0 * (h + 1) * t) for h, a in enumerate(amps)) * env


def _clicks(rng, t):
    x = np.zeros_like(t)
    period = int(round(1 / (t[1] - t[0])) / rng.uniform(4, 30))
    x[:: period] = 1.0
    return np.convolve(x, np.exp(-np.arange(80) / rng.uniform(5, 20)), mode="same")


def _amfm(rng, t):
    fc, fm, am = rng.uniform(300, 3000), rng.uniform(2, 12), rng.uniform(1, 8)
    return (1 + 0.8 * np.sin(2 * np.pi * am * t)) * np.sin(2 * np.pi * fc * t + rng.uniform(1, 20) * np.sin(2 * np.pi * fm * t))


KINDS = {"chirp": _chirp, "bursts": _bursts, "harmonic": _harmonic, "clicks": _clicks, "amfm": _amfm}


def make_clip(kind: str, seed: int, seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    rng = np.random.default_rng([seed, len(kind)])
    t = np.arange(int(seconds * sr)) / sr
    x = KINDS[kind](rng, t) + 0.003 * rng.standard_normal(len(t))
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


def write_corpus(root: Path, per_kind: int = 3, seconds: float = 1.0, sr: int = SR) -> list[Path]:
    import soundfile as sf

    paths = []
    for kind in KINDS:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_kind):
            p = root / kind / f"{kind}_{i}.wav"
            sf.write(str(p), make_clip(kind, i, seconds, sr), sr)
            paths.append(p)
    return paths
