"""``audioldm2:DIR`` — a diffusers ``AudioLDM2Pipeline`` saved in a local directory, as a :class:`Generator`.

The directory is what ``AudioLDM2Pipeline.save_pretrained`` writes (and what the cvssp/audioldm2*
model repositories hold): ``model_index.json`` plus one subfolder per component (vae, text_encoder
(CLAP), text_encoder_2 (T5 or VITS), projection_model, language_model (GPT-2), tokenizer,
tokenizer_2, feature_extractor, unet, scheduler, vocoder). Nothing is fetched.

Load options: ``device``. Generation options: ``steps`` (200), ``guidance``/``cfg`` (3.5),
``duration`` (seconds; the pipeline's default, 10.24, when omitted), ``negative_prompt``,
``sampler`` ("scheduler" = the saved one, "ddim", "ddpm"), ``batch_size`` (8), ``prompts_file``,
``progress``. Sample ``i`` uses its own ``torch.Generator`` seeded ``seed + i``.
"""
from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from generators.adapters.common import (
    check_opts,
    cpu_generators,
    guidance_from,
    pick_device,
    require_diffusers,
    resolve_conditions,
)
from generators.base import GeneratedBatch, GeneratedClip, GeneratorError, Uses

GENERATE_OPTS = ("steps", "guidance", "cfg", "duration", "negative_prompt", "sampler", "batch_size",
                 "prompts_file", "progress")
CONFIG_FILES = ("config.json", "scheduler_config.json", "preprocessor_config.json", "tokenizer_config.json",
                "tokenizer.json")
SAMPLERS = ("scheduler", "default", "ddim", "ddpm")
LOAD_OPTIONS = ("device",)


def check_pipeline_dir(root: Path) -> dict:
    """``model_index.json`` and a config file in every component folder it lists, else an error naming the gap."""
    index = root / "model_index.json"
    if not root.is_dir():
        raise GeneratorError(f"{root}: pipeline directory not found")
    if not index.is_file():
        raise GeneratorError(f"{root}: missing model_index.json (not a saved diffusers pipeline)")
    try:
        spec = json.loads(index.read_text(encoding="utf-8"))
    except ValueError as e:
        raise GeneratorError(f"{index}: not valid JSON ({e})") from None
    missing = [f"{name}/{CONFIG_FILES[0] if name != 'scheduler' else CONFIG_FILES[1]}"
               for name, value in spec.items()
               if not name.startswith("_") and isinstance(value, list) and value[0] is not None
               and not any((root / name / f).is_file() for f in CONFIG_FILES)]
    if missing:
        raise GeneratorError(f"{root}: pipeline directory is missing {', '.join(missing)}")
    return spec


