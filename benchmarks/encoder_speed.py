"""Embedding speed of each encoder backend: clips per second for 4 s clips.

For every backend it times ``encoder.embed`` (pre-processing + model + normalisation) and the
bare model forward on already prepared inputs, at the same batch size, and prints both with
their ratio (how much the wrapper costs). Backends:

* ``mel``             log-mel statistics, no weights
* ``tiny-laion``      tiny random laion-clap HTSAT tower (4 s window)
* ``tiny-hf``         tiny random transformers CLAP tower (4 s window)
* ``laion HTSAT-tiny``  real-size laion-clap HTSAT-tiny + projection, random weights
                      (a 4 s clip is repeat-padded to the model's 10 s input)
* ``hf HTSAT-tiny``   real-size transformers ClapAudioModelWithProjection (its default config
                      is HTSAT-tiny), random weights, hub feature-extractor settings

Usage: .venv/bin/python benchmarks/encoder_speed.py [--batch-size 16] [--clips 64]
       [--big-clips 32] [--threads 2] [--only mel,tiny-hf]
Timings on a shared machine vary; say so when you quote them.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

CLIP_SECONDS = 4.0


def real_laion(batch_size: int):
    from audioaudit.encoders.laion import LaionEncoder, build_model, load_config
    from audioaudit.encoders.tiny import seeded

    cfg = load_config("HTSAT-tiny")
    model = seeded(0, lambda: build_model(cfg))
    return LaionEncoder(model, cfg, source={"random_seed": 0}, name="laion HTSAT-tiny (random)", batch_size=batch_size)


def real_hf(batch_size: int):
    from transformers import ClapAudioConfig, ClapAudioModelWithProjection

    from audioaudit.encoders.hf import HUB_FEATURE_SETTINGS, HFClapEncoder
    from audioaudit.encoders.tiny import seeded

    model = seeded(0, lambda: ClapAudioModelWithProjection(ClapAudioConfig()).eval())
    return HFClapEncoder(model, HUB_FEATURE_SETTINGS, source={"random_seed": 0}, name="hf HTSAT-tiny (random)",
                         batch_size=batch_size)


def build(name: str, batch_size: int):
    from audioaudit.encoders import load_encoder

    if name == "laion-htsat-tiny":
        return real_laion(batch_size)
    if name == "hf-htsat-tiny":
        return real_hf(batch_size)
    return load_encoder(name, batch_size=batch_size)


def clips(n: int, sr: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(int(CLIP_SECONDS * sr)) / sr
    return [(0.3 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
            for _ in range(n)]


def measure(enc, n: int) -> tuple[float, float]:
    """(embed clips/s, bare forward clips/s) over n clips, after one warm-up batch."""
    waves = clips(n, enc.sample_rate)
    bs = enc.batch_size
    enc.embed(waves[:bs])  # warm-up (lazy init, allocator)
    t0 = time.perf_counter()
    enc.embed(waves)
    embed_rate = n / (time.perf_counter() - t0)
    prepared = [enc.prepare(waves[i : i + bs]) for i in range(0, n, bs)]
    with torch.inference_mode():
        t0 = time.perf_counter()
        for x in prepared:
            enc.forward(x)
        forward_rate = n / (time.perf_counter() - t0)
    return embed_rate, forward_rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--clips", type=int, default=64, help="clips timed for mel and the tiny towers")
    ap.add_argument("--big-clips", type=int, default=32, help="clips timed for the real-size towers")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--only", default="mel,tiny-laion,tiny-hf,laion-htsat-tiny,hf-htsat-tiny")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} cpus, load avg "
          f"{os.getloadavg()[0]:.1f}; {CLIP_SECONDS:g} s clips at each encoder's rate; batch size {args.batch_size}")
    print(f"{'backend':28s} {'window':>7s} {'dim':>5s} {'clips':>6s} {'embed clips/s':>14s} "
          f"{'forward clips/s':>16s} {'embed/forward':>14s}")
    for name in args.only.split(","):
        t0 = time.perf_counter()
        enc = build(name.strip(), args.batch_size)
        load_s = time.perf_counter() - t0
        n = args.big_clips if "htsat" in name else args.clips
        n = max(args.batch_size, n - n % args.batch_size)
        e, f = measure(enc, n)
        print(f"{enc.name:28s} {enc.window_seconds:6.1f}s {enc.dim:5d} {n:6d} {e:14.1f} {f:16.1f} {e / f:14.2f}"
              f"   (built in {load_s:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
