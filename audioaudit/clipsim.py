"""Clip-to-clip similarity from an encoder, shared by the benchmark and calibration.

A clip longer than the encoder's window is embedded per window
(:func:`audioaudit.encoders.base.segments`); the similarity of two clips is the
**maximum cosine over segment pairs** — a copied span anywhere matches. A raw max over
many windows inflates the scores of non-matches (FACTS.md: µAP 0.36 raw vs 0.93
normalised on a real-audio set), so it is used with SSCD score normalisation
(:mod:`audioaudit.scoring`, Pizzi et al. 2022 §3.3): from each query's similarities
subtract the mean of its 2nd–11th best distinct references.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from audioaudit import scoring


@dataclass(frozen=True)
class ClipEmbeddings:
    """Segment vectors of ``n_clips`` clips; ``owner[i]`` is the clip of vector ``i``
    (non-decreasing: a clip's segments are contiguous)."""

    vectors: np.ndarray  # (n_segments, dim) float32, L2-normalised
    owner: np.ndarray  # (n_segments,) int64
    n_clips: int


def embed_clips(
    encoder, waves: Sequence[np.ndarray], *, batch_size: int = 16, progress: Callable[[int], None] | None = None
) -> ClipEmbeddings:
    """Embed every window of every clip (waves at ``encoder.sample_rate``).
    ``progress(n)`` is called with the number of clips finished since the last call."""
    from audioaudit.encoders.base import segments

    vecs, owner = [], []
    for start in range(0, len(waves), batch_size):
        chunk = waves[start : start + batch_size]
        segs = [(start + i, s.wave) for i, w in enumerate(chunk) for s in segments(np.asarray(w, np.float32), encoder)]
        for j in range(0, len(segs), batch_size):
            part = segs[j : j + batch_size]
            vecs.append(np.asarray(encoder.embed([w for _, w in part]), np.float32))
            owner.extend(i for i, _ in part)
        if progress:
            progress(len(chunk))
    dim = int(encoder.dim)
    v = np.concatenate(vecs, axis=0) if vecs else np.zeros((0, dim), np.float32)
    return ClipEmbeddings(v, np.asarray(owner, np.int64), len(waves))


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
    return scoring.background_level(top, lo, hi)


def normalised(sim: np.ndarray, exclude: np.ndarray | None = None, lo: int = 1, hi: int = 11) -> np.ndarray:
    """SSCD-normalised scores: similarity minus the query's background level."""
    return scoring.normalise(sim, background(sim, exclude, lo, hi))


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
