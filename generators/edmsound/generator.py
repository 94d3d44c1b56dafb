"""EDMSound as a :class:`generators.base.Generator`: checkpoint directory in, waveforms out.

Seeds are per sample: sample ``i`` of ``generate(n, seed=s)`` starts from
``sigma_max * randn`` drawn from ``torch.Generator().manual_seed(s + i)`` (and draws its
churn noise there too), so ``generate(1, conditions=[c_i], seed=s + i)`` reproduces it alone.
With no condition, a class-conditional model uses class ``classes[(s + i) % K]``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from generators.base import GeneratedBatch, GeneratedClip, GeneratorError, Uses
from generators.edmsound import checkpoint as ckpt
from generators.edmsound.config import GenConfig
from generators.edmsound.edm import guided_denoiser
from generators.edmsound.samplers import SCHEDULES, call_sampler, check_options, get_sigmas_karras, nfe
from generators.edmsound.spectrogram import to_wave

DEFAULTS = {"sampler": "deis", "steps": 10, "cfg": 3.0, "schedule": "karras"}
SAMPLING_OPTIONS = ("sampler", "steps", "cfg", "schedule", "sigma_min", "sigma_max", "rho")
LOAD_OPTIONS = ("weights", "batch_size", "device")
UNCONDITIONAL = "the model is unconditional (trained without classes)"


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


@dataclass(frozen=True)
class Sampling:
    """How :func:`sample_specs` samples: sampler, steps, guidance scale, sigma schedule
    (``None`` bounds / rho: the model's EDM config), and the sampler's own ``options``
    (``order``, ``churn``, ``callback`` ...; see :func:`~generators.edmsound.samplers.sampler_options`)."""

    sampler: str = DEFAULTS["sampler"]
    steps: int = DEFAULTS["steps"]
    cfg_scale: float = DEFAULTS["cfg"]
    schedule: str = DEFAULTS["schedule"]
    sigma_min: float | None = None
    sigma_max: float | None = None
    rho: float | None = None
    options: Mapping = field(default_factory=dict)

    @classmethod
    def from_opts(cls, opts: Mapping) -> "Sampling":
        """``generate``'s keyword options (None means default): ``sampler``, ``steps``, ``cfg``,
        ``schedule``, ``sigma_min`` / ``sigma_max`` / ``rho``; the rest are the sampler's, checked
        here (a :class:`GeneratorError` before any model work)."""
        opts = {**DEFAULTS, **{k: v for k, v in opts.items() if v is not None}}
        sampler, steps, cfg_scale = opts.pop("sampler"), int(opts.pop("steps")), float(opts.pop("cfg"))
        schedule = opts.pop("schedule")
        sig = {k: opts.pop(k) for k in ("sigma_min", "sigma_max", "rho") if k in opts}
        check_options(sampler, opts)
        return cls(sampler, steps, cfg_scale, schedule, **sig, options=opts)

    def sigmas(self, cfg: GenConfig) -> torch.Tensor:
        return make_sigmas(cfg, self.steps, self.schedule, self.sigma_min, self.sigma_max, self.rho)


@torch.inference_mode()
def sample_specs(model, cfg: GenConfig, seeds: Sequence[int], labels: torch.Tensor | None,
                 sampling: Sampling = Sampling()) -> torch.Tensor:
    """Spectrograms (B, 2, F, T) for one batch of seeds with any sampler of :data:`SAMPLERS`.

    An option the sampler does not take is a :class:`GeneratorError`; churn noise is seeded per sample.
    """
    sigmas = sampling.sigmas(cfg)
    x, noise = seeded_noise(cfg.spec.shape, seeds)
    x = x * float(sigmas[0])
    model.eval()
    denoiser = guided_denoiser(model, labels, sampling.cfg_scale, cfg.unet.num_classes)
    return call_sampler(sampling.sampler, denoiser, x, sigmas, noise=noise, **sampling.options)


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

    @property
    def uses(self) -> Uses:
        """Classes when the model has them; without, ``cfg`` changes nothing (a warning)."""
        classes = tuple(self.cfg.classes)
        if classes:
            return Uses(SAMPLING_OPTIONS, "class", classes, sampler=DEFAULTS["sampler"])
        return Uses(tuple(o for o in SAMPLING_OPTIONS if o != "cfg"), None, (),
                    {"cfg": f"{UNCONDITIONAL}: there is nothing to guide"}, DEFAULTS["sampler"], UNCONDITIONAL)

    def generate(self, n: int, *, conditions: Sequence[str | None] | None = None, seed: int = 0,
                 **opts) -> GeneratedBatch:
        """``opts``: see :meth:`Sampling.from_opts` (defaults :data:`DEFAULTS`)."""
        sampling = Sampling.from_opts(opts)  # before any model work
        conditions = list(conditions) if conditions is not None else [None] * n
        if len(conditions) != n:
            raise GeneratorError(f"{len(conditions)} conditions for {n} samples")
        seeds = [seed + i for i in range(n)]
        names = resolve_labels(self.cfg, conditions, seeds)
        clips = []
        for a in range(0, n, self.batch_size):
            chunk_seeds, chunk_names = seeds[a : a + self.batch_size], names[a : a + self.batch_size]
            clips += self._batch(chunk_seeds, chunk_names, sampling)
        meta = {"checkpoint": str(Path(self.directory).resolve()), "step": self.step, "weights": self.weights}
        return GeneratedBatch(clips, self.sample_rate, f"edmsound:{self.directory}", meta)

    def _batch(self, seeds: list[int], names: list[str | None], sampling: Sampling) -> list[GeneratedClip]:
        classes = list(self.cfg.classes)
        labels = None if names[0] is None else torch.tensor([classes.index(c) for c in names])
        spec = sample_specs(self.model, self.cfg, seeds, labels, sampling)
        waves = to_wave(spec, self.cfg.spec).numpy().astype(np.float32)
        meta = {"sampler": sampling.sampler, "steps": sampling.steps,
                "nfe": nfe(sampling.sampler, sampling.sigmas(self.cfg)),
                "cfg": sampling.cfg_scale if labels is not None else None, "schedule": sampling.schedule,
                "checkpoint": str(Path(self.directory).resolve()), "step": self.step}
        for k in ("order", "churn", "time"):
            if k in sampling.options:
                meta[k] = sampling.options[k]
        return [GeneratedClip(w, s, c, dict(meta)) for w, s, c in zip(waves, seeds, names)]


def from_spec(arg: str, **opts) -> EDMSoundGenerator:
    """``edmsound:DIR`` -> generator over the checkpoint in DIR (opts: :data:`LOAD_OPTIONS`)."""
    return EDMSoundGenerator(arg, **opts)
