"""EDMSound checkpoints: safetensors weights + JSON config, written atomically.

A checkpoint directory holds::

    config.json              GenConfig (representation, U-Net, EDM, training, classes)
    ema.safetensors          EMA weights: what generation uses
    model.safetensors        raw weights (training continues from them)
    train_state.safetensors  optimizer moments + RNG states (exact resume)
    train_state.json         step, optimizer hyper-parameters, loss history

Every file carries the training step (safetensors metadata / JSON), and resuming checks
that they agree.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from audioaudit.util import atomic
from generators.base import GeneratorError
from generators.edmsound.config import GenConfig
from generators.edmsound.edm import EDMPrecond
from generators.edmsound.unet import UNet

CONFIG = "config.json"
EMA = "ema.safetensors"
MODEL = "model.safetensors"
STATE = "train_state.safetensors"
STATE_JSON = "train_state.json"


def build_model(cfg: GenConfig) -> EDMPrecond:
    cfg = cfg.finalised()
    return EDMPrecond(UNet(cfg.unet), sigma_data=cfg.edm.sigma_data)


def write_json(path: Path, obj) -> None:
    atomic.write_json(path, obj, indent=2, sort_keys=True, newline=False)


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], step: int) -> None:
    with atomic.atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata={"step": str(step)})


def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], int]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        step = int((f.metadata() or {}).get("step", -1))
    return load_file(str(path)), step


def read_config(directory: str | os.PathLike) -> GenConfig:
    p = Path(directory) / CONFIG
    if not p.is_file():
        raise GeneratorError(
            f"{directory}: no EDMSound checkpoint here ({CONFIG} missing); "
            "train one with `audioaudit generator train CORPUS --out DIR`"
        )
    try:
        return GenConfig.from_dict(json.loads(p.read_text())).finalised()
    except (json.JSONDecodeError, TypeError) as e:
        raise GeneratorError(f"{p}: unreadable config ({e})") from None


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    sd = opt.state_dict()
    flat = {f"opt.{i}.{k}": torch.as_tensor(v) for i, st in sd["state"].items() for k, v in st.items()}
    return flat, sd["param_groups"]


def restore_optimizer(opt: torch.optim.Optimizer, flat: dict[str, torch.Tensor], groups: list[dict]) -> None:
    state: dict[int, dict] = {}
    for key, v in flat.items():
        if key.startswith("opt."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    opt.load_state_dict({"state": dict(sorted(state.items())), "param_groups": groups})


def load_weights(model: torch.nn.Module, directory: str | os.PathLike, which: str = "ema") -> int:
    """Load ``ema`` (falls back to ``model``) or ``model`` weights; returns the step."""
    d = Path(directory)
    path = d / (EMA if which == "ema" else MODEL)
    if not path.is_file() and which == "ema":
        path = d / MODEL
    if not path.is_file():
        raise GeneratorError(f"{d}: no weights ({EMA} / {MODEL} missing)")
    tensors, step = read_tensors(path)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise GeneratorError(f"{path}: weights do not match config.json (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return step
