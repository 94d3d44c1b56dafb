"""`audioaudit demo`: the whole story on a fresh machine, with controls that prove the audit works.

Every step writes into one folder (default ``runs/demo``):

    corpus/     procedurally synthesised sound effects: train/<class>/, heldout/<class>/ and
                background/<class>/ (more clips of the same kinds, in neither of the others)
    detector/   a copy detector trained from scratch on train + background (pool/: hard links)
    index/      the train split embedded into FAISS, with the background split as its
                background set (score normalisation) and a threshold calibrated on it for a
                false-flag rate of ``target_ffr`` on novel clips (index/calibration.json)
    sources/    what gets audited: edmsound/ (a tiny EDMSound overfitted on a few clips),
                memorizer/ (positive control), planted/ (train clips through copy
                transformations); the held-out split is audited in place (negative control)
    edmsound/   the tiny EDMSound checkpoint
    runs/       one audit run per source
    report/     one listening report comparing the four runs
    demo.json   the figures printed at the end

Acceptance (issue 8): planted-copy recall ≥ 0.9 and held-out false-flag rate ≤ 0.05 at
the calibrated threshold; memorizer clips flagged ≥ 0.9.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from audioaudit.audio.corpus import corpus_waves
from audioaudit.audio.io import write_wav
from audioaudit.util import atomic

SOURCES = ("edmsound", "memorizer", "heldout", "planted")
KIND = {"edmsound": "generator under audit", "memorizer": "positive control (must be flagged)",
        "heldout": "negative control (must not be flagged)", "planted": "planted copies (must be flagged)"}


@dataclass
class DemoConfig:
    out: Path = Path("runs/demo")
    per_class: int = 12
    heldout_per_class: int = 5
    calibration_per_class: int = 22  # novel clips the detector never sees: the calibration's negatives.
    # They must be as novel to the detector as the clips it audits: calibrated on the background
    # clips it trained on, the threshold gave 0.018 there at a 0.02 target and 0.06 on held-out clips
    background_per_class: int = 44
    target_ffr: float = 0.02  # false flags allowed on novel clips (issue 8's goal: <= 0.05)
    seconds: tuple[float, float] = (2.0, 3.0)
    sample_rate: int = 16000
    detector_epochs: int | None = 30  # over train + background (~600 clips); None: the recipe's default
    detector_views: int = 24
    detector_max_strength: float = 0.6  # the views span the planted range (0-0.5) with a margin
    detector_class_batches: int = 2  # batches of ~2 classes: same-kind negatives (recall at 2 % false
    # flags 0.936 -> 0.977 / 0.951 -> 0.981 on seeds 0/1, benchmarks/demo_controls.py; 1 class: worse)
    planted_strength: tuple[float, float] = (0.0, 0.5)  # moderate copies; `audioaudit bench` covers the severe end
    edm_clips: int = 4
    edm_steps: int = 600
    edm_seconds: float = 1.0
    n_generated: int = 8
    n_memorizer: int = 20
    n_planted: int = 30
    sampler: str = "deis"
    sampler_steps: int = 10
    seed: int = 0
    progress: bool = True

    @classmethod
    def quick(cls, out: Path) -> "DemoConfig":
        """The reduced demo CI runs: fewer clips and steps, same pipeline."""
        # controls large enough to judge rates of a few percent: 110 held-out clips, every
        # train clip planted once (33 and 22 clips gave 0/33 and 2/33 false flags from one
        # detector on 1 vs 2 threads — a small-sample draw at a 3 % rate)
        # 20 memorizer clips: with 8, one sample the ideal denoiser left between two training
        # clips (similarity 0.79 to its nearest) made 7/8 = 0.875 miss a >= 0.9 goal (seed 1)
        return cls(out=out, per_class=6, heldout_per_class=10, edm_clips=3, edm_steps=150, n_generated=4,
                   n_memorizer=20, n_planted=66)


@dataclass
class SourceFigures:
    source: str
    kind: str
    audited: int
    flagged: int
    rate: float
    skipped: int
    run_dir: str


@dataclass
class DemoResult:
    out: str
    threshold: float | None
    threshold_on: str | None
    calibrated_false_flag_rate: float | None  # on the novel calibration clips
    sources: list[SourceFigures]
    planted_recall: float
    heldout_false_flag_rate: float
    memorizer_flag_rate: float
    report: str
    seconds: dict = field(default_factory=dict)
    false_flag_rate_bound: float | None = None  # the rate the calibration clips can vouch for (95 %)
    n_calibration: int | None = None

    def passed(self) -> bool:
        return self.planted_recall >= 0.9 and self.heldout_false_flag_rate <= 0.05 and self.memorizer_flag_rate >= 0.9


Log = Callable[[str], None]


# --------------------------------------------------------------------------- steps
def make_demo_corpus(cfg: DemoConfig, log: Log):
    from audioaudit.audio.synth import make_corpus

    root = cfg.out / "corpus"
    if (root / "synth.json").exists():
        log(f"corpus: reusing {root}")
    novel = cfg.heldout_per_class + cfg.calibration_per_class  # split by split_novel
    info = make_corpus(root, per_class=cfg.per_class, heldout_per_class=novel,
                       background_per_class=cfg.background_per_class, seconds=cfg.seconds,
                       sample_rate=cfg.sample_rate, seed=cfg.seed, verbose=False)
    n_train, n_held, n_bg = len(info.train), len(info.heldout), len(info.background)
    log(f"corpus: {len(info.classes)} classes ({', '.join(info.classes)}), {n_train} train + {n_held} held-out "
        f"+ {n_bg} background clips")
    for cls, why in info.skipped_classes.items():
        log(f"  note: class '{cls}' left out: {why}")
    return info


def _pool(out: Path, folders: list[Path]) -> Path:
    """One corpus folder (<class>/<split>_<name>) of hard links to the clips of ``folders``."""
    for src in folders:
        for f in sorted(src.rglob("*.wav")):
            link_file(f, out / f.parent.name / f"{src.name}_{f.name}")
    return out


def split_novel(cfg: DemoConfig, heldout_dir: Path) -> tuple[Path, Path]:
    """(held-out control clips, calibration negatives): every class of the held-out split cut
    by a seeded draw into ``heldout_per_class`` control clips and the rest; neither part is
    ever seen by the detector, so the calibrated rate holds on the control."""
    rng = np.random.default_rng([cfg.seed, 11])
    parts = (cfg.out / "novel" / "heldout", cfg.out / "novel" / "calibration")
    for cls_dir in sorted(p for p in heldout_dir.iterdir() if p.is_dir()):
        files = sorted(cls_dir.glob("*.wav"))
        for k, i in enumerate(rng.permutation(len(files))):
            link_file(files[i], parts[0 if k < cfg.heldout_per_class else 1] / cls_dir.name / files[i].name)
    return parts


def link_file(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (a copy across file systems); an existing ``dst`` is kept."""
    import shutil

    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system: copy
        shutil.copy2(src, dst)


