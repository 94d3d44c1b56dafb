"""The LAION-CLAP audio tower as a torch module (imported lazily by
:mod:`audioaudit.encoders.laion`, so that importing the backend does not import torch)."""
from __future__ import annotations

import torch
from torch import nn


class AudioTower(nn.Module):
    """``CLAP.get_audio_embedding`` minus the normalisation (the encoder does that):
    ``audio_branch({"waveform", "longer"})["embedding"]`` then the 2-layer ``audio_projection``
    (laion_clap.clap_module.model.CLAP). Module names match the checkpoints' keys."""

    def __init__(self, branch: nn.Module, embed_dim: int, joint_dim: int):
        super().__init__()
        self.audio_branch = branch
        self.audio_projection = nn.Sequential(nn.Linear(embed_dim, joint_dim), nn.ReLU(), nn.Linear(joint_dim, joint_dim))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        longer = torch.zeros(waveform.shape[0], dtype=torch.bool, device=waveform.device)
        out = self.audio_branch({"waveform": waveform, "longer": longer}, device=waveform.device)
        return self.audio_projection(out["embedding"])
