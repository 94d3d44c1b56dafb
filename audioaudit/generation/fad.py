"""Fréchet audio distance between two sets of embeddings (pure; no I/O, no models).

Kilgour et al. 2019 (FAD), following Heusel et al. 2017 (FID, Eq. 6): fit a Gaussian to
each set and take the Fréchet (2-Wasserstein) distance between them (Dowson & Landau 1982)

    d^2 = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^{1/2} S_b S_a^{1/2})^{1/2}).

The trace of the matrix square root is computed from the eigenvalues of the symmetric
PSD matrix S_a^{1/2} S_b S_a^{1/2}, which is stable even when the covariances are
singular (fewer clips than dimensions), unlike ``sqrtm(S_a @ S_b)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class FADResult:
    fad: float
    n_a: int
    n_b: int
    dim: int


def gaussian_stats(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of (N, dim) embeddings (N >= 2)."""
    x = np.asarray(emb, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need an (N >= 2, dim) array of embeddings, got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray) -> float:
    """Squared Fréchet distance between N(mu_a, cov_a) and N(mu_b, cov_b) (Dowson & Landau 1982)."""
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    tr_cross = float(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum())
    diff = np.asarray(mu_a, dtype=np.float64) - np.asarray(mu_b, dtype=np.float64)
    d2 = float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_cross)
    return max(d2, 0.0)


def fad(emb_a: np.ndarray, emb_b: np.ndarray) -> FADResult:
    """FAD between embedding sets a (e.g. generated) and b (e.g. reference)."""
    mu_a, cov_a = gaussian_stats(emb_a)
    mu_b, cov_b = gaussian_stats(emb_b)
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"embedding sizes differ: {mu_a.shape[0]} vs {mu_b.shape[0]}")
    return FADResult(frechet_distance(mu_a, cov_a, mu_b, cov_b), len(emb_a), len(emb_b), int(mu_a.shape[0]))


def fad_per_class(emb_a: np.ndarray, labels_a: Sequence, emb_b: np.ndarray, labels_b: Sequence,
                  min_items: int = 2) -> dict[str, FADResult]:
    """FAD per class present in both sets with at least ``min_items`` embeddings on each side.

    Unlabelled items (None / "") take part in no class.
    """
    la = np.asarray(["" if x is None else str(x) for x in labels_a])
    lb = np.asarray(["" if x is None else str(x) for x in labels_b])
    out: dict[str, FADResult] = {}
    for c in sorted((set(la) & set(lb)) - {""}):
        a, b = np.asarray(emb_a)[la == c], np.asarray(emb_b)[lb == c]
        if len(a) >= max(2, min_items) and len(b) >= max(2, min_items):
            out[c] = fad(a, b)
    return out
