"""Wall time of `index build` on the local Ray engine vs the single-machine engine.

Builds the same synthetic corpus twice (fresh index folders) and prints: plain build time,
`ray.init` time, Ray build time, files/s for each, and the largest difference between the
two builds' vectors (they must agree to float tolerance).

    .venv/bin/python benchmarks/ray_vs_plain.py                       # 48 files x 12 s, mel
    .venv/bin/python benchmarks/ray_vs_plain.py --files 200 --encoder tiny-laion --actors 1

On a 2-core machine one actor plus the decode tasks already use both cores; Ray pays its
start-up and per-actor model load, and wins only where there are more cores or GPUs than
one process can use. Measured here (quiet moment): mel, 48 files x 12 s: plain 3.3 s, Ray
6.8 s + 2.7 s ray.init; tiny-laion, 24 files: plain 11.9 s, Ray 9.6 s + 3.0 s ray.init;
vectors identical (max difference 0).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=48)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--encoder", default="mel")
    ap.add_argument("--actors", type=int, default=1)
    ap.add_argument("--cpus", type=int, default=0, help="ray.init(num_cpus=...), default all")
    ap.add_argument("--shard-size", type=int, default=16)
    a = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    from helpers_index import CLASSES, synth_clip, write

    from audioaudit import schema
    from audioaudit.encoders import load_encoder
    from audioaudit.index import store
    from audioaudit.index.build import build_index
    from audioaudit.index.options import BuildOptions
    from audioaudit.index.ray import RayPlan, build_with_ray

    work = Path(tempfile.mkdtemp(prefix="audioaudit-ray-bench-"))
    for i in range(a.files):
        cls = CLASSES[i % len(CLASSES)]
        write(work / "corpus" / cls / f"{cls}_{i:04d}.wav", synth_clip(cls, i, seconds=a.seconds))
    opts = lambda: BuildOptions(shard_size=a.shard_size, progress=False, near_dups=False)  # noqa: E731

    t = time.perf_counter()
    plain = build_index(work / "corpus", load_encoder(a.encoder), work / "plain", spec=a.encoder, opts=opts())
    t_plain = time.perf_counter() - t

    import ray

    t = time.perf_counter()
    ray.init(num_cpus=a.cpus or None, include_dashboard=False, log_to_driver=False)
    t_init = time.perf_counter() - t
    t = time.perf_counter()
    rr = build_with_ray(work / "corpus", work / "ray", RayPlan(a.encoder, actors=a.actors), opts=opts())
    t_ray = time.perf_counter() - t
    ray.shutdown()

    xa = store.open_index(work / "plain").index.reconstruct_n(0, plain.segments)
    xb = store.open_index(work / "ray").index.reconstruct_n(0, rr.segments)
    same_items = (work / "plain" / schema.ITEMS_FILE).read_bytes() == (work / "ray" / schema.ITEMS_FILE).read_bytes()
    print(f"corpus: {a.files} files x {a.seconds:.0f} s -> {plain.segments} windows, encoder {a.encoder}, "
          f"{os.cpu_count()} cores")
    print(f"plain engine : {t_plain:6.1f} s  ({a.files / t_plain:.2f} files/s)")
    print(f"ray.init     : {t_init:6.1f} s")
    print(f"ray engine   : {t_ray:6.1f} s  ({a.files / t_ray:.2f} files/s, {a.actors} actor(s)); "
          f"with init {t_ray + t_init:.1f} s")
    print(f"same items.parquet bytes: {same_items}; max |plain - ray| over vectors: {np.abs(xa - xb).max():.2e}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
