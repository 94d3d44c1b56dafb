"""A built large index: IVF-PQ candidates re-ranked exactly on ``rerank.npy`` (see :mod:`.streaming`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from audioaudit.index.faiss.plan import INDEX_FILE, LARGE_META_FILE, MAX_CANDIDATES, RERANK_FILE
from audioaudit.index.faiss.rerank import RerankStore
from audioaudit.index.faiss.streaming import BatchSource


class LargeIndex:
    """An IVF-PQ index written by :func:`build_large_index`, with exact re-ranking.

    ``search(q, k)`` returns ``(similarities, ids)`` like a flat inner-product index:
    cosine similarities (exact when ``rerank.npy`` exists), ids = ``items.row``, -1 pads.
    """

    def __init__(self, index, rerank: RerankStore | None, meta: dict, nprobe: int | None = None,
                 rerank_factor: int | None = None):
        self.index, self.rerank, self.meta = index, rerank, meta
        plan = meta["plan"]
        self.rerank_factor = rerank_factor or plan["rerank_factor"]
        self.set_nprobe(nprobe or plan["nprobe"])

    @classmethod
    def load(cls, index_dir: str | Path, *, nprobe: int | None = None,
             rerank_factor: int | None = None, mmap: bool = False) -> "LargeIndex":
        import faiss

        d = Path(index_dir)
        meta = json.loads((d / LARGE_META_FILE).read_text())
        flags = faiss.IO_FLAG_ONDISK_SAME_DIR if meta.get("on_disk") else 0
        if mmap and not meta.get("on_disk"):
            flags |= faiss.IO_FLAG_MMAP
        index = faiss.read_index(str(d / INDEX_FILE), flags)
        rr = RerankStore(d / RERANK_FILE) if (d / RERANK_FILE).exists() else None
        return cls(index, rr, meta, nprobe, rerank_factor)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def set_nprobe(self, nprobe: int) -> None:
        import faiss

        ps = faiss.ParameterSpace()
        self.nprobe = int(nprobe)
        ps.set_index_parameter(self.index, "nprobe", self.nprobe)
        if self.meta["plan"]["hnsw_quantizer"]:
            ps.set_index_parameter(self.index, "quantizer_efSearch", max(64, 2 * self.nprobe))

    def search(self, queries: np.ndarray, k: int, rows: np.ndarray | None = None,
               rerank_factor: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``rows``: search only these vector ids (a faiss IDSelector inside the inverted lists);
        ``rerank_factor``: candidates re-ranked = k x this (default the plan's)."""
        import faiss

        q = np.ascontiguousarray(queries, dtype=np.float32)
        factor = int(rerank_factor or self.rerank_factor)
        kk = max(k, min(k * factor, MAX_CANDIDATES)) if self.rerank is not None else k
        # queries per batch: the gathered candidates (batch x kk x d floats) stay under ~64 MiB
        batch = max(1, min(256, (64 << 20) // (kk * q.shape[1] * 4)))
        sel = None if rows is None else faiss.IDSelectorBatch(np.ascontiguousarray(rows, dtype=np.int64))
        sp = None if sel is None else faiss.SearchParametersIVF(sel=sel, nprobe=self.nprobe)
        sims, ids = [], []
        for s in range(0, len(q), batch):
            dist, cand = self.index.search(q[s : s + batch], min(kk, self.ntotal), params=sp)
            if self.rerank is None:
                sims.append(1.0 - dist[:, :k] / 2.0)   # ||x-y||^2 = 2 - 2cos on unit vectors
                ids.append(cand[:, :k])
            else:
                si, ii = self._rerank(q[s : s + batch], cand, k)
                sims.append(si)
                ids.append(ii)
        return np.concatenate(sims).astype(np.float32), np.concatenate(ids)

    def _rerank(self, q: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        valid = cand >= 0
        if not valid.any():
            return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        vecs = self.rerank.take(np.where(valid, cand, cand[valid][0]).reshape(-1)).reshape(*cand.shape, -1)
        sims = np.einsum("qd,qkd->qk", q, vecs)
        sims = np.where(valid, sims, -np.inf)
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        out_s = np.take_along_axis(sims, top, 1)
        out_i = np.where(np.isfinite(out_s), np.take_along_axis(cand, top, 1), -1)
        if out_s.shape[1] < k:  # fewer vectors than k
            pad = k - out_s.shape[1]
            out_s = np.pad(out_s, ((0, 0), (0, pad)), constant_values=-np.inf)
            out_i = np.pad(out_i, ((0, 0), (0, pad)), constant_values=-1)
        return out_s, out_i


def exact_search_streaming(source: BatchSource, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner product over every batch of ``source``, one batch in memory at a time."""
    import faiss

    q = np.ascontiguousarray(queries, dtype=np.float32)
    heap = faiss.ResultHeap(len(q), k, keep_max=True)
    start = 0
    for x in source():
        kk = min(k, len(x))
        d, i = faiss.knn(q, np.ascontiguousarray(x, dtype=np.float32), kk, metric=faiss.METRIC_INNER_PRODUCT)
        if kk < k:
            d = np.pad(d, ((0, 0), (0, k - kk)), constant_values=-np.inf)
            i = np.pad(i, ((0, 0), (0, k - kk)), constant_values=-1)
        heap.add_result(np.ascontiguousarray(d, np.float32), np.where(i >= 0, i + start, -1))
        start += len(x)
    heap.finalize()
    return heap.D, heap.I


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean over queries of |top-k found ∩ true top-k| / k (the "10-recall@10" of faiss)."""
    hits = [len(set(f[:k].tolist()) & set(t[:k].tolist()) - {-1}) for f, t in zip(found, truth)]
    return float(np.mean(hits) / k) if hits else 0.0
