"""A synthetic sound-effect corpus (train / held-out / background splits) for the demo and tests.

The sounds themselves come from :mod:`audioaudit.audio.sounds`.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from audioaudit.audio.sounds import available_classes, synthesize
from audioaudit.util.atomic import write_json


@dataclass
class CorpusInfo:
    root: str
    sample_rate: int
    seed: int
    classes: list[str]
    skipped_classes: dict[str, str]
    train: list[str] = field(default_factory=list)  # paths, relative to root (posix)
    heldout: list[str] = field(default_factory=list)
    background: list[str] = field(default_factory=list)

    @property
    def background_dir(self) -> str:
        return os.path.join(self.root, "background")

    @property
    def train_dir(self) -> str:
        return os.path.join(self.root, "train")

    @property
    def heldout_dir(self) -> str:
        return os.path.join(self.root, "heldout")


def _clip_rng(seed: int, split: str, cls: str, idx: int, attempt: int) -> np.random.Generator:
    # stable per (seed, split, class, index): adding a class or a clip changes no other clip
    return np.random.default_rng([seed, zlib.crc32(split.encode()), zlib.crc32(cls.encode()), idx, attempt])


def _pcm_key(x: np.ndarray) -> str:
    return hashlib.sha256((np.clip(x, -1, 1) * 32767).astype(np.int16).tobytes()).hexdigest()


@dataclass(frozen=True)
class CorpusSpec:
    """What :func:`make_corpus` writes: classes (``None``: every available one), clips per
    split and class, clip length range in seconds, sample rate and seed."""

    classes: Sequence[str] | None = None
    per_class: int = 20
    seconds: tuple[float, float] = (2.0, 4.0)
    sample_rate: int = 16000
    seed: int = 0
    heldout_per_class: int = 0
    background_per_class: int = 0

    def checked(self) -> "CorpusSpec":
        """This spec with ``seconds`` as floats; a ``ValueError`` for negative counts or a bad range."""
        if min(self.per_class, self.heldout_per_class, self.background_per_class) < 0:
            raise ValueError("per_class, heldout_per_class and background_per_class must be >= 0")
        lo, hi = float(self.seconds[0]), float(self.seconds[1])
        if not 0 < lo <= hi:
            raise ValueError(f"seconds must be 0 < min <= max, got {self.seconds}")
        return replace(self, seconds=(lo, hi))


def _write_split(root: Path, split: str, count: int, spec: CorpusSpec, seen: set[str],
                 progress: Callable[[], None] | None) -> list[str]:
    """``count`` clips of every class of ``spec`` into ``root/split/<class>/``; relative paths."""
    from audioaudit.audio.io import write_wav

    sr = spec.sample_rate
    rel_paths = []
    for cls in spec.classes:
        for i in range(count):
            for attempt in range(10):  # regenerate in the (practically impossible) case of a twin
                rng = _clip_rng(spec.seed, split, cls, i, attempt)
                wave = synthesize(cls, rng, float(rng.uniform(*spec.seconds)), sr)
                key = _pcm_key(wave)
                if key not in seen:
                    break
            seen.add(key)
            rel = f"{split}/{cls}/{cls}_{i:04d}.wav"
            write_wav(root / rel, wave, sr)
            rel_paths.append(rel)
            if progress:
                progress()
    return rel_paths


def make_corpus(out_dir: str | os.PathLike, spec: CorpusSpec | None = None, *,
                progress: Callable[[], None] | None = None, verbose: bool = True, **fields) -> CorpusInfo:
    """Write ``out_dir/train/<class>/*.wav`` (+ ``out_dir/heldout/<class>/*.wav``, + a
    ``background/`` split: more clips of the same kinds, for score normalisation and
    calibration) and ``out_dir/synth.json``. Deterministic for a seed; no two clips share their PCM.

    Pass a :class:`CorpusSpec`, or its fields as keywords (``make_corpus(out, per_class=4,
    seconds=(1, 2))``), not both."""
    if spec is not None and fields:
        raise TypeError(f"make_corpus: pass a CorpusSpec or its fields ({', '.join(fields)}), not both")
    spec = (spec or CorpusSpec(**fields)).checked()
    usable, skipped = available_classes(spec.classes)
    for cls, why in skipped.items():
        if verbose:
            print(f"note: synth class '{cls}' skipped: {why}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    spec = replace(spec, classes=usable)
    seen: set[str] = set()
    info = CorpusInfo(str(root), spec.sample_rate, spec.seed, usable, skipped)
    info.train = _write_split(root, "train", spec.per_class, spec, seen, progress)
    info.heldout = _write_split(root, "heldout", spec.heldout_per_class, spec, seen, progress)
    info.background = _write_split(root, "background", spec.background_per_class, spec, seen, progress)
    meta = {"seed": spec.seed, "sample_rate": spec.sample_rate, "seconds": list(spec.seconds),
            "per_class": spec.per_class, "heldout_per_class": spec.heldout_per_class,
            "background_per_class": spec.background_per_class, "classes": usable,
            "skipped_classes": skipped, "train": info.train, "heldout": info.heldout, "background": info.background}
    write_json(root / "synth.json", meta, indent=1, newline=False)
    return info
