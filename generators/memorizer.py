"""The memorizer: a "diffusion model" whose denoiser is the ideal denoiser of its training set.

The minimiser of the denoising loss on a finite set is D(x; sigma) = sum_i softmax_i(-|x -
y_i|^2 / 2 sigma^2) y_i (Karras et al. 2022, Eq. 57); its probability-flow ODE carries
noise onto a training point. Sampled with the EDMSound samplers on EDMSound's
spectrogram representation, it returns training clips (through the STFT round trip):
the positive control an audit must flag. Each clip's metadata names the training file it
reproduces (``source_path``) and how close it came (``source_distance``, relative L2).

``memorizer:DIR``: DIR is a folder of audio (class = first sub-folder; read with
soundfile/librosa here, never through audioaudit) or a folder of ``.npy`` spectrograms
(each (2, F, T), optional ``spec.json`` with the SpecConfig). Seeds are per sample: sample
i of seed s starts from ``torch.Generator().manual_seed(s + i)``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from generators.base import GeneratedBatch, GeneratedClip, GeneratorError, Uses
from generators.edmsound.analytic import ideal_denoiser
from generators.edmsound.samplers import SCHEDULES, call_sampler, check_options, nfe
from generators.edmsound.spectrogram import SpecConfig, to_spec, to_wave

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
LOAD_OPTIONS = ("sample_rate", "clip_seconds", "hop", "silence_dbfs")


@dataclass
class TrainingSet:
    specs: torch.Tensor  # (N, 2, F, T) float64
    paths: list[str]
    labels: list[str | None]
    spec: SpecConfig
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def _read_wave(path: Path, sr: int) -> np.ndarray:
    import soundfile as sf

    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception:  # noqa: BLE001 - fall back to librosa's decoders
        import librosa

        data, file_sr = librosa.load(str(path), sr=None, mono=False)
        data = np.atleast_2d(data).T
    mono = data.mean(axis=1)
    if file_sr != sr and len(mono) > 1:
        import librosa

        mono = librosa.resample(mono, orig_sr=file_sr, target_sr=sr, res_type="soxr_hq")
    return np.asarray(mono, dtype=np.float32)


def read_audio_folder(root: Path, spec: SpecConfig, silence_dbfs: float = -60.0) -> TrainingSet:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    waves, paths, labels, skipped = [], [], [], []
    for p in files:
        try:
            w = _read_wave(p, spec.sample_rate)
        except Exception as e:  # noqa: BLE001 - one bad file never stops the set
            skipped.append((str(p), f"unreadable ({type(e).__name__}: {e})"))
            continue
        if w.size == 0 or not np.all(np.isfinite(w)):
            skipped.append((str(p), "empty or non-finite audio"))
            continue
        peak = float(np.abs(w).max())
        if peak == 0 or 20 * math.log10(peak) < silence_dbfs:
            skipped.append((str(p), f"silent (peak below {silence_dbfs:g} dBFS)"))
            continue
        n = spec.clip_samples
        waves.append(np.pad(w[:n], (0, max(0, n - len(w)))))
        rel = p.relative_to(root)
        paths.append(str(p))
        labels.append(rel.parts[0] if len(rel.parts) > 1 else None)
    specs = to_spec(torch.from_numpy(np.stack(waves)), spec).double() if waves else torch.zeros(0)
    return TrainingSet(specs, paths, labels, spec, skipped)


def read_spec_folder(root: Path, files: list[Path]) -> TrainingSet:
    spec_json = root / "spec.json"
    spec = SpecConfig.from_dict(json.loads(spec_json.read_text())) if spec_json.is_file() else SpecConfig()
    arrays, paths, labels, skipped = [], [], [], []
    for p in files:
        a = np.load(p, allow_pickle=False)
        if a.shape != spec.shape:
            skipped.append((str(p), f"shape {a.shape} is not {spec.shape} (see spec.json)"))
            continue
        rel = p.relative_to(root)
        arrays.append(torch.from_numpy(a.astype(np.float64)))
        paths.append(str(p))
        labels.append(rel.parts[0] if len(rel.parts) > 1 else None)
    specs = torch.stack(arrays) if arrays else torch.zeros(0)
    return TrainingSet(specs, paths, labels, spec, skipped)


@dataclass(frozen=True)
class MemorizerSampling:
    """How the memorizer samples: sampler, steps, sigma schedule and the sampler's own ``options``."""

    sampler: str = "deis"
    steps: int = 10
    schedule: str = "karras"
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    options: dict = field(default_factory=dict)

    @classmethod
    def from_opts(cls, opts: dict) -> "MemorizerSampling":
        """``generate``'s keyword options (None means default): the fields above by name, the
        rest to the sampler (one it does not take is a :class:`GeneratorError`); ``cfg`` is
        accepted and recorded as None: the ideal denoiser has no guidance."""
        opts = {k: v for k, v in opts.items() if v is not None and k != "cfg"}
        own = {f.name for f in fields(cls)} - {"options"}
        sampling = cls(**{k: opts.pop(k) for k in list(opts) if k in own}, options=opts)
        if sampling.schedule not in SCHEDULES:
            raise GeneratorError(f"unknown schedule '{sampling.schedule}'; use one of: {', '.join(SCHEDULES)}")
        check_options(sampling.sampler, opts)
        return sampling

    def sigmas(self) -> torch.Tensor:
        return SCHEDULES[self.schedule](int(self.steps), self.sigma_min, self.sigma_max)


