"""The ``ivfpq`` index type: the large-index path (:mod:`.plan`, :mod:`.streaming`,
:mod:`.large`, :mod:`.rerank`) behind :mod:`audioaudit.index.faiss.facade`'s functions, so ``open_index``, audit, the reference table and near-duplicate search use it
unchanged.

On disk, beside ``index.faiss`` (IVF-PQ 4-bit fast-scan codes over L2 on unit vectors):
``rerank.npy`` (the raw vectors, row = ``items.row``) and ``large_index.json`` (the plan,
build times and memory figures). Searches re-rank ``k x rerank_factor`` candidates on the
exact vectors, so similarities are exact cosines and calibrated thresholds hold;
``reconstruct`` reads ``rerank.npy``.

Building streams the embedding shards twice (sample, then add shard by shard): never all
vectors in memory. An index can be *extended* (``index add``): the trained coarse
quantizer and PQ are reused and only the new rows are added, while the corpus has at most
doubled since training (:data:`MAX_GROWTH`); past that, it is retrained from scratch.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from audioaudit.errors import UserError
from audioaudit.index.faiss import streaming
from audioaudit.index.faiss.large import LargeIndex
from audioaudit.index.faiss.plan import (
    HNSW_QUANTIZER_FROM,
    INDEX_FILE,
    LARGE_META_FILE,
    MIN_POINTS_PER_CENTROID,
    RERANK_FILE,
    LargeIndexPlan,
    PlanOptions,
    estimate_memory,
    plan_large_index,
)
from audioaudit.index.faiss.rerank import RerankWriter
from audioaudit.util.atomic import atomic_path, move_into_place, write_json

FILES = (INDEX_FILE, RERANK_FILE, LARGE_META_FILE)  # index.faiss last: it marks completion


BUILD_DIR = ".ivfpq-build"  # inside the index folder while building; removed when saved


MIN_VECTORS = 2 * MIN_POINTS_PER_CENTROID


MAX_GROWTH = 2.0  # extend the trained index while ntotal <= MAX_GROWTH x the vectors it was trained for


class IvfpqIndex:
    """A built ``ivfpq`` index: faiss-like ``ntotal`` / ``d``, exact-cosine ``search``,
    ``reconstruct`` from ``rerank.npy``. ``dir`` is where its files are now."""

    def __init__(self, large: LargeIndex, directory: Path):
        if large.rerank is None:
            raise UserError(f"{directory}: {RERANK_FILE} missing (exact re-ranking needs it); rebuild the index")
        if len(large.rerank) != large.ntotal:
            raise UserError(f"{directory}: {RERANK_FILE} holds {len(large.rerank)} vectors but "
                            f"{INDEX_FILE} {large.ntotal}; rebuild the index")
        self.large, self.dir = large, Path(directory)

    @property
    def ntotal(self) -> int:
        return self.large.ntotal

    @property
    def d(self) -> int:
        return int(self.large.index.d)

    @property
    def meta(self) -> dict:
        return self.large.meta

    @property
    def trained_for(self) -> int:
        return int(self.meta["plan"]["n"])

    def search(self, queries: np.ndarray, k: int, nprobe: int | None = None, rows: np.ndarray | None = None,
               rerank_factor: int | None = None):
        nprobe = min(int(nprobe or self.large.nprobe), int(self.meta["plan"]["nlist"]))
        if nprobe != self.large.nprobe:
            self.large.set_nprobe(nprobe)
        return self.large.search(queries, k, rows=rows, rerank_factor=rerank_factor)

    def reconstruct(self, rows: np.ndarray) -> np.ndarray:
        return self.large.rerank.take(np.asarray(rows, dtype=np.int64))

    def close(self) -> None:
        self.large.rerank.close()


def plan_params(n: int, dim: int, nlist: int | None = None, nprobe: int | None = None) -> dict:
    """IndexParams fields for ``n`` vectors (:func:`.plan.plan_large_index`'s rules; ``nlist`` clamped so every
    coarse cell gets >= 39 training points, ``nprobe`` to ``nlist``)."""
    if n < MIN_VECTORS:
        raise UserError(f"--index-type ivfpq needs at least {MIN_VECTORS} vectors (this corpus has {n}); "
                        "use --index-type flat")
    if nlist is not None:
        nlist = int(max(1, min(nlist, n // MIN_POINTS_PER_CENTROID)))
    plan = plan_large_index(n, dim, PlanOptions(nlist=nlist, nprobe=None if nprobe is None else int(nprobe)))
    return {"nlist": plan.nlist, "nprobe": int(min(plan.nlist, plan.nprobe)), "pq_m": plan.pq_m,
            "pq_bits": plan.pq_bits, "train_size": plan.train_size, "rerank_factor": plan.rerank_factor}


def _plan(params, n: int) -> LargeIndexPlan:
    return plan_large_index(n, int(params.dim), PlanOptions(
        nlist=int(params.nlist), nprobe=int(params.nprobe), code_bytes=int(params.pq_m) * int(params.pq_bits) // 8,
        fastscan=int(params.pq_bits) == 4, train_size=int(params.train_size), rerank_factor=int(params.rerank_factor)))


def describe(params) -> str:
    pq = f"PQ{params.pq_m}x{params.pq_bits}{'fs' if params.pq_bits == 4 else ''}"
    q = "_HNSW32" if params.nlist >= HNSW_QUANTIZER_FROM else ""
    return (f"IVF{params.nlist}{q},{pq} + exact re-rank of {params.rerank_factor}·k candidates "
            f"(streamed build), nprobe {params.nprobe}")


def build(params, batches: Callable[..., Iterable[np.ndarray]], n: int, workdir: str | os.PathLike | None,
          base: IvfpqIndex | None = None, progress: Callable[[int, int], None] | None = None) -> IvfpqIndex:
    """Stream ``batches()`` (a fresh pass over all ``n`` vectors in row order per call;
    ``batches(skip)`` starts at row ``skip``) into ``workdir/.ivfpq-build/``. With ``base``
    (an index over the first ``base.ntotal`` rows) only the rows after them are read and added."""
    import tempfile

    if base is not None and base.ntotal == n:
        return base  # same rows (e.g. only a near-duplicate setting changed): the files stay as they are
    out = Path(workdir) / BUILD_DIR if workdir is not None else Path(tempfile.mkdtemp(prefix="ivfpq-"))
    if out.exists():
        shutil.rmtree(out)  # left by a build that was killed
    out.mkdir(parents=True)
    if base is not None:
        _extend(base, batches, n, out, progress)
    else:
        streaming.build_large_index(batches, n, int(params.dim), out, _plan(params, n), progress=progress)
    return IvfpqIndex(LargeIndex.load(out), out)


def can_extend(base: IvfpqIndex, n: int) -> bool:
    return base.ntotal <= n <= MAX_GROWTH * base.trained_for


def _extend(base: IvfpqIndex, batches, n: int, out: Path, progress) -> None:
    """``base``'s trained index + its re-rank rows, plus rows ``base.ntotal ..< n`` (``base``
    is consumed: its in-memory faiss index grows)."""
    from dataclasses import replace

    import faiss

    t0 = time.perf_counter()
    n_old = start = base.ntotal
    index = base.large.index  # read into RAM (not mapped): adding to it leaves the file alone
    meta = dict(base.meta)
    writer = RerankWriter(out / RERANK_FILE, n, base.d, meta.get("rerank_dtype") or "float32")
    _copy_rows(base.large.rerank, writer, n_old)
    for x in batches(start):
        if start + len(x) > n:
            raise ValueError(f"the embedding shards hold more than the {n} vectors counted")
        index.add_with_ids(np.ascontiguousarray(x, dtype=np.float32), np.arange(start, start + len(x), dtype=np.int64))
        writer.write(start, x)
        start += len(x)
        if progress:
            progress(start, n)
    writer.close()
    if start != n:
        raise ValueError(f"the embedding shards hold {start} vectors, expected {n}")
    faiss.write_index(index, str(out / INDEX_FILE))
    meta["extended"] = {"from": n_old, "to": n, "seconds": time.perf_counter() - t0,
                        "trained_for": base.trained_for}
    meta["n_vectors"] = n
    meta["estimate"] = estimate_memory(replace(LargeIndexPlan(**meta["plan"]), n=n)).as_dict()
    meta["index_file_bytes"] = (out / INDEX_FILE).stat().st_size
    meta["rerank_file_bytes"] = (out / RERANK_FILE).stat().st_size
    write_json(out / LARGE_META_FILE, meta, newline=False)
    del index
    base.close()
    base.large.index = None  # free the old copy before the new one is loaded


def _copy_rows(src, writer, n_rows: int, chunk: int = 65536) -> None:
    """The first ``n_rows`` of a re-rank file into a new one: in the kernel
    (``copy_file_range``, a reflink where the filesystem can) or chunk by chunk."""
    if src.dtype == writer.dtype and hasattr(os, "copy_file_range"):
        left, off_in, off_out = n_rows * src.row_bytes, src.offset, writer.offset
        try:
            while left:
                done = os.copy_file_range(src.fd, writer.fd, left, off_in, off_out)
                if done <= 0:
                    break
                left, off_in, off_out = left - done, off_in + done, off_out + done
            if not left:
                return
        except OSError:
            pass  # e.g. across filesystems on an old kernel: copy through this process
    for s in range(0, n_rows, chunk):
        writer.write(s, src.take(np.arange(s, min(n_rows, s + chunk))))


def _move(src: Path, dst: Path) -> None:
    try:
        move_into_place(src, dst)
    except OSError:  # another filesystem (a temporary build folder): copy beside, then rename
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        src.unlink()


def save(index: IvfpqIndex, path: str | os.PathLike) -> None:
    """Move the built files beside ``path`` (which must be named index.faiss), each with an
    atomic rename, index.faiss last; the object keeps working (its files stay open)."""
    path = Path(path)
    if path.name != INDEX_FILE:
        raise ValueError(f"an ivfpq index is saved as {INDEX_FILE} in its folder, not {path.name}")
    dst = path.parent
    if index.dir.resolve() == dst.resolve():
        return
    dst.mkdir(parents=True, exist_ok=True)
    for name in (RERANK_FILE, LARGE_META_FILE, INDEX_FILE):
        _move(index.dir / name, dst / name)
    if index.dir.name == BUILD_DIR or index.dir.name.startswith("ivfpq-"):
        shutil.rmtree(index.dir, ignore_errors=True)
    index.dir = dst


def load(path: str | os.PathLike, nprobe: int | None = None) -> IvfpqIndex:
    """Open ``index.faiss`` + ``rerank.npy`` + ``large_index.json`` (a UserError names what is wrong)."""
    d = Path(path).parent
    for name in FILES:
        if not (d / name).is_file():
            raise UserError(f"{d / name}: missing (ivfpq index); rebuild it with `audioaudit index build`")
    try:
        large = LargeIndex.load(d, nprobe=nprobe)
    except Exception as e:  # noqa: BLE001 - faiss raises RuntimeError, json ValueError, numpy ValueError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{d}: ivfpq index files are corrupt ({first[:160]}); "
                        "rebuild it with `audioaudit index build`") from None
    return IvfpqIndex(large, d)


def build_record(index: IvfpqIndex) -> dict:
    """What manifest.json records about the build: factory, plan, seconds, memory figures."""
    m = index.meta
    keys = ("factory", "plan", "n_vectors", "sample_seconds", "train_seconds", "add_seconds", "total_seconds",
            "rss_start", "peak_rss", "peak_anon", "max_vectors_held", "index_file_bytes", "rerank_file_bytes",
            "estimate", "rerank_dtype", "extended")
    return {k: m[k] for k in keys if k in m}
