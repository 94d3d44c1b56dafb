"""The large-index path: IVF-PQ trained on a sample, filled shard by shard, re-ranked from disk."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from audioaudit.index.faiss import large as faiss_large
from audioaudit.index.faiss import plan as faiss_plan
from audioaudit.index.faiss import streaming
from audioaudit.index.faiss.plan import PlanOptions
from audioaudit.index.faiss.streaming import LargeBuildOptions
from audioaudit.index.shards import write_shard
from audioaudit.util.memwatch import PeakMemory

N, DIM, SHARD = 20_000, 64, 4_000


def clustered(n: int, d: int, seed: int, centres: int = 40) -> np.ndarray:
    mu = np.random.default_rng(123).standard_normal((centres, d)).astype(np.float32)
    rng = np.random.default_rng(seed)
    x = mu[rng.integers(0, centres, n)] / np.sqrt(d) + rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write_shards(folder: Path, n: int, d: int, shard: int) -> list[Path]:
    """Shards in the pipeline's own format (audioaudit.index.shards.write_shard)."""
    paths = []
    for i, s in enumerate(range(0, n, shard)):
        x = clustered(min(shard, n - s), d, seed=i)
        rows = [{"row": r, "item_id": f"clip{s + r:06d}.wav", "path": f"clip{s + r:06d}.wav"} for r in range(len(x))]
        paths.append(folder / f"shard{i:03d}.parquet")
        write_shard(paths[-1], rows, x, {"members": [], "skipped": []})
    return paths


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[Path]:
    return write_shards(tmp_path_factory.mktemp("shards"), N, DIM, SHARD)


@pytest.fixture(scope="module")
def built(shards, tmp_path_factory):
    source, n, dim = streaming.parquet_source(shards)
    out = tmp_path_factory.mktemp("large")
    stats = streaming.build_large_index(source, n, dim, out, PlanOptions(train_size=10_000))
    return out, stats


def near_copies(shards: list[Path], rows: np.ndarray, noise: float = 0.3) -> np.ndarray:
    source, _, _ = streaming.parquet_source(shards)
    allx = np.concatenate(list(source()))
    q = allx[rows] + noise * np.random.default_rng(5).standard_normal((len(rows), DIM)).astype(np.float32) / np.sqrt(DIM)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def test_plan_is_sized_by_n_and_fits_the_memory_goal():
    p10 = faiss_plan.plan_large_index(10_000_000, 512)
    assert (p10.nlist, p10.pq_m, p10.pq_bits, p10.hnsw_quantizer, p10.two_level) == (16384, 128, 4, True, True)
    assert p10.factory == "IVF16384_HNSW32,PQ128x4fsr" and p10.code_bytes == 64
    est = faiss_plan.estimate_memory(p10, shard_rows=100_000)
    assert est.bytes_per_vector == 72  # 64 B of PQ code + 8 B id
    assert est.build_peak < 4 * 2**30  # DESIGN.md: 10M vectors streamed in <= 4 GiB
    assert est.search_resident < 1 * 2**30
    p2 = faiss_plan.plan_large_index(2_000_000, 512, PlanOptions(fastscan=False, opq=True))
    assert p2.factory == "OPQ64,IVF4096_HNSW32,PQ64np" and p2.train_size == 40 * 4096 and p2.code_bytes == 64
    small = faiss_plan.plan_large_index(N, DIM)
    assert small.nlist * faiss_plan.MIN_POINTS_PER_CENTROID <= N and DIM % small.pq_m == 0 and not small.hnsw_quantizer
    with pytest.raises(ValueError):
        faiss_plan.plan_large_index(10, DIM)


def test_streaming_build_never_holds_all_vectors(built):
    out, st = built
    assert st.n_vectors == N
    # the training sample plus one shard at most, never the whole corpus
    assert st.max_vectors_held <= st.plan["train_size"] + SHARD < N
    assert st.peak_rss >= st.rss_start > 0 and st.peak_anon > 0
    assert st.rerank_file_bytes >= N * DIM * 4
    # the file holds what the memory accounting says: codes + ids + fixed (centroids, PQ tables)
    est = st.estimate["codes"] + st.estimate["ids"] + st.estimate["fixed"]
    assert abs(st.index_file_bytes - est) / est < 0.15
    for name in (faiss_plan.INDEX_FILE, faiss_plan.RERANK_FILE, faiss_plan.LARGE_META_FILE):
        assert (out / name).is_file()
    assert not (out / ".large-tmp").exists()


