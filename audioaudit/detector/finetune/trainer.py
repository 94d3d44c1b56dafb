"""The training loop shared by every recipe: views in, a copy-detecting embedding out.

A :class:`ViewTask` holds ``data[i, v]`` — view v of clip i (frozen embeddings for a head,
waveforms for a from-scratch encoder) — and turns a batch of clip indices into the
recipe's loss. :func:`fit` runs epochs with AdamW and a cosine learning-rate schedule,
validates after each epoch (loss, mean positive / negative cosine similarity, recall@1
of clean clips from their augmented views) and checkpoints atomically; a rerun resumes
after the last completed epoch and, since each epoch's randomness is derived from
(seed, epoch), makes the very batches an uninterrupted run would have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from audioaudit.detector.finetune.losses import info_nce, koleo, pos_neg_similarity, triplet_loss
from audioaudit.detector.finetune.recipes import Recipe
from audioaudit.encoders import checkpoint as ck


@dataclass
class ViewTask:
    data: np.ndarray  # (N, V, ...) views of N clips; view 0 is the clean clip
    labels: list  # class per clip (None: unlabelled)
    recipe: Recipe
    lengths: np.ndarray | None = None  # (N, V) valid samples when ``data`` holds padded waves
    min_crop: int = 0  # shortest training crop (samples) of waveform views
    device: str = "cpu"
    train_ids: np.ndarray = field(init=False)
    val_ids: np.ndarray = field(init=False)

    def __post_init__(self):
        n = len(self.data)
        rng = np.random.default_rng([self.recipe.seed, 7])
        perm = rng.permutation(n)
        n_val = min(max(int(round(n * self.recipe.val_fraction)), 2 if n >= 6 else 0), n // 3)
        self.val_ids, self.train_ids = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        self._by_class: dict = {}
        for i in self.train_ids:
            self._by_class.setdefault(self.labels[i], []).append(int(i))

    # ------------------------------------------------------------------ batches
    def _rows(self, clips: np.ndarray, views: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
        """The selected views as float32 rows. Waveform views are cut to one common
        length inside every row's valid span (random length and offsets when training,
        the shortest span from the start when validating), so no row carries padding."""
        if self.lengths is None:
            return torch.from_numpy(np.asarray(self.data[clips, views], dtype=np.float32)).to(self.device)
        valid = self.lengths[clips, views]
        t = int(valid.min())
        if rng is not None and t > self.min_crop:
            t = int(rng.integers(self.min_crop, t + 1))
        starts = rng.integers(0, valid - t + 1) if rng is not None else np.zeros(len(clips), dtype=int)
        rows = np.stack([self.data[c, v, s : s + t] for c, v, s in zip(clips, views, starts)])
        return torch.from_numpy(rows.astype(np.float32)).to(self.device)

    def _pick_views(self, n: int, m: int, rng: np.random.Generator) -> np.ndarray:
        v = self.data.shape[1]
        return np.stack([rng.choice(v, size=m, replace=False) for _ in range(n)])

    def _negatives(self, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Another clip of the same class when there is one (EDMSound), else any other."""
        out = []
        for i in idx:
            pool = self._by_class.get(self.labels[i], []) if self.labels[i] is not None else []
            if len(pool) < 2:
                pool = self.train_ids
            j = i
            while j == i:
                j = int(pool[int(rng.integers(len(pool)))])
            out.append(j)
        return np.asarray(out)

    def loss(self, model: torch.nn.Module, idx: np.ndarray, rng: np.random.Generator, train: bool = True) -> torch.Tensor:
        r = self.recipe
        crop_rng = rng if train else None
        if r.name == "triplet":
            v = self._pick_views(len(idx), 2, rng)
            neg = self._negatives(idx, rng) if train else np.roll(idx, 1)
            nv = rng.integers(0, self.data.shape[1], size=len(idx))
            clips, views = np.concatenate([idx, idx, neg]), np.concatenate([v[:, 0], v[:, 1], nv])
            a, p, n = _unit(model(self._rows(clips, views, crop_rng))).chunk(3)
            return triplet_loss(a, p, n, margin=r.margin)
        m = max(2, min(r.views_per_clip, self.data.shape[1]))
        v = self._pick_views(len(idx), m, rng)
        clips = np.repeat(idx, m)
        z = _unit(model(self._rows(clips, v.reshape(-1), crop_rng)))
        ids = torch.from_numpy(clips).to(z.device)
        loss = info_nce(z, ids, tau=r.tau)
        return loss + r.koleo_weight * koleo(z, ids) if r.koleo_weight else loss

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self, model: torch.nn.Module) -> dict:
        ids = self.val_ids if len(self.val_ids) >= 2 else self.train_ids[: min(64, len(self.train_ids))]
        was = model.training
        model.eval()
        rng = np.random.default_rng([self.recipe.seed, 11])  # the same checks every epoch
        losses = [self.loss(model, ids[i : i + 256], rng, train=False).item() for i in range(0, len(ids), 256)]
        clean = _embed(model, self._rows(ids, np.zeros(len(ids), dtype=int)))
        k = self.data.shape[1]
        aug = _embed(model, self._rows(ids, 1 + np.arange(len(ids)) % max(k - 1, 1)))
        z = torch.cat([clean, aug])
        pos, neg = pos_neg_similarity(z, torch.from_numpy(np.concatenate([ids, ids])).to(z.device))
        r1 = float(((aug @ clean.t()).argmax(dim=1).cpu() == torch.arange(len(ids))).float().mean())
        model.train(was)
        return {"val_loss": float(np.mean(losses)), "pos_sim": pos, "neg_sim": neg, "val_recall_at_1": r1}


