"""Training loop for EDMSound: arrays in (waveforms + labels), checkpoints out.

EDM loss (Karras et al. 2022, Eq. 8) with classifier-free-guidance label dropout, Adam
with a linear learning-rate ramp, gradient-norm clipping, an EMA of the weights (what
generation uses), safetensors checkpoints that resume exactly (optimizer moments and RNG
states included), a rich progress bar and periodic sample dumps. No file reading here:
the CLI decodes the corpus and passes arrays.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from audioaudit.util.atomic import atomic_path
from generators.base import GeneratorError
from generators.edmsound import checkpoint as ckpt
from generators.edmsound.config import GenConfig
from generators.edmsound.edm import EDMLoss
from generators.edmsound.spectrogram import to_spec, to_wave


def waves_to_specs(waves: Sequence[np.ndarray] | np.ndarray, cfg: GenConfig, batch: int = 32) -> torch.Tensor:
    """(N, samples) waveforms at ``cfg.spec.sample_rate`` -> (N, 2, F, T) model inputs."""
    out = []
    for a in range(0, len(waves), batch):
        chunk = [torch.as_tensor(np.asarray(w, dtype=np.float32)) for w in waves[a : a + batch]]
        n = cfg.spec.clip_samples
        chunk = torch.stack([torch.nn.functional.pad(w[:n], (0, max(0, n - len(w)))) for w in chunk])
        out.append(to_spec(chunk, cfg.spec))
    return torch.cat(out) if out else torch.zeros((0, *cfg.spec.shape))


@dataclass
class TrainResult:
    step: int
    losses: list[float] = field(default_factory=list)


class Trainer:
    """Holds model, EMA, optimizer and RNG; ``run(steps)`` trains until ``step == steps``."""

    def __init__(self, cfg: GenConfig, specs: torch.Tensor, labels: torch.Tensor | None, out_dir: str | os.PathLike,
                 *, resume: bool = False, device: str = "cpu"):
        self.cfg, self.out, self.device = cfg.finalised(), Path(out_dir), device
        if len(specs) == 0:
            raise GeneratorError("no training clips")
        self.specs, self.labels = specs, (None if labels is None or not self.cfg.classes else labels.long())
        torch.manual_seed(self.cfg.train.seed)
        self.model = ckpt.build_model(self.cfg).to(device)
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        t = self.cfg.train
        self.opt = torch.optim.Adam(self.model.parameters(), lr=t.lr, betas=(0.9, 0.999), eps=1e-8)
        self.gen = torch.Generator().manual_seed(t.seed)
        e = self.cfg.edm
        self.loss_fn = EDMLoss(e.P_mean, e.P_std, e.sigma_data, e.cond_drop, len(self.cfg.classes))
        self.step, self.losses = 0, []
        if resume:
            self.load()
        elif (self.out / ckpt.STATE_JSON).exists():
            raise GeneratorError(f"{self.out} already holds a training run; pass --resume or choose a new --out")

    # ------------------------------------------------------------------ one step
    def train_step(self) -> float:
        t = self.cfg.train
        idx = torch.randint(len(self.specs), (t.batch_size,), generator=self.gen)
        y = self.specs[idx].to(self.device)
        labels = None if self.labels is None else self.labels[idx]
        for g in self.opt.param_groups:  # linear warm-up (EDM's lr_rampup)
            g["lr"] = t.lr * min(1.0, (self.step + 1) / max(1, t.warmup_steps))
        self.model.train()
        loss = self.loss_fn(self.model, y, labels, generator=self.gen)
        if not torch.isfinite(loss):
            raise GeneratorError(f"training diverged at step {self.step} (loss {loss.item()}); lower the learning rate")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.opt.step()
        self.update_ema()
        self.step += 1
        return float(loss.item())

    @torch.no_grad()
    def update_ema(self) -> None:
        decay = min(self.cfg.train.ema_decay, (1 + self.step) / (10 + self.step))
        for pe, pm in zip(self.ema.parameters(), self.model.parameters()):
            pe.lerp_(pm, 1 - decay)
        for be, bm in zip(self.ema.buffers(), self.model.buffers()):
            be.copy_(bm)

    # ------------------------------------------------------------------ loop
    def run(self, steps: int, *, progress: bool = True, on_step: Callable[[int, float], None] | None = None) -> TrainResult:
        t = self.cfg.train
        with _progress(progress, self.step, steps) as tick:
            while self.step < steps:
                loss = self.train_step()
                self.losses.append(loss)
                tick(self.step, loss)
                if on_step:
                    on_step(self.step, loss)
                if t.checkpoint_every and self.step % t.checkpoint_every == 0:
                    self.save()
                if t.sample_every and self.step % t.sample_every == 0:
                    self.dump_samples()
        self.save()
        if t.sample_count > 0 and not (t.sample_every and self.step % t.sample_every == 0):
            self.dump_samples()
        return TrainResult(self.step, list(self.losses))

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        cfg = replace(self.cfg, train=replace(self.cfg.train, steps=max(self.cfg.train.steps, self.step)))
        ckpt.write_json(self.out / ckpt.CONFIG, cfg.to_dict())
        ckpt.write_tensors(self.out / ckpt.MODEL, self.model.state_dict(), self.step)
        ckpt.write_tensors(self.out / ckpt.EMA, self.ema.state_dict(), self.step)
        flat, groups = ckpt.optimizer_tensors(self.opt)
        flat["rng.data"] = self.gen.get_state()
        flat["rng.torch"] = torch.get_rng_state()
        ckpt.write_tensors(self.out / ckpt.STATE, flat, self.step)
        ckpt.write_json(self.out / ckpt.STATE_JSON, {"step": self.step, "param_groups": groups, "losses": self.losses})

    def load(self) -> None:
        import json

        state_json = self.out / ckpt.STATE_JSON
        if not state_json.is_file():
            raise GeneratorError(f"{self.out}: nothing to resume ({ckpt.STATE_JSON} missing)")
        meta = json.loads(state_json.read_text())
        self.step = ckpt.load_weights(self.model, self.out, "model")
        ema_step = ckpt.load_weights(self.ema, self.out, "ema")
        flat, st_step = ckpt.read_tensors(self.out / ckpt.STATE)
        if not self.step == ema_step == st_step == meta["step"]:
            raise GeneratorError(f"{self.out}: checkpoint files disagree on the step (interrupted write?)")
        ckpt.restore_optimizer(self.opt, flat, meta["param_groups"])
        self.gen.set_state(flat["rng.data"])
        torch.set_rng_state(flat["rng.torch"])
        self.losses = list(meta.get("losses", []))

    def dump_samples(self) -> Path:
        """A few EMA samples (DEIS, ``sample_steps``) as WAVs under samples/step_XXXXXXX/."""
        import soundfile as sf

        from generators.edmsound.generator import Sampling, resolve_labels, sample_specs

        t, classes = self.cfg.train, list(self.cfg.classes)
        seeds = list(range(t.sample_count))
        names = resolve_labels(self.cfg, [None] * len(seeds), seeds)
        labels = torch.tensor([classes.index(c) for c in names]) if classes else None
        spec = sample_specs(self.ema, self.cfg, seeds, labels, Sampling("deis", t.sample_steps, cfg_scale=1.0))
        waves = to_wave(spec, self.cfg.spec).numpy()
        d = self.out / "samples" / f"step_{self.step:07d}"
        d.mkdir(parents=True, exist_ok=True)
        for s, name, w in zip(seeds, names, waves):
            path = d / f"seed{s}{'_' + name if name else ''}.wav"
            with atomic_path(path) as tmp:
                sf.write(str(tmp), np.clip(w, -1, 1), self.cfg.spec.sample_rate, subtype="PCM_16", format="WAV")
        return d


class _progress:
    """rich progress bar (or nothing) yielding a ``tick(step, loss)`` function."""

    def __init__(self, enabled: bool, start: int, total: int):
        self.enabled, self.start, self.total = enabled, start, total

    def __enter__(self):
        if not self.enabled:
            return lambda step, loss: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.p = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn())
        self.p.__enter__()
        task = self.p.add_task("train", total=self.total, completed=self.start, loss=float("nan"))
        return lambda step, loss: self.p.update(task, completed=step, loss=loss)

    def __exit__(self, *exc):
        if self.enabled:
            self.p.__exit__(*exc)
        return False
