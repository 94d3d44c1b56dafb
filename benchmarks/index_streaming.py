"""Large-index path benchmark: build IVF-PQ by streaming synthetic embedding shards.

Prints build time (sample / train / add), peak RSS of the build, memory per million
vectors (index file and resident after loading), recall@10 against exact search and
query speed-up, for near-copy queries (a stored vector + noise, the audit's case) and
fresh queries (new draws from the same distribution).

    .venv/bin/python benchmarks/index_streaming.py                 # 2M x 512
    .venv/bin/python benchmarks/index_streaming.py --ten-million   # 10M x 512 (20 GB of shards)
    .venv/bin/python benchmarks/index_streaming.py --n 200000 --queries 200   # quick

Measured on the shared 2-core box (IVF4096_HNSW32,PQ128x4fsr at 2M; IVF16384_HNSW32 at 10M;
re-rank x64): build 175 s / 1035 s, peak RSS 0.94 / 1.90 GiB, index 66-67 MiB per million
vectors, resident after load + search 217 / 968 MiB; recall@10 0.98 / 0.97 and recall@1
1.000 for near-copy queries at ~8-9 ms/query (exact in-RAM flat: ~60-300 ms/query).

Synthetic data: unit vectors around n/1000 centres of Zipf-like sizes with isotropic
noise, as in benchmarks/index_scale.py (so its IVF figures and these compare). Shards are
written by a child process, so the build's peak RSS is not the generator's.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing as mp
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def synth(n: int, d: int, seed: int, centers: int) -> np.ndarray:
    """Unit vectors around ``centers`` fixed centres of Zipf-like sizes, isotropic noise
    (centre cos ~0.7, intra-cluster cos ~0.5) — the distribution benchmarks/index_scale.py
    uses, drawn shard by shard (same centres and weights for every shard)."""
    base = np.random.default_rng(12345)
    mu = base.standard_normal((centers, d)).astype(np.float32)
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    w = 1.0 / np.arange(1, centers + 1) ** 0.5
    rng = np.random.default_rng(seed)
    x = mu[rng.choice(centers, size=n, p=w / w.sum())]
    x += rng.standard_normal((n, d), dtype=np.float32) / np.sqrt(d)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def write_shards(out: str, n: int, d: int, shard: int, centers: int) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = []
    Path(out).mkdir(parents=True, exist_ok=True)
    for i, start in enumerate(range(0, n, shard)):
        p = Path(out) / f"shard-{i:06d}.parquet"
        paths.append(str(p))
        if p.exists():
            continue
        m = min(shard, n - start)
        rows = np.arange(start, start + m, dtype=np.int64)
        emb = pa.FixedSizeListArray.from_arrays(pa.array(synth(m, d, 1000 + i, centers).ravel()), d)
        t = pa.table({"row": rows, "item_id": pa.array([f"clip{r:08d}.wav" for r in rows]), "embedding": emb})
        pq.write_table(t, str(p) + ".tmp", compression="none", row_group_size=32768)
        Path(str(p) + ".tmp").rename(p)
    return paths


def queries(index_dir: Path, nq: int, d: int, centers: int, seed: int = 7) -> dict[str, np.ndarray]:
    rr = np.load(index_dir / "rerank.npy", mmap_mode="r")
    rng = np.random.default_rng(seed)
    base = np.asarray(rr[np.sort(rng.choice(len(rr), nq, replace=False))], dtype=np.float32)
    near = base + 0.3 * rng.standard_normal(base.shape, dtype=np.float32) / np.sqrt(d)   # cos ~0.96
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    return {"near-copy": near, "fresh": synth(nq, d, 99, centers)}


def rss_now() -> int:
    from audioaudit.util.memwatch import proc_rss

    return proc_rss()[0]


def resident_in_child(index_dir: str, q: np.ndarray) -> tuple[int, int, int]:
    """(RSS of a fresh process, after LargeIndex.load, after a first search): the index's
    resident cost without the build's leftovers in this process."""
    from audioaudit.index.faiss.large import LargeIndex

    r0 = rss_now()
    idx = LargeIndex.load(index_dir)
    r1 = rss_now()
    idx.search(q, 10)
    return r0, r1, rss_now()


def build_or_reuse(a, paths: list[str], out: Path):
    from audioaudit.index.faiss import plan as faiss_plan
    from audioaudit.index.faiss import streaming

    source, n, dim = streaming.parquet_source(paths)
    if a.reuse_index and (out / faiss_plan.LARGE_META_FILE).exists():
        meta = json.loads((out / faiss_plan.LARGE_META_FILE).read_text())
        print("(reusing the index built earlier in --workdir)")
        return source, streaming.LargeBuildStats(**{k: meta[k] for k in streaming.LargeBuildStats.__dataclass_fields__})
    st = streaming.build_large_index(source, n, dim, out, faiss_plan.PlanOptions(opq=a.opq, fastscan=not a.pq8),
                                     options=streaming.LargeBuildOptions(on_disk=a.on_disk, rerank_dtype=a.rerank_dtype))
    return source, st


