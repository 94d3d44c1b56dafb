"""FAISS indexes over L2-normalised embeddings (inner product = cosine).

* ``flat``  exact search (IndexFlatIP); the default while it stays fast.
* ``ivf``   inverted file (IndexIVFFlat, Jégou et al. 2011): ``nlist`` ≈ 4·√n coarse
  cells (a power of two, ≥ 39 training points per cell), ``nprobe`` cells visited.
* ``hnsw``  graph search (IndexHNSWFlat, Malkov & Yashunin 2018): ``M`` links per node,
  ``efSearch`` candidates kept while searching.
* ``ivfpq`` IVF-PQ (4-bit fast-scan codes, 64 B per vector at d=512) built by streaming
  the embedding shards, with exact re-ranking from ``rerank.npy``
  (:mod:`audioaudit.index.faiss.ivfpq` over :mod:`.streaming` / :mod:`.large`): ~72 MB of RAM per
  million vectors when searching instead of 2 GB, and a build that never holds all vectors.

``auto`` picks flat up to :data:`AUTO_FLAT_MAX` vectors, IVF above, and ivfpq once the raw
float32 vectors would exceed :data:`AUTO_IVFPQ_BYTES` (4 GiB, DESIGN.md's memory budget:
above 2,097,152 vectors at d=512, 8.4M at d=128) — IVF-Flat holds every vector in RAM.
Parameters live in an :class:`IndexParams` stored in ``manifest.json``; vector id == ``items.row``.
Every function here takes any of the four types: callers never branch on the type.

Measured by ``benchmarks/index_scale.py`` (synthetic clustered 512-d unit vectors, 1000
queries, 2 shared CPU cores): at 100k flat search takes 0.45 ms/query, so ANN buys < 4×
there; at 1M, IVF4096 nprobe 32 (the auto choice) gives recall@10 0.9996 at 29× the
speed of exact search (nprobe 16: 0.994 at 50×), while HNSW32 reaches only 0.964 at
efSearch 256 (66×) after a 12-minute build — hence IVF for ``auto``.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from audioaudit.errors import UserError
from audioaudit.util.atomic import atomic_path

INDEX_TYPES = ("auto", "flat", "ivf", "hnsw", "ivfpq")


AUTO_FLAT_MAX = 100_000


AUTO_IVFPQ_BYTES = 4 * 2**30  # raw float32 vectors above this: ivfpq


EXTENDABLE_TYPES = ("ivfpq",)  # build(base=...) adds new rows to the trained index


IVF_TRAIN_PER_LIST = 64  # training points per coarse cell (faiss warns below 39)


IVF_TRAIN_MAX = 200_000


@dataclass(frozen=True)
class IndexParams:
    type: str  # flat | ivf | hnsw | ivfpq
    dim: int
    nlist: int | None = None
    nprobe: int | None = None
    hnsw_m: int | None = None
    ef_construction: int | None = None
    ef_search: int | None = None
    pq_m: int | None = None  # ivfpq: sub-quantizers
    pq_bits: int | None = None  # ivfpq: 4 (fast scan) or 8
    train_size: int | None = None  # ivfpq: vectors sampled for training
    rerank_factor: int | None = None  # ivfpq: candidates re-ranked exactly = k x this

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @staticmethod
    def from_dict(d: dict) -> "IndexParams":
        return IndexParams(**{k: d.get(k) for k in IndexParams.__dataclass_fields__})

    def describe(self) -> str:
        if self.type == "ivf":
            return f"IVF{self.nlist},Flat (inner product), nprobe {self.nprobe}"
        if self.type == "hnsw":
            return f"HNSW{self.hnsw_m},Flat (inner product), efSearch {self.ef_search}"
        if self.type == "ivfpq":
            from audioaudit.index.faiss import ivfpq

            return ivfpq.describe(self)
        return "Flat (exact inner product)"


def default_nlist(n: int) -> int:
    """≈ 4·√n rounded to a power of two, with at least 39 points per cell."""
    if n < 78:
        return 1
    target = 2 ** round(math.log2(max(1.0, 4.0 * math.sqrt(n))))
    return int(max(1, min(target, n // 39)))


def choose_params(
    n: int,
    dim: int,
    requested: str = "auto",
    *,
    nlist: int | None = None,
    nprobe: int | None = None,
    hnsw_m: int | None = None,
    ef_search: int | None = None,
) -> IndexParams:
    """Index type and parameters for ``n`` vectors (``requested`` in :data:`INDEX_TYPES`)."""
    if requested not in INDEX_TYPES:
        raise UserError(f"--index-type must be one of {', '.join(INDEX_TYPES)} (got {requested!r})")
    kind = requested
    if kind == "auto":
        kind = "flat" if n <= AUTO_FLAT_MAX else "ivfpq" if n * dim * 4 > AUTO_IVFPQ_BYTES else "ivf"
    if kind == "ivfpq":
        from audioaudit.index.faiss import ivfpq

        return IndexParams("ivfpq", dim, **ivfpq.plan_params(n, dim, nlist, nprobe))
    if kind == "ivf":
        nl = int(nlist or default_nlist(n))
        return IndexParams("ivf", dim, nlist=nl, nprobe=int(min(nl, nprobe or max(16, nl // 128))))
    if kind == "hnsw":
        return IndexParams("hnsw", dim, hnsw_m=int(hnsw_m or 32), ef_construction=80, ef_search=int(ef_search or 256))
    return IndexParams("flat", dim)


def new_index(params: IndexParams):
    import faiss

    if params.type == "flat":
        return faiss.IndexFlatIP(params.dim)
    if params.type == "ivf":
        quantizer = faiss.IndexFlatIP(params.dim)
        return faiss.IndexIVFFlat(quantizer, params.dim, int(params.nlist), faiss.METRIC_INNER_PRODUCT)
    if params.type == "hnsw":
        index = faiss.IndexHNSWFlat(params.dim, int(params.hnsw_m), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(params.ef_construction or 80)
        return index
    raise UserError(f"unknown index type {params.type!r}")


def train_sample_size(params: IndexParams) -> int:
    """How many vectors :func:`build` wants for training (0 = no training)."""
    if params.type != "ivf":
        return 0
    return int(min(IVF_TRAIN_MAX, max(int(params.nlist) * IVF_TRAIN_PER_LIST, 1000)))


def build(params: IndexParams, batches: Iterable[np.ndarray] | Callable[..., Iterable[np.ndarray]],
          train: np.ndarray | None = None, *, n: int | None = None, workdir: str | os.PathLike | None = None,
          base=None, progress: Callable[[int, int], None] | None = None):
    """Create an index, train it on ``train`` if it needs it, add ``batches`` in order.

    ``batches`` may be a callable returning a fresh pass (``batches(skip)``: from row
    ``skip`` on); ivfpq needs one (it samples, then adds), plus ``n`` (the row count) and a
    ``workdir`` (its index folder, where the files are built) and takes no ``train``.
    ``base``: an ivfpq index over the first rows, extended instead of rebuilt (:func:`can_extend`)."""
    if params.type == "ivfpq":
        from audioaudit.index.faiss import ivfpq

        if not callable(batches) or n is None:
            raise ValueError("an ivfpq build streams: pass batches as a callable and n")
        return ivfpq.build(params, batches, int(n), workdir, base, progress)
    index = new_index(params)
    if not index.is_trained:
        if train is None or len(train) < int(params.nlist):
            raise UserError(
                f"IVF with nlist {params.nlist} needs at least that many training vectors "
                f"(got {0 if train is None else len(train)}); use --index-type flat"
            )
        index.train(np.ascontiguousarray(train, dtype=np.float32))
    for b in batches() if callable(batches) else batches:
        if len(b):
            index.add(np.ascontiguousarray(b, dtype=np.float32))
            if progress:
                progress(int(index.ntotal), int(n or 0))
    configure(index, params)
    return index


def can_extend(params: IndexParams, base, n: int) -> bool:
    """Whether :func:`build` may extend ``base`` (the index of the first rows) to ``n`` rows
    instead of rebuilding: ivfpq only (its trained quantizer is reused), until the corpus
    has doubled since training (then nlist should grow: it retrains)."""
    if params.type not in EXTENDABLE_TYPES or base is None:
        return False
    from audioaudit.index.faiss import ivfpq

    return int(base.d) == int(params.dim) and ivfpq.can_extend(base, n)


def index_files(params: IndexParams) -> tuple[str, ...]:
    """The files an index of this type keeps in its folder (index.faiss first)."""
    from audioaudit.schema import INDEX_FILE

    if params.type == "ivfpq":
        from audioaudit.index.faiss import ivfpq

        return (INDEX_FILE,) + tuple(f for f in ivfpq.FILES if f != INDEX_FILE)
    return (INDEX_FILE,)


def all_index_files() -> tuple[str, ...]:
    """Every file any index type may keep (what a wipe removes)."""
    return index_files(IndexParams("ivfpq", 0))


def build_record(index) -> dict | None:
    """Build figures worth keeping in manifest.json (ivfpq: plan, seconds, memory), else None."""
    from audioaudit.index.faiss import ivfpq

    return ivfpq.build_record(index) if _is_ivfpq(index) else None


def _is_ivfpq(index) -> bool:
    from audioaudit.index.faiss.ivfpq import IvfpqIndex

    return isinstance(index, IvfpqIndex)


def configure(index, params: IndexParams) -> None:
    """Apply the search-time parameters (nprobe / efSearch)."""
    import faiss

    if params.type == "ivf" and params.nprobe:
        faiss.extract_index_ivf(index).nprobe = int(params.nprobe)
    if params.type == "hnsw" and params.ef_search:
        index.hnsw.efSearch = int(params.ef_search)
    if params.type == "ivfpq" and params.nprobe:
        index.large.set_nprobe(min(int(params.nprobe), int(params.nlist or params.nprobe)))


def search_params(params: IndexParams, rows: np.ndarray | None = None):
    """faiss SearchParameters carrying nprobe/efSearch and an optional row restriction."""
    import faiss

    sel = None if rows is None else faiss.IDSelectorBatch(np.ascontiguousarray(rows, dtype=np.int64))
    if params.type == "ivf":
        return faiss.SearchParametersIVF(sel=sel, nprobe=int(params.nprobe or 1))
    if params.type == "hnsw":
        return faiss.SearchParametersHNSW(sel=sel, efSearch=int(params.ef_search or 64))
    return faiss.SearchParameters(sel=sel) if sel is not None else None


def search(index, queries: np.ndarray, k: int, params: IndexParams, rows: np.ndarray | None = None):
    """Top-``k`` inner products; ``rows`` restricts the search to those vector ids."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    k = max(1, min(int(k), int(index.ntotal)))
    if params.type == "ivfpq":
        return index.search(q, k, nprobe=params.nprobe, rows=rows, rerank_factor=params.rerank_factor)
    sp = search_params(params, rows)
    if sp is None:
        return index.search(q, k)
    return index.search(q, k, params=sp)


