"""``generator train``: an EDMSound model trained on a corpus folder (resumable).

Two steps so the caller can report between them: :func:`prepare_training` reads the
config and the corpus (clips fit to the config's length, classes from the first
sub-folder), writes ``training_clips.csv`` / ``skipped.csv`` into the checkpoint folder
and turns the clips into spectrograms; :func:`run_training` trains until the configured
step (EMA, grad clipping, safetensors checkpoints that resume exactly).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from audioaudit.errors import UserError
from audioaudit.util import atomic

LISTING, SKIPPED = "training_clips.csv", "skipped.csv"


@dataclass(frozen=True)
class TrainRequest:
    """The options of ``generator train`` (None: take the config's value)."""

    corpus: Path
    out: Path  # checkpoint folder (config.json + safetensors)
    config: str = "tiny"  # tiny | small | paper | FILE.json (ignored on --resume: the folder's config)
    steps: int | None = None
    batch_size: int | None = None
    clip_seconds: float | None = None
    sigma_data: str | None = None  # a number, or "auto" = the std of the training spectrograms
    resume: bool = False
    labels: str = "folders"  # folders | none (unconditional)
    workers: int = 0  # decoding processes


@dataclass
class TrainingCorpus:
    waves: list  # float32 clips fit to the config's clip length
    labels: list  # class of each clip ("" / None: unconditional)
    used: list[str]  # corpus-relative path of each clip
    skipped: list[dict]  # path, kind, reason


@dataclass
class PreparedTraining:
    cfg: object  # generators.edmsound.config.GenConfig, finalised
    specs: object  # torch.Tensor of training spectrograms
    labels: object  # torch.Tensor of class indices, or None (unconditional)
    n_clips: int
    classes: tuple
    n_skipped: int
    measured_std: float  # std of the training spectrograms (what --sigma-data auto takes)


@dataclass(frozen=True)
class TrainOutcome:
    step: int  # the step the checkpoint is at now
    steps_done: int  # steps trained by this call
    seconds: float
    params: int
    mean_loss: float  # mean loss of the last ``tail`` steps
    tail: int


def read_corpus(corpus: Path, cfg, labels: str, workers: int) -> TrainingCorpus:
    """Decoded clips (fit to the config's length), their classes, and skipped records."""
    from audioaudit.audio.corpus import scan_corpus
    from audioaudit.audio.io import LoadOptions, Skipped, fit_length, load_many

    try:
        scan = scan_corpus(corpus, labels=labels)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    skipped = [{"path": s.path, "kind": s.kind, "reason": s.reason} for s in scan.skipped]
    labelled = any(it.label for it in scan.items)
    opts = LoadOptions(sample_rate=cfg.spec.sample_rate, silence_dbfs=-60.0)
    by_path = {it.path: it for it in scan.items}
    data = TrainingCorpus([], [], [], skipped)
    for path, res in load_many([it.path for it in scan.items], opts, workers):
        if isinstance(res, Skipped):
            skipped.append({"path": res.path, "kind": res.kind, "reason": res.reason})
        elif labelled and not by_path[path].label:
            skipped.append({"path": path, "kind": "no_class", "reason": "not inside a class sub-folder"})
        else:
            data.waves.append(fit_length(res.wave, cfg.spec.clip_samples))
            data.labels.append(by_path[path].label)
            data.used.append(by_path[path].rel_path)
    if not data.waves:
        raise UserError(f"{corpus}: no usable training clips ({len(skipped)} skipped)")
    return data


def write_listing(out: Path, data: TrainingCorpus) -> None:
    """``training_clips.csv`` (path, label) and ``skipped.csv`` (path, kind, reason) in ``out``."""
    import pandas as pd

    atomic.write_csv(pd.DataFrame({"path": data.used, "label": data.labels}), out / LISTING)
    atomic.write_csv(pd.DataFrame(data.skipped, columns=["path", "kind", "reason"]), out / SKIPPED)


def train_config(req: TrainRequest):
    """The named config (or, on resume, the folder's), with the step/batch/clip overrides."""
    from generators.edmsound.checkpoint import read_config
    from generators.edmsound.config import load_config

    cfg = read_config(req.out) if req.resume else load_config(req.config)
    t = cfg.train
    cfg = replace(cfg, train=replace(t, steps=req.steps or t.steps, batch_size=req.batch_size or t.batch_size))
    if req.clip_seconds is not None and not req.resume:
        cfg = replace(cfg, spec=replace(cfg.spec, clip_seconds=req.clip_seconds))
    return cfg


def with_sigma_data(cfg, option: str | None, measured: float, resume: bool):
    """Apply --sigma-data (a number, or 'auto' = ``measured``); a resumed run keeps its own."""
    if option is not None and not resume:
        try:
            value = measured if option == "auto" else float(option)
        except ValueError:
            raise UserError(f"--sigma-data {option}: pass a number or 'auto'") from None
        cfg = replace(cfg, edm=replace(cfg.edm, sigma_data=value))
    return cfg


def sigma_note(sigma_data: float, measured: float) -> str:
    """One line comparing sigma_data with the data's std (and a hint when far apart)."""
    note = "" if 0.5 <= measured / sigma_data <= 2 else "  (far apart: consider --sigma-data auto)"
    return f"sigma_data {sigma_data:.4g}; std of the training spectrograms {measured:.4g}{note}"


def prepare_training(req: TrainRequest) -> PreparedTraining:
    """Config + corpus -> spectrograms and labels; writes the clip listing into ``req.out``."""
    import torch

    from generators.edmsound.trainer import waves_to_specs

    cfg = train_config(req)
    data = read_corpus(req.corpus, cfg, req.labels, req.workers)
    classes = tuple(sorted({c for c in data.labels if c}))
    if req.resume and classes != tuple(cfg.classes):
        raise UserError(f"{req.corpus}: classes {list(classes)} differ from the run in {req.out} "
                        f"({list(cfg.classes)})")
    cfg = replace(cfg, classes=classes).finalised()
    label_t = torch.tensor([classes.index(c) for c in data.labels]) if classes else None
    write_listing(req.out, data)
    specs = waves_to_specs(data.waves, cfg)
    measured = float(specs.std())
    cfg = with_sigma_data(cfg, req.sigma_data, measured, req.resume)
    return PreparedTraining(cfg, specs, label_t, len(data.waves), classes, len(data.skipped), measured)


def run_training(req: TrainRequest, prep: PreparedTraining, *, progress: bool = True) -> TrainOutcome:
    """Train (or resume) until the config's step count; checkpoints land in ``req.out``."""
    from generators.edmsound.trainer import Trainer
    from generators.edmsound.unet import count_params

    trainer = Trainer(prep.cfg, prep.specs, prep.labels, req.out, resume=req.resume)
    start, t0 = trainer.step, time.time()
    res = trainer.run(prep.cfg.train.steps, progress=progress)
    tail = res.losses[-50:]
    return TrainOutcome(res.step, res.step - start, time.time() - t0, count_params(trainer.model),
                        sum(tail) / max(1, len(tail)), len(tail))
