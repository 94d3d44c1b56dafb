"""A 2-D U-Net in the spirit of Imagen's Efficient U-Net (Saharia et al. 2022, App. B.1).

EDMSound (Zhu et al. 2023) uses this backbone on the 2-channel compressed spectrogram.
What we keep from Efficient U-Net: ResNet blocks with GroupNorm and a conditioning
scale/shift, residual branches scaled by 1/sqrt(2), more blocks at the low resolutions
than at the high ones, down-sampling *before* the blocks of a level and up-sampling
*after* them, self-attention only at the lowest resolutions. Conditioning: Fourier
features of EDM's c_noise (Karras et al. 2022, Table 1) through an MLP, plus a class
embedding (index ``num_classes`` is the null token used for classifier-free guidance).
The output conv is zero-initialised so the untrained network predicts F = 0.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class UNetConfig:
    in_channels: int = 2
    out_channels: int = 2
    channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)
    num_blocks: tuple[int, ...] = (1, 1, 2, 2)  # per level; Efficient U-Net: more at low res
    attn_levels: tuple[int, ...] = (3,)
    num_heads: int = 4
    emb_mult: int = 4  # embedding width = emb_mult * channels
    num_classes: int = 0  # 0: unconditional (only the null token exists)
    dropout: float = 0.0
    fourier_scale: float = 16.0
    patch: int = 1  # >1: patchify stem (kernel = stride = patch) and pixel-shuffle output, for CPU sizes

    @property
    def downsample_factor(self) -> int:
        return self.patch * 2 ** (len(self.channel_mult) - 1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "UNetConfig":
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for k in ("channel_mult", "num_blocks", "attn_levels"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


def _groups(c: int) -> int:
    return next(g for g in (32, 16, 8, 4, 2, 1) if c % g == 0 and c // g >= 2 or g == 1)


def norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(_groups(c), c, eps=1e-6)


class FourierEmbedding(nn.Module):
    """Random Fourier features of a scalar (Tancik et al. 2020; NCSN++ / EDM noise embedding)."""

    def __init__(self, dim: int, scale: float):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("freqs", torch.randn(dim // 2, generator=g) * scale)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        arg = 2 * math.pi * c.float()[:, None] * self.freqs[None, :]
        return torch.cat([arg.cos(), arg.sin()], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, conditioning scale/shift, GroupNorm-SiLU-conv; skip / sqrt(2)."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.affine = nn.Linear(emb_dim, 2 * cout)
        self.norm2, self.conv2 = norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.affine(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        h = self.conv2(self.drop(h))
        return (h + self.skip(x)) * (1 / math.sqrt(2))


class SelfAttention(nn.Module):
    """Multi-head self-attention over all time-frequency positions (pre-GroupNorm, residual)."""

    def __init__(self, c: int, heads: int):
        super().__init__()
        self.heads = heads if c % heads == 0 else 1
        self.norm, self.qkv, self.proj = norm(c), nn.Conv2d(c, 3 * c, 1), nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return (x + self.proj(out)) * (1 / math.sqrt(2))


class Level(nn.Module):
    """The ResNet blocks (+ optional attention) of one resolution, on one side of the U."""

    def __init__(self, cin: int, cout: int, n: int, emb_dim: int, attn: bool, cfg: UNetConfig):
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(cin if i == 0 else cout, cout, emb_dim, cfg.dropout) for i in range(n))
        self.attn = SelfAttention(cout, cfg.num_heads) if attn else None

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            h = blk(h, emb)
        return self.attn(h) if self.attn is not None else h


class UNet(nn.Module):
    """F_theta(c_in x, c_noise, class) for EDM preconditioning (see ``edm.py``)."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        chs = [cfg.channels * m for m in cfg.channel_mult]
        emb_dim = cfg.emb_mult * cfg.channels
        self.fourier = FourierEmbedding(cfg.channels, cfg.fourier_scale)
        self.mlp = nn.Sequential(nn.Linear(cfg.channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(cfg.num_classes + 1, emb_dim)  # last index: null token
        nn.init.zeros_(self.class_emb.weight)
        p = cfg.patch
        self.stem = nn.Conv2d(cfg.in_channels, chs[0], p, stride=p) if p > 1 else nn.Conv2d(cfg.in_channels, chs[0], 3, padding=1)
        self.downs = nn.ModuleList(nn.Conv2d(chs[i - 1], chs[i - 1], 3, stride=2, padding=1) for i in range(1, len(chs)))
        prev = [chs[0]] + chs[:-1]
        self.enc = nn.ModuleList(
            Level(prev[i], chs[i], cfg.num_blocks[i], emb_dim, i in cfg.attn_levels, cfg) for i in range(len(chs))
        )
        self.mid = Level(chs[-1], chs[-1], 2, emb_dim, True, cfg)
        self.dec = nn.ModuleList(
            Level(2 * chs[i], chs[i], cfg.num_blocks[i], emb_dim, i in cfg.attn_levels, cfg) for i in range(len(chs))
        )
        self.ups = nn.ModuleList(nn.Conv2d(chs[i], chs[i - 1], 3, padding=1) for i in range(1, len(chs)))
        self.out_norm, self.out = norm(chs[0]), nn.Conv2d(chs[0], cfg.out_channels * p * p, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def embed(self, c_noise: torch.Tensor, class_labels: torch.Tensor | None) -> torch.Tensor:
        emb = self.mlp(self.fourier(c_noise))
        if class_labels is None:
            class_labels = torch.full((emb.shape[0],), self.cfg.num_classes, dtype=torch.long, device=emb.device)
        return F.silu(emb + self.class_emb(class_labels))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(c_noise, class_labels)
        h, skips = self.stem(x), []
        for i, level in enumerate(self.enc):
            if i > 0:
                h = self.downs[i - 1](h)
            h = level(h, emb)
            skips.append(h)
        h = self.mid(h, emb)
        for i in reversed(range(len(self.dec))):
            h = self.dec[i](torch.cat([h, skips.pop()], dim=1), emb)
            if i > 0:
                h = self.ups[i - 1](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = self.out(F.silu(self.out_norm(h)))
        return F.pixel_shuffle(out, self.cfg.patch) if self.cfg.patch > 1 else out


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