def reconstruct(index, rows: np.ndarray) -> np.ndarray:
    """Stored vectors by id (IVF gets a direct map on demand)."""
    import faiss

    rows = np.asarray(rows, dtype=np.int64)
    if _is_ivfpq(index):  # the exact vectors, from rerank.npy
        return index.reconstruct(rows)
    try:
        return index.reconstruct_batch(rows)
    except RuntimeError:
        ivf = faiss.extract_index_ivf(index)
        ivf.make_direct_map()
        return index.reconstruct_batch(rows)


def save(index, path: str | os.PathLike) -> None:
    """Atomic write (temp file + rename); an ivfpq index moves its files in, index.faiss last."""
    import faiss

    if _is_ivfpq(index):
        from audioaudit.index.faiss import ivfpq

        return ivfpq.save(index, path)
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))


def saved_in(index) -> Path | None:
    """The folder an index's files already lie in (an ivfpq index is built and read on disk),
    or None for one held in memory until :func:`save`."""
    return Path(index.dir).resolve() if _is_ivfpq(index) else None


def load(path: str | os.PathLike, params: IndexParams | None = None):
    """Read an index; a missing or unreadable file is a :class:`UserError` naming it."""
    import faiss

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: index file missing; rebuild it with `audioaudit index build`")
    if params is not None and params.type == "ivfpq":
        from audioaudit.index.faiss import ivfpq

        index = ivfpq.load(path)
        if int(index.d) != int(params.dim):
            raise UserError(f"{path}: index has dimension {index.d}, manifest says {params.dim}; rebuild it")
        configure(index, params)
        return index
    try:
        index = faiss.read_index(str(path))
    except Exception as e:  # noqa: BLE001 - faiss raises RuntimeError with a C++ trace
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"{path}: index file is corrupt or not a FAISS index ({first[:160]}); "
            "rebuild it with `audioaudit index build`"
        ) from None
    if params is not None:
        if int(index.d) != int(params.dim):
            raise UserError(f"{path}: index has dimension {index.d}, manifest says {params.dim}; rebuild it")
        configure(index, params)
    return index


def with_overrides(params: IndexParams, nprobe: int | None = None, ef_search: int | None = None) -> IndexParams:
    """Search-time overrides (e.g. ``audit --nprobe``) without rebuilding."""
    if nprobe is not None and params.type in ("ivf", "ivfpq"):
        params = replace(params, nprobe=int(nprobe))
    if ef_search is not None and params.type == "hnsw":
        params = replace(params, ef_search=int(ef_search))
    return params
