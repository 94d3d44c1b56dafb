"""Audio-level check of near-duplicate candidates: is it the same recording?

The index proposes candidate pairs (embedding coverage ≥ a threshold); an embedding made
for *similarity* — log-mel statistics above all — also puts distinct clips of one class
there. A re-encoded, re-gained, resampled or padded copy of a recording keeps its
spectrogram frame by frame, up to a time shift; two different recordings do not. So each
candidate is verified on the decoded audio: log-mel spectrograms (16 kHz, 64 mels, 10 ms
hop, dB relative to the clip's peak so gain cancels, silent edges trimmed so padding
cancels), aligned at lag 0 or at one of the lags that maximise the cross-correlation of
their frame-energy envelopes, then compared by Pearson correlation over the overlapping
frames (the dense counterpart of landmark-fingerprint
verification, Wang 2003, "An industrial-strength audio search algorithm", §2.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RATE = 16000


HOP = 160


N_FFT = 512


N_MELS = 64


FMAX = 7000.0  # below MP3/OGG low-pass cut-offs at low bit rates


FLOOR_DB = 60.0


MIN_CORR = 0.98  # planted copies (gain, resample, OGG, MP3, padding) >= 0.988; distinct clips <= 0.97


MIN_OVERLAP = 0.5


@dataclass(frozen=True)
class Verdict:
    corr: float  # Pearson correlation of the aligned spectrograms
    overlap: float  # aligned overlap / frames of the shorter clip
    lag: int  # frames (b relative to a)

    @property
    def same(self) -> bool:
        return self.corr >= MIN_CORR and self.overlap >= MIN_OVERLAP


def spectrogram(wave: np.ndarray) -> np.ndarray:
    """(frames, N_MELS) log-mel in dB relative to the clip's peak, floored at -60 dB."""
    import librosa

    m = librosa.feature.melspectrogram(y=np.asarray(wave, np.float32), sr=RATE, n_fft=N_FFT, hop_length=HOP,
                                       n_mels=N_MELS, fmax=FMAX, center=True)
    db = 10 * np.log10(np.maximum(m, 1e-12))
    db = np.maximum(db - db.max(), -FLOOR_DB)
    return db.T.astype(np.float32)


def _trim(s: np.ndarray, below_db: float = 50.0) -> np.ndarray:
    """Drop leading/trailing frames more than ``below_db`` under the clip's peak (padding)."""
    active = np.flatnonzero(s.max(axis=1) > -below_db)
    return s[active[0] : active[-1] + 1] if active.size else s


def _candidate_lags(ea: np.ndarray, eb: np.ndarray, n: int = 5) -> list[int]:
    """Lag 0 plus the ``n`` best lags of the frame-energy cross-correlation."""
    a, b = ea - ea.mean(), eb - eb.mean()
    xc = np.correlate(a, b, mode="full")  # index k <-> lag k - (len(b) - 1)
    best = np.argsort(xc)[::-1][:n] - (len(b) - 1)
    return [0] + [int(v) for v in best if v != 0]


def _overlap(sa: np.ndarray, sb: np.ndarray, lag: int):
    """(frames of ``sa``, frames of ``sb`` aligned at ``lag``, overlap / shorter clip), or
    None when fewer than 2 frames overlap."""
    a0, b0 = max(0, lag), max(0, -lag)
    n = min(len(sa) - a0, len(sb) - b0)
    if n < 2:
        return None
    return sa[a0 : a0 + n], sb[b0 : b0 + n], n / min(len(sa), len(sb))


def _at_lag(sa: np.ndarray, sb: np.ndarray, lag: int) -> Verdict:
    o = _overlap(sa, sb, lag)
    if o is None:
        return Verdict(0.0, 0.0, lag)
    x, y = o[0].ravel(), o[1].ravel()
    sx, sy = x.std(), y.std()
    corr = float(((x - x.mean()) * (y - y.mean())).mean() / (sx * sy)) if sx > 0 and sy > 0 else 0.0
    return Verdict(corr, o[2], lag)


