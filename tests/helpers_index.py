"""Fixtures for the index / audit / dedup tests: tiny synthetic corpora and a tiny encoder."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

SR = 16000
CLASSES = ("tone", "chirp", "noise")


def synth_clip(cls: str, seed: int, seconds: float = 1.5, sr: int = SR) -> np.ndarray:
    """A distinct clip of a class: tones, chirps or filtered noise bursts, seeded."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    if cls == "tone":
        f = rng.uniform(150, 2500, size=3)
        x = sum(np.sin(2 * np.pi * fi * t + rng.uniform(0, 6)) * rng.uniform(0.2, 1) for fi in f)
        x *= 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 4) * t)
    elif cls == "chirp":
        f0, f1 = rng.uniform(200, 1000), rng.uniform(1500, 6000)
        x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds)))
        x *= (np.sin(2 * np.pi * rng.uniform(2, 8) * t) > 0).astype(float) * 0.8 + 0.2
    else:
        x = rng.standard_normal(n)
        k = int(rng.integers(4, 64))
        x = np.convolve(x, np.ones(k) / k, mode="same") * rng.uniform(2, 6)
        x *= np.exp(-((t - rng.uniform(0, seconds)) ** 2) / rng.uniform(0.02, 0.3))
    x = x / (np.max(np.abs(x)) + 1e-9) * 0.5
    return x.astype(np.float32)


def write(path: Path, wave: np.ndarray, sr: int = SR, subtype: str = "PCM_16") -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave, sr, subtype=subtype)
    return path


def make_corpus(root: Path, per_class: int = 4, seconds=(1.0, 3.0), seed: int = 0) -> dict[str, np.ndarray]:
    """``root/<class>/<class>_<i>.wav``; returns rel path -> waveform."""
    rng = np.random.default_rng(seed)
    out = {}
    for ci, cls in enumerate(CLASSES):
        for i in range(per_class):
            wave = synth_clip(cls, 1000 * (seed + 1) + 100 * ci + i, float(rng.uniform(*seconds)))
            rel = f"{cls}/{cls}_{i}.wav"
            write(root / rel, wave)
            out[rel] = wave
    return out


class TinyEncoder:
    """A deterministic spectral encoder implementing the Encoder protocol (no weights):
    log-magnitude spectrum in 128 bands (floor 80 dB below the window's peak), mean-centred (gain-invariant), fixed random
    projection, L2-normalised; short windows are tiled (CLAP's repeat-pad). 1 s windows, 0.5 s hop."""

    name = "tiny-test"
    sample_rate = SR
    dim = 64
    window_seconds = 1.0
    hop_seconds = 0.5

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.proj = np.random.default_rng(seed).standard_normal((256, self.dim)).astype(np.float32)
        self.calls = 0

    def identity(self) -> dict:
        return {"backend": "tiny-test", "seed": self.seed, "window": self.window_seconds, "hop": self.hop_seconds}

    def embed(self, batch):
        self.calls += 1
        n = int(self.window_seconds * self.sample_rate)
        feats = []
        for w in batch:
            w = np.asarray(w, np.float32)
            w = np.tile(w, int(np.ceil(n / max(1, len(w)))))[:n] if len(w) else np.zeros(n, np.float32)
            frames = np.lib.stride_tricks.sliding_window_view(w, 512)[::256] * np.hanning(512)
            mag = np.abs(np.fft.rfft(frames, axis=1))[:, :256].reshape(len(frames), 128, 2).mean(axis=2)
            db = 20 * np.log10(mag + 1e-4 * (mag.max() + 1e-9))
            db = db - db.mean()
            feats.append(np.concatenate([db.mean(axis=0), db.std(axis=0)]))
        z = np.asarray(feats, np.float32) @ self.proj
        return (z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-9)).astype(np.float32)


def digest_dir(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(d).glob("*")) if p.is_file()}
