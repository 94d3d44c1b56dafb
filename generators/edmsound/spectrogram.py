"""EDMSound's representation: a compressed complex STFT as a 2-channel image.

Zhu et al. 2023 (EDMSound, Sec. 3.1): complex STFT (n_fft 510 -> 256 frequency bins,
periodic Hann window, normalised), amplitude compression

    X~ = beta * |X|^alpha * exp(j * angle(X))          (alpha = 0.5, beta = 0.3)

and the real and imaginary parts of X~ stacked as two channels. The inverse undoes the
compression (|X| = (|X~| / beta)^(1/alpha)) and runs the iSTFT, so the round trip is exact
up to float rounding: no vocoder, no phase reconstruction.

Clips are zero-padded so the number of frames is a multiple of ``frame_multiple`` (the
U-Net's total down-sampling factor); :meth:`SpecConfig.to_wave` crops back to
``clip_samples``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class SpecConfig:
    sample_rate: int = 22050
    clip_seconds: float = 4.0
    n_fft: int = 510
    hop: int = 256
    alpha: float = 0.5
    beta: float = 0.3
    frame_multiple: int = 8

    @property
    def clip_samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def frames(self) -> int:
        """Frames of a padded clip (torch.stft(center=True) gives 1 + n // hop frames); the
        padded length hop * (frames - 1) is never shorter than the clip."""
        needed = 1 + math.ceil(self.clip_samples / self.hop)
        return int(math.ceil(needed / self.frame_multiple) * self.frame_multiple)

    @property
    def padded_samples(self) -> int:
        return self.hop * (self.frames - 1)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (2, self.bins, self.frames)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SpecConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def _window(cfg: SpecConfig, device, dtype) -> torch.Tensor:
    return torch.hann_window(cfg.n_fft, periodic=True, device=device, dtype=dtype)


def fit_samples(wave: torch.Tensor, n: int) -> torch.Tensor:
    """Crop or zero-pad the last axis to exactly ``n`` samples."""
    if wave.shape[-1] >= n:
        return wave[..., :n]
    return torch.nn.functional.pad(wave, (0, n - wave.shape[-1]))


def compress(z: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """X~ = beta |X|^alpha e^{j angle X} (EDMSound Sec. 3.1), written as beta |X|^(alpha-1) X."""
    mag = z.abs()
    scale = torch.where(mag > 0, beta * mag.clamp_min(1e-30).pow(alpha - 1.0), torch.zeros_like(mag))
    return z * scale


def decompress(z: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """Inverse of :func:`compress`: |X| = (|X~| / beta)^(1/alpha), phase kept."""
    mag = z.abs()
    safe = mag.clamp_min(1e-30)
    scale = torch.where(mag > 0, (safe / beta).pow(1.0 / alpha) / safe, torch.zeros_like(mag))
    return z * scale


def to_spec(wave: torch.Tensor, cfg: SpecConfig) -> torch.Tensor:
    """(B, samples) float waveform -> (B, 2, bins, frames) compressed real/imag image."""
    squeeze = wave.dim() == 1
    wave = fit_samples(wave.reshape(-1, wave.shape[-1]).float(), cfg.padded_samples)
    z = torch.stft(
        wave, cfg.n_fft, hop_length=cfg.hop, win_length=cfg.n_fft,
        window=_window(cfg, wave.device, wave.dtype), center=True, normalized=True,
        onesided=True, return_complex=True,
    )
    z = compress(z, cfg.alpha, cfg.beta)
    out = torch.stack([z.real, z.imag], dim=1)
    return out[0] if squeeze else out


def to_wave(spec: torch.Tensor, cfg: SpecConfig) -> torch.Tensor:
    """(B, 2, bins, frames) -> (B, clip_samples) waveform by decompression + iSTFT."""
    squeeze = spec.dim() == 3
    spec = spec.reshape(-1, *spec.shape[-3:]).float()
    z = decompress(torch.complex(spec[:, 0], spec[:, 1]), cfg.alpha, cfg.beta)
    wave = torch.istft(
        z, cfg.n_fft, hop_length=cfg.hop, win_length=cfg.n_fft,
        window=_window(cfg, spec.device, spec.dtype), center=True, normalized=True,
        onesided=True, length=cfg.padded_samples,
    )
    wave = wave[:, : cfg.clip_samples]
    return wave[0] if squeeze else wave
