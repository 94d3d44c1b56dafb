"""Segment search aggregated to clip (source) level.

Every clip is cut into windows; each query window is searched in the index of training
windows. A query clip's similarity to a training *source* (a clip, or a group of
duplicate clips — :mod:`audioaudit.duplicates.groups`) is the max over all (query window, training
window) pairs found, and we keep which pair it was, so the copied span is localised in
both clips. The search deepens (k × 4) for queries that found fewer than ``depth``
distinct sources, so every query gets ``depth`` sources when the index holds them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audioaudit.index.faiss import facade as fx


@dataclass
class ClipHits:
    """Per query clip, distinct sources by decreasing similarity (flat arrays, sorted by
    (qclip, rank))."""

    qclip: np.ndarray  # int, query clip index
    rank: np.ndarray  # int, 0-based among that clip's sources
    source: np.ndarray  # int, source code of the training row
    row: np.ndarray  # int, training row (vector id) of the best pair
    qseg: np.ndarray  # int, query segment index (into the query segment arrays)
    sim: np.ndarray  # float32, max similarity over segment pairs

    def __len__(self) -> int:
        return len(self.qclip)


def _aggregate(D, I, seg_ids, q_clip, row_source, exclude) -> ClipHits:
    """Best pair per (query clip, source) from raw (segments × k) results."""
    k = I.shape[1]
    rows = I.ravel()
    sims = D.ravel().astype(np.float32)
    qseg = np.repeat(seg_ids, k)
    qc = q_clip[qseg]
    ok = rows >= 0
    src = np.where(ok, row_source[np.maximum(rows, 0)], -1)
    if exclude is not None:
        ok &= src != exclude[qc]
    rows, sims, qseg, qc, src = rows[ok], sims[ok], qseg[ok], qc[ok], src[ok]
    order = np.lexsort((-sims, src, qc))
    rows, sims, qseg, qc, src = rows[order], sims[order], qseg[order], qc[order], src[order]
    first = np.ones(len(qc), dtype=bool)
    first[1:] = (qc[1:] != qc[:-1]) | (src[1:] != src[:-1])
    rows, sims, qseg, qc, src = rows[first], sims[first], qseg[first], qc[first], src[first]
    order = np.lexsort((-sims, qc))
    rows, sims, qseg, qc, src = rows[order], sims[order], qseg[order], qc[order], src[order]
    start = np.r_[0, np.flatnonzero(qc[1:] != qc[:-1]) + 1] if len(qc) else np.zeros(0, int)
    rank = np.arange(len(qc)) - np.repeat(start, np.diff(np.r_[start, len(qc)]))
    return ClipHits(qc, rank, src, rows, qseg, sims)


def concat_hits(parts: list[ClipHits]) -> ClipHits:
    if not parts:
        z = np.zeros(0, dtype=np.int64)
        return ClipHits(z, z, z, z, z, np.zeros(0, np.float32))
    hits = ClipHits(*(np.concatenate([getattr(p, f) for p in parts]) for f in ClipHits.__dataclass_fields__))
    order = np.lexsort((hits.rank, hits.qclip))
    return ClipHits(*(getattr(hits, f)[order] for f in ClipHits.__dataclass_fields__))


@dataclass(frozen=True)
class SearchOptions:
    """``exclude[c]``: a source code query clip ``c`` must not match (itself, train vs train);
    ``rows_allowed``: restrict to these rows (same-class search); ``more_while_above``: also
    deepen while a window's k-th hit is still >= this (so every source above it is found —
    near-duplicate search), up to ``max_k`` hits per window; ``k0``: first depth tried."""

    exclude: np.ndarray | None = None
    rows_allowed: np.ndarray | None = None
    more_while_above: float | None = None
    k0: int | None = None
    max_k: int | None = None
    chunk: int = 8192


def search_clips(index, params: fx.IndexParams, q_vectors: np.ndarray, q_clip: np.ndarray, row_source: np.ndarray,
                 depth: int, opts: SearchOptions = SearchOptions()) -> ClipHits:
    """Top ``depth`` distinct sources per query clip. ``q_clip[s]``: clip of query window
    ``s``; ``row_source[r]``: source code of training row ``r``."""
    exclude, rows_allowed, more_while_above = opts.exclude, opts.rows_allowed, opts.more_while_above
    k0, max_k, chunk = opts.k0, opts.max_k, opts.chunk
    q_clip = np.asarray(q_clip, dtype=np.int64)
    n_allowed = int(index.ntotal) if rows_allowed is None else len(rows_allowed)
    if max_k is not None:
        n_allowed = min(n_allowed, int(max_k))
    if n_allowed == 0 or len(q_clip) == 0:
        return concat_hits([])
    segs_per_src = max(1.0, len(row_source) / max(1, len(np.unique(row_source))))
    k = int(k0 or min(n_allowed, int(np.ceil(depth * segs_per_src * 2)) + 8))
    pending = np.unique(q_clip)
    parts: list[ClipHits] = []
    while len(pending):
        k = min(k, n_allowed)
        seg_ids = np.flatnonzero(np.isin(q_clip, pending))
        hits, kth = [], []
        for s in range(0, len(seg_ids), chunk):
            ids = seg_ids[s : s + chunk]
            D, I = fx.search(index, q_vectors[ids], k, params, rows_allowed)
            hits.append(_aggregate(D, I, ids, q_clip, row_source, exclude))
            kth.append(D[:, -1])
        got = concat_hits(hits)
        if k >= n_allowed:
            parts.append(got)
            break
        count = np.bincount(got.qclip, minlength=int(q_clip.max()) + 1)
        need = count[pending] < depth
        if more_while_above is not None:
            deep = np.zeros(int(q_clip.max()) + 1, dtype=bool)
            deep[q_clip[seg_ids][np.concatenate(kth) >= more_while_above]] = True
            need |= deep[pending]
        done = pending[~need]
        keep = np.isin(got.qclip, done)
        parts.append(ClipHits(*(getattr(got, f)[keep] for f in ClipHits.__dataclass_fields__)))
        pending, k = pending[need], k * 4
    out = concat_hits(parts)
    keep = out.rank < depth if more_while_above is None else (out.rank < depth) | (out.sim >= more_while_above)
    return ClipHits(*(getattr(out, f)[keep] for f in ClipHits.__dataclass_fields__))


def top_matrix(hits: ClipHits, n_clips: int, depth: int, field: str = "sim") -> np.ndarray:
    """(n_clips, depth) array of ``field`` by rank (NaN / -1 where a clip has fewer)."""
    vals = getattr(hits, field)
    fill = np.nan if vals.dtype.kind == "f" else -1
    out = np.full((n_clips, depth), fill, dtype=np.float64 if fill is np.nan else np.int64)
    m = hits.rank < depth
    out[hits.qclip[m], hits.rank[m]] = vals[m]
    return out
