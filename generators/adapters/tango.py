"""``tango:DIR`` — a TANGO-style text-to-audio latent diffusion model as a :class:`Generator`.

Load-time options (``load_generator("tango:DIR", **opts)``): ``device`` ("auto"), ``text_encoder``,
``unet_config``, ``vocoder_config`` (paths for parts a declare-lab directory leaves out; see
:mod:`generators.adapters.tango_layout` for the accepted layouts).

Generation options (``generate(n, conditions=prompts, seed=s, **opts)``): ``steps`` (100),
``guidance``/``cfg`` (3.0; CFG on when > 1), ``sampler`` ("scheduler" = the checkpoint's DDPM,
"ddpm", "ddim", or an EDM sampler name of ``generators.edmsound.samplers.SAMPLERS``),
``sampler_opts`` (dict passed to that sampler), ``duration`` (seconds, 10.24), ``batch_size`` (8),
``prompts_file``, ``progress`` (False).
Sample ``i`` uses seed ``seed + i`` for its initial noise and its DDPM noise, so it is reproduced
alone by ``generate(1, conditions=[prompt_i], seed=seed + i)``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from generators.adapters.common import check_opts, guidance_from, pick_device, require_diffusers, resolve_conditions
from generators.base import GeneratedBatch, GeneratedClip, GeneratorError, Uses

GENERATE_OPTS = ("steps", "guidance", "cfg", "sampler", "sampler_opts", "duration", "batch_size",
                 "prompts_file", "progress")
LOAD_OPTIONS = ("device", "text_encoder", "unet_config", "vocoder_config")


class TangoGenerator:
    """A loaded TANGO-style pipeline; ``sample_rate`` is the vocoder's (16 kHz for TANGO)."""

    uses = Uses(GENERATE_OPTS, "prompt")

    def __init__(self, root: str | Path, device: str | None = None, text_encoder: str | None = None,
                 unet_config: str | None = None, vocoder_config: str | None = None):
        require_diffusers()
        from generators.adapters.tango_layout import load_tango_parts
        from generators.adapters.tango_pipeline import TangoStylePipeline

        self.root = Path(root).expanduser()
        parts = load_tango_parts(self.root, text_encoder=text_encoder, unet_config=unet_config,
                                 vocoder_config=vocoder_config)
        self.layout, self.sources = parts.layout, parts.sources
        self.pipe = TangoStylePipeline(**parts.modules()).to(pick_device(device))
        self.pipe.set_progress_bar_config(disable=True)
        self.name = f"tango:{self.root}"
        self.sample_rate = self.pipe.sample_rate

    def save_diffusers(self, out: str | Path) -> Path:
        """Write the loaded parts in the diffusers layout (loads back with ``tango:OUT``)."""
        self.pipe.save_pretrained(str(out))
        return Path(out)

    def generate(self, n: int, *, conditions: Sequence[str | None] | None = None, seed: int = 0,
                 **opts) -> GeneratedBatch:
        check_opts(opts, GENERATE_OPTS, "tango")
        guidance = guidance_from(opts, 3.0)
        steps, sampler = int(opts.get("steps", 100)), opts.get("sampler")
        duration, batch = float(opts.get("duration", 10.24)), int(opts.get("batch_size", 8))
        _check_sampler(sampler, opts.get("sampler_opts"))
        if steps < 1 or duration <= 0 or batch < 1:
            raise GeneratorError(f"tango: steps ({steps}), duration ({duration}) and batch_size ({batch}) must be > 0")
        prompts = resolve_conditions(n, conditions, opts.get("prompts_file"), "tango")
        self.pipe.set_progress_bar_config(disable=not opts.get("progress", False))
        clips, nfe, t0 = [], 0, time.perf_counter()
        for lo in range(0, n, batch):
            seeds = [seed + i for i in range(lo, min(n, lo + batch))]
            waves, nfe = self.pipe(prompts[lo: lo + len(seeds)], seeds, steps=steps, guidance=guidance,
                                   sampler=sampler, duration=duration, sampler_opts=opts.get("sampler_opts"))
            meta = dict(sampler=sampler or "scheduler", steps=steps, nfe=nfe, guidance=guidance,
                        checkpoint=str(self.root))
            clips += [GeneratedClip(w, s, p, dict(meta)) for w, s, p in zip(waves, seeds, prompts[lo:])]
        info = dict(layout=self.layout, sources=self.sources, steps=steps, guidance=guidance, nfe=nfe,
                    sampler=sampler or "scheduler", duration=duration, seconds=time.perf_counter() - t0)
        return GeneratedBatch(clips, self.sample_rate, self.name, info)


def _check_sampler(sampler: str | None, sampler_opts: dict | None) -> None:
    from generators.adapters.tango_pipeline import SCHEDULER_CHOICES, edm_samplers, sampler_names

    if sampler is not None and sampler not in sampler_names():
        raise GeneratorError(f"tango: unknown sampler '{sampler}'; use one of: {', '.join(sampler_names())}")
    if sampler is None or sampler in SCHEDULER_CHOICES:
        if sampler_opts:
            raise GeneratorError(f"tango: sampler_opts ({', '.join(sampler_opts)}) apply to the EDM samplers only, "
                                 f"not to '{sampler or 'scheduler'}'")
    else:
        edm_samplers().check_options(sampler, sampler_opts or {})


def from_spec(arg: str, **opts) -> TangoGenerator:
    """``tango:DIR`` (load options :data:`LOAD_OPTIONS`, checked by the registry)."""
    return TangoGenerator(arg, **opts)