def _at_lag_banded(sa: np.ndarray, sb: np.ndarray, lag: int, floor_db: float = 50.0) -> Verdict:
    """:func:`_at_lag` after removing each mel band's mean over the overlap (cepstral-mean
    style: a static filter — EQ, high/low-pass, a telephone band — is a constant per band in
    dB, so it cancels) and leaving out bands that are near the floor in either clip."""
    o = _overlap(sa, sb, lag)
    if o is None:
        return Verdict(0.0, 0.0, lag)
    x, y = o[0], o[1]
    keep = (x.mean(axis=0) > -floor_db) & (y.mean(axis=0) > -floor_db)
    if keep.sum() < 4:
        keep = np.ones(x.shape[1], bool)
    x = x[:, keep] - x[:, keep].mean(axis=0)
    y = y[:, keep] - y[:, keep].mean(axis=0)
    sx, sy = np.sqrt(np.mean(x * x)), np.sqrt(np.mean(y * y))
    corr = float(np.mean(x * y) / (sx * sy)) if sx > 0 and sy > 0 else 0.0
    return Verdict(corr, o[2], lag)


def _best(sa: np.ndarray, sb: np.ndarray, scorers) -> Verdict:
    """The best verdict of ``scorers`` over lag 0 and the best envelope cross-correlation
    lags (silent edges trimmed first), among alignments overlapping enough."""
    sa, sb = _trim(sa), _trim(sb)
    lags = _candidate_lags(sa.mean(axis=1), sb.mean(axis=1))
    verdicts = [score(sa, sb, lag) for score in scorers for lag in lags]
    ok = [v for v in verdicts if v.overlap >= MIN_OVERLAP] or verdicts
    return max(ok, key=lambda v: v.corr)


def compare_copy(sa: np.ndarray, sb: np.ndarray) -> Verdict:
    """The copy-verification score of two spectrograms: the best of the plain aligned
    correlation (:func:`compare`) and the band-mean-removed one (:func:`_at_lag_banded`) over
    the same lags. On the real-sound benchmark (detector candidates, top 10) the plain one
    alone lost high-passed copies (µAP 0.49: the low bands it correlates on are gone); the
    best of both kept them (0.98) and lifted overall µAP 0.840 -> 0.871."""
    return _best(sa, sb, (_at_lag, _at_lag_banded))


def compare(sa: np.ndarray, sb: np.ndarray) -> Verdict:
    """Best aligned correlation of two spectrograms (silent edges trimmed first), over lag
    0 and the best envelope cross-correlation lags, among alignments overlapping enough."""
    return _best(sa, sb, (_at_lag,))


def spectrograms(paths: list[str]) -> list[np.ndarray | None]:
    """Verification spectrograms (:func:`spectrogram`, 16 kHz) of files; None for a file
    that cannot be read."""
    from audioaudit.audio.io import load_waves

    waves, _ = load_waves(paths, RATE)
    return [None if w is None else spectrogram(w) for w in waves]


def verify_pairs(pairs, paths: dict[str, str]) -> list[tuple[str, str, float, Verdict]]:
    """Decode each candidate's two files (cached) and keep the verdicts of the same recordings."""
    from audioaudit.audio.io import LoadOptions, try_load

    cache: dict[str, np.ndarray | None] = {}

    def spec(item_id: str):
        if item_id not in cache:
            got = try_load(paths[item_id], LoadOptions(sample_rate=RATE, silence_dbfs=None))
            cache[item_id] = None if not hasattr(got, "wave") else spectrogram(got.wave)
        return cache[item_id]

    out = []
    for a, b, sim in pairs:
        sa, sb = spec(a), spec(b)
        if sa is None or sb is None:
            continue
        v = compare(sa, sb)
        if v.same:
            out.append((a, b, sim, v))
    return out


def aligned_correlation(query: np.ndarray, refs: list[np.ndarray | None]) -> np.ndarray:
    """Pure: the copy-verification score (:func:`compare_copy`) of one query's
    spectrogram with each candidate's (NaN where a candidate could not be decoded). The
    verification stage of two-stage retrieval: an embedding proposes candidates, this says
    whether the query holds the candidate's frames in order (a copy does, up to a time
    shift; a clip that merely sounds alike does not)."""
    return np.asarray([np.nan if r is None else compare_copy(query, r).corr for r in refs], np.float64)