def train_detector(cfg: DemoConfig, train_dir: Path, background_dir: Path, log: Log) -> str:
    """A small encoder trained from scratch (no pretrained weights here) on the train split
    and the background split together: the score compares a clip's best training match with
    its best background matches, so the detector should know both sets alike."""
    from audioaudit.detector.augment import STANDARD_FAMILIES
    from audioaudit.detector.finetune.pipeline import Job, run_finetune
    from audioaudit.detector.finetune.recipes import get_recipe, mode_defaults

    out = cfg.out / "detector"
    pool = _pool(out / "pool", [train_dir, background_dir])
    overrides = ({"seed": cfg.seed, "class_batches": cfg.detector_class_batches}
                 | ({"epochs": cfg.detector_epochs} if cfg.detector_epochs else {}))
    recipe = get_recipe("infonce", **{**mode_defaults("scratch"), **overrides})
    job = Job(corpus=str(pool), out_dir=out, recipe=recipe, base=None, scratch={"arch": "conv"},
              n_views=cfg.detector_views, quiet=not cfg.progress, device="cpu", families=STANDARD_FAMILIES,
              max_strength=cfg.detector_max_strength)
    res = run_finetune(job, log=lambda *a, **k: None)
    last = res.history[-1] if res.history else {}
    log(f"detector: trained on {res.n_clips} clips (views {res.cache_seconds:.0f} s, training {res.train_seconds:.0f} s)"
        + (f", validation R@1 {last.get('val_recall_at_1', float('nan')):.3f}" if last else ""))
    return res.spec


