"""Clip similarity and THE score normalisation, shared by index, audit, benchmark and calibrations.

A clip longer than the encoder's window is embedded per window (the one rule,
:func:`audioaudit.audio.windows.cut`); the similarity of two clips is the **maximum
cosine over window pairs** — a copied span anywhere matches (:func:`clip_similarity`).
A raw max over many windows inflates the scores of non-matches (FACTS.md: µAP 0.36 raw
vs 0.93 normalised on a real-audio set), so scores are normalised as in SSCD (Pizzi et
al., "A Self-Supervised Descriptor for Image Copy Detection", CVPR 2022, §3.3):
``score(q, r) = sim(q, r) - β · level(q)`` with β = 1 (:func:`normalise`), where the
level is how similar the query is to clips it is *not* a copy of: the mean of its
2nd–11th best distinct references (:func:`background`, :func:`background_level`), or of
its ``k`` best background-set clips (:func:`top_k_mean`). Every caller normalises
through these functions.
"""
from __future__ import annotations

import numpy as np

from audioaudit.encoders.embed import ClipEmbeddings


def _reduce_max(x: np.ndarray, owner: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Max of ``x`` along ``axis`` within each owner's contiguous run."""
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    red = np.maximum.reduceat(x, starts, axis=axis)
    if len(starts) == n:
        return red
    full_shape = list(x.shape)
    full_shape[axis] = n
    out = np.full(full_shape, -np.inf, np.float32)
    idx = [slice(None)] * x.ndim
    idx[axis] = owner[starts]
    out[tuple(idx)] = red
    return out


def clip_similarity(queries: ClipEmbeddings, refs: ClipEmbeddings, block: int = 2048) -> np.ndarray:
    """(n_query_clips, n_ref_clips) max cosine over segment pairs."""
    out = np.empty((queries.n_clips, refs.n_clips), np.float32)
    if queries.n_clips == 0 or refs.n_clips == 0:
        return out
    q_starts = np.flatnonzero(np.r_[True, queries.owner[1:] != queries.owner[:-1]])
    # process whole query clips per block so a clip's segments are never split
    bounds = list(q_starts[::max(1, block // 8)]) + [len(queries.owner)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        seg = queries.vectors[a:b] @ refs.vectors.T  # (segments, ref segments)
        per_ref = _reduce_max(seg, refs.owner, refs.n_clips, axis=1)
        own = queries.owner[a:b]
        rows = _reduce_max(per_ref, own - own[0], int(own[-1] - own[0] + 1), axis=0)
        out[own[0] : own[-1] + 1] = rows
    return out


def background(sim: np.ndarray, exclude: np.ndarray | None = None, lo: int = 1, hi: int = 11) -> np.ndarray:
    """Per-query background level: mean of the ``lo..hi-1``-th best similarities (0-based,
    default 2nd–11th) over the references not masked out by ``exclude`` (bool, same shape)."""
    s = np.array(sim, dtype=np.float32, copy=True)
    if exclude is not None:
        s[exclude] = -np.inf
    k = min(hi, s.shape[1])
    top = -np.sort(-s, axis=1)[:, :k]
    top[~np.isfinite(top)] = np.nan
    return background_level(top, lo, hi)


def normalised(sim: np.ndarray, exclude: np.ndarray | None = None, lo: int = 1, hi: int = 11) -> np.ndarray:
    """SSCD-normalised scores: similarity minus the query's background level."""
    return normalise(sim, background(sim, exclude, lo, hi))


def top_k(matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` best references of every query as flat (query, ref, value) arrays."""
    n_q, n_r = matrix.shape
    k = min(k, n_r)
    if k <= 0 or n_q == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)
    idx = np.argpartition(-matrix, k - 1, axis=1)[:, :k]
    q = np.repeat(np.arange(n_q), k)
    r = idx.reshape(-1)
    return q, r, matrix[q, r]


def background_level(sorted_sims: np.ndarray, lo: int = 1, hi: int = 11) -> np.ndarray:
    """Mean of each row's similarities at sorted positions [lo, hi) (row-wise, descending).

    ``sorted_sims``: (Q, K) similarities to *distinct* references, sorted descending.
    Rows with fewer than ``lo + 1`` columns get 0 (no background known).
    """
    s = np.asarray(sorted_sims, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError("sorted_sims must be (Q, K)")
    part = s[:, lo:hi]
    if part.shape[1] == 0:
        return np.zeros(s.shape[0], dtype=np.float32)
    with np.errstate(invalid="ignore"):
        level = np.nanmean(np.where(np.isfinite(part), part, np.nan), axis=1)
    return np.nan_to_num(level, nan=0.0).astype(np.float32)


def normalise(sims: np.ndarray, background: np.ndarray, beta: float = 1.0) -> np.ndarray:
    """score = similarity − β · background (broadcast over each query's row)."""
    sims = np.asarray(sims)
    sims = sims if sims.dtype.kind == "f" else sims.astype(np.float32)  # float32 matrices stay float32
    bg = np.asarray(background, dtype=sims.dtype).reshape(-1, *([1] * (sims.ndim - 1)))
    return (sims - sims.dtype.type(beta) * bg).astype(sims.dtype)


def top_k_mean(sim: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Pure: mean of each row's ``k`` largest values, leaving out column ``exclude[i]`` (>= 0):
    :func:`background` over ranks 1..k (the background-set level of :mod:`audioaudit.index.background`)."""
    s = np.asarray(sim, dtype=np.float32)
    mask = None
    if exclude is not None:
        mask = np.zeros(s.shape, bool)
        rows = np.flatnonzero(np.asarray(exclude) >= 0)
        mask[rows, np.asarray(exclude)[rows]] = True
    return background(s, mask, lo=0, hi=max(1, k)).astype(np.float64)
