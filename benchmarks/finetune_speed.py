"""Fine-tuning costs on this machine: per-family augmentation cost, views-cache build and
training time (head on a frozen encoder; small encoder from scratch), and the detector
figures of the result on a DISC-style set built from a synthetic corpus.

    python benchmarks/finetune_speed.py [--clips-per-class 10] [--scratch-epochs 30] [--skip-scratch]

Prints wall and CPU seconds (the machine may be shared: CPU seconds are the stable
figure). Not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def augment_costs() -> None:
    from audioaudit.detector import augment

    rng = np.random.default_rng(0)
    for sr in (16000, 48000):
        x = (0.3 * rng.standard_normal(10 * sr)).astype(np.float32)
        others = [(0.1 * rng.standard_normal(4 * sr)).astype(np.float32)]
        cells = []
        for fam in augment.FAMILIES:
            augment.transform(x, sr, fam, 0.5, rng, others=others)  # warm up imports
            t0 = time.perf_counter()
            for _ in range(3):
                augment.transform(x, sr, fam, 0.5, rng, others=others)
            cells.append(f"{fam} {1000 * (time.perf_counter() - t0) / 3:.0f}")
        print(f"augment ms per 10 s clip at {sr} Hz: " + ", ".join(cells))


def train(corpus: Path, out: Path, **kw):
    from audioaudit.detector.finetune.pipeline import Job, run_finetune
    from audioaudit.detector.finetune.recipes import get_recipe, mode_defaults

    mode = "scratch" if kw.get("scratch") else "head"
    recipe = get_recipe(kw.pop("recipe", "infonce"), **{**mode_defaults(mode), **kw.pop("overrides", {})})
    t0, c0 = time.perf_counter(), cpu()
    res = run_finetune(Job(corpus=str(corpus), out_dir=out, recipe=recipe, quiet=True, **kw), log=lambda s: None)
    print(f"  {out.name}: {res.n_clips} clips, cache {res.cache_seconds:.1f} s, training {res.train_seconds:.1f} s "
          f"(wall {time.perf_counter() - t0:.0f} s, CPU {cpu() - c0:.0f} s)")
    return res


def bench(root: Path, specs: list[str]) -> None:
    from audioaudit.detector.benchmark.dataset import BenchSpec, build_benchmark
    from audioaudit.detector.benchmark.evaluate import RunSettings, run_benchmark
    from audioaudit.encoders import load_encoder

    b = build_benchmark(str(root), str(root / "bench"), BenchSpec(per_family=10, distractors=100))
    print(f"  bench: {len(b.references)} references, {b.n_copies} copies, {b.n_distractors} distractors")
    for spec in specs:
        for row in run_benchmark(b, load_encoder(spec), RunSettings(spec=spec)):
            o = row.report.overall
            print(f"  {spec:60s} {row.scoring:10s} µAP {o.micro_ap:.3f}  R@P90 {o.recall_at_p90:.3f}  R@1 {o.recall_at_1:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips-per-class", type=int, default=10)
    ap.add_argument("--scratch-epochs", type=int, default=None)
    ap.add_argument("--skip-scratch", action="store_true")
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    from audioaudit.audio import synth

    augment_costs()
    root = Path(a.work or tempfile.mkdtemp(prefix="ft_bench_"))
    synth.make_corpus(root, per_class=a.clips_per_class, heldout_per_class=a.clips_per_class, seed=1, verbose=False)
    specs = ["mel"]
    print("head on frozen encoders (infonce, 8 views/clip):")
    for base in ("mel", "tiny-laion:0"):
        out = root / f"head_{base.replace(':', '_')}"
        train(root / "train", out, base=base, n_views=8)
        specs += [base, f"finetuned:{out}"] if base != "mel" else [f"finetuned:{out}"]
    if not a.skip_scratch:
        from audioaudit.detector.finetune.recipes import DEFAULT_VIEWS

        print(f"from scratch (conv, infonce, {DEFAULT_VIEWS['scratch']} views/clip):")
        over = {"epochs": a.scratch_epochs} if a.scratch_epochs else {}
        train(root / "train", root / "scratch_conv", scratch={"arch": "conv"}, n_views=DEFAULT_VIEWS["scratch"],
              overrides=over)
        specs.append(f"finetuned:{root / 'scratch_conv'}")
    bench(root, specs)


if __name__ == "__main__":
    main()
