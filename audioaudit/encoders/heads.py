"""Projection heads put on top of a frozen (or partly frozen) encoder embedding."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class HeadConfig:
    """MLP in_dim → hidden → out_dim with ReLU between, L2-normalised output.

    EDMSound's copy detector: 512 → 128 → 128 on CLAP embeddings."""

    in_dim: int = 512
    hidden: int = 128
    out_dim: int = 128

    def to_dict(self) -> dict:
        return asdict(self)


class ProjectionHead(nn.Module):
    def __init__(self, cfg: HeadConfig):
        super().__init__()
        self.cfg = cfg
        self.net = nn.Sequential(nn.Linear(cfg.in_dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.net(x), dim=-1)
