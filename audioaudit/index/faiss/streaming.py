"""Large-index path: IVF-PQ trained on a sample, filled shard by shard, exact re-rank from disk.

A 10M-segment corpus at d=512 is 20 GB of float32 — more than the RAM we budget (4 GiB,
DESIGN.md). So the vectors are never all in memory at once:

1. **sample**: one pass over the embedding shards fills a preallocated uniform random
   sample of ``train_size`` rows (the only large buffer: ``train_size x d x 4`` bytes);
2. **train** ``IVF{nlist}[_HNSW32],PQ{d/4}x4fsr`` on the sample (optionally after OPQ),
   then free it;
3. **add** batch by batch (one shard, or 32k rows of it, at a time; ids = running row
   number = ``items.row``), and write each batch's raw vectors into ``rerank.npy`` with
   positional writes;
4. **search**: IVF-PQ proposes ``k x rerank_factor`` candidates per query, whose exact
   cosine similarities are computed from ``rerank.npy`` (``pread`` of the candidate rows)
   — IVFADC + exact re-ranking, Jégou, Douze & Schmid, "Product quantization for nearest
   neighbor search", TPAMI 2011, §IV-A and §V.

Why this factory (sized by N rather than a fixed ``OPQ64,IVF65536,PQ64``):

- ``nlist`` = the power of two nearest ``4 * sqrt(N)``, at most 65536 and at most
  ``N / 39`` (faiss warns under 39 training points per centroid): 2M -> 4096,
  10M -> 16384. A query scans ``N * nprobe / nlist`` codes; IVF65536 would need >= 2.5M
  training points and hours of k-means on CPU for little gain at 10M.
- ``nlist >= 4096``: an HNSW32 graph over the centroids is the coarse quantizer
  (assignment ~log(nlist) distances instead of nlist) and the centroids come from faiss'
  two-level k-means (``contrib.clustering``: sqrt(nlist) clusters, then sub-clusters).
- ``PQ{d/4}x4fsr``: d/4 sub-quantizers of 4 bits — 64 bytes per vector at d=512 (32x
  compression), encoded as residuals and scanned with SIMD "fast scan" (André, Kermarrec
  & Le Scouarnec, "Quicker ADC", TPAMI 2019). At the same 64 B it beat 8-bit ``PQ64``
  here (500k x 512, IVF2048, nprobe 16, re-rank 500 candidates): recall@10 0.9985 vs
  0.9975 at 0.38 vs 1.65 ms/query, PQ training 13 s vs 52 s — and faiss' precomputed residual
  tables are ``nlist * M * 2^bits`` floats: 128 MiB at IVF16384 vs 1 GiB for ``PQ64``.
  8-bit PQ stays available (``PlanOptions(fastscan=False)``): it is what on-disk lists need.
- OPQ (Ge et al., CVPR 2013) is off by default (``PlanOptions(opq=True)`` turns it on): at 2M on this
  2-core box, training took 641 s of an 834 s build with ``OPQ64,...,PQ64`` against 61 s
  of 175 s without OPQ and with fast-scan, and the exact re-ranking recovers what the
  rotation buys in code accuracy.
- Metric: L2 on the L2-normalised embeddings (``||x - y||^2 = 2 - 2 cos``, same ranking as
  inner product; faiss' residual PQ is designed for L2). Scores returned are cosine
  similarities — exact after re-ranking, so thresholds calibrated on the flat index hold.

Memory per million vectors (d=512, PQ128x4fs; ``benchmarks/index_streaming.py`` on the
shared 2-core box, synthetic clustered vectors, 2M and 10M):

- searching, in RAM: codes 64 MB + ids 8 MB = **72 MB per million** (index file: 65.7 /
  66.7 MiB per million at 2M / 10M), plus a fixed part — centroids ``nlist * d * 4``
  (8 MiB at nlist 4096, 32 MiB at 16384), HNSW links ~``nlist * 384`` B, residual tables
  ``nlist * M * 64`` B (32 / 128 MiB). Measured in a fresh process after loading and one
  search: +217 MiB at 2M, +968 MiB at 10M (estimates 187 / 884 MiB) — ~97 MiB per
  million, everything included.
- building: the training sample (``40 * nlist`` rows x 2 KiB: 0.31 GiB at 2M, 1.25 GiB at
  10M) *or* the growing lists (std::vector slack up to 2x codes + ids), plus one batch
  being read. Measured peak RSS: 0.94 GiB at 2M, **1.90 GiB at 10M** (estimate 1.66 GiB +
  interpreter); at most 688k of the 10M vectors were alive at once.
- on disk: ``rerank.npy`` holds the raw vectors, 2 GB per million (float32; 1 GB with
  ``rerank_dtype="float16"``); ``index.faiss`` ~72 MB per million plus the fixed part.
  With ``LargeBuildOptions(on_disk=True)`` (8-bit PQ) the codes + ids live in ``index.ivfdata`` instead of RAM
  (``faiss.contrib.ondisk.merge_ondisk`` over one block file per batch).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from audioaudit.index.faiss.plan import (
    INDEX_FILE,
    IVFDATA_FILE,
    LARGE_META_FILE,
    MIN_POINTS_PER_CENTROID,
    OPQ_ITERS,
    PQ_TRAIN_MAX,
    RERANK_FILE,
    LargeIndexPlan,
    PlanOptions,
    estimate_memory,
    plan_large_index,
)
from audioaudit.index.faiss.rerank import RerankWriter
from audioaudit.util.atomic import move_into_place, write_json
from audioaudit.util.memwatch import PeakMemory

# --------------------------------------------------------------------------- sources
# A *batch source* is a callable returning a fresh pass over the vectors, in id order
# (vector id = position in that order = items.row), one (n_i, d) float32 batch at a time —
# e.g. one embedding shard per batch, as :mod:`audioaudit.index.assemble` reads them.
BatchSource = Callable[[], Iterable[np.ndarray]]


def read_shard_embeddings(path: str | Path, batch_rows: int = 32768) -> Iterator[np.ndarray]:
    """The ``embedding`` column of one shard parquet file, as (n_i, d) float32 batches of at
    most ``batch_rows`` rows (a 100k x 512 shard read whole costs ~4x its size in Arrow
    buffers; read by batches, about its size)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for b in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=["embedding"], use_threads=False):
        col = b.column(0)
        flat = col.flatten().to_numpy(zero_copy_only=False)
        yield np.ascontiguousarray(flat, dtype=np.float32).reshape(len(col), -1)
    pa.default_memory_pool().release_unused()  # mimalloc keeps freed read buffers otherwise


