"""Small audio encoders trained from scratch (machines without pretrained weights).

Two architectures, one config dataclass each, both ``waves [B, T] -> [B, dim]``
(un-normalised; the encoder wrapper L2-normalises):

* ``conv`` — a VGG-style CNN on log-mel (our measured CPU recipe, FACTS.md "Copy
  detection from scratch"): 64 mels, conv blocks with batch norm, GeM pooling over time
  and frequency (Radenović et al. 2018), a linear projection. Input statistics are
  standardised per clip, so a gain change does not move the embedding.
* ``htsat`` — LAION-CLAP's audio branch (HTSAT, Chen et al. 2022) in a tiny config plus
  CLAP's 2-layer projection: the "CLAP architecture", built through laion-clap's own
  ``HTSAT_Swin_Transformer`` (via :func:`audioaudit.encoders.laion.build_model`).

``conv`` is the default: on a 110-clip synthetic corpus (16 kHz, 4 s windows then, 24 views
per clip, InfoNCE + KoLeo) it reached µAP 0.95 in ~150 CPU-seconds (150 epochs), while
``htsat`` (1.5 M parameters, ~2.5x the cost per epoch) reached 0.68 after 100
CPU-seconds at LR 5e-4 and collapsed (no learning) at the conv's LR 2e-3.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class ConvConfig:
    arch: str = "conv"
    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 320  # 20 ms frames
    n_mels: int = 64
    fmin: float = 50.0
    fmax: float = 8000.0
    channels: tuple[int, ...] = (24, 48, 96, 192)
    dim: int = 128
    # 2 s windows every 1 s (4 s / 2 s before): on the real-sound benchmark (benchmarks/
    # real_corpus.py, 1914 clips) 2 s + 40 epochs trained in 11.5 min against 21 min for
    # 4 s + 20 epochs and won every figure (normalised µAP 0.824 vs 0.780, R@P90 0.613 vs
    # 0.471; unseen families 0.724 vs 0.679); excerpts and partial copies match a window
    window_seconds: float = 2.0
    hop_seconds: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


class LogMel(nn.Module):
    """Power mel spectrogram (Slaney mels, librosa filterbank) in log scale, standardised
    per clip over (mel, time): removes level, keeps spectral shape and dynamics."""

    def __init__(self, sr: int, n_fft: int, hop: int, n_mels: int, fmin: float, fmax: float):
        super().__init__()
        import librosa

        fb = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=min(fmax, sr / 2))
        self.register_buffer("fb", torch.from_numpy(fb.astype(np.float32)), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.n_fft, self.hop = n_fft, hop

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T] -> [B, 1, mels, frames]
        if x.shape[-1] < self.n_fft:
            x = nn.functional.pad(x, (0, self.n_fft - x.shape[-1]))
        spec = torch.stft(x, self.n_fft, self.hop, window=self.window, center=True, return_complex=True)
        mel = torch.log(self.fb @ spec.abs().pow(2) + 1e-6)
        mu = mel.mean(dim=(1, 2), keepdim=True)
        sd = mel.std(dim=(1, 2), keepdim=True)
        return ((mel - mu) / (sd + 1e-5)).unsqueeze(1)


class GeM(nn.Module):
    """Generalised-mean pooling over all positions, learnable p (Radenović et al. 2018)."""

    def __init__(self, p: float = 3.0):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, C]
        p = self.p.clamp(1.0, 8.0)
        return x.clamp_min(1e-6).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )  # fmt: skip


class ConvEncoderNet(nn.Module):
    def __init__(self, cfg: ConvConfig):
        super().__init__()
        self.cfg = cfg
        self.frontend = LogMel(cfg.sample_rate, cfg.n_fft, cfg.hop_length, cfg.n_mels, cfg.fmin, cfg.fmax)
        c0 = cfg.channels[0]  # a strided stem: the full-resolution convs dominated the cost
        stem = nn.Sequential(nn.Conv2d(1, c0, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(c0), nn.ReLU(inplace=True))
        chans = cfg.channels
        self.blocks = nn.Sequential(stem, *[_block(a, b) for a, b in zip(chans[:-1], chans[1:])])
        self.pool = GeM()
        self.proj = nn.Linear(chans[-1], cfg.dim)
        # the stem (stride 2) and every block (max-pool 2) halve the frames: fewer than
        # 2**len(chans) - 1 frames reach an empty map (a 0.1 s view crashed training on real
        # clips), so shorter inputs are padded with silence to exactly that many frames
        # (center=True STFT: 1 + samples // hop); inputs that worked before are unchanged
        self.min_samples = cfg.hop_length * (2 ** len(chans) - 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] < self.min_samples:
            x = nn.functional.pad(x, (0, self.min_samples - x.shape[-1]))
        return self.proj(self.pool(self.blocks(self.frontend(x))))


@dataclass(frozen=True)
class HTSATConfig:
    """LAION-CLAP's HTSAT audio branch + CLAP projection in a small config.

    HTSAT folds the log-mel image (frames × mels) into a ``spec_size``² square
    (``freq_ratio = spec_size // mel_bins`` time chunks stacked along frequency), so
    ``window_seconds`` of frames must fit in ``spec_size * freq_ratio``."""

    arch: str = "htsat"
    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 320
    n_mels: int = 64
    fmin: float = 50.0
    fmax: float = 8000.0
    spec_size: int = 128
    patch_size: int = 4
    embed_dim: int = 32  # Swin width of the first stage (doubles each stage)
    depths: tuple[int, ...] = (1, 1, 1)
    num_heads: tuple[int, ...] = (2, 4, 8)
    swin_window: int = 8
    joint_dim: int = 256  # CLAP projection width
    dim: int = 128  # our output after a final linear map
    window_seconds: float = 4.0
    hop_seconds: float = 2.0

    @classmethod
    def from_dict(cls, d: dict) -> "HTSATConfig":
        d = dict(d)
        for k in ("depths", "num_heads"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    def laion_config(self):
        from audioaudit.encoders.laion import LaionConfig

        width = self.embed_dim * 2 ** (len(self.depths) - 1)
        return LaionConfig(
            name="scratch-htsat", embed_dim=width, joint_dim=self.joint_dim,
            audio_cfg={"audio_length": 1024, "clip_samples": int(self.window_seconds * self.sample_rate),
                       "mel_bins": self.n_mels, "sample_rate": self.sample_rate, "window_size": self.n_fft,
                       "hop_size": self.hop_length, "fmin": self.fmin, "fmax": self.fmax, "class_num": 8,
                       "model_type": "HTSAT", "model_name": "scratch"},
            htsat={"spec_size": self.spec_size, "patch_size": self.patch_size, "patch_stride": [self.patch_size] * 2,
                   "embed_dim": self.embed_dim, "depths": list(self.depths), "num_heads": list(self.num_heads),
                   "window_size": self.swin_window},
        )  # fmt: skip


class HTSATEncoderNet(nn.Module):
    """waves [B, T<=window] -> LAION ``repeatpad`` to the window -> HTSAT -> projection -> dim."""

    def __init__(self, cfg: HTSATConfig):
        super().__init__()
        from audioaudit.encoders.laion import build_model

        self.cfg = cfg
        self.clip_samples = int(cfg.window_seconds * cfg.sample_rate)
        self.tower = build_model(cfg.laion_config())
        # HTSAT's train-mode SpecAugment (64-frame stripes) breaks on short windows; our
        # augmented views already carry the augmentation
        self.tower.audio_branch.spec_augmenter = nn.Identity()
        self.out = nn.Linear(cfg.joint_dim, cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[-1]
        if n < self.clip_samples:  # tile, then zero-pad (laion_clap's "repeatpad")
            x = x.repeat(1, self.clip_samples // n)
            x = nn.functional.pad(x, (0, self.clip_samples - x.shape[-1]))
        return self.out(self.tower(x[:, : self.clip_samples]))


def build_scratch(cfg: dict) -> tuple[nn.Module, object]:
    """(network, config dataclass) from a config dict (``arch``: ``conv`` or ``htsat``)."""
    arch = cfg.get("arch", "conv")
    if arch == "conv":
        c = ConvConfig(**{**cfg, "channels": tuple(cfg.get("channels", ConvConfig.channels))})
        return ConvEncoderNet(c), c
    if arch == "htsat":
        c = HTSATConfig.from_dict(cfg)
        return HTSATEncoderNet(c), c
    raise ValueError(f"unknown scratch architecture '{arch}' (conv or htsat)")


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def scratch_steps(net: nn.Module, cfg, device: str):
    """(prepare, forward) for :class:`~audioaudit.encoders.finetuned.FinetunedEncoder`.

    Clips of equal length are run together and nothing is padded across clips, so a
    clip's vector never depends on its batch (the training crops are unpadded too)."""

    def prepare(waves: list[np.ndarray]):
        groups: dict[int, list[int]] = {}
        for i, w in enumerate(waves):
            groups.setdefault(len(w), []).append(i)
        return [(idx, torch.from_numpy(np.stack([waves[i] for i in idx])).to(device)) for idx in groups.values()]

    def forward(inputs):
        n = sum(len(idx) for idx, _ in inputs)
        out = torch.empty(n, cfg.dim, device=device)
        for idx, x in inputs:
            out[idx] = net(x)
        return out

    return prepare, forward
