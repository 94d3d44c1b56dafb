"""A TANGO-style text-to-audio latent diffusion pipeline assembled from diffusers + transformers parts.

FLAN-T5 encoder → ``UNet2DConditionModel`` (cross-attention on the T5 states, with their mask)
→ ``AutoencoderKL`` decoding a log-mel spectrogram → HiFi-GAN (``SpeechT5HifiGan``) → waveform.
Latents are (C, frames, mel_bins / f): time along height, mel along width, as in AudioLDM/TANGO
(Liu et al. 2023; Ghosal et al. 2023). Written from the diffusers/transformers APIs; no TANGO code.

Two ways to sample: the checkpoint's diffusers scheduler (DDPM for TANGO, v-prediction), or any
EDM-style sampler of ``generators.edmsound.samplers`` driving the UNet through
:mod:`generators.adapters.denoiser` on a Karras σ schedule.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from diffusers import DiffusionPipeline

from generators.adapters.common import cpu_generators
from generators.adapters.denoiser import Conditioning, GuidedUNet, unet_denoiser
from generators.base import GeneratorError

SCHEDULER_CHOICES = ("scheduler", "default", "ddpm", "ddim")


class TangoStylePipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->unet->vae->vocoder"

    def __init__(self, tokenizer, text_encoder, unet, vae, vocoder, scheduler):
        super().__init__()
        self.register_modules(tokenizer=tokenizer, text_encoder=text_encoder, unet=unet, vae=vae,
                              vocoder=vocoder, scheduler=scheduler)

    # -- geometry ---------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return int(self.vocoder.config.sampling_rate)

    @property
    def hop_length(self) -> int:
        return int(np.prod(self.vocoder.config.upsample_rates))

    def latent_shape(self, duration: float) -> tuple[int, int, int]:
        """(channels, frames, mel_bins) of the latent for ``duration`` seconds of audio."""
        f_vae = 2 ** (len(self.vae.config.block_out_channels) - 1)
        f_unet = 2 ** (len(self.unet.config.block_out_channels) - 1)
        n_mels = int(self.vocoder.config.model_in_dim)
        if n_mels % f_vae:
            raise GeneratorError(f"vocoder mel bins ({n_mels}) not divisible by the VAE's downsampling ({f_vae})")
        frames = math.ceil(duration * self.sample_rate / self.hop_length / f_vae)
        frames = max(f_unet, math.ceil(frames / f_unet) * f_unet)
        return int(self.unet.config.in_channels), frames, n_mels // f_vae

    # -- text -------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str], guidance: float) -> Conditioning:
        """T5 states + boolean masks for the prompts, and for '' when guidance > 1 (CFG)."""
        dev = self.text_encoder.device
        max_len = getattr(self.tokenizer, "model_max_length", 512)
        max_len = 512 if max_len is None or max_len > 100_000 else max_len
        tok = self.tokenizer(list(prompts), max_length=max_len, padding=True, truncation=True, return_tensors="pt")
        ids, mask = tok.input_ids.to(dev), tok.attention_mask.to(dev)
        cond = self.text_encoder(input_ids=ids, attention_mask=mask)[0]
        if guidance <= 1.0:
            return Conditioning(cond, mask.bool())
        un = self.tokenizer([""] * len(prompts), max_length=ids.shape[1], padding="max_length",
                            truncation=True, return_tensors="pt")
        uids, umask = un.input_ids.to(dev), un.attention_mask.to(dev)
        uncond = self.text_encoder(input_ids=uids, attention_mask=umask)[0]
        return Conditioning(cond, mask.bool(), uncond, umask.bool(), guidance=guidance)

    # -- sampling ---------------------------------------------------------------------------
    def _scheduler_for(self, sampler: str | None):
        from diffusers import DDIMScheduler, DDPMScheduler

        if sampler in (None, "scheduler", "default"):
            return self.scheduler
        cls = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}[sampler]
        return cls.from_config(self.scheduler.config)

    def sample_with_scheduler(self, noise, cond: Conditioning, steps: int, gens, sampler: str | None):
        sched = self._scheduler_for(sampler)
        sched.set_timesteps(steps, device=noise.device)
        model = GuidedUNet(self.unet, cond)
        lat = noise * sched.init_noise_sigma
        extra = {"generator": gens} if "generator" in _step_params(sched) else {}
        for t in self.progress_bar(sched.timesteps):
            out = model(sched.scale_model_input(lat, t), t)
            lat = sched.step(out, t, lat, **extra).prev_sample
        return lat, len(sched.timesteps)

    def sample_with_edm(self, noise, cond: Conditioning, steps: int, sampler: str, sampler_opts: dict, gens=()):
        """An EDM sampler on the UNet denoiser; Heun's churn noise comes from the per-sample ``gens``."""
        samplers = edm_samplers()
        den = unet_denoiser(self.unet, self.scheduler.alphas_cumprod, self.scheduler.config.prediction_type, cond)
        sigmas = samplers.get_sigmas_karras(steps, den.sigma_min, den.sigma_max, rho=7.0)
        sigmas = torch.as_tensor(sigmas, dtype=noise.dtype, device=noise.device)
        churn = _per_sample_noise(gens) if gens else None
        lat = samplers.call_sampler(sampler, den, noise * sigmas[0], sigmas, noise=churn, **sampler_opts)
        return lat, den.nfe

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        mel = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        return self.vocoder(mel.squeeze(1) if mel.dim() == 4 else mel).float()

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str], seeds: Sequence[int], steps: int = 100, guidance: float = 3.0,
                 sampler: str | None = None, duration: float = 10.24, sampler_opts: dict | None = None):
        """Waveforms (B, samples) as float32 numpy, and the number of (guided) UNet evaluations."""
        if len(prompts) != len(seeds):
            raise ValueError("one seed per prompt")
        dev, dtype = self.unet.device, self.unet.dtype
        shape = self.latent_shape(duration)
        gens = cpu_generators(seeds)
        noise = torch.stack([torch.randn(shape, generator=g) for g in gens]).to(dev, dtype)
        cond = self.encode_prompts(prompts, guidance)
        if sampler is None or sampler in SCHEDULER_CHOICES:
            lat, nfe = self.sample_with_scheduler(noise, cond, steps, gens, sampler)
        else:
            lat, nfe = self.sample_with_edm(noise, cond, steps, sampler, sampler_opts or {}, gens)
        wave = self.decode(lat.to(dtype))
        wave = wave[:, : int(round(duration * self.sample_rate))]
        return wave.cpu().numpy().astype(np.float32), nfe


def _per_sample_noise(gens):
    """noise(like): a standard normal like ``like``, row i drawn from ``gens[i]`` (CPU) as the initial noise."""
    return lambda like: torch.stack([torch.randn(tuple(like.shape[1:]), generator=g) for g in gens]).to(like)


def _step_params(sched) -> set[str]:
    import inspect

    return set(inspect.signature(sched.step).parameters)


def edm_samplers():
    """The :mod:`generators.edmsound.samplers` module (imported on first use)."""
    try:
        from generators.edmsound import samplers
    except ImportError as e:
        raise GeneratorError(f"EDM samplers are not available (generators.edmsound.samplers: {e})") from None
    return samplers


def sampler_names() -> list[str]:
    """Every value ``sampler=`` accepts: scheduler loops, then EDM samplers when present."""
    try:
        edm = sorted(edm_samplers().SAMPLERS)
    except GeneratorError:
        edm = []
    return list(SCHEDULER_CHOICES) + edm
