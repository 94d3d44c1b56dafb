"""EDM preconditioning, training loss and classifier-free guidance.

Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models":
Table 1 (EDM column) and Eq. 7 give the denoiser D(x; sigma) = c_skip x + c_out F(c_in x;
c_noise); Eq. 8 / Table 1 give the loss weight lambda(sigma) = 1 / c_out^2 and the
log-normal training distribution ln sigma ~ N(P_mean, P_std^2). Classifier-free guidance
follows Ho & Salimans 2022 (Eq. 6), written on the denoiser: D = D_u + w (D_c - D_u).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class EDMConfig:
    sigma_data: float = 0.2  # EDMSound's value for the compressed spectrogram
    P_mean: float = -1.2
    P_std: float = 1.2
    cond_drop: float = 0.1  # probability of training on the null class (CFG)
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EDMConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def precond_coeffs(sigma, sigma_data: float):
    """(c_skip, c_out, c_in, c_noise) of Karras et al. 2022, Table 1 (EDM)."""
    s2, d2 = sigma**2, sigma_data**2
    c_skip = d2 / (s2 + d2)
    c_out = sigma * sigma_data / (s2 + d2) ** 0.5
    c_in = 1 / (s2 + d2) ** 0.5
    c_noise = (torch.log(sigma) if torch.is_tensor(sigma) else math.log(sigma)) / 4
    return c_skip, c_out, c_in, c_noise


class EDMPrecond(nn.Module):
    """D(x; sigma, class) = c_skip x + c_out F(c_in x; c_noise, class)  (Karras 2022, Eq. 7)."""

    def __init__(self, net: nn.Module, sigma_data: float = 0.2):
        super().__init__()
        self.net, self.sigma_data = net, sigma_data

    def forward(self, x: torch.Tensor, sigma, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        sigma = sigma.expand(x.shape[0]) if sigma.numel() == 1 else sigma
        c_skip, c_out, c_in, c_noise = precond_coeffs(sigma, self.sigma_data)
        view = (-1,) + (1,) * (x.dim() - 1)
        f = self.net(c_in.reshape(view) * x, c_noise, class_labels)
        return c_skip.reshape(view) * x + c_out.reshape(view) * f.to(x.dtype)


@dataclass
class EDMLoss:
    """lambda(sigma) ||D(y + n; sigma) - y||^2 with ln sigma ~ N(P_mean, P_std^2) (Karras 2022, Eq. 8, Table 1).

    ``num_classes``: labels are replaced by the null token (index ``num_classes``) with
    probability ``cond_drop`` so the same network learns D_u for guidance.
    """

    P_mean: float = -1.2
    P_std: float = 1.2
    sigma_data: float = 0.2
    cond_drop: float = 0.1
    num_classes: int = 0

    def __call__(self, model: nn.Module, y: torch.Tensor, labels: torch.Tensor | None, generator=None) -> torch.Tensor:
        b = y.shape[0]
        rnd = torch.randn(b, generator=generator, device=y.device)
        sigma = (rnd * self.P_std + self.P_mean).exp()
        weight = (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2  # = 1 / c_out^2
        noise = torch.randn(y.shape, generator=generator, device=y.device) * sigma.reshape(-1, 1, 1, 1)
        labels = self.drop_labels(labels, b, y.device, generator)
        d = model(y + noise, sigma, labels)
        return (weight.reshape(-1, 1, 1, 1) * (d - y) ** 2).mean()

    def drop_labels(self, labels, b: int, device, generator) -> torch.Tensor:
        null = torch.full((b,), self.num_classes, dtype=torch.long, device=device)
        if labels is None or self.num_classes == 0:
            return null
        keep = torch.rand(b, generator=generator, device=device) >= self.cond_drop
        return torch.where(keep, labels.to(device), null)


def guided_denoiser(model: nn.Module, labels: torch.Tensor | None, cfg: float, num_classes: int):
    """D(x, sigma) with classifier-free guidance D_u + cfg (D_c - D_u) (Ho & Salimans 2022, Eq. 6).

    ``cfg`` = 1 is the plain conditional denoiser; no labels (or an unconditional model)
    gives the null-token denoiser and ignores ``cfg``. Both branches run in one batch.
    """

    def null_like(x):
        return torch.full((x.shape[0],), num_classes, dtype=torch.long, device=x.device)

    if labels is None or num_classes == 0:
        return lambda x, sigma: model(x, sigma, null_like(x))
    if cfg == 1.0:
        return lambda x, sigma: model(x, sigma, labels.to(x.device))

    def denoise(x, sigma):
        both = model(torch.cat([x, x]), sigma, torch.cat([labels.to(x.device), null_like(x)]))
        d_c, d_u = both.chunk(2)
        return d_u + cfg * (d_c - d_u)

    return denoise
