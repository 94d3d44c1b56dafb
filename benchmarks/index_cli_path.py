"""The ``index build --index-type ivfpq`` path on synthetic embedding shards: what the CLI
does after embedding — ``index.assemble.assemble`` (items table + streamed IVF-PQ build), save —
then the train-vs-train searches ``index.build.write_derived`` runs (near-duplicate candidates,
reference table), timed on a sample of clips and extrapolated.

Prints the assemble step's time and peak RSS, and clip-level search throughput through
``index.faiss.facade`` (exact re-ranked cosines). Shards are in the pipeline's own format
(``index.shards.write_shard``, written by a child process so the build's RSS is its own).

    .venv/bin/python benchmarks/index_cli_path.py                   # 1M x 512
    .venv/bin/python benchmarks/index_cli_path.py --n 100000        # quick

Measured on the shared 2-core box, OMP_NUM_THREADS=1, with `make test` running beside it:
1M x 512 (124,928 clips x 8 windows, 976 planted near duplicates): IVF4096_HNSW32,PQ128x4fs,
assemble 83 s, build peak RSS 1.15 GiB (items table 102 MiB); near-duplicate pass 177 s, 976/976
planted found (the former every-window pass: 976/976, ~91 min extrapolated). 10M x 512
(--no-near): assemble 1299 s, reference + save 1741 s, build peak RSS 5.28 GiB (items 992 MiB),
audit of 1,000 clips in a fresh process 5.60 GiB peak (goal 4 GiB: not met).
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


VARIANTS = ("same", "trim", "pad")  # planted near duplicates: all windows, first/last dropped, a new first window


def _clip_rows(item: str, clip: int, n_win: int, label: str) -> list[dict]:
    return [{"row": 0, "item_id": item, "path": item, "label": label, "segment": w, "start": 5.0 * w,
             "end": 5.0 * w + 10.0, "duration": 5.0 * n_win + 5, "sha256": f"{clip:064x}", "size": 1000 + clip,
             "mtime_ns": 0, "pcm_hash": f"{clip:032x}"} for w in range(n_win)]


def write_shards(shard_dir: str, n: int, d: int, rows_per_shard: int, windows: int, centers: int,
                 plant: int) -> tuple[dict, list[tuple[str, str, str]]]:
    """Shards of about ``rows_per_shard`` rows: clips of ``windows`` windows (consecutive windows
    of a clip are near each other, clips cluster around ``centers`` centres); the last
    ``plant`` clips of each shard are near duplicates (window cos ~0.995) of earlier clips
    of the shard, in the :data:`VARIANTS`. Returns (chosen, planted (original, copy, variant))."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from index_streaming import synth

    from audioaudit.index.shards import write_shard

    chosen, planted, clip, written = {}, [], 0, 0
    for i in range(max(1, n // rows_per_shard)):
        rng = np.random.default_rng(i)
        n_clips = rows_per_shard // windows
        clip_vec = synth(n_clips, d, 1000 + i, centers)
        vecs = [clip_vec[c] + 0.5 * rng.standard_normal((windows, d), dtype=np.float32) / np.sqrt(d)
                for c in range(n_clips - plant)]
        names = [f"c{(clip + c) // 1000:04d}/clip{clip + c:08d}.wav" for c in range(n_clips)]
        for j, c in enumerate(rng.choice(n_clips - plant, plant, replace=False)):
            v = vecs[c] + 0.1 * rng.standard_normal(vecs[c].shape, dtype=np.float32) / np.sqrt(d)
            kind = VARIANTS[(i * plant + j) % len(VARIANTS)]
            if kind == "trim":
                v = v[1:-1]
            elif kind == "pad":
                v = np.concatenate([rng.standard_normal((1, d), dtype=np.float32), v])
            vecs.append(v)
            planted.append((names[c], names[n_clips - plant + j], kind))
        rows, key = [], f"s{i:06d}"
        for c, v in enumerate(vecs):
            rows += _clip_rows(names[c], clip + c, len(v), f"c{(clip + c) % 8}")
            chosen[names[c]] = (key, f"{clip + c:064x}")
        for r, row in enumerate(rows):
            row["row"] = r
        x = np.concatenate(vecs)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        write_shard(Path(shard_dir) / f"{key}.parquet", rows, x, {"members": [], "skipped": []})
        clip += n_clips
        written += len(x)
    return chosen, planted


def write_index_folder(work: Path, items, index, params, opts) -> float:
    """What ``index build`` writes after assembling (``build._finish``): index.faiss,
    items.parquet, duplicates + reference (``write_derived``; the near-duplicate pass is
    timed on its own above, so exact groups only here: the synthetic clips have no audio to
    verify candidates on), encoder.json, manifest.json — so :func:`store.open_index` opens
    it like any index. Returns seconds."""
    import dataclasses

    from audioaudit import schema
    from audioaudit.index.build import write_derived
    from audioaudit.index.faiss import facade as fx
    from audioaudit.util import atomic

    t = time.perf_counter()
    fx.save(index, work / schema.INDEX_FILE)
    atomic.write_parquet(items, work / schema.ITEMS_FILE)
    write_derived(work, index, params, items, dataclasses.replace(opts, near_dups=False), str(work))
    atomic.write_json(work / schema.ENCODER_FILE, {"spec": None, "name": "synthetic", "identity": {"name": "synthetic"}})
    atomic.write_json(work / schema.MANIFEST_FILE, {"name": work.name, "state": "complete", "corpus_root": str(work),
                                                    "index": params.as_dict(), "request": opts.request()})
    return time.perf_counter() - t


def audit_in_child(index_dir: str, n_queries: int, windows: int) -> dict:
    """The audit's index side in a fresh process: open the index, its sources and cached
    reference, search ``n_queries`` clips of ``windows`` windows (stored vectors + noise:
    near copies) and build the match and query tables. Returns seconds and this process'
    peak RSS (ru_maxrss)."""
    import resource

    import pandas as pd

    from audioaudit.audit.queries import QuerySet
    from audioaudit.audit.score import IndexView, score_queries
    from audioaudit.audit.summary import reference_for
    from audioaudit.audit.tables import match_table, query_table
    from audioaudit.audit.threshold import Threshold
    from audioaudit.index import store
    from audioaudit.index.faiss import facade as fx

    t0 = time.perf_counter()
    ix = store.open_index(index_dir)
    t_open = time.perf_counter() - t0
    view = IndexView.of(ix)
    ref = reference_for(ix, view.params, view.src)
    rng = np.random.default_rng(3)
    rows = np.sort(rng.choice(ix.index.ntotal, n_queries * windows, replace=False))
    v = fx.reconstruct(ix.index, rows)
    v += 0.3 * rng.standard_normal(v.shape, dtype=np.float32) / np.sqrt(v.shape[1])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    table = pd.DataFrame({"query_id": [f"q{i:05d}.wav" for i in range(n_queries)], "path": "", "label": None,
                          "duration": 5.0 * windows, "sample_rate": 16000, "n_segments": windows,
                          "pcm_hash": [f"q{i}" for i in range(n_queries)]})
    q_clip = np.repeat(np.arange(n_queries), windows)
    qs = QuerySet(table, v, q_clip, np.zeros(len(v)), np.zeros(len(v)))
    t = time.perf_counter()
    hits, _, sims, background = score_queries(view, qs)
    matches = match_table(ix, qs, hits, view.src, background, 5, Threshold(0.5, "score"))
    query_table(ix, qs, hits, view.src, matches, sims, background)
    t_search = time.perf_counter() - t
    return {"open_s": t_open, "search_s": t_search, "total_s": time.perf_counter() - t0, "reference_rows": len(ref),
            "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "items_bytes": int(ix.items.memory_usage(deep=True).sum())}


def near_duplicate_figures(index, params, items, planted: list[tuple[str, str, str]], a) -> None:
    """The near-duplicate pass the build runs (one probe window per clip) over every clip,
    timed, with recall on the planted pairs; then the former pass (every window searched)
    on a sample of clips, timed and extrapolated, with its recall on the planted pairs
    inside the sample."""
    from audioaudit.index.faiss import facade as fx
    from audioaudit.index.near_duplicates import MAX_NEAR_K, coverage, near_duplicate_pairs
    from audioaudit.index.reference import item_codes, rows_by_code
    from audioaudit.index.search import SearchOptions, search_clips

    truth = {tuple(sorted(p[:2])): p[2] for p in planted}
    t = time.perf_counter()
    pairs = near_duplicate_pairs(index, params, items, a.threshold)
    dt = time.perf_counter() - t
    found = {tuple(sorted(p[:2])) for p in pairs}
    print(f"near-duplicate pass (one probe per clip, >= {a.threshold}): all {items['item_id'].nunique():,} clips "
          f"in {dt:.0f} s = {dt / 60:.1f} min; {len(pairs)} pairs, {len(found & truth.keys())} of {len(truth)} "
          f"planted found ({len(found - truth.keys())} other pairs)")
    for v in VARIANTS:
        want = [k for k, kind in truth.items() if kind == v]
        print(f"  planted {v}: {sum(k in found for k in want)} / {len(want)}")

    row_code, ids = item_codes(items)
    code = {c: i for i, c in enumerate(ids)}
    pick = np.sort(np.random.default_rng(0).choice(len(ids), min(a.sample_clips, len(ids)), replace=False))
    pick = np.union1d(pick, [code[x] for pair in truth for x in pair])  # every planted pair, both clips
    rows = np.flatnonzero(np.isin(row_code, pick))
    t = time.perf_counter()
    hits = search_clips(index, params, fx.reconstruct(index, rows), row_code[rows], row_code, 1,
                        SearchOptions(exclude=np.arange(len(ids)), more_while_above=a.threshold, max_k=MAX_NEAR_K))
    dt = time.perf_counter() - t
    rows_of = rows_by_code(row_code)
    m = hits.sim >= a.threshold
    old = {tuple(sorted((ids[x], ids[y]))) for x, y in zip(hits.qclip[m], hits.source[m])
           if coverage(fx.reconstruct(index, rows_of[x]), fx.reconstruct(index, rows_of[y])) >= a.threshold}
    in_sample = list(truth)
    print(f"former pass (every window): {len(pick)} clips ({len(rows)} windows: a random sample + both clips "
          f"of every planted pair) in {dt:.1f} s = "
          f"{len(rows) / dt:.0f} windows/s; all {len(ids):,} clips would take ~{dt * len(ids) / len(pick) / 60:.0f} min; "
          f"planted pairs: {sum(k in old for k in in_sample)} / {len(in_sample)} found "
          f"(one-probe pass: {sum(k in found for k in in_sample)} / {len(in_sample)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--windows", type=int, default=8, help="windows per clip")
    ap.add_argument("--shard-rows", type=int, default=2048, help="rows per shard (256 files x 8 windows)")
    ap.add_argument("--sample-clips", type=int, default=1000, help="clips (besides the planted pairs) searched "
                    "with the former every-window near-duplicate pass, to time and extrapolate it")
    ap.add_argument("--plant", type=int, default=2, help="near-duplicate clips planted per shard")
    ap.add_argument("--threshold", type=float, default=0.97, help="near-duplicate coverage threshold")
    ap.add_argument("--workdir", default="")
    ap.add_argument("--no-near", action="store_true", help="skip the near-duplicate figures (10M: the build's "
                    "memory and the audit only)")
    ap.add_argument("--audit-queries", type=int, default=1000, help="query clips of the audit step (0: none)")
    a = ap.parse_args()

    from audioaudit import schema
    from audioaudit.index.assemble import assemble
    from audioaudit.index.faiss import facade as fx
    from audioaudit.index.options import BuildOptions
    from audioaudit.util.memwatch import PeakMemory, proc_rss

    work = Path(a.workdir or tempfile.mkdtemp(prefix="audioaudit-cli-bench-"))
    (work / schema.SHARDS_DIR).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
        chosen, planted = ex.submit(write_shards, str(work / schema.SHARDS_DIR), a.n, a.dim, a.shard_rows,
                                    a.windows, max(10, a.n // 1000), a.plant).result()
    print(f"shards: ~{a.n:,} x {a.dim} in {max(1, a.n // a.shard_rows)} shards ({len(chosen):,} clips, "
          f"{len(planted)} planted near duplicates), written in {time.perf_counter() - t0:.0f} s")

    opts = BuildOptions(index_type="ivfpq", progress=False)
    order = {k: i for i, k in enumerate(sorted(chosen))}
    rss0 = proc_rss()[0]
    with PeakMemory() as mem:
        t = time.perf_counter()
        items, index, params = assemble(work, chosen, order, a.dim, opts)
        t_build = time.perf_counter() - t
        t_write = write_index_folder(work, items, index, params, opts)
    b = fx.build_record(index)
    print(f"assemble ({params.describe()}): {t_build:.0f} s "
          f"(sample {b['sample_seconds']:.0f} s, train {b['train_seconds']:.0f} s, add {b['add_seconds']:.0f} s)")
    print(f"save index + items, duplicates, reference ({opts.max_reference:,} clips), manifest: {t_write:.0f} s")
    print(f"build peak RSS {mem.peak / 2**30:.2f} GiB (process before {rss0 / 2**30:.2f} GiB; the IVF-PQ build alone "
          f"{b['peak_rss'] / 2**30:.2f} GiB, estimate {b['estimate']['build_peak'] / 2**30:.2f} GiB); "
          f"items table {items.memory_usage(deep=True).sum() / 2**20:.0f} MiB; vectors held at once "
          f"{b['max_vectors_held']:,} of {a.n:,}")
    print(f"on disk: index.faiss {b['index_file_bytes'] / 2**20:.0f} MiB, rerank.npy {b['rerank_file_bytes'] / 2**30:.2f} GiB")

    if a.audit_queries:
        del items, index  # the audit runs in a fresh process, as a user's would
        with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
            r = ex.submit(audit_in_child, str(work), a.audit_queries, a.windows).result()
        print(f"audit (fresh process): open {r['open_s']:.0f} s, {a.audit_queries} query clips x {a.windows} windows "
              f"searched + tables {r['search_s']:.0f} s, total with sources and reference {r['total_s']:.0f} s; "
              f"peak RSS {r['peak_rss'] / 2**30:.2f} GiB (items table {r['items_bytes'] / 2**20:.0f} MiB)")
        items, index, params = None, None, None
    if not a.no_near:
        from audioaudit.index import store

        ix = store.open_index(work)
        near_duplicate_figures(ix.index, ix.params, ix.items, planted, a)
    if not a.workdir:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
