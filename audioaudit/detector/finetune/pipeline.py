"""``audioaudit finetune`` end to end: corpus -> views cache -> training -> ``finetuned:DIR``.

Three modes share the cache, the loop and the checkpoint format:

* head only (default): the frozen base encoder embeds K views per clip once (cached);
  the MLP head trains on the cache in seconds;
* ``unfreeze_top = N``: the views are cached as waveforms and every step runs the base
  encoder with its top N blocks trainable (slow on CPU; meant for a GPU);
* from scratch: a small encoder (``conv`` or ``htsat``, :mod:`audioaudit.encoders.scratch`) trains on
  cached waveform views, with random unpadded crops drawn each step.

OUT holds ``run.json`` (the settings; a rerun with other settings is refused),
``cache/``, ``checkpoints/`` (resumable), then ``config.json`` + safetensors weights
+ ``history.json`` when training ends — all written before anything that follows
(the calibration), whose outcome goes to ``run.json``'s ``status``
(:mod:`audioaudit.detector.finetune.status`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from audioaudit.detector.finetune.recipes import Recipe
from audioaudit.detector.finetune.status import RUN_FILE, record_step, settings_of
from audioaudit.detector.finetune.views import ClipSource, Featurizer, ViewSettings, build_view_cache, load_view_cache
from audioaudit.encoders import checkpoint as ck
from audioaudit.encoders.finetuned import CONFIG, FORMAT
from audioaudit.errors import UserError
from audioaudit.util.progress import progress_bar

Log = Callable[[str], None]


@dataclass
class FinetuneResult:
    out_dir: Path
    spec: str  # "finetuned:OUT"
    n_clips: int
    skipped: dict[str, str]
    cache_seconds: float
    train_seconds: float
    history: list[dict] = field(default_factory=list)
    calibration: object | None = None


@dataclass(frozen=True)
class Job:
    corpus: str
    out_dir: Path
    recipe: Recipe
    base: str | None = None  # encoder spec; None with ``scratch``
    scratch: dict | None = None  # architecture config for from-scratch training
    n_views: int = 8
    quiet: bool = False
    device: str = "cpu"
    families: tuple[str, ...] | None = None  # transformation families of the views (None: all)
    max_strength: float = 1.0  # views' strengths from U(0, max_strength)

    def settings(self) -> dict:
        s = {"corpus": str(Path(self.corpus).resolve()), "base": self.base, "scratch": self.scratch,
             "recipe": self.recipe.to_dict(), "n_views": self.n_views}
        if self.families is not None or self.max_strength != 1.0:  # absent when default: older runs resume
            s["views"] = {"families": list(self.families) if self.families else None, "max_strength": self.max_strength}
        return s


def _check_run(job: Job) -> None:
    import json

    p = job.out_dir / RUN_FILE
    if p.exists():
        old = settings_of(json.loads(p.read_text()))
        new = json.loads(json.dumps(job.settings()))
        if old != new:
            diff = [k for k in dict.fromkeys([*new, *old]) if old.get(k) != new.get(k)]
            raise UserError(f"{job.out_dir} holds a fine-tuning run with other settings ({', '.join(diff)} differ); "
                            "pass another --out, or delete that folder to start over")
    ck.write_record(p, job.settings())  # a new attempt: the status of the last one goes


def _scan(corpus: str):
    from audioaudit.audio.corpus import scan_corpus

    res = scan_corpus(corpus)
    if len(res.items) < 4:
        raise UserError(f"{corpus}: fine-tuning needs at least 4 audio clips (found {len(res.items)})")
    return res


def _loader(items, sr: int):
    from audioaudit.audio.io import LoadOptions, Skipped, try_load

    opts = LoadOptions(sample_rate=sr, min_seconds=0.05)

    def load(i: int):
        r = try_load(items[i].path, opts)
        return f"{r.kind}: {r.reason}" if isinstance(r, Skipped) else r.wave

    return load


def _build_cache(job: Job, items, sr: int, featurizer: Featurizer, length: int, log: Log) -> tuple[object, float]:
    t0 = time.perf_counter()
    settings = ViewSettings(n_views=job.n_views, seed=job.recipe.seed, length=length,
                            families=tuple(job.families) if job.families else None, max_strength=job.max_strength)
    kind = featurizer.identity.get("kind")
    cache_dir = job.out_dir / "cache" / ("embeddings" if kind != "waveforms" else "waveforms")
    source = ClipSource([it.rel_path for it in items], _loader(items, sr), sr, [it.label for it in items])
    with progress_bar(len(items), f"views cache ({job.n_views} views/clip)", enabled=not job.quiet) as advance:
        build_view_cache(cache_dir, source, featurizer, settings, progress=advance)
    cache = load_view_cache(cache_dir)
    dt = time.perf_counter() - t0
    log(f"views cache: {len(cache.index)} clips x {cache.data.shape[1]} views in {dt:.1f} s -> {cache_dir}")
    return cache, dt


def run_finetune(job: Job, log: Log = print) -> FinetuneResult:
    """Train (or resume) the detector described by ``job``; returns where it is."""
    import torch

    job.out_dir.mkdir(parents=True, exist_ok=True)
    _check_run(job)
    scan = _scan(job.corpus)
    torch.manual_seed(job.recipe.seed)
    if job.scratch is not None:
        model, cache, cache_s, save = _setup_scratch(job, scan.items, log)
    elif job.recipe.unfreeze_top > 0:
        model, cache, cache_s, save = _setup_unfrozen(job, scan.items, log)
    else:
        model, cache, cache_s, save = _setup_head(job, scan.items, log)
    from audioaudit.detector.finetune.trainer import ViewTask, fit
    from audioaudit.encoders.torch_base import resolve_device

    device = resolve_device(job.device)
    model.to(device)
    min_crop = int(0.5 * cache.lengths.max()) if cache.lengths is not None else 0
    task = ViewTask(cache.data, cache.labels, job.recipe, lengths=cache.lengths, min_crop=min_crop, device=device)
    every = max(1, job.recipe.epochs // 20)  # about 20 lines of per-epoch validation figures
    show = lambda r: log(_epoch_line(r)) if r["epoch"] % every == 0 or r["epoch"] == job.recipe.epochs else None  # noqa: E731
    res = fit(model, task, job.out_dir / "checkpoints", quiet=job.quiet, on_epoch=show)
    if res.resumed_from:
        log(f"resumed after epoch {res.resumed_from}")
    save(model)
    ck.write_record(job.out_dir / "history.json", res.history)
    record_step(job.out_dir, "training", epochs=len(res.history), seconds=round(res.seconds, 1))
    skipped = dict(cache.manifest.get("skipped", {}))
    out = FinetuneResult(job.out_dir, f"finetuned:{job.out_dir}", len(cache.index), skipped, cache_s,
                         res.seconds, res.history)
    return out


def _epoch_line(r: dict) -> str:
    return (f"epoch {r['epoch']:3d}  train {r['train_loss']:.4f}  val {r['val_loss']:.4f}  "
            f"pos {r['pos_sim']:.3f}  neg {r['neg_sim']:.3f}  val R@1 {r['val_recall_at_1']:.3f}")


# --------------------------------------------------------------------------- modes
def _base_encoder(job: Job):
    from audioaudit.encoders import load_encoder

    return load_encoder(job.base, device=job.device)


def _setup_head(job: Job, items, log: Log):
    from audioaudit.detector.finetune.views import encoder_featurizer
    from audioaudit.encoders.heads import HeadConfig, ProjectionHead

    base = _base_encoder(job)
    win = int(round(base.window_seconds * base.sample_rate))
    ident = {"kind": "embeddings", "encoder": base.identity()}
    cache, dt = _build_cache(job, items, base.sample_rate, Featurizer(encoder_featurizer(base), ident), win, log)
    head_cfg = HeadConfig(in_dim=base.dim, hidden=job.recipe.hidden, out_dim=job.recipe.out_dim)
    head = ProjectionHead(head_cfg)

    def save(model):
        ck.save_tensors(job.out_dir / "head.safetensors", model.state_dict())
        _write_config(job, {"kind": "head", "base": job.base, "base_identity": base.identity(),
                            "head": head_cfg.to_dict(), "unfreeze_top": 0})

    return head, cache, dt, save


def _setup_scratch(job: Job, items, log: Log):
    from audioaudit.detector.finetune.views import fit_views
    from audioaudit.encoders.scratch import build_scratch

    net, arch = build_scratch(job.scratch)
    length = int(round(arch.window_seconds * arch.sample_rate))
    ident = {"kind": "waveforms", "sample_rate": arch.sample_rate, "length": length}
    featurizer = Featurizer(lambda v: fit_views(v, length), ident)
    cache, dt = _build_cache(job, items, arch.sample_rate, featurizer, length, log)

    def save(model):
        ck.save_tensors(job.out_dir / "model.safetensors", model.state_dict())
        _write_config(job, {"kind": "scratch", "arch": arch.to_dict()})

    return net, cache, dt, save


def _setup_unfrozen(job: Job, items, log: Log):
    from audioaudit.detector.finetune.unfreeze import BackboneHead, trainable_state
    from audioaudit.detector.finetune.views import fit_views
    from audioaudit.encoders.heads import HeadConfig, ProjectionHead

    base = _base_encoder(job)
    length = int(round(base.window_seconds * base.sample_rate))
    ident = {"kind": "waveforms", "sample_rate": base.sample_rate, "length": length}
    featurizer = Featurizer(lambda v: fit_views(v, length), ident)
    cache, dt = _build_cache(job, items, base.sample_rate, featurizer, length, log)
    head_cfg = HeadConfig(in_dim=base.dim, hidden=job.recipe.hidden, out_dim=job.recipe.out_dim)
    model = BackboneHead(base, ProjectionHead(head_cfg), job.recipe.unfreeze_top)
    base_identity = base.identity()

    def save(m):
        ck.save_tensors(job.out_dir / "head.safetensors", m.head.state_dict())
        ck.save_tensors(job.out_dir / "backbone.safetensors", trainable_state(m.backbone))
        _write_config(job, {"kind": "head", "base": job.base, "base_identity": base_identity,
                            "head": head_cfg.to_dict(), "unfreeze_top": job.recipe.unfreeze_top})

    return model, cache, dt, save


def _write_config(job: Job, body: dict) -> None:
    import audioaudit

    ck.write_record(job.out_dir / CONFIG, {
        "format": FORMAT, **body, "recipe": job.recipe.to_dict(), "n_views": job.n_views,
        "corpus": str(Path(job.corpus).resolve()), "audioaudit_version": getattr(audioaudit, "__version__", "0"),
    })  # fmt: skip