class MemorizerGenerator:
    name = "memorizer"

    def __init__(self, data: TrainingSet, source: str):
        self.data, self.source = data, source
        self.sample_rate = data.spec.sample_rate
        self._denoisers: dict[str | None, tuple] = {}

    @property
    def uses(self) -> Uses:
        """Class sub-folders when the training folder has them; ``cfg`` changes nothing (a warning)."""
        classes = tuple(sorted({lab for lab in self.data.labels if lab}))
        options = tuple(f.name for f in fields(MemorizerSampling) if f.name != "options")
        return Uses(options, "class" if classes else None, classes,
                    {"cfg": "its ideal denoiser takes no guidance"}, MemorizerSampling.sampler,
                    "" if classes else "its training folder has no class sub-folders")

    def _subset(self, condition: str | None):
        if condition not in self._denoisers:
            idx = [i for i, lab in enumerate(self.data.labels) if condition in (None, "") or lab == condition]
            if not idx:
                known = sorted({lab for lab in self.data.labels if lab})
                raise GeneratorError(f"no training clips of class '{condition}'; classes: {', '.join(known) or 'none'}")
            self._denoisers[condition] = (idx, ideal_denoiser(self.data.specs[idx]))
        return self._denoisers[condition]

    def generate(self, n: int, *, conditions: Sequence[str | None] | None = None, seed: int = 0,
                 **opts) -> GeneratedBatch:
        """``opts``: see :meth:`MemorizerSampling.from_opts`."""
        sampling = MemorizerSampling.from_opts(opts)
        conditions = list(conditions) if conditions is not None else [None] * n
        sigmas = sampling.sigmas()
        clips = [self._one(seed + i, conditions[i], sampling.sampler, sigmas, sampling.options) for i in range(n)]
        return GeneratedBatch(clips, self.sample_rate, f"memorizer:{self.source}",
                              {"training_clips": len(self.data.paths), "skipped": self.data.skipped})

    def _one(self, seed: int, condition: str | None, sampler: str, sigmas, opts: dict) -> GeneratedClip:
        idx, denoiser = self._subset(condition)
        g = torch.Generator().manual_seed(seed)
        x = torch.randn((1, *self.data.spec.shape), generator=g, dtype=torch.float64) * float(sigmas[0])
        noise = lambda like: torch.randn(like.shape, generator=g, dtype=like.dtype)  # noqa: E731
        x = call_sampler(sampler, denoiser, x, sigmas, noise=noise, **opts)
        ys = self.data.specs[idx]
        d = ((ys - x).flatten(1).norm(dim=1) / ys.flatten(1).norm(dim=1).clamp_min(1e-12))
        j = int(d.argmin())
        wave = to_wave(x.float(), self.data.spec)[0].numpy().astype(np.float32)
        meta = {"sampler": sampler, "steps": len(sigmas) - 1, "nfe": nfe(sampler, sigmas), "cfg": None,
                "source_path": self.data.paths[idx[j]], "source_distance": float(d[j]),
                **{k: v for k, v in opts.items() if not callable(v)}}
        return GeneratedClip(wave, seed, condition or self.data.labels[idx[j]], meta)


def from_spec(arg: str, *, sample_rate: int = 22050, clip_seconds: float = 4.0, hop: int = 256,
              silence_dbfs: float = -60.0) -> MemorizerGenerator:
    """``memorizer:DIR`` (audio folder or folder of .npy spectrograms; options :data:`LOAD_OPTIONS`)."""
    root = Path(arg).expanduser()
    if not root.is_dir():
        raise GeneratorError(f"memorizer:{arg}: not a folder (give a corpus folder of audio or of .npy spectrograms)")
    npys = sorted(root.rglob("*.npy"))
    if npys:
        data = read_spec_folder(root, npys)
    else:
        spec = SpecConfig(sample_rate=sample_rate, clip_seconds=clip_seconds, hop=hop)
        data = read_audio_folder(root, spec, silence_dbfs)
    if not data.paths:
        reasons = "; ".join(f"{p}: {r}" for p, r in data.skipped[:3])
        raise GeneratorError(f"memorizer:{arg}: no usable training clips{' (' + reasons + ')' if reasons else ''}")
    return MemorizerGenerator(data, str(arg))
