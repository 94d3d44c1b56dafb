"""``finetuned:DIR`` — a trained copy detector as an :class:`~audioaudit.encoders.base.Encoder`.

DIR (written by ``audioaudit finetune``) holds ``config.json`` and safetensors weights:

* ``kind: "head"`` — a base encoder spec (+ its identity at training time) and
  ``head.safetensors`` (the MLP head); with ``--unfreeze-top N`` also
  ``backbone.safetensors`` (the trained top blocks, loaded over the base weights).
* ``kind: "scratch"`` — a small encoder trained from scratch: ``config.json["arch"]``
  and ``model.safetensors``.

``identity()`` pins the sha256 of every weight file, the base encoder's identity and the
segment settings, so an index built with one detector refuses another.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from audioaudit.encoders.base import Encoder, EncoderError
from audioaudit.encoders.torch_base import BatchedEncoder, default_hop

CONFIG = "config.json"


FORMAT = "audioaudit-finetuned/1"


LoadBase = Callable[..., Encoder]  # the encoder registry's ``load_encoder(spec, *, batch_size, device, ...)``


@dataclass(frozen=True)
class EncoderShape:
    """What a caller sees of an encoder: its name, rate, output size and windowing."""

    name: str
    sample_rate: int
    dim: int
    window_seconds: float
    hop_seconds: float


@dataclass(frozen=True)
class EncoderSteps:
    """How it computes: ``prepare`` (no gradients) then ``forward``, on ``model``'s weights."""

    prepare: Callable[[list[np.ndarray]], Any]
    forward: Callable[[Any], Any]
    model: Any  # torch.nn.Module


class FinetunedEncoder(BatchedEncoder):
    """An encoder assembled from two steps: ``prepare`` (no gradients) and ``forward``."""

    def __init__(self, shape: EncoderShape, steps: EncoderSteps, identity: dict, *, batch_size: int = 16,
                 device: str = "cpu"):
        self.name = shape.name
        self.sample_rate = int(shape.sample_rate)
        self.dim = int(shape.dim)
        self.window_seconds = float(shape.window_seconds)
        self.hop_seconds = float(shape.hop_seconds)
        super().__init__(batch_size=batch_size, device=device, identity=identity)
        self.model = steps.model.to(self.device).eval()
        self._prepare, self._forward = steps.prepare, steps.forward

    def prepare(self, waves):
        return self._prepare(waves)

    def forward(self, inputs):
        return self._forward(inputs)


# --------------------------------------------------------------------------- loading
def read_config(out_dir: str | Path) -> dict:
    p = Path(out_dir).expanduser() / CONFIG
    if not p.is_file():
        raise EncoderError(f"{Path(out_dir)} is not a fine-tuned encoder folder (no {CONFIG}); "
                           "pass finetuned:DIR with a DIR written by `audioaudit finetune`")
    cfg = json.loads(p.read_text())
    if cfg.get("format") != FORMAT:
        raise EncoderError(f"{p}: unknown format {cfg.get('format')!r} (expected {FORMAT})")
    return cfg


def _weights(d: Path, name: str) -> tuple[dict, str]:
    from audioaudit.audio.fingerprint import file_sha256
    from audioaudit.encoders.checkpoint import load_tensors

    p = d / name
    if not p.is_file():
        raise EncoderError(f"{p} is missing; the fine-tuned encoder folder {d} is incomplete (rerun `audioaudit finetune`)")
    return load_tensors(p), file_sha256(p)


def load_finetuned(arg: str, *, load_base: LoadBase, batch_size: int = 16, device: str = "cpu",
                   hop_seconds: float | None = None) -> FinetunedEncoder:
    """``finetuned:DIR`` -> encoder (see the module docstring).

    ``load_base(spec, batch_size=..., device=...)`` builds the base encoder a head sits on;
    the registry passes its own ``load_encoder`` (this module never imports the registry)."""
    d = Path(arg).expanduser()
    cfg = read_config(d)
    kw = {"batch_size": batch_size, "device": device}
    if cfg["kind"] == "scratch":
        return _load_scratch(d, cfg, hop_seconds, **kw)
    if cfg["kind"] == "head":
        base = load_base(cfg["base"], **kw)
        return _load_head(d, cfg, base, hop_seconds, **kw)
    raise EncoderError(f"{d / CONFIG}: unknown kind {cfg['kind']!r}")


def _load_head(d: Path, cfg: dict, base, hop_seconds, **kw) -> FinetunedEncoder:
    import torch

    from audioaudit.encoders.base import identity_key, same_identity
    from audioaudit.encoders.heads import HeadConfig, ProjectionHead

    if not same_identity(base.identity(), cfg["base_identity"]):
        raise EncoderError(f"{d}: the base encoder '{cfg['base']}' is not the one this head was trained on "
                           f"(identity {identity_key(base.identity())[:80]}… differs); pass the original weights")
    head = ProjectionHead(HeadConfig(**cfg["head"]))
    sd, head_sha = _weights(d, "head.safetensors")
    head.load_state_dict(sd)
    ident = {"backend": "finetuned", "kind": "head", "base": cfg["base_identity"], "head": cfg["head"],
             "head_sha256": head_sha}
    if cfg.get("unfreeze_top"):
        bsd, bsha = _weights(d, "backbone.safetensors")
        base.model.load_state_dict(bsd, strict=False)
        ident.update(unfreeze_top=cfg["unfreeze_top"], backbone_sha256=bsha)
        model = torch.nn.ModuleDict({"backbone": base.model, "head": head})
        prepare = base.prepare
        forward = lambda x: head(torch.nn.functional.normalize(base.forward(x), dim=-1))  # noqa: E731
    else:
        model = head
        dev = base.device
        prepare = lambda waves: torch.from_numpy(base.embed(waves)).to(dev)  # noqa: E731
        forward = head
    hop = default_hop(base.window_seconds, hop_seconds or base.hop_seconds)
    shape = EncoderShape(f"finetuned:{d.name}", base.sample_rate, head.cfg.out_dim, base.window_seconds, hop)
    return FinetunedEncoder(shape, EncoderSteps(prepare, forward, model), ident, **kw)


def _load_scratch(d: Path, cfg: dict, hop_seconds, **kw) -> FinetunedEncoder:
    from audioaudit.encoders.scratch import build_scratch, scratch_steps

    net, arch = build_scratch(cfg["arch"])
    sd, sha = _weights(d, "model.safetensors")
    net.load_state_dict(sd)
    prepare, forward = scratch_steps(net, arch, kw["device"])
    ident = {"backend": "finetuned", "kind": "scratch", "arch": cfg["arch"], "model_sha256": sha}
    hop = default_hop(arch.window_seconds, hop_seconds or arch.hop_seconds)
    shape = EncoderShape(f"finetuned:{d.name}", arch.sample_rate, arch.dim, arch.window_seconds, hop)
    return FinetunedEncoder(shape, EncoderSteps(prepare, forward, net), ident, **kw)