def parquet_source(paths: Sequence[str | Path]) -> tuple[BatchSource, int, int]:
    """(source, n, dim) over shard files, counted from the parquet footers alone."""
    import pyarrow.parquet as pq

    paths = [Path(p) for p in paths]
    n = sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
    dim = int(pq.read_schema(paths[0]).field("embedding").type.list_size) if paths else 0
    return (lambda: (x for p in paths for x in read_shard_embeddings(p))), n, dim


class HeldCounter:
    """Wraps a batch source and keeps account of how many vectors may be alive at once:
    the batch being handed out plus what the caller declared with :meth:`hold` (the
    training sample). ``max_held`` is what the streaming promise is tested against."""

    def __init__(self, source: BatchSource):
        self.source = source
        self.extra = 0
        self.max_held = 0
        self.max_batch = 0

    def hold(self, n: int) -> None:
        self.extra = n
        self.max_held = max(self.max_held, n)

    def __call__(self) -> Iterator[np.ndarray]:
        for x in self.source():
            self.max_batch = max(self.max_batch, len(x))
            self.max_held = max(self.max_held, self.extra + len(x))
            yield x


def sample_training_vectors(source: HeldCounter, n: int, k: int, seed: int = 0) -> np.ndarray:
    """Uniform random sample of ``k`` of the ``n`` vectors, one batch in memory at a time
    (written straight into the preallocated sample: no second copy)."""
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(n, size=min(k, n), replace=False))
    xt: np.ndarray | None = None
    start = 0
    for x in source():
        if xt is None:
            xt = np.empty((len(picks), x.shape[1]), dtype=np.float32)
            source.hold(len(picks))
        lo, hi = np.searchsorted(picks, [start, start + len(x)])
        xt[lo:hi] = x[picks[lo:hi] - start]
        start += len(x)
    source.hold(0)
    if start != n or xt is None:
        raise ValueError(f"the embedding shards hold {start} vectors, expected {n}")
    return xt


