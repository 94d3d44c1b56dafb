"""Fixtures for the benchmark/calibration tests: tiny numpy encoders and a tiny corpus."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np

from audioaudit.audio import synth
from audioaudit.encoders.base import l2_normalise


class SpectrumEncoder:
    """Gain-invariant log band-energy statistics (numpy). Implements the Encoder protocol."""

    name = "test-spectrum"
    sample_rate = 8000
    dim = 64
    window_seconds = 1.0
    hop_seconds = 0.5

    def identity(self) -> dict:
        return {"backend": "test-spectrum", "sample_rate": self.sample_rate, "window_seconds": self.window_seconds}

    def embed(self, batch):
        out = []
        for w in batch:
            w = np.asarray(w, np.float32)
            n = 256
            frames = np.lib.stride_tricks.sliding_window_view(np.pad(w, (0, max(0, n - len(w)))), n)[::128]
            p = np.abs(np.fft.rfft(frames * np.hanning(n), axis=1)) ** 2
            edges = np.geomspace(2, p.shape[1], 33).astype(int)
            bands = np.log(np.add.reduceat(p, edges[:-1], axis=1) + 1e-8)
            bands -= bands.mean()
            out.append(np.r_[bands.mean(0), bands.std(0)])
        return l2_normalise(np.stack(out))


class RandomEncoder(SpectrumEncoder):
    """Unrelated random vector per distinct waveform: knows nothing about audio."""

    name = "test-random"

    def identity(self) -> dict:
        return {"backend": "test-random"}

    def embed(self, batch):
        vecs = []
        for w in batch:
            seed = int.from_bytes(hashlib.sha256(np.asarray(w, np.float32).tobytes()).digest()[:4], "little")
            vecs.append(np.random.default_rng(seed).standard_normal(self.dim))
        return l2_normalise(np.stack(vecs))


def tiny_corpus(root: Path, *, per_class: int = 4, heldout: int = 2, classes=("impact", "bell", "siren", "chirps"),
                seconds=(0.6, 1.2)) -> Path:
    synth.make_corpus(root, classes=list(classes), per_class=per_class, heldout_per_class=heldout,
                      seconds=seconds, seed=1, verbose=False)
    return root


def plant_duplicates(root: Path) -> dict:
    """Plant twins: an exact copy inside train, an exact and a re-encoded (gain + padding
    + MP3) copy of train clips in heldout. Returns what was planted."""
    import soundfile as sf

    train = sorted((root / "train").rglob("*.wav"))
    shutil.copy(train[0], train[0].with_name("dup_of_first.wav"))  # exact twin inside train
    (root / "heldout" / "impact").mkdir(parents=True, exist_ok=True)
    shutil.copy(train[1], root / "heldout" / "impact" / "leak_exact.wav")  # a 'novel' clip that is not
    x, sr = sf.read(train[2], dtype="float32")
    y = np.r_[np.zeros(400, np.float32), 0.7 * x]
    sf.write(root / "heldout" / "impact" / "leak_near.mp3", y, sr, format="MP3")
    rel = lambda p: p.relative_to(root).as_posix()  # noqa: E731
    return {"train_twin": (rel(train[0]), rel(train[0].with_name("dup_of_first.wav"))),
            "leak_exact": (rel(train[1]), "heldout/impact/leak_exact.wav"),
            "leak_near": (rel(train[2]), "heldout/impact/leak_near.mp3")}
