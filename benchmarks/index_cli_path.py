"""The ``index build --index-type ivfpq`` path on synthetic embedding shards: what the CLI
does after embedding — ``index.assemble.assemble`` (items table + streamed IVF-PQ build), save —
then the train-vs-train searches ``index.build.write_derived`` runs (near-duplicate candidates,
reference table), timed on a sample of clips and extrapolated.

Prints the assemble step's time and peak RSS, and clip-level search throughput through
``index.faiss.facade`` (exact re-ranked cosines). Shards are in the pipeline's own format
(``index.shards.write_shard``, written by a child process so the build's RSS is its own).

    .venv/bin/python benchmarks/index_cli_path.py                   # 1M x 512
    .venv/bin/python benchmarks/index_cli_path.py --n 100000        # quick

Measured on the shared 2-core box, OMP_NUM_THREADS=1, 1M x 512 (125k clips x 8 windows,
489 shards): IVF4096_HNSW32,PQ128x4fs, assemble + save 43 s (sample 4, train 8, add 29),
peak RSS 1.16 GiB of which the items table is 0.22 GiB (the build's own estimate 0.36 GiB);
index.faiss 80 MiB, rerank.npy 1.91 GiB. Clip-level train-vs-train search ~475 windows/s:
the reference (10k clips) ~3 min, the near-duplicate pass over every clip ~35 min.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing as mp
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def write_shards(shard_dir: str, n: int, d: int, rows_per_shard: int, windows: int, centers: int) -> dict:
    """Shards of ``rows_per_shard`` rows: clips of ``windows`` windows (consecutive windows of a
    clip are near each other, clips cluster around ``centers`` centres)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from index_streaming import synth

    from audioaudit.index.shards import write_shard

    chosen = {}
    for i, start in enumerate(range(0, n, rows_per_shard)):
        m = min(rows_per_shard, n - start)
        clip_vec = synth((m + windows - 1) // windows, d, 1000 + i, centers)
        x = np.repeat(clip_vec, windows, axis=0)[:m]
        x += 0.5 * np.random.default_rng(i).standard_normal(x.shape, dtype=np.float32) / np.sqrt(d)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        rows, key = [], f"s{i:06d}"
        for r in range(m):
            clip = (start + r) // windows
            item = f"c{clip // 1000:04d}/clip{clip:08d}.wav"
            rows.append({"row": r, "item_id": item, "path": item, "label": f"c{clip % 8}", "segment": r % windows,
                         "start": 5.0 * (r % windows), "end": 5.0 * (r % windows) + 10.0, "duration": 5.0 * windows + 5,
                         "sha256": f"{clip:064x}", "size": 1000 + clip, "mtime_ns": 0, "pcm_hash": f"{clip:032x}"})
            chosen[item] = (key, f"{clip:064x}")
        write_shard(Path(shard_dir) / f"{key}.parquet", rows, x, {"members": [], "skipped": []})
    return chosen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--windows", type=int, default=8, help="windows per clip")
    ap.add_argument("--shard-rows", type=int, default=2048, help="rows per shard (256 files x 8 windows)")
    ap.add_argument("--sample-clips", type=int, default=1000, help="clips searched to time the train-vs-train step")
    ap.add_argument("--workdir", default="")
    a = ap.parse_args()

    from audioaudit import schema
    from audioaudit.index.assemble import assemble
    from audioaudit.index.faiss import facade as fx
    from audioaudit.index.options import BuildOptions
    from audioaudit.index.reference import item_codes
    from audioaudit.index.search import SearchOptions, search_clips
    from audioaudit.util.memwatch import PeakMemory, proc_rss

    work = Path(a.workdir or tempfile.mkdtemp(prefix="audioaudit-cli-bench-"))
    (work / schema.SHARDS_DIR).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
        chosen = ex.submit(write_shards, str(work / schema.SHARDS_DIR), a.n, a.dim, a.shard_rows, a.windows,
                           max(10, a.n // 1000)).result()
    print(f"shards: {a.n:,} x {a.dim} in {a.n // a.shard_rows + 1} shards, written in {time.perf_counter() - t0:.0f} s")

    opts = BuildOptions(index_type="ivfpq", progress=False)
    order = {k: i for i, k in enumerate(sorted(chosen))}
    rss0 = proc_rss()[0]
    with PeakMemory() as mem:
        t = time.perf_counter()
        items, index, params = assemble(work, chosen, order, a.dim, opts)
        fx.save(index, work / schema.INDEX_FILE)
        t_build = time.perf_counter() - t
    b = fx.build_record(index)
    print(f"assemble + save ({params.describe()}): {t_build:.0f} s "
          f"(sample {b['sample_seconds']:.0f} s, train {b['train_seconds']:.0f} s, add {b['add_seconds']:.0f} s)")
    print(f"peak RSS {mem.peak / 2**30:.2f} GiB (process before {rss0 / 2**30:.2f} GiB; the IVF-PQ build alone "
          f"{b['peak_rss'] / 2**30:.2f} GiB, estimate {b['estimate']['build_peak'] / 2**30:.2f} GiB); "
          f"items table {items.memory_usage(deep=True).sum() / 2**20:.0f} MiB; vectors held at once "
          f"{b['max_vectors_held']:,} of {a.n:,}")
    print(f"on disk: index.faiss {b['index_file_bytes'] / 2**20:.0f} MiB, rerank.npy {b['rerank_file_bytes'] / 2**30:.2f} GiB")

    row_code, ids = item_codes(items)
    pick = np.sort(np.random.default_rng(0).choice(len(ids), min(a.sample_clips, len(ids)), replace=False))
    rows = np.flatnonzero(np.isin(row_code, pick))
    vecs = fx.reconstruct(index, rows)
    for what, kw in (("reference (depth 1)", {}), ("near-dup (>= 0.97, k <= 1024)", {"more_while_above": 0.97,
                                                                                     "max_k": 1024})):
        t = time.perf_counter()
        hits = search_clips(index, params, vecs, row_code[rows], row_code, 1, SearchOptions(exclude=np.arange(len(ids)), **kw))
        dt = time.perf_counter() - t
        print(f"{what}: {len(pick)} clips ({len(rows)} windows) in {dt:.1f} s = {len(rows) / dt:.0f} windows/s; "
              f"all {len(ids):,} clips would take ~{dt * len(ids) / len(pick) / 60:.0f} min; {len(hits)} hits")
    if not a.workdir:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
