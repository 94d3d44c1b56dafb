"""A discrete-time DDPM network (ε-, v- or x0-prediction) seen as an EDM denoiser ``D(x, σ)``.

Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models",
Table 1 (VP column) and App. C.2: a VP sample ``x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε`` is
``√ᾱ_t (x0 + σ_t ε)`` with

    σ_t = √((1 − ᾱ_t) / ᾱ_t),                                             (EDM eq. for σ(t), VP)

so the EDM state is ``x = x_t / √ᾱ_t`` and the network sees ``x_vp = c_in x`` with
``c_in = 1/√(1+σ²)``. The preconditioning then reads (EDM Table 1, c_skip/c_out):

    ε-prediction:  D = x − σ ε̂                         (c_skip = 1,        c_out = −σ)
    v-prediction:  D = x/(1+σ²) − σ/√(1+σ²) · v̂       (c_skip = 1/(1+σ²),  c_out = −σ/√(1+σ²))
                   with v = √ᾱ ε − √(1−ᾱ) x0           (Salimans & Ho 2022, "Progressive distillation", §4)
    x0-prediction: D = x̂0

The network's timestep for a σ between the discrete σ_t is found by linear interpolation of
t over log σ_t (the continuous extension k-diffusion uses for discrete schedules).
Classifier-free guidance (Ho & Salimans 2022, eq. 6) is applied to the network output inside
:class:`GuidedUNet` (settings in a :class:`Conditioning`), so a sampler only ever sees ``D(x, σ)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


@dataclass(frozen=True)
class DiscreteVPSchedule:
    """σ_t for t = 0..T−1 (increasing) from a DDPM's cumulative alphas ᾱ_t."""

    sigmas: torch.Tensor  # float64, (T,)

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod) -> "DiscreteVPSchedule":
        ac = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        return cls(((1.0 - ac) / ac).sqrt())

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional timestep of each σ (clamped to the schedule's range)."""
        log_s = self.sigmas.log().to(sigma.device)
        ls = sigma.to(torch.float64).clamp_min(1e-30).log().clamp(log_s[0], log_s[-1])
        hi = torch.searchsorted(log_s, ls).clamp(1, len(log_s) - 1)
        lo_v, hi_v = log_s[hi - 1], log_s[hi]
        w = (ls - lo_v) / (hi_v - lo_v)
        return (hi - 1).to(torch.float64) + w

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """σ at (possibly fractional) timesteps, interpolating log σ linearly."""
        t = torch.as_tensor(t, dtype=torch.float64).clamp(0, len(self.sigmas) - 1)
        lo = t.floor().long().clamp(max=len(self.sigmas) - 2)
        w = t - lo
        log_s = self.sigmas.log()
        return ((1 - w) * log_s[lo] + w * log_s[lo + 1]).exp()


class VPDenoiser:
    """``D(x, σ)`` from ``model(x_vp, t) -> network output`` (see the module docstring)."""

    def __init__(self, model: Callable, schedule: DiscreteVPSchedule, prediction_type: str = "epsilon"):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        self.model, self.schedule, self.prediction_type = model, schedule, prediction_type
        self.nfe = 0  # network evaluations so far (a sampler's cost)

    @property
    def sigma_min(self) -> float:
        return self.schedule.sigma_min

    @property
    def sigma_max(self) -> float:
        return self.schedule.sigma_max

    def __call__(self, x: torch.Tensor, sigma, **_unused) -> torch.Tensor:
        s = torch.as_tensor(sigma, device=x.device, dtype=torch.float64)
        s = s.reshape(-1).expand(x.shape[0]) if s.numel() in (1, x.shape[0]) else s
        if s.shape != (x.shape[0],):
            raise ValueError(f"sigma must be a scalar or one value per sample, got shape {tuple(s.shape)}")
        t = self.schedule.sigma_to_t(s).to(torch.float32)
        b = s.to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
        c_in = 1.0 / (1.0 + b**2).sqrt()
        out = self.model(x * c_in, t)
        self.nfe += 1
        if self.prediction_type == "epsilon":
            return x - b * out
        if self.prediction_type == "v_prediction":
            return x / (1.0 + b**2) - b * c_in * out
        return out


@dataclass(frozen=True)
class Conditioning:
    """Cross-attention conditioning of a DDPM UNet: text states and masks, the unconditional
    ('' prompt) ones, and the classifier-free guidance scale ``g`` (Ho & Salimans 2022, eq. 6)."""

    cond: torch.Tensor
    cond_mask: torch.Tensor | None = None
    uncond: torch.Tensor | None = None
    uncond_mask: torch.Tensor | None = None
    guidance: float = 1.0

    def __post_init__(self):
        if self.guidance != 1.0 and self.uncond is None:
            raise ValueError("classifier-free guidance needs unconditional embeddings")


class GuidedUNet:
    """``model(x_vp, t)`` for a diffusers ``UNet2DConditionModel`` with cross-attention
    conditioning and classifier-free guidance: ``out = u + g (c − u)`` when ``g != 1``."""

    def __init__(self, unet, conditioning: Conditioning):
        self.unet, self.guidance = unet, float(conditioning.guidance)
        c = conditioning
        self.cond, self.cond_mask, self.uncond, self.uncond_mask = c.cond, c.cond_mask, c.uncond, c.uncond_mask

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device)
        t = t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t
        if self.guidance == 1.0:
            return self._run(x, t, self.cond, self.cond_mask)
        emb = torch.cat([self.uncond, self.cond])
        mask = None if self.cond_mask is None else torch.cat([self.uncond_mask, self.cond_mask])
        u, c = self._run(torch.cat([x, x]), torch.cat([t, t]), emb, mask).chunk(2)
        return u + self.guidance * (c - u)

    def _run(self, x, t, emb, mask):
        return self.unet(x, t, encoder_hidden_states=emb, encoder_attention_mask=mask).sample


def unet_denoiser(unet, alphas_cumprod, prediction_type: str, conditioning: Conditioning) -> VPDenoiser:
    """The EDM denoiser of a conditioned DDPM UNet (conditioning and CFG bound inside)."""
    model = GuidedUNet(unet, conditioning)
    return VPDenoiser(model, DiscreteVPSchedule.from_alphas_cumprod(alphas_cumprod), prediction_type)