def build_demo_index(cfg: DemoConfig, dirs: tuple[Path, Path, Path], spec: str, log: Log) -> Path:
    """Index of the train split, the background split as its background set (normalisation),
    threshold calibrated on the novel calibration clips. ``dirs``: (train, background, calibration)."""
    from audioaudit.audit.calibrate import FfrSettings, calibrate_index
    from audioaudit.encoders import load_encoder
    from audioaudit.index.background import build_background
    from audioaudit.index.build import build_index
    from audioaudit.index.options import BuildOptions

    train_dir, background_dir, calibration_dir = dirs
    index_dir = cfg.out / "index"
    enc = load_encoder(spec)
    res = build_index(train_dir, enc, index_dir, spec=spec, opts=BuildOptions(progress=cfg.progress, workers=0))
    dups = res.duplicates
    log(f"index: {res.clips} clips, {res.segments} segments"
        + (f", {len(res.skipped)} skipped" if res.skipped else "")
        + (f", duplicate groups: {dups.groups}" if dups and getattr(dups, 'groups', 0) else ""))
    bg = build_background(index_dir, background_dir, enc, workers=0)
    cal = calibrate_index(index_dir, enc, FfrSettings(target_false_flag_rate=cfg.target_ffr, seed=cfg.seed,
                                                      negatives=str(calibration_dir)))
    log(f"calibration: threshold {cal.threshold:.3f} on the score (similarity minus the mean of the {bg.k} best of "
        f"{bg.n_clips} background clips): false flags {cal.false_flag_rate:.3f} on {cal.n_negative} novel clips the "
        f"detector never saw (target {cal.target_false_flag_rate:.2f}; they bound the rate on novel clips at <= "
        f"{cal.false_flag_rate_bound:.3f}, 95 %), recall {cal.recall:.3f} on {cal.n_positive} augmented train clips; "
        f"also flagged: similarity >= {cal.similarity_floor:.3f} (above every calibration clip's)"
        + (f"; note: {cal.note}" if cal.note else ""))
    return index_dir


