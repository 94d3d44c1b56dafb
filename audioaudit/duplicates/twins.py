"""Near twins among decoded clips (pure: no index needed): same recording, other gain / offset / codec."""

from __future__ import annotations

from typing import Sequence

import numpy as np


# --------------------------------------------------------------------------- near twins
def _xcorr_peak(a: np.ndarray, b: np.ndarray, upsample: int = 4) -> float:
    """Max |normalised cross-correlation| over all lags (FFT), evaluated at 1/``upsample``
    sample steps (zero-padded spectrum = band-limited interpolation): an encoder delay
    that is a fraction of a sample would otherwise lower the peak of a true twin."""
    a, b = a - a.mean(), b - b.mean()
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    if den == 0:
        return 0.0
    n = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    c = np.fft.irfft(np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n)), n * upsample) * upsample
    return float(np.max(np.abs(c)) / den)


def _band_descriptor(x: np.ndarray, sr: int = 4000, bands: int = 32) -> np.ndarray:
    """Unit vector of z-scored log band energies, 30 Hz – sr/2 in log-spaced bands
    (gain-invariant coarse spectrum, same length for any clip length)."""
    p = np.abs(np.fft.rfft(x)) ** 2
    cs = np.r_[0.0, np.cumsum(p)]
    edges = np.geomspace(30.0, sr / 2, bands + 1) / (sr / 2) * (len(p) - 1)
    lo = edges[:-1].astype(int)
    hi = np.maximum(edges[1:].astype(int), lo + 1)
    e = np.log((cs[hi] - cs[lo]) / (hi - lo) + 1e-12)
    e = (e - e.mean()) / (e.std() + 1e-9)
    return e / (np.linalg.norm(e) + 1e-9)


def near_twin_pairs(
    waves: Sequence[np.ndarray], sr: int, *, threshold: float = 0.9, candidates: int = 8, coarse: float = 0.9
) -> list[tuple[int, int, float]]:
    """Pairs (i, j, correlation) of clips that are the same recording after re-encoding,
    gain, resampling or padding: waveform cross-correlation at 4 kHz >= ``threshold``.
    Candidates come from a coarse band-energy descriptor (top ``candidates`` per clip)."""
    from audioaudit.audio.io import resample

    if len(waves) < 2:
        return []
    low = [resample(np.asarray(w, np.float32), sr, 4000) if sr != 4000 else np.asarray(w, np.float32) for w in waves]
    desc = np.stack([_band_descriptor(x) for x in low])
    sim = desc @ desc.T
    np.fill_diagonal(sim, -np.inf)
    k = min(candidates, len(waves) - 1)
    best = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    pairs: dict[tuple[int, int], float] = {}
    for i in range(len(waves)):
        for j in best[i]:
            a, b = (i, int(j)) if i < j else (int(j), i)
            if (a, b) in pairs or sim[a, b] < coarse:
                continue
            pairs[(a, b)] = _xcorr_peak(low[a], low[b])
    return [(a, b, c) for (a, b), c in sorted(pairs.items()) if c >= threshold]


# --------------------------------------------------------------------------- twin groups
def twin_groups(paths: Sequence[str], waves: Sequence[np.ndarray], sr: int) -> list[set[int]]:
    """For every clip, the positions of the clips sharing its audio (itself included):
    exact twins (same decoded PCM) and near twins (:func:`near_twin_pairs`), merged."""
    from audioaudit.audio import fingerprint
    from audioaudit.duplicates.groups import group_duplicates

    hashes = [fingerprint.pcm_hash(w, sr) for w in waves]
    near = [(paths[a], paths[b]) for a, b, _ in near_twin_pairs(waves, sr)]
    pos = {p: n for n, p in enumerate(paths)}
    twins = [{n} for n in range(len(paths))]
    for g in group_duplicates(paths, hashes, near):
        members = {pos[m] for m in g.members}
        for n in members:
            twins[n] = members
    return twins