def _unit(z: torch.Tensor) -> torch.Tensor:
    """Losses work on the unit sphere (a head already normalises; a scratch net does not)."""
    return torch.nn.functional.normalize(z, dim=-1)


def _embed(model: torch.nn.Module, rows: torch.Tensor, bs: int = 256) -> torch.Tensor:
    return torch.cat([_unit(model(rows[i : i + bs])) for i in range(0, len(rows), bs)])


def _cosine_lr(base: float, step: int, total: int, warmup: int) -> float:
    """Linear warm-up then cosine decay to 0 (Loshchilov & Hutter 2017)."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))


@dataclass(frozen=True)
class EpochSteps:
    """Where one epoch sits in the learning-rate schedule: its first global step, its step
    count and the total number of steps of the run."""

    first: int
    count: int
    total: int


@dataclass
class FitResult:
    history: list[dict]
    resumed_from: int  # epochs already done when this run started
    seconds: float


def fit(
    model: torch.nn.Module,
    task: ViewTask,
    ckpt_dir: str | Path,
    *,
    quiet: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
    checkpoint_every_s: float = 10.0,
) -> FitResult:
    """Train ``model`` on ``task`` for ``task.recipe.epochs`` epochs, resuming from ``ckpt_dir``.

    A checkpoint is written after the first and the last epoch and whenever
    ``checkpoint_every_s`` passed since the previous one (an epoch of a head on cached
    embeddings takes milliseconds; writing every one would dominate)."""
    import time

    r = task.recipe
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=r.lr, weight_decay=r.weight_decay)
    info = ck.load_training(ckpt_dir, model, opt)
    history: list[dict] = info["history"] if info else []
    start = info["epoch"] + 1 if info else 0
    steps_per_epoch = max(1, math.ceil(len(task.train_ids) / r.batch_size))
    total = r.epochs * steps_per_epoch
    t0 = last_save = time.perf_counter()
    with _progress(quiet) as bar:
        job = bar.add_task("training", total=total, completed=start * steps_per_epoch)
        for epoch in range(start, r.epochs):
            rng = np.random.default_rng([r.seed, epoch])
            steps = EpochSteps(epoch * steps_per_epoch, steps_per_epoch, total)
            train_loss = _run_epoch(model, task, opt, rng, steps, lambda: bar.advance(job))
            row = {"epoch": epoch + 1, "train_loss": train_loss, **task.validate(model)}
            history.append(row)
            now = time.perf_counter()
            if epoch in (start, r.epochs - 1) or now - last_save >= checkpoint_every_s:
                ck.save_training(ckpt_dir, epoch, model, opt, {"history": history, "recipe": r.to_dict()})
                last_save = now
            bar.update(job, description=_describe(row))
            if on_epoch:
                on_epoch(row)
    return FitResult(history, start, time.perf_counter() - t0)


def _run_epoch(model, task: ViewTask, opt, rng: np.random.Generator, steps: EpochSteps,
               advance: Callable[[], None]) -> float:
    r = task.recipe
    model.train()
    order = epoch_order(task.train_ids, task.labels, r.batch_size, r.class_batches, rng)
    losses = []
    for s in range(steps.count):
        idx = order[s * r.batch_size : (s + 1) * r.batch_size]
        if len(idx) < 2:
            continue
        for g in opt.param_groups:
            g["lr"] = _cosine_lr(r.lr, steps.first + s, steps.total, warmup=min(50, steps.total // 10 + 1))
        loss = task.loss(model, idx, rng)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        advance()
    return float(np.mean(losses)) if losses else float("nan")


def epoch_order(ids: np.ndarray, labels: list, batch_size: int, class_batches: int,
                rng: np.random.Generator) -> np.ndarray:
    """Clip order of one epoch. ``class_batches`` > 0: clips are shuffled within their class and
    cut into runs of ``batch_size // class_batches``, and the runs are shuffled, so a batch
    holds clips of about ``class_batches`` classes and most in-batch InfoNCE negatives are
    clips of the same kind — the hard negatives a copy detector must tell apart (cf. the
    hard-negative batches of Pizzi et al. 2022 §4 and Schroff et al. 2015 §3.2)."""
    if class_batches <= 0 or all(labels[i] is None for i in ids):
        return rng.permutation(ids)
    per = max(2, batch_size // class_batches)
    by: dict = {}
    for i in ids:
        by.setdefault(str(labels[i]), []).append(int(i))
    runs = []
    for lab in sorted(by):
        members = rng.permutation(by[lab])
        runs += [members[j : j + per] for j in range(0, len(members), per)]
    return np.concatenate([runs[k] for k in rng.permutation(len(runs))]).astype(ids.dtype)


def _describe(row: dict) -> str:
    return (
        f"epoch {row['epoch']}  loss {row['train_loss']:.3f}  val {row['val_loss']:.3f}  "
        f"pos {row['pos_sim']:.2f}  neg {row['neg_sim']:.2f}  R@1 {row['val_recall_at_1']:.2f}"
    )


def _progress(quiet: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), disable=quiet
    )
