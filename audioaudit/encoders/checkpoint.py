"""Checkpoints: safetensors for tensors, JSON for everything else, every write atomic.

A training checkpoint is three files named by epoch (model weights, optimizer state,
JSON: epoch, history, RNG-free bookkeeping) plus ``last.json`` pointing at the newest
complete one. ``last.json`` is replaced last, so a run killed at any instant resumes
from a complete checkpoint; older epochs are deleted only after the pointer moved.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from audioaudit.util.atomic import atomic_path, write_json

LAST = "last.json"


def write_record(path: str | os.PathLike, obj) -> None:
    """A JSON record of a run or a checkpoint, atomically (sorted keys, indent 1, no final newline)."""
    write_json(path, obj, indent=1, sort_keys=True, newline=False)


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict | None = None) -> None:
    from safetensors.torch import save_file

    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    # metadata=None when empty: safetensors 0.8 writes an unreadable header for ({}, metadata={}),
    # e.g. the optimizer state of a run that has not stepped yet
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata={k: str(v) for k, v in (meta or {}).items()} or None)


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file; anything else (a pickle, a damaged file) is refused unread."""
    from safetensors.torch import load_file

    from audioaudit.errors import UserError

    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 - SafetensorError, OSError, ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise UserError(f"{path}: refused: not a valid safetensors file ({first}); our weights are only ever "
                        "safetensors, so it was not loaded (delete it, or the folder, and rerun)") from None


# --------------------------------------------------------------------------- optimizer
def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``opt.state_dict()`` into tensors (for safetensors) and JSON-able scalars."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, v in list(tensors.items()) + list(meta["scalars"].items()):
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


# --------------------------------------------------------------------------- training checkpoints
def save_training(ckpt_dir: str | os.PathLike, epoch: int, model: torch.nn.Module, opt: torch.optim.Optimizer, info: dict) -> None:
    d = Path(ckpt_dir)
    stem = f"epoch_{epoch:04d}"
    save_tensors(d / f"{stem}.model.safetensors", model.state_dict())
    otensors, ometa = optimizer_to_flat(opt)
    save_tensors(d / f"{stem}.optim.safetensors", otensors)
    write_record(d / f"{stem}.json", {**info, "epoch": epoch, "optimizer": ometa})
    write_record(d / LAST, {"epoch": epoch, "stem": stem})  # the commit point
    for old in d.glob("epoch_*"):
        if not old.name.startswith(stem + "."):
            old.unlink(missing_ok=True)


def load_training(ckpt_dir: str | os.PathLike, model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict | None:
    """Restore the newest complete checkpoint into ``model``/``opt``; its info, or None."""
    d = Path(ckpt_dir)
    if not (d / LAST).exists():
        return None
    stem = json.loads((d / LAST).read_text())["stem"]
    info = json.loads((d / f"{stem}.json").read_text())
    model.load_state_dict(load_tensors(d / f"{stem}.model.safetensors"))
    optimizer_from_flat(opt, load_tensors(d / f"{stem}.optim.safetensors"), info["optimizer"])
    return info