def _apply_in_place(vt, x: np.ndarray, chunk: int = 65536) -> None:
    """``x[:] = vt.apply(x)`` chunk by chunk, so the training sample is never copied whole."""
    for i in range(0, len(x), chunk):
        x[i : i + chunk] = vt.apply(np.ascontiguousarray(x[i : i + chunk]))


def train_index(xt: np.ndarray, plan: LargeIndexPlan, seed: int = 0):
    """An empty, trained faiss index for ``plan``. ``xt`` is overwritten (rotated in place).

    The rotation (OPQ) and the PQ are trained on at most :data:`PQ_TRAIN_MAX` rows of the
    sample (what faiss would subsample to anyway), the coarse centroids on all of it —
    with two-level k-means when ``plan.two_level`` — so training holds the sample plus
    small working sets, never a second copy of the sample."""
    import faiss

    index = faiss.index_factory(plan.dim, plan.factory, faiss.METRIC_L2)
    top = faiss.downcast_index(index)
    ivf = faiss.extract_index_ivf(index)
    rng = np.random.default_rng(seed)
    sub = lambda: np.sort(rng.choice(len(xt), min(len(xt), PQ_TRAIN_MAX), replace=False))  # noqa: E731
    if isinstance(top, faiss.IndexPreTransform):
        for i in range(top.chain.size()):
            vt = faiss.downcast_VectorTransform(top.chain.at(i))
            if isinstance(vt, faiss.OPQMatrix):
                vt.niter = OPQ_ITERS
            vt.train(xt[sub()])
            _apply_in_place(vt, xt)
    if plan.two_level:
        from faiss.contrib.clustering import two_level_clustering

        centroids, _ = two_level_clustering(xt, int(math.sqrt(plan.nlist)), plan.nlist, seed=seed)
    else:
        km = faiss.Kmeans(plan.dim, plan.nlist, niter=25, seed=seed, max_points_per_centroid=256)
        km.train(xt)
        centroids = km.centroids
    ivf.quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
    n_pq = min(len(xt), PQ_TRAIN_MAX)
    if n_pq < MIN_POINTS_PER_CENTROID * 2**plan.pq_bits:  # a small corpus: faiss would warn per sub-quantizer
        faiss.downcast_index(ivf).pq.cp.min_points_per_centroid = max(1, n_pq // 2**plan.pq_bits)
    ivf.train(xt[sub()])  # the quantizer already holds nlist centroids: this trains the PQ only
    top.is_trained = True
    return index


@dataclass(frozen=True)
class LargeBuildStats:
    """What :func:`build_large_index` did and what it cost (bytes, seconds)."""

    plan: dict
    factory: str
    n_vectors: int
    sample_seconds: float
    train_seconds: float
    add_seconds: float
    total_seconds: float
    rss_start: int            # process RSS when the build began
    peak_rss: int             # highest RSS seen during the build (sampled)
    peak_anon: int            # highest anonymous (non file-backed) RSS seen
    max_vectors_held: int     # most embedding rows alive at once (sample + current shard)
    index_file_bytes: int     # index.faiss (+ index.ivfdata)
    rerank_file_bytes: int
    estimate: dict


def _add_batches(index, source: HeldCounter, rerank: RerankWriter | None, n: int,
                 blocks_dir: Path | None, progress: Callable[[int, int], None] | None) -> list[str]:
    """Add every batch with ids = running position (in RAM, or one block file per batch
    when ``blocks_dir``, merged on disk afterwards)."""
    import faiss

    start, blocks = 0, []
    for x in source():
        if start + len(x) > n:
            raise ValueError(f"the embedding shards hold more than the {n} vectors counted")
        index.add_with_ids(x, np.arange(start, start + len(x), dtype=np.int64))
        if rerank is not None:
            rerank.write(start, x)
        if blocks_dir is not None:
            blocks.append(str(blocks_dir / f"block_{len(blocks):06d}.index"))
            faiss.write_index(index, blocks[-1])
            index.reset()
        start += len(x)
        if progress:
            progress(start, n)
    if start != n:
        raise ValueError(f"the embedding shards hold {start} vectors, expected {n}")
    return blocks


def _file_size(*paths: Path) -> int:
    return sum(p.stat().st_size for p in paths if p.exists())


def _fresh_dir(path: Path) -> Path:
    import shutil

    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


@dataclass(frozen=True)
class LargeBuildOptions:
    """How :func:`build_large_index` stores what it builds.

    ``rerank_dtype=None`` writes no re-rank file (search then returns PQ-approximate
    scores); ``on_disk=True`` keeps the inverted lists in ``index.ivfdata``
    (``faiss.contrib.ondisk.merge_ondisk`` over one block per batch; 8-bit PQ only)."""

    on_disk: bool = False
    rerank_dtype: str | None = "float32"
    seed: int = 0  # training sample and k-means


def build_large_index(source: BatchSource, n: int, dim: int, out_dir: str | Path,
                      plan: LargeIndexPlan | PlanOptions | None = None, *,
                      options: LargeBuildOptions | None = None,
                      progress: Callable[[int, int], None] | None = None) -> LargeBuildStats:
    """Stream ``source`` (two passes) into ``out_dir/index.faiss`` + ``rerank.npy`` + ``large_index.json``.

    Pass 1 keeps a uniform sample for training; pass 2 adds batch by batch. Vector ids are
    positions in the source's order. ``plan``: a finished plan, or the options to plan by
    (:func:`.plan.plan_large_index`; default: its rules for ``n``).
    """
    import faiss

    out = Path(out_dir)
    if n <= 0:
        raise ValueError(f"no vectors to index under {out}")
    if not isinstance(plan, LargeIndexPlan):
        plan = plan_large_index(n, dim, plan)
    o = options or LargeBuildOptions()
    on_disk, seed = o.on_disk, o.seed
    if on_disk and plan.pq_bits == 4:
        raise ValueError("on-disk inverted lists need 8-bit PQ (fastscan=False): faiss' OnDiskInvertedLists "
                         "cannot hold fast-scan lists, which are packed in blocks of 32 codes")
    tmp = _fresh_dir(out / ".large-tmp")
    counted = HeldCounter(source)
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        xt = sample_training_vectors(counted, n, plan.train_size, seed)
        t1 = time.perf_counter()
        index = train_index(xt, plan, seed)
        del xt
        t2 = time.perf_counter()
        rerank = RerankWriter(tmp / RERANK_FILE, n, dim, o.rerank_dtype) if o.rerank_dtype else None
        blocks = _add_batches(index, counted, rerank, n, tmp if on_disk else None, progress)
        if rerank is not None:
            rerank.close()
        if on_disk:
            from faiss.contrib.ondisk import merge_ondisk

            merge_ondisk(index, blocks, str(tmp / IVFDATA_FILE))
        faiss.write_index(index, str(tmp / INDEX_FILE))
        del index
        t3 = time.perf_counter()
    for b in blocks:
        os.remove(b)
    stats = LargeBuildStats(
        plan=asdict(plan), factory=plan.factory, n_vectors=n,
        sample_seconds=t1 - t0, train_seconds=t2 - t1, add_seconds=t3 - t2, total_seconds=t3 - t0,
        rss_start=mem.start, peak_rss=mem.peak, peak_anon=mem.peak_anon, max_vectors_held=counted.max_held,
        index_file_bytes=_file_size(tmp / INDEX_FILE, tmp / IVFDATA_FILE),
        rerank_file_bytes=_file_size(tmp / RERANK_FILE),
        estimate=estimate_memory(plan, counted.max_batch).as_dict(),
    )
    meta = {**asdict(stats), "on_disk": on_disk, "rerank_dtype": o.rerank_dtype}
    write_json(tmp / LARGE_META_FILE, meta, newline=False)
    # data files first; index.faiss last, its presence marks a complete build
    for name in (IVFDATA_FILE, RERANK_FILE, LARGE_META_FILE, INDEX_FILE):
        if (tmp / name).exists():
            move_into_place(tmp / name, out / name)
    tmp.rmdir()
    return stats
