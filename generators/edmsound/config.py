"""One JSON config for an EDMSound model: representation, U-Net, EDM, training, classes.

Presets: ``tiny`` (the CPU demo, ~1.3 M parameters, 4x4 patchify stem), ``small`` (~3.8 M) and
``paper`` (~40 M, the size of EDMSound's Efficient U-Net). ``load_config`` also reads a
JSON file holding any subset of the sections; missing keys keep the preset defaults.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from generators.base import GeneratorError
from generators.edmsound.edm import EDMConfig
from generators.edmsound.spectrogram import SpecConfig
from generators.edmsound.unet import UNetConfig


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 20000
    batch_size: int = 8
    lr: float = 2e-4
    warmup_steps: int = 200  # linear learning-rate ramp (EDM's lr_rampup)
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    checkpoint_every: int = 500
    sample_every: int = 0  # 0: only at the end
    sample_count: int = 4
    sample_steps: int = 10
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class GenConfig:
    spec: SpecConfig = field(default_factory=SpecConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    edm: EDMConfig = field(default_factory=EDMConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    classes: tuple[str, ...] = ()

    def finalised(self) -> "GenConfig":
        """Tie the parts together: frames padded to the U-Net factor, class count = len(classes)."""
        mult = self.unet.downsample_factor
        spec = self.spec if self.spec.frame_multiple % mult == 0 else replace(self.spec, frame_multiple=mult)
        return replace(self, spec=spec, unet=replace(self.unet, num_classes=len(self.classes)))

    def to_dict(self) -> dict:
        return {"spec": self.spec.to_dict(), "unet": self.unet.to_dict(), "edm": self.edm.to_dict(),
                "train": asdict(self.train), "classes": list(self.classes)}

    @classmethod
    def from_dict(cls, d: dict, base: "GenConfig | None" = None) -> "GenConfig":
        base = base or cls()
        merge = lambda part, typ, cur: typ.from_dict({**cur, **d.get(part, {})})  # noqa: E731
        return cls(
            spec=merge("spec", SpecConfig, base.spec.to_dict()),
            unet=merge("unet", UNetConfig, base.unet.to_dict()),
            edm=merge("edm", EDMConfig, base.edm.to_dict()),
            train=merge("train", TrainConfig, asdict(base.train)),
            classes=tuple(d.get("classes", base.classes)),
        )


PRESETS: dict[str, GenConfig] = {
    "tiny": GenConfig(
        unet=UNetConfig(channels=24, channel_mult=(1, 2, 2, 4), num_blocks=(1, 1, 1, 1), attn_levels=(3,), patch=4),
        train=TrainConfig(lr=1e-3, batch_size=4, warmup_steps=20, ema_decay=0.99, checkpoint_every=100),
    ),
    "small": GenConfig(
        unet=UNetConfig(channels=32, channel_mult=(1, 2, 3, 4), num_blocks=(1, 1, 2, 2), attn_levels=(3,)),
        train=TrainConfig(lr=4e-4, batch_size=8, warmup_steps=100, ema_decay=0.999),
    ),
    "paper": GenConfig(
        unet=UNetConfig(channels=64, channel_mult=(1, 2, 3, 4, 5), num_blocks=(1, 2, 2, 4, 4),
                        attn_levels=(3, 4), num_heads=8),
        train=TrainConfig(lr=2e-4, batch_size=16, warmup_steps=1000, ema_decay=0.9995),
    ),
}


def load_config(name_or_path: str) -> GenConfig:
    """A preset name, or a JSON file (optionally with ``"preset": NAME`` as its base)."""
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]
    p = Path(name_or_path)
    if not p.is_file():
        raise GeneratorError(f"config '{name_or_path}': not a preset ({', '.join(PRESETS)}) nor a JSON file")
    try:
        d = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise GeneratorError(f"{p}: cannot read config JSON ({e})") from None
    base = PRESETS.get(d.get("preset", "tiny"))
    if base is None:
        raise GeneratorError(f"{p}: unknown preset '{d['preset']}' (use one of {', '.join(PRESETS)})")
    try:
        return GenConfig.from_dict(d, base)
    except TypeError as e:
        raise GeneratorError(f"{p}: bad config ({e})") from None
