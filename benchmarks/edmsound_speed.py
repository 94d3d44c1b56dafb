"""EDMSound sizes and speeds: parameters per config, training-step time, sampling time.

For each preset (4 s clips at 22.05 kHz -> 2 x 256 x 352 spectrograms): parameter count,
forward FLOPs of one clip, seconds per training step (EDM loss, backward, Adam, EMA) at a
given batch size, and seconds to sample one clip with DEIS at NFE 10 (CFG doubles the
network batch). Timings are medians of a few steps after one warm-up step.

    python benchmarks/edmsound_speed.py [--configs tiny small paper] [--batch 4] [--threads 2] [--device cpu]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch


def flops_per_clip(model, cfg) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, *cfg.spec.shape)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(x, 1.0, None)
    return fc.get_total_flops()


def time_steps(fn, repeats: int, sync) -> float:
    fn()
    sync()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def bench(name: str, batch: int, repeats: int, device: str) -> dict:
    from dataclasses import replace

    from generators.edmsound.config import PRESETS
    from generators.edmsound.generator import Sampling, sample_specs
    from generators.edmsound.trainer import Trainer
    from generators.edmsound.unet import count_params

    cfg = replace(PRESETS[name], classes=tuple(f"c{i}" for i in range(7)))  # DCASE 2023 Task 7: 7 classes
    cfg = replace(cfg, train=replace(cfg.train, batch_size=batch, checkpoint_every=0, sample_count=0)).finalised()
    specs = torch.randn(max(8, batch), *cfg.spec.shape) * 0.2
    labels = torch.arange(len(specs)) % 7
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with tempfile.TemporaryDirectory() as d:
        tr = Trainer(cfg, specs.to(device), labels.to(device), d, device=device)
        step_s = time_steps(tr.train_step, repeats, sync)
        model = tr.ema.eval()
        plan = Sampling(steps=10, cfg_scale=3.0)
        gen = lambda: sample_specs(model, cfg, [0], torch.tensor([1], device=device), plan)  # noqa: E731
        sample_s = time_steps(gen, 1, sync) if device == "cpu" else time_steps(gen, repeats, sync)
        return {"config": name, "params_M": count_params(tr.model) / 1e6, "gflop_fwd": flops_per_clip(model.cpu(), cfg) / 1e9,
                "batch": batch, "step_s": step_s, "sample_s": sample_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["tiny", "small", "paper"])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, batch {args.batch}")
    print(f"{'config':8s}{'params':>10s}{'GFLOP/clip fwd':>16s}{'train step':>13s}{'sample NFE10 cfg3':>19s}")
    for name in args.configs:
        r = bench(name, args.batch, args.repeats, args.device)
        print(f"{r['config']:8s}{r['params_M']:>9.2f}M{r['gflop_fwd']:>16.1f}{r['step_s']:>12.2f}s{r['sample_s']:>18.2f}s")


if __name__ == "__main__":
    main()
