"""Copy-detection benchmark on a synthetic corpus: `mel`, a frozen tiny CLAP, and any
fine-tuned detectors given, side by side (µAP, R@P90, R@1, per family), plus the
calibrated threshold of each encoder.

    .venv/bin/python benchmarks/detector.py [--finetuned DIR ...] [--encoder SPEC ...]

The corpus is made by `audioaudit.audio.synth` (train/ = references, heldout/ = distractors).
Prints the table and writes OUT/bench.json and OUT/calibration-<n>/calibration.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench-detector")
    ap.add_argument("--corpus", default=None, help="use this corpus instead of synthesising one")
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--heldout-per-class", type=int, default=10)
    ap.add_argument("--per-family", type=int, default=20)
    ap.add_argument("--distractors", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--encoder", action="append", default=None, help="encoder specs (default: mel, tiny-laion)")
    ap.add_argument("--finetuned", action="append", default=[], help="fine-tuned detector DIR (repeat)")
    ap.add_argument("--no-calibrate", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    a = ap.parse_args(argv)

    from rich.console import Console

    from audioaudit.audio import synth
    from audioaudit.commands.bench import bench_table
    from audioaudit.detector.benchmark import dataset, evaluate
    from audioaudit.detector.calibrate import CalibrateOptions, calibrate_encoder
    from audioaudit.encoders import load_encoder

    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    console = Console()
    out = Path(a.out)
    corpus = Path(a.corpus) if a.corpus else out / "corpus"
    if not a.corpus and not (corpus / "synth.json").is_file():
        t = time.perf_counter()
        info = synth.make_corpus(corpus, per_class=a.per_class, heldout_per_class=a.heldout_per_class, seed=a.seed)
        console.print(f"synthesised {len(info.train)}+{len(info.heldout)} clips in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    spec = dataset.BenchSpec(per_family=a.per_family, distractors=a.distractors, seed=a.seed)
    bench = dataset.build_benchmark(corpus, out / "cache", spec)
    console.print(f"benchmark set ready in {time.perf_counter() - t:.1f} s: {bench.root}")
    specs = (a.encoder or ["mel", "tiny-laion"]) + [f"finetuned:{d}" for d in a.finetuned]
    rows, cals = [], {}
    for n, s in enumerate(specs):
        enc = load_encoder(s)
        t = time.perf_counter()
        rows += evaluate.run_benchmark(bench, enc, evaluate.RunSettings(spec=s))
        console.print(f"{s}: scored in {time.perf_counter() - t:.1f} s (embedding {rows[-1].embed_seconds:.1f} s)")
        if not a.no_calibrate:
            cal = calibrate_encoder(enc, corpus, out / f"calibration-{n}", CalibrateOptions(max_clips=100, seed=a.seed))
            cals[s] = cal.to_json()
            console.print(f"{s}: threshold {cal.threshold:.4f} on the {cal.score} -> precision {cal.precision:.3f} "
                          f"(target {cal.target_precision}), recall {cal.recall:.3f}"
                          + ("" if cal.reached else " [target not reached]"))
    summary = evaluate.bench_summary(bench)
    console.print(bench_table(rows, summary))
    (out / "bench.json").write_text(json.dumps({"benchmark": summary, "rows": [r.to_json() for r in rows],
                                                "calibration": cals}, indent=1, default=float))
    console.print(f"wrote {out / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
