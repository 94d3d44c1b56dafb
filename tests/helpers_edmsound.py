"""Shared fixtures for the EDMSound tests: a micro config, synthetic clips and a corpus."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from generators.edmsound.config import PRESETS, GenConfig, TrainConfig
from generators.edmsound.spectrogram import SpecConfig
from generators.edmsound.unet import UNetConfig

SR = 22050


def micro_config(classes: tuple[str, ...] = ("bark", "ring"), clip_seconds: float = 0.25, **train) -> GenConfig:
    """A ~0.2 M-parameter model on 0.25 s clips, 64 frequency bins: milliseconds per step."""
    base = PRESETS["tiny"]
    t = TrainConfig(**{**dict(steps=40, batch_size=8, lr=5e-3, warmup_steps=5, ema_decay=0.9, checkpoint_every=0,
                              sample_every=0, sample_count=0, seed=0), **train})
    return replace(
        base,
        spec=SpecConfig(sample_rate=SR, clip_seconds=clip_seconds, n_fft=126, hop=64),
        unet=UNetConfig(channels=16, channel_mult=(1, 2, 2), num_blocks=(1, 1, 1), attn_levels=(2,), patch=2),
        train=t,
        classes=classes,
    ).finalised()


def tone(freq: float, seconds: float = 0.25, decay: float = 3.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t) * np.exp(-decay * t)).astype(np.float32)


def eight_clips(seconds: float = 0.25) -> tuple[list[np.ndarray], list[int]]:
    return [tone(200 + 110 * i, seconds) for i in range(8)], [i % 2 for i in range(8)]


def write_corpus(root: Path, seconds: float = 0.25, with_silent: bool = True) -> Path:
    """Two class folders of tones (+ one silent file that must be skipped and listed)."""
    import soundfile as sf

    for i in range(6):
        cls = "bark" if i % 2 == 0 else "ring"
        (root / cls).mkdir(parents=True, exist_ok=True)
        sf.write(str(root / cls / f"clip{i}.wav"), tone(220 + 150 * i, seconds), SR)
    if with_silent:
        sf.write(str(root / "bark" / "silent.wav"), np.zeros(int(seconds * SR), dtype=np.float32), SR)
    return root


def write_config_file(path: Path, cfg: GenConfig) -> Path:
    d = cfg.to_dict()
    d.pop("classes")
    path.write_text(json.dumps(d))
    return path


import pytest  # noqa: E402


@pytest.fixture(autouse=False)
def one_thread():
    """torch on one thread: on a shared, oversubscribed CPU two OpenMP threads can be 100x slower
    for the many tiny ops of a micro model (measured: 0.07 s vs 13 s per training step)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def written_counts(out: Path, result) -> int:
    """What a successful ``generate`` printed, checked against the disk: the WAVs in ``out``, the
    rows of metadata.csv and metadata.parquet and the printed counts all agree. Returns the total."""
    import re

    import pandas as pd

    assert result.exit_code == 0, (result.output, result.exception)
    m = re.search(r"(\d+) clips written, (\d+) kept from an earlier run .*; (\d+) listed in metadata.csv", result.output)
    assert m, result.output
    written, kept, listed = map(int, m.groups())
    wavs = sorted(p.name for p in out.glob("*.wav"))
    meta = pd.read_csv(out / "metadata.csv")
    assert len(wavs) == written + kept == listed == len(meta) == len(pd.read_parquet(out / "metadata.parquet"))
    assert sorted(meta["path"]) == wavs
    return listed
