"""EDMSound as a :class:`generators.base.Generator`: checkpoint directory in, waveforms out.

Seeds are per sample: sample ``i`` of ``generate(n, seed=s)`` starts from
``sigma_max * randn`` drawn from ``torch.Generator().manual_seed(s + i)`` (and draws its
churn noise there too), so ``generate(1, conditions=[c_i], seed=s + i)`` reproduces it alone.
With no condition, a class-conditional model uses class ``classes[(s + i) % K]``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from generators.base import GeneratedBatch, GeneratedClip, GeneratorError
from generators.edmsound import checkpoint as ckpt
from generators.edmsound.config import GenConfig
from generators.edmsound.edm import guided_denoiser
from generators.edmsound.samplers import SAMPLERS, SCHEDULES, get_sigmas_karras, nfe
from generators.edmsound.spectrogram import to_wave

DEFAULTS = {"sampler": "deis", "steps": 10, "cfg": 3.0, "schedule": "karras"}


def make_sigmas(cfg: GenConfig, steps: int, schedule: str = "karras", sigma_min=None, sigma_max=None, rho=None):
    lo = cfg.edm.sigma_min if sigma_min is None else sigma_min
    hi = cfg.edm.sigma_max if sigma_max is None else sigma_max
    if schedule not in SCHEDULES:
        raise GeneratorError(f"unknown schedule '{schedule}'; use one of: {', '.join(SCHEDULES)}")
    if schedule == "karras":
        return get_sigmas_karras(steps, lo, hi, cfg.edm.rho if rho is None else rho)
    return SCHEDULES[schedule](steps, lo, hi)


def seeded_noise(shape: Sequence[int], seeds: Sequence[int]):
    """Initial noise and a churn-noise function, each sample from its own generator."""
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    x = torch.stack([torch.randn(tuple(shape), generator=g) for g in gens])
    noise = lambda like: torch.stack([torch.randn(tuple(like.shape[1:]), generator=g) for g in gens]).to(like)  # noqa: E731
    return x, noise


@torch.inference_mode()
def sample_specs(model, cfg: GenConfig, seeds: Sequence[int], labels: torch.Tensor | None, *,
                 sampler: str = "deis", steps: int = 10, cfg_scale: float = 3.0, schedule: str = "karras",
                 **opts) -> torch.Tensor:
    """Spectrograms (B, 2, F, T) for one batch of seeds with any sampler of :data:`SAMPLERS`."""
    if sampler not in SAMPLERS:
        raise GeneratorError(f"unknown sampler '{sampler}'; use one of: {', '.join(SAMPLERS)}")
    sig_keys = ("sigma_min", "sigma_max", "rho")
    sigmas = make_sigmas(cfg, steps, schedule, **{k: opts.pop(k) for k in sig_keys if k in opts})
    x, noise = seeded_noise(cfg.spec.shape, seeds)
    x = x * float(sigmas[0])
    model.eval()
    denoiser = guided_denoiser(model, labels, cfg_scale, cfg.unet.num_classes)
    return SAMPLERS[sampler](denoiser, x, sigmas, noise=noise, **opts)


def resolve_labels(cfg: GenConfig, conditions: Sequence[str | None], seeds: Sequence[int]) -> list[str | None]:
    classes = list(cfg.classes)
    out = []
    for c, s in zip(conditions, seeds):
        if not classes:
            if c not in (None, ""):
                raise GeneratorError(f"this EDMSound model is unconditional; got class '{c}' (drop --class)")
            out.append(None)
        elif c in (None, ""):
            out.append(classes[int(s) % len(classes)])
        elif c not in classes:
            raise GeneratorError(f"unknown class '{c}'; this model knows: {', '.join(classes)}")
        else:
            out.append(c)
    return out


class EDMSoundGenerator:
    name = "edmsound"

    def __init__(self, directory: str, *, weights: str = "ema", batch_size: int = 8, device: str = "cpu"):
        self.directory = str(directory)
        self.cfg = ckpt.read_config(directory)
        self.model = ckpt.build_model(self.cfg).to(device).eval()
        self.step = ckpt.load_weights(self.model, directory, weights)
        self.weights, self.batch_size, self.device = weights, batch_size, device
        self.sample_rate = self.cfg.spec.sample_rate

    def generate(self, n: int, *, conditions: Sequence[str | None] | None = None, seed: int = 0,
                 **opts) -> GeneratedBatch:
        opts = {**DEFAULTS, **{k: v for k, v in opts.items() if v is not None}}
        conditions = list(conditions) if conditions is not None else [None] * n
        if len(conditions) != n:
            raise GeneratorError(f"{len(conditions)} conditions for {n} samples")
        seeds = [seed + i for i in range(n)]
        names = resolve_labels(self.cfg, conditions, seeds)
        clips = []
        for a in range(0, n, self.batch_size):
            chunk_seeds, chunk_names = seeds[a : a + self.batch_size], names[a : a + self.batch_size]
            clips += self._batch(chunk_seeds, chunk_names, dict(opts))
        meta = {"checkpoint": str(Path(self.directory).resolve()), "step": self.step, "weights": self.weights}
        return GeneratedBatch(clips, self.sample_rate, f"edmsound:{self.directory}", meta)

    def _batch(self, seeds: list[int], names: list[str | None], opts: dict) -> list[GeneratedClip]:
        classes = list(self.cfg.classes)
        labels = None if names[0] is None else torch.tensor([classes.index(c) for c in names])
        sampler, steps, cfg_scale = opts.pop("sampler"), int(opts.pop("steps")), float(opts.pop("cfg"))
        spec = sample_specs(self.model, self.cfg, seeds, labels, sampler=sampler, steps=steps,
                            cfg_scale=cfg_scale, **opts)
        waves = to_wave(spec, self.cfg.spec).numpy().astype(np.float32)
        sigmas = make_sigmas(self.cfg, steps, opts.get("schedule", "karras"),
                             opts.get("sigma_min"), opts.get("sigma_max"), opts.get("rho"))
        meta = {"sampler": sampler, "steps": steps, "nfe": nfe(sampler, sigmas),
                "cfg": cfg_scale if labels is not None else None, "schedule": opts.get("schedule", "karras"),
                "checkpoint": str(Path(self.directory).resolve()), "step": self.step}
        for k in ("order", "churn", "time"):
            if k in opts:
                meta[k] = opts[k]
        return [GeneratedClip(w, s, c, dict(meta)) for w, s, c in zip(waves, seeds, names)]


def from_spec(arg: str, **opts) -> EDMSoundGenerator:
    """``edmsound:DIR`` -> generator over the checkpoint in DIR (opts: weights, batch_size, device)."""
    return EDMSoundGenerator(arg, **opts)