def print_build(st, n: int, rss0: int) -> float:
    fixed = st.estimate["fixed"]
    print(f"factory {st.factory}  train_size {st.plan['train_size']}")
    print(f"build: sample {st.sample_seconds:.1f} s, train {st.train_seconds:.1f} s, add {st.add_seconds:.1f} s, "
          f"total {st.total_seconds:.1f} s ({n / st.total_seconds:,.0f} vectors/s)")
    print(f"build peak RSS {st.peak_rss / 2**30:.2f} GiB (anon {st.peak_anon / 2**30:.2f} GiB; process before "
          f"build {rss0 / 2**30:.2f} GiB; estimate {st.estimate['build_peak'] / 2**30:.2f} GiB + interpreter)")
    print(f"vectors held at once: {st.max_vectors_held:,} of {n:,}")
    per_m_file = (st.index_file_bytes - fixed) / n * 1e6
    print(f"index file {st.index_file_bytes / 2**20:.1f} MiB = {per_m_file / 2**20:.1f} MiB per million vectors "
          f"+ {fixed / 2**20:.1f} MiB fixed; rerank file {st.rerank_file_bytes / 2**30:.2f} GiB")
    return per_m_file


def search_figures(a, idx, source, paths, out: Path, probes: list[int], n: int) -> dict:
    import faiss

    from audioaudit.index.faiss import large, streaming

    figures = {}
    x = np.concatenate(list(streaming.read_shard_embeddings(paths[0])))
    for name, q in queries(out, a.queries, a.dim, a.centers).items():
        t = time.perf_counter()
        _, truth = large.exact_search_streaming(source, q, 10)
        t_exact = (time.perf_counter() - t) / len(q)
        t = time.perf_counter()
        faiss.knn(q, x, 10, metric=faiss.METRIC_INNER_PRODUCT)
        t_flat = (time.perf_counter() - t) / len(q) * n / len(x)   # in-RAM flat, scaled
        print(f"[{name}] exact: {t_exact * 1e3:.1f} ms/query streamed from parquet, "
              f"{t_flat * 1e3:.1f} ms/query in-RAM flat (scaled from one shard)")
        for p in probes:
            idx.set_nprobe(p)
            idx.search(q[:16], 10)  # warm the page cache of rerank.npy's touched rows
            t = time.perf_counter()
            _, found = idx.search(q, 10)
            t_ann = (time.perf_counter() - t) / len(q)
            r, r1 = large.recall_at_k(found, truth, 10), float(np.mean(found[:, 0] == truth[:, 0]))
            print(f"  nprobe {p:5d}, rerank x{idx.rerank_factor}: recall@10 {r:.3f}  recall@1 {r1:.3f}  "
                  f"{t_ann * 1e3:.2f} ms/query  speed-up vs in-RAM flat {t_flat / t_ann:.1f}x")
            figures[f"{name}/{p}"] = {"recall10": r, "recall1": r1, "ms": t_ann * 1e3, "speedup_flat": t_flat / t_ann}
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2_000_000)
    ap.add_argument("--ten-million", action="store_true", help="n = 10M")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--shard-size", type=int, default=100_000)
    ap.add_argument("--centers", type=int, default=0, help="default n / 1000")
    ap.add_argument("--opq", action="store_true", help="OPQ rotation before the PQ")
    ap.add_argument("--pq8", action="store_true", help="classic 8-bit PQ instead of 4-bit fast-scan")
    ap.add_argument("--rerank-factor", type=int, default=0, help="candidates = k x this (default the plan's)")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--nprobe", default="", help="comma list; default plan.nprobe x 1,2,4")
    ap.add_argument("--on-disk", action="store_true", help="inverted lists in index.ivfdata (needs --pq8)")
    ap.add_argument("--rerank-dtype", default="float32")
    ap.add_argument("--workdir", default="", help="keep shards/index here (shards reused if present)")
    ap.add_argument("--reuse-index", action="store_true", help="search the index already in --workdir")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", default="", help="also write the figures here")
    a = ap.parse_args()
    n = 10_000_000 if a.ten_million else a.n
    a.centers = a.centers or max(10, n // 1000)

    import faiss

    from audioaudit.index.faiss import large

    if a.threads:
        faiss.omp_set_num_threads(a.threads)
    work = Path(a.workdir or tempfile.mkdtemp(prefix="audioaudit-bench-"))
    t0 = time.perf_counter()
    spawn = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(1, mp_context=spawn) as ex:
        paths = ex.submit(write_shards, str(work / "shards"), n, a.dim, a.shard_size, a.centers).result()
    print(f"shards: {len(paths)} x <= {a.shard_size} rows, {n} x {a.dim}, ready in {time.perf_counter() - t0:.1f} s")

    out = work / "index"
    out.mkdir(exist_ok=True)
    rss0 = rss_now()
    source, st = build_or_reuse(a, paths, out)
    per_m_file = print_build(st, n, rss0)
    qs = queries(out, 256, a.dim, a.centers)["near-copy"]
    with cf.ProcessPoolExecutor(1, mp_context=spawn) as ex:
        r0, r1, r2 = ex.submit(resident_in_child, str(out), qs).result()
    print(f"resident in a fresh process: +{(r1 - r0) / 2**20:.1f} MiB after load, +{(r2 - r0) / 2**20:.1f} MiB "
          f"after a first search = {(r2 - r0) / n * 1e6 / 2**20:.1f} MiB per million vectors, all included "
          f"(estimate {st.estimate['search_resident'] / 2**20:.1f} MiB)")

    idx = large.LargeIndex.load(out, rerank_factor=a.rerank_factor or None)
    probes = [int(x) for x in a.nprobe.split(",")] if a.nprobe else [st.plan["nprobe"] * f for f in (1, 2, 4)]
    figures = {"n": n, "dim": a.dim, "build": {k: v for k, v in st.__dict__.items() if k != "plan"},
               "plan": st.plan, "resident": [r0, r1, r2], "per_million_file": per_m_file,
               "search": search_figures(a, idx, source, paths, out, probes, n)}
    if a.json:
        Path(a.json).write_text(json.dumps(figures, indent=2, default=str))
    if not a.workdir:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
