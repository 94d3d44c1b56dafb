"""Training the top blocks of a pretrained encoder together with the head (SSCD-style
end-to-end fine-tuning, restricted to the last N transformer blocks to stay cheap).

Works for any :class:`~audioaudit.encoders.torch_base.BatchedEncoder` with a ``model``:
the "blocks" are the modules named ``….blocks.<j>`` (laion-clap's HTSAT and
transformers' CLAP both name their Swin blocks so), in forward order; the top N of them
and every parameter registered after them (final norm, pooling, projection) train.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from audioaudit.errors import UserError

_BLOCK = re.compile(r"^(.*\.blocks\.\d+)\.")


def block_names(model: nn.Module) -> list[str]:
    """Names of the transformer blocks, in registration (= forward) order."""
    seen: list[str] = []
    for name, _ in model.named_parameters():
        m = _BLOCK.match(name)
        if m and m.group(1) not in seen:
            seen.append(m.group(1))
    return seen


def unfreeze_top(model: nn.Module, n: int) -> list[str]:
    """Freeze ``model`` except its top ``n`` blocks and what follows them; returns the
    names of the trainable parameters."""
    blocks = block_names(model)
    if n > len(blocks):
        raise UserError(f"--unfreeze-top {n}: this encoder has only {len(blocks)} transformer blocks")
    first = blocks[-n] + "."
    names = [name for name, _ in model.named_parameters()]
    start = next(i for i, name in enumerate(names) if name.startswith(first))
    trainable = set(names[start:])
    for name, p in model.named_parameters():
        p.requires_grad_(name in trainable)
    return [name for name in names if name in trainable]


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that trained (what ``backbone.safetensors`` stores)."""
    return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}


class BackboneHead(nn.Module):
    """rows (cropped waveforms) -> encoder.prepare -> encoder.model (top blocks trainable)
    -> L2 -> head. The backbone stays in eval mode (no SpecAugment/dropout): the views
    already carry the augmentation."""

    def __init__(self, encoder, head: nn.Module, n_blocks: int):
        super().__init__()
        if getattr(encoder, "model", None) is None or not hasattr(encoder, "prepare"):
            raise UserError(f"encoder {encoder.name} has no trainable network; use head-only training (--unfreeze-top 0)")
        self.encoder = encoder
        self.backbone = encoder.model
        self.head = head
        self.trainable = unfreeze_top(self.backbone, n_blocks)

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        inputs = self.encoder.prepare([r.numpy() for r in rows.detach().cpu()])
        return self.head(nn.functional.normalize(self.encoder.forward(inputs), dim=-1))