def test_recall_against_exact_search(built, shards):
    out, _ = built
    idx = faiss_large.LargeIndex.load(out)
    assert idx.ntotal == N
    rows = np.random.default_rng(0).choice(N, 200, replace=False)
    q = near_copies(shards, rows)
    source, _, _ = streaming.parquet_source(shards)
    exact_s, exact_i = faiss_large.exact_search_streaming(source, q, 10)
    assert (exact_i[:, 0] == rows).all()  # near copies: the exact top-1 is the source row
    idx.set_nprobe(idx.meta["plan"]["nlist"] // 4)
    sims, ids = idx.search(q, 10)
    assert faiss_large.recall_at_k(ids, exact_i, 10) >= 0.95
    assert (ids[:, 0] == rows).mean() >= 0.99
    same = ids == exact_i  # re-ranked similarities are the exact cosines
    assert np.allclose(sims[same], exact_s[same], atol=1e-5)
    idx.set_nprobe(1)
    _, ids1 = idx.search(q, 10)
    assert faiss_large.recall_at_k(ids1, exact_i, 10) < faiss_large.recall_at_k(ids, exact_i, 10)


def test_on_disk_lists_give_the_same_results(shards, tmp_path):
    source, n, dim = streaming.parquet_source(shards)
    plan = faiss_plan.plan_large_index(n, dim, PlanOptions(fastscan=False, train_size=10_000))
    with pytest.raises(ValueError, match="8-bit PQ"):
        streaming.build_large_index(source, n, dim, tmp_path / "x", options=LargeBuildOptions(on_disk=True))  # fast-scan default
    streaming.build_large_index(source, n, dim, tmp_path / "ram", plan)
    st = streaming.build_large_index(source, n, dim, tmp_path / "disk", plan, options=LargeBuildOptions(on_disk=True))
    disk = tmp_path / "disk"
    assert (disk / faiss_plan.IVFDATA_FILE).stat().st_size == N * (plan.code_bytes + 8)
    assert not list(disk.glob("**/block_*"))
    assert st.index_file_bytes == (disk / faiss_plan.INDEX_FILE).stat().st_size + (disk / faiss_plan.IVFDATA_FILE).stat().st_size
    q = near_copies(shards, np.arange(0, N, 97))
    a = faiss_large.LargeIndex.load(tmp_path / "ram", nprobe=32).search(q, 10)
    b = faiss_large.LargeIndex.load(disk, nprobe=32).search(q, 10)
    assert np.array_equal(a[1], b[1]) and np.allclose(a[0], b[0])
    assert (a[1][:, 0] == np.arange(0, N, 97)).all()


def test_opq_hnsw_two_level_path(tmp_path, monkeypatch):
    monkeypatch.setattr(streaming, "OPQ_ITERS", 4)  # the path, not the rotation's quality, is under test
    x = clustered(6_000, 16, seed=9)
    plan = replace(faiss_plan.plan_large_index(len(x), 16, PlanOptions(nlist=64, opq=True)), hnsw_quantizer=True, two_level=True)
    assert plan.factory == "OPQ4,IVF64_HNSW32,PQ4x4fsr"
    st = streaming.build_large_index(lambda: (x[i : i + 1500] for i in range(0, len(x), 1500)), len(x), 16, tmp_path, plan)
    idx = faiss_large.LargeIndex.load(tmp_path, nprobe=16)
    _, truth = faiss_large.exact_search_streaming(lambda: [x], x[:100], 10)
    _, ids = idx.search(x[:100], 10)
    assert (ids[:, 0] == np.arange(100)).all() and faiss_large.recall_at_k(ids, truth, 10) >= 0.9
    assert st.max_vectors_held <= plan.train_size + 1500


def test_without_rerank_scores_are_pq_approximations(tmp_path, shards):
    source, n, dim = streaming.parquet_source(shards)
    streaming.build_large_index(source, n, dim, tmp_path, PlanOptions(train_size=10_000),
                                options=LargeBuildOptions(rerank_dtype=None))
    assert not (tmp_path / faiss_plan.RERANK_FILE).exists()
    q = near_copies(shards, np.arange(0, N, 211))
    sims, ids = faiss_large.LargeIndex.load(tmp_path, nprobe=64).search(q, 5)
    exact = np.einsum("qd,qd->q", q, np.concatenate(list(source()))[ids[:, 0]])
    err = np.abs(sims[:, 0] - exact)
    assert err.mean() < 0.1 and err.max() < 0.25 and not np.allclose(sims[:, 0], exact, atol=1e-6)


def test_short_source_is_an_error(tmp_path):
    x = clustered(12_000, 32, seed=1)
    with pytest.raises(ValueError, match="hold 6000 vectors, expected 12000"):
        streaming.build_large_index(lambda: [x[:6000]], 12_000, 32, tmp_path, PlanOptions(nlist=64))


def test_peak_memory_sees_an_allocation():
    import mmap

    with PeakMemory(interval=0.005) as mem:
        # a fresh anonymous mapping, touched page by page: the allocator cannot hand back
        # memory an earlier test freed (np.ones could, and then RSS would not move)
        block = mmap.mmap(-1, 64 * 2**20)
        for off in range(0, len(block), 4096):
            block[off] = 1
        mem.sample()
        block.close()
    assert mem.peak - mem.start >= 48 * 2**20
    assert mem.maxrss >= mem.peak * 0.9


def test_rerank_file_round_trip(tmp_path):
    from audioaudit.index.faiss.rerank import RerankStore, RerankWriter

    x = clustered(1000, 8, seed=3)
    w = RerankWriter(tmp_path / "r.npy", 1000, 8, "float16")
    for s in (600, 0, 300):  # any order of row ranges
        w.write(s, x[s : s + 300] if s < 600 else x[s:])
    w.close()
    assert np.allclose(np.load(tmp_path / "r.npy"), x, atol=1e-3)  # a plain .npy file
    store = RerankStore(tmp_path / "r.npy")
    ids = np.array([999, 5, 6, 7, 5, 0])
    got = store.take(ids)
    assert got.dtype == np.float32 and got.shape == (6, 8) and np.allclose(got, x[ids], atol=1e-3)