class AudioLDM2Generator:
    uses = Uses(GENERATE_OPTS, "prompt")

    def __init__(self, root: str | Path, device: str | None = None):
        require_diffusers()
        from diffusers import AudioLDM2Pipeline

        self.root = Path(root).expanduser()
        spec = check_pipeline_dir(self.root)
        if spec.get("_class_name") not in (None, "AudioLDM2Pipeline"):
            raise GeneratorError(f"{self.root}: model_index.json is a {spec['_class_name']}, "
                                 "not an AudioLDM2Pipeline")
        try:
            pipe = AudioLDM2Pipeline.from_pretrained(
                str(self.root), local_files_only=True,
                low_cpu_mem_usage=importlib.util.find_spec("accelerate") is not None)
        except (OSError, ValueError, TypeError) as e:
            msg = str(e).splitlines()[0][:300]
            raise GeneratorError(f"{self.root}: cannot load AudioLDM2Pipeline: {msg}") from None
        self.pipe = pipe.to(pick_device(device))
        self.pipe.set_progress_bar_config(disable=True)
        self._default_scheduler = self.pipe.scheduler
        self.name = f"audioldm2:{self.root}"
        self.sample_rate = int(self.pipe.vocoder.config.sampling_rate)

    def _use_sampler(self, sampler: str | None) -> None:
        from diffusers import DDIMScheduler, DDPMScheduler

        if sampler not in (None,) + SAMPLERS:
            raise GeneratorError(f"audioldm2: unknown sampler '{sampler}'; use one of: {', '.join(SAMPLERS)}")
        cls = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler}.get(sampler)
        self.pipe.scheduler = cls.from_config(self._default_scheduler.config) if cls else self._default_scheduler

    def _embed(self, prompts: list[str], negative: str | None, guidance: float) -> dict:
        """Prompt embeddings computed one prompt at a time, then padded (with a zero mask) to a batch.

        AudioLDM2's GPT-2 continues the padded sequence of projected text embeddings, so encoding prompts of different
        lengths together changes each one's conditioning; encoding them alone keeps sample ``i``
        reproducible from its own seed and prompt.
        """
        import torch

        cfg = guidance > 1.0
        rows = [self.pipe.encode_prompt([p], self.pipe.device, 1, cfg,
                                        negative_prompt=None if negative is None else [negative]) for p in prompts]
        halves = [[(e.chunk(2) if cfg else (None, e)) for e in r] for r in rows]  # (neg, pos) per tensor
        width = max(h[0][w].shape[1] for h in halves for w in ((0, 1) if cfg else (1,)))

        def stack(which: int, k: int, pad: bool):
            ts = [h[k][which] for h in halves]
            if not pad:
                return torch.cat(ts)
            return torch.cat([torch.nn.functional.pad(t, (0, 0, 0, width - t.shape[1]) if t.ndim == 3
                                                      else (0, width - t.shape[1])) for t in ts])

        out = dict(prompt_embeds=stack(1, 0, True), attention_mask=stack(1, 1, True),
                   generated_prompt_embeds=stack(1, 2, False))
        if cfg:
            out.update(negative_prompt_embeds=stack(0, 0, True), negative_attention_mask=stack(0, 1, True),
                       negative_generated_prompt_embeds=stack(0, 2, False))
        return out

    def generate(self, n: int, *, conditions: Sequence[str | None] | None = None, seed: int = 0,
                 **opts) -> GeneratedBatch:
        import torch

        check_opts(opts, GENERATE_OPTS, "audioldm2")
        guidance = guidance_from(opts, 3.5)
        steps, batch = int(opts.get("steps", 200)), int(opts.get("batch_size", 8))
        if steps < 1 or batch < 1:
            raise GeneratorError(f"audioldm2: steps ({steps}) and batch_size ({batch}) must be > 0")
        self._use_sampler(opts.get("sampler"))
        prompts = resolve_conditions(n, conditions, opts.get("prompts_file"), "audioldm2")
        self.pipe.set_progress_bar_config(disable=not opts.get("progress", False))
        neg, dur = opts.get("negative_prompt"), opts.get("duration")
        clips, t0 = [], time.perf_counter()
        for lo in range(0, n, batch):
            seeds = [seed + i for i in range(lo, min(n, lo + batch))]
            chunk = prompts[lo: lo + len(seeds)]
            with torch.no_grad():
                emb = self._embed(chunk, neg, guidance)
                out = self.pipe(num_inference_steps=steps, guidance_scale=guidance, **emb,
                                audio_length_in_s=None if dur is None else float(dur),
                                generator=cpu_generators(seeds), output_type="np")
            meta = dict(sampler=opts.get("sampler") or "scheduler", steps=steps, guidance=guidance,
                        checkpoint=str(self.root))
            clips += [GeneratedClip(np.asarray(w, dtype=np.float32), s, p, dict(meta))
                      for w, s, p in zip(out.audios, seeds, chunk)]
        info = dict(steps=steps, guidance=guidance, sampler=opts.get("sampler") or "scheduler",
                    scheduler=type(self.pipe.scheduler).__name__, seconds=time.perf_counter() - t0)
        return GeneratedBatch(clips, self.sample_rate, self.name, info)


def from_spec(arg: str, **opts) -> AudioLDM2Generator:
    """``audioldm2:DIR`` (load options :data:`LOAD_OPTIONS`, checked by the registry)."""
    return AudioLDM2Generator(arg, **opts)
