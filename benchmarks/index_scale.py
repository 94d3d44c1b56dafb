"""ANN index quality: recall@10 against exact search and query speed-up, on synthetic
clustered unit vectors (a stand-in for audio embeddings: many classes of varied size,
plus near-duplicate queries).

    python benchmarks/index_scale.py --n 100000
    python benchmarks/index_scale.py --n 1000000 --nprobe 16,32,64 --skip-hnsw

Prints one line per configuration: build time, ms/query, recall@10, speed-up vs flat.
The index parameters are the ones `audioaudit index build --index-type auto` chooses
(``audioaudit.index.faiss.facade.choose_params``) plus the sweep you ask for. Goal (DESIGN.md):
recall@10 ≥ 0.99 at ≥ 20× speed-up at 1M × 512.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def clustered(n: int, dim: int, clusters: int, seed: int, chunk: int = 100_000) -> np.ndarray:
    """Unit vectors around ``clusters`` centres of Zipf-like sizes (intra-cluster cos ≈ 0.5)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    w = 1.0 / np.arange(1, clusters + 1) ** 0.5
    w /= w.sum()
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        c = rng.choice(clusters, size=m, p=w)
        x = centres[c] + rng.standard_normal((m, dim)).astype(np.float32) * (1.0 / np.sqrt(dim))
        out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def make_queries(base: np.ndarray, nq: int, seed: int) -> np.ndarray:
    """Half near-copies of database vectors, half fresh draws from the same clusters."""
    rng = np.random.default_rng(seed + 1)
    dim = base.shape[1]
    half = nq // 2
    near = base[rng.choice(len(base), half, replace=False)]
    near = near + rng.standard_normal(near.shape).astype(np.float32) * (0.3 / np.sqrt(dim))
    fresh = clustered(nq - half, dim, clusters=max(10, len(base) // 1000), seed=seed)
    q = np.concatenate([near, fresh]).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def timed_search(index, q: np.ndarray, k: int, params) -> tuple[np.ndarray, float]:
    from audioaudit.index.faiss import facade as fx

    t = time.perf_counter()
    _, ids = fx.search(index, q, k, params)
    return ids, time.perf_counter() - t


def recall_at(ids: np.ndarray, truth: np.ndarray, k: int) -> float:
    hits = [len(set(a[:k]) & set(b[:k])) for a, b in zip(ids, truth)]
    return float(np.mean(hits)) / k


def run_one(name, params, base, q, truth, flat_s, k) -> None:
    from audioaudit.index.faiss import facade as fx

    t = time.perf_counter()
    train = base[np.random.default_rng(0).choice(len(base), min(len(base), fx.train_sample_size(params)), replace=False)] if fx.train_sample_size(params) else None
    index = fx.build(params, [base[i : i + 200_000] for i in range(0, len(base), 200_000)], train)
    build_s = time.perf_counter() - t
    for p in sweep(params):
        ids, s = timed_search(index, q, k, p)
        print(
            f"{name:<6} {p.describe():<44} build {build_s:7.1f} s  {1000 * s / len(q):7.3f} ms/query  "
            f"recall@{k} {recall_at(ids, truth, k):.4f}  speed-up {flat_s / s:6.1f}x",
            flush=True,
        )


_SWEEP: dict[str, list[int]] = {}


def sweep(params):
    from dataclasses import replace

    vals = _SWEEP.get(params.type) or [None]
    for v in vals:
        if v is None:
            yield params
        elif params.type == "ivf":
            yield replace(params, nprobe=v)
        else:
            yield replace(params, ef_search=v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--nprobe", default="", help="comma list of nprobe values to sweep")
    ap.add_argument("--nlist", type=int, default=None)
    ap.add_argument("--ef-search", default="", help="comma list of efSearch values to sweep")
    ap.add_argument("--skip-hnsw", action="store_true")
    ap.add_argument("--types", default="ivf,hnsw", help="which ANN types to measure")
    ap.add_argument("--threads", type=int, default=0, help="faiss OpenMP threads (0 = default)")
    a = ap.parse_args()
    import faiss

    from audioaudit.index.faiss import facade as fx

    if a.threads:
        faiss.omp_set_num_threads(a.threads)
    _SWEEP["ivf"] = [int(v) for v in a.nprobe.split(",") if v]
    _SWEEP["hnsw"] = [int(v) for v in a.ef_search.split(",") if v]
    t = time.perf_counter()
    base = clustered(a.n, a.dim, clusters=max(10, a.n // 1000), seed=0)
    q = make_queries(base, a.queries, seed=0)
    print(f"data: {a.n} x {a.dim} clustered unit vectors, {a.queries} queries ({time.perf_counter() - t:.1f} s)", flush=True)
    flat = fx.build(fx.choose_params(a.n, a.dim, "flat"), [base])
    truth, flat_s = timed_search(flat, q, a.k, fx.choose_params(a.n, a.dim, "flat"))
    print(f"flat   exact                                        {1000 * flat_s / len(q):7.3f} ms/query", flush=True)
    del flat
    print(f"auto choice at n={a.n}: {fx.choose_params(a.n, a.dim, 'auto').describe()}")
    types = a.types.split(",")
    if "ivf" in types:
        run_one("ivf", fx.choose_params(a.n, a.dim, "ivf", nlist=a.nlist), base, q, truth, flat_s, a.k)
    if "hnsw" in types and not a.skip_hnsw:
        run_one("hnsw", fx.choose_params(a.n, a.dim, "hnsw"), base, q, truth, flat_s, a.k)


if __name__ == "__main__":
    main()