def _write_source(folder: Path, clips: list[tuple[str, np.ndarray, dict]], sr: int) -> Path:
    """Write (name, wave, meta) clips as WAVs + metadata.csv (path + meta columns)."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, wave, meta in clips:
        write_wav(folder / name, wave, sr)
        rows.append({"path": name, **meta})
    atomic.write_csv(pd.DataFrame(rows), folder / "metadata.csv")
    return folder


def edmsound_source(cfg: DemoConfig, train_dir: Path, log: Log) -> Path:
    """Overfit a tiny EDMSound on a handful of training clips, then sample it."""
    from dataclasses import replace

    import torch

    from generators.edmsound.config import PRESETS
    from generators.edmsound.generator import EDMSoundGenerator
    from generators.edmsound.trainer import Trainer, waves_to_specs

    rels, _, waves = corpus_waves(train_dir, cfg.sample_rate)
    pick = np.random.default_rng([cfg.seed, 5]).choice(len(waves), size=min(cfg.edm_clips, len(waves)), replace=False)
    base = PRESETS["tiny"]
    gcfg = replace(base, spec=replace(base.spec, sample_rate=cfg.sample_rate, clip_seconds=cfg.edm_seconds),
                   train=replace(base.train, steps=cfg.edm_steps, sample_count=0, checkpoint_every=100,
                                 seed=cfg.seed)).finalised()
    ckpt_dir = cfg.out / "edmsound"
    specs = waves_to_specs([waves[i] for i in pick], gcfg)
    # EDM's sigma_data should be the data's std (Karras et al. 2022, sec. 5); compressed
    # spectrograms of short SFX are far below EDMSound's 0.2, so measure it.
    gcfg = replace(gcfg, edm=replace(gcfg.edm, sigma_data=float(specs.std())))
    resume = (ckpt_dir / "state.json").exists()
    t0 = time.time()
    trainer = Trainer(gcfg, specs, None, ckpt_dir, resume=resume)
    res = trainer.run(cfg.edm_steps, progress=cfg.progress)
    log(f"edmsound: tiny model overfitted on {len(pick)} clips ({', '.join(rels[i] for i in pick[:3])}, ...): "
        f"{res.step} steps in {time.time() - t0:.0f} s, final loss {np.mean(res.losses[-20:]) if res.losses else float('nan'):.3f}")
    torch.manual_seed(cfg.seed)
    gen = EDMSoundGenerator(str(ckpt_dir))
    batch = gen.generate(cfg.n_generated, seed=cfg.seed, sampler=cfg.sampler, steps=cfg.sampler_steps)
    clips = [(f"edmsound_{c.seed:05d}.wav", c.wave, {"seed": c.seed, "sampler": c.meta.get("sampler"),
                                                      "nfe": c.meta.get("nfe")}) for c in batch.clips]
    return _write_source(cfg.out / "sources" / "edmsound", clips, batch.sample_rate)


def memorizer_source(cfg: DemoConfig, train_dir: Path, log: Log) -> Path:
    """Positive control: the ideal denoiser over the training spectrograms reproduces training clips."""
    from generators.registry import load_generator

    gen = load_generator(f"memorizer:{train_dir}", sample_rate=cfg.sample_rate, clip_seconds=cfg.seconds[1])
    batch = gen.generate(cfg.n_memorizer, seed=cfg.seed, sampler=cfg.sampler, steps=cfg.sampler_steps)
    clips = [(f"memorizer_{c.seed:05d}.wav", c.wave,
              {"seed": c.seed, "class": c.condition, "source_path": Path(str(c.meta.get("source_path", ""))).name})
             for c in batch.clips]
    log(f"memorizer: {len(clips)} clips sampled from the ideal denoiser of the train split")
    return _write_source(cfg.out / "sources" / "memorizer", clips, batch.sample_rate)


def planted_source(cfg: DemoConfig, train_dir: Path, log: Log) -> Path:
    """Train clips through one copy transformation each: the standard families in turn, at a
    random strength in ``cfg.planted_strength`` (mild to moderate; the bench measures the
    severe end per family)."""
    from audioaudit.detector.augment import STANDARD_FAMILIES, transform

    rels, labels, waves = corpus_waves(train_dir, cfg.sample_rate)
    rng = np.random.default_rng([cfg.seed, 7])
    pick = rng.choice(len(waves), size=min(cfg.n_planted, len(waves)), replace=False)
    clips = []
    for k, i in enumerate(pick):
        fam = STANDARD_FAMILIES[k % len(STANDARD_FAMILIES)]
        strength = float(rng.uniform(*cfg.planted_strength))
        others = [waves[j] for j in rng.choice(len(waves), size=3) if j != i] or [waves[(i + 1) % len(waves)]]
        y = transform(waves[i], cfg.sample_rate, fam, strength, rng, others=others)
        clips.append((f"planted_{k:03d}_{fam}.wav", y,
                      {"class": labels[i], "source": rels[i], "family": fam, "strength": round(strength, 3)}))
    log(f"planted: {len(clips)} transformed copies of train clips ({len(set(c[2]['family'] for c in clips))} families)")
    return _write_source(cfg.out / "sources" / "planted", clips, cfg.sample_rate)


def audit_source(cfg: DemoConfig, name: str, folder: Path, index_dir: Path) -> SourceFigures:
    from audioaudit.audit.options import AuditOptions
    from audioaudit.audit.run import run_audit

    run_dir = cfg.out / "runs" / name
    res = run_audit(folder, index_dir, run_dir, opts=AuditOptions(progress=cfg.progress, workers=0, run_name=name))
    q = res.queries
    flagged = int(q["flag"].sum()) if len(q) else 0
    return SourceFigures(name, KIND[name], len(q), flagged, flagged / max(1, len(q)), len(res.skipped), str(run_dir))


# --------------------------------------------------------------------------- main
def run_demo(cfg: DemoConfig, log: Log = print) -> DemoResult:
    t: dict[str, float] = {}
    cfg.out.mkdir(parents=True, exist_ok=True)

    def step(name, fn, *a):
        t0 = time.time()
        r = fn(*a)
        t[name] = round(time.time() - t0, 1)
        return r

    info = step("corpus", make_demo_corpus, cfg, log)
    train_dir, held_dir, bg_dir = Path(info.train_dir), Path(info.heldout_dir), Path(info.background_dir)
    held_dir, calibration_dir = split_novel(cfg, held_dir)
    spec = step("detector", train_detector, cfg, train_dir, bg_dir, log)
    index_dir = step("index", build_demo_index, cfg, (train_dir, bg_dir, calibration_dir), spec, log)
    folders = {
        "edmsound": step("edmsound", edmsound_source, cfg, train_dir, log),
        "memorizer": step("memorizer", memorizer_source, cfg, train_dir, log),
        "heldout": held_dir,
        "planted": step("planted", planted_source, cfg, train_dir, log),
    }
    figures = [step(f"audit_{n}", audit_source, cfg, n, folders[n], index_dir) for n in SOURCES]
    report = step("report", _report, cfg, [Path(f.run_dir) for f in figures])
    summary = json.loads((Path(figures[0].run_dir) / "summary.json").read_text())
    thr = summary.get("threshold", {})
    by = {f.source: f for f in figures}
    cal = json.loads((index_dir / "calibration.json").read_text())
    res = DemoResult(str(cfg.out), thr.get("value"), thr.get("on"), thr.get("false_flag_rate"), figures,
                     by["planted"].rate, by["heldout"].rate, by["memorizer"].rate, str(report), t,
                     cal.get("false_flag_rate_bound"), cal.get("n_negative"))
    atomic.write_json(cfg.out / "demo.json", asdict(res) | {"passed": res.passed()})
    return res


def _report(cfg: DemoConfig, run_dirs: list[Path]) -> Path:
    from audioaudit.report import render_report

    return render_report(run_dirs, cfg.out / "report", progress=cfg.progress)
