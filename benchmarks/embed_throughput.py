"""Embedding pipeline efficiency: end-to-end clips/s ÷ bare-model clips/s.

* bare model: the clips are decoded, resampled and windowed beforehand; only
  ``encoder.embed`` runs, in batches of ``--batch`` windows;
* end to end: the real pipeline of ``audioaudit index build`` (decode + resample + PCM
  hash + windowing in ``--workers`` processes, embedding in the same batches, shards
  written to disk) on the same files.

Goal (DESIGN.md): ≥ 0.9, i.e. decoding overlaps the model.

    python benchmarks/embed_throughput.py --encoder tiny-laion --clips 48 --seconds 10
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def make_files(folder: Path, n: int, seconds: float, sr: int) -> list[Path]:
    """Stereo 16-bit WAVs at ``sr`` (so decoding includes a mix-down and a resample)."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    paths = []
    t = np.arange(int(seconds * sr)) / sr
    for i in range(n):
        f = rng.uniform(100, 4000, size=4)
        x = sum(np.sin(2 * np.pi * fi * t) for fi in f) * 0.1 + rng.standard_normal(len(t)) * 0.02
        p = folder / f"clip_{i:04d}.wav"
        sf.write(str(p), np.stack([x, x * 0.9], axis=1).astype(np.float32), sr, subtype="PCM_16")
        paths.append(p)
    return paths


def bare(encoder, paths, batch: int) -> float:
    """Seconds for encoder.embed alone over all windows of the pre-decoded clips."""
    from audioaudit.audio.io import LoadOptions, load_audio
    from audioaudit.audio.windows import WindowSpec, cut

    waves = []
    for p in paths:
        clip = load_audio(p, LoadOptions(sample_rate=encoder.sample_rate))
        waves += [s.wave for s in cut(clip.wave, WindowSpec.of(encoder))]
    encoder.embed(waves[:batch])  # warm-up
    t = time.perf_counter()
    for i in range(0, len(waves), batch):
        encoder.embed(waves[i : i + batch])
    return time.perf_counter() - t


def end_to_end(encoder, paths, batch: int, workers: int, shard_size: int, out: Path) -> tuple[float, float]:
    """(total seconds, seconds after the first clip arrived from the decoders)."""
    from audioaudit.audio.decode import work_item
    from audioaudit.audio.io import LoadOptions
    from audioaudit.index.shards import EmbedSettings, embed_shards, plan_shards

    items = [work_item(str(p), p.name, p.name, None) for p in paths]
    plans = plan_shards(items, shard_size)
    first: list[float] = []
    t = time.perf_counter()
    embed_shards(plans, encoder, out, EmbedSettings(workers=workers, batch_size=batch,
                                                    opts=LoadOptions(sample_rate=encoder.sample_rate),
                                                    advance=lambda n=1: first or first.append(time.perf_counter())))
    end = time.perf_counter()
    return end - t, end - first[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="tiny-laion")
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=44100, help="sample rate of the files on disk")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--shard-size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    a = ap.parse_args()
    import torch

    from audioaudit.encoders import load_encoder

    if a.threads:
        torch.set_num_threads(a.threads)
    enc = load_encoder(a.encoder, batch_size=a.batch)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_files(Path(tmp), a.clips, a.seconds, a.rate)
        end_to_end(enc, paths[: min(4, len(paths))], a.batch, a.workers, a.shard_size, Path(tmp) / "warm")
        t_bare = bare(enc, paths, a.batch)
        t_e2e, t_steady = end_to_end(enc, paths, a.batch, a.workers, a.shard_size, Path(tmp) / "shards")
    print(f"encoder {a.encoder}: {a.clips} clips x {a.seconds:g} s at {a.rate} Hz stereo, batch {a.batch}, "
          f"workers {a.workers}, torch threads {torch.get_num_threads()}")
    print(f"bare model   {a.clips / t_bare:8.2f} clips/s ({t_bare:.2f} s)")
    print(f"end to end   {a.clips / t_e2e:8.2f} clips/s ({t_e2e:.2f} s, includes worker start-up)")
    n1 = a.clips - 1
    print(f"steady state {n1 / t_steady:8.2f} clips/s (after the first decoded clip: no pool start-up)")
    print(f"efficiency   {t_bare / t_e2e:8.3f} total, {(t_bare * n1 / a.clips) / t_steady:.3f} steady state  (goal >= 0.9)")


if __name__ == "__main__":
    main()
