"""The plan of a large (IVF-PQ) index sized by N, and its memory estimate (see :mod:`.streaming`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

LARGE_META_FILE = "large_index.json"   # the plan + build stats, beside index.faiss


RERANK_FILE = "rerank.npy"             # (N, d) raw vectors for exact re-ranking


IVFDATA_FILE = "index.ivfdata"          # on-disk inverted lists (on_disk=True)


INDEX_FILE = "index.faiss"              # same name as audioaudit.schema.INDEX_FILE


MAX_NLIST = 65536


MIN_POINTS_PER_CENTROID = 39           # faiss' k-means warning threshold


HNSW_QUANTIZER_FROM = 4096


MAX_CANDIDATES = 4096                  # re-ranked candidates per query, at most


PQ_MIN_TRAIN = 10_000                  # 8-bit PQ: 256 centroids x 39 points per sub-quantizer


PQ_TRAIN_MAX = 256 * 256               # faiss' PQ / OPQ k-means subsample to this anyway


OPQ_ITERS = 20                         # faiss' default is 50; OPQ training time is linear in it


@dataclass(frozen=True)
class LargeIndexPlan:
    """The IVF-PQ shape chosen for ``n`` vectors of dimension ``dim``."""

    n: int
    dim: int
    nlist: int
    pq_m: int            # sub-quantizers
    pq_bits: int         # 4: SIMD "fast scan" PQ (Andre et al. 2019); 8: classic PQ
    opq: bool
    hnsw_quantizer: bool
    two_level: bool      # two-level k-means for the coarse centroids
    train_size: int
    nprobe: int
    rerank_factor: int

    @property
    def code_bytes(self) -> int:
        return self.pq_m * self.pq_bits // 8

    @property
    def factory(self) -> str:
        pre = f"OPQ{self.pq_m}," if self.opq else ""
        q = "_HNSW32" if self.hnsw_quantizer else ""
        # x4fsr: 4-bit fast-scan codes encoding residuals; np: no polysemous training (unused)
        pq = f"PQ{self.pq_m}x4fsr" if self.pq_bits == 4 else f"PQ{self.pq_m}np"
        return f"{pre}IVF{self.nlist}{q},{pq}"


def _pow2_near(x: float) -> int:
    return 2 ** max(0, round(math.log2(max(x, 1.0))))


def _pq_m(dim: int, target: int) -> int:
    """Largest divisor of ``dim`` not above ``target``."""
    return max(m for m in range(1, min(max(1, target), dim) + 1) if dim % m == 0)


@dataclass(frozen=True)
class PlanOptions:
    """What :func:`plan_large_index` should not choose by its rules (``None``: the rule)."""

    nlist: int | None = None
    code_bytes: int | None = None   # per vector; default dim / 8
    fastscan: bool = True           # 4-bit fast-scan PQ; False: 8-bit PQ
    opq: bool = False
    train_size: int | None = None
    nprobe: int | None = None
    rerank_factor: int = 64
    max_train: int = 1 << 20


def plan_large_index(n: int, dim: int, options: PlanOptions | None = None) -> LargeIndexPlan:
    """Size an IVF-PQ index for ``n`` vectors (rules in :mod:`.streaming`'s docstring).

    ``options.code_bytes`` per vector defaults to ``dim / 8`` (64 B at d=512): ``dim / 4``
    4-bit sub-quantizers with ``fastscan``, else ``dim / 8`` 8-bit ones."""
    o = options or PlanOptions()
    nlist, train_size, nprobe = o.nlist, o.train_size, o.nprobe
    if n < 2 * MIN_POINTS_PER_CENTROID:
        raise ValueError(f"the large-index path needs at least {2 * MIN_POINTS_PER_CENTROID} vectors, got {n}")
    if nlist is None:
        nlist = min(_pow2_near(4 * math.sqrt(n)), MAX_NLIST)
        while nlist > 2 and nlist * MIN_POINTS_PER_CENTROID > n:
            nlist //= 2
    bits = 4 if o.fastscan else 8
    m = _pq_m(dim, (o.code_bytes or max(1, dim // 8)) * 8 // bits)
    if train_size is None:
        train_size = min(n, max(40 * nlist, PQ_MIN_TRAIN), o.max_train)
    train_size = min(train_size, n)
    if nprobe is None:
        nprobe = min(nlist, max(16, nlist // 64))
    return LargeIndexPlan(
        n=n, dim=dim, nlist=nlist, pq_m=m, pq_bits=bits, opq=o.opq,
        hnsw_quantizer=nlist >= HNSW_QUANTIZER_FROM, two_level=nlist >= HNSW_QUANTIZER_FROM,
        train_size=train_size, nprobe=nprobe, rerank_factor=o.rerank_factor,
    )


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes, by part, of an IVF-PQ index built by :func:`.streaming.build_large_index`."""

    codes: int
    ids: int
    fixed: int          # centroids + HNSW graph + OPQ matrix + PQ centroids (also in the file)
    tables: int         # precomputed residual tables, built in RAM only
    train_sample: int
    shard_buffer: int
    bytes_per_vector: int  # codes + ids: what each extra vector adds when searching

    def as_dict(self) -> dict:
        return {**asdict(self), "search_resident": self.search_resident, "build_peak": self.build_peak}

    @property
    def search_resident(self) -> int:
        return self.codes + self.ids + self.fixed + self.tables

    @property
    def build_peak(self) -> int:
        """Upper estimate: the training sample is freed before the lists grow (2x slack)."""
        return self.fixed + self.tables + max(self.train_sample, 2 * (self.codes + self.ids) + self.shard_buffer)


def estimate_memory(plan: LargeIndexPlan, shard_rows: int = 100_000) -> MemoryEstimate:
    d, n = plan.dim, plan.n
    fixed = plan.nlist * d * 4 + (2**plan.pq_bits) * d * 4    # coarse centroids + PQ tables
    if plan.pq_bits == 4:
        fixed += plan.nlist * 31 * plan.code_bytes            # fast-scan pads lists to 32-code blocks
    if plan.hnsw_quantizer:
        fixed += plan.nlist * (2 * 32 + 32) * 4               # level-0 has 2M links, upper levels ~M
    if plan.opq:
        fixed += d * d * 4
    return MemoryEstimate(
        codes=n * plan.code_bytes, ids=n * 8, fixed=fixed,
        # faiss precomputes the residual-PQ term tables in RAM (use_precomputed_table, L2 by
        # residual): nlist * M * 2^bits floats — 128 MiB at nlist 16384 with PQ128x4, but
        # 1 GiB with 8-bit PQ64: the other reason to prefer fast-scan
        tables=plan.nlist * plan.pq_m * 2**plan.pq_bits * 4,
        train_sample=plan.train_size * d * 4,
        shard_buffer=2 * shard_rows * d * 4, bytes_per_vector=plan.code_bytes + 8,
    )
