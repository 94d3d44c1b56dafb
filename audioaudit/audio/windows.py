"""The one windowing rule: how a clip is cut into the windows an encoder embeds.

Index build, audit, benchmark and calibration all cut clips with :func:`cut`, so a
benchmark figure measures what the audit does:

1. windows of ``window_seconds`` every ``hop_seconds``; a clip no longer than one window
   is one window (the whole clip, padded by the encoder), and the last window is aligned
   to the clip end so no tail is lost (:func:`window_bounds`);
2. silent windows (peak below ``silence_dbfs``) are dropped, unless every window is
   silent (:func:`audible_bounds`): a silent window carries nothing to copy, and an
   encoder maps every silent window to nearly the same vector, so kept they would match
   each other at similarity ~1 across unrelated clips.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SILENCE_DBFS = -80.0  # a window whose peak is below this is silent


@dataclass(frozen=True)
class WindowSpec:
    """How an encoder wants clips cut (the decode workers see this, never the model)."""

    sample_rate: int
    window_seconds: float
    hop_seconds: float
    silence_dbfs: float | None = SILENCE_DBFS

    @staticmethod
    def of(encoder, silence_dbfs: float | None = SILENCE_DBFS) -> "WindowSpec":
        return WindowSpec(int(encoder.sample_rate), float(encoder.window_seconds), float(encoder.hop_seconds),
                          silence_dbfs)


@dataclass(frozen=True)
class Window:
    start: float  # seconds from the clip start
    end: float
    wave: np.ndarray


def window_bounds(n_samples: int, sr: int, window_s: float, hop_s: float) -> list[tuple[int, int]]:
    """Sample bounds of windows of ``window_s`` every ``hop_s`` (rule 1 above)."""
    win = max(1, int(round(window_s * sr)))
    hop = max(1, int(round(hop_s * sr)))
    if n_samples <= win:
        return [(0, n_samples)]
    starts = list(range(0, n_samples - win + 1, hop))
    if starts[-1] + win < n_samples:
        starts.append(n_samples - win)
    return [(s, s + win) for s in starts]


def audible_bounds(wave: np.ndarray, bounds: list[tuple[int, int]], silence_dbfs: float | None) -> list[tuple[int, int]]:
    """The windows whose peak reaches ``silence_dbfs`` (rule 2 above); all of them when none
    does, or when ``silence_dbfs`` is None."""
    if silence_dbfs is None:
        return bounds
    floor = 10.0 ** (silence_dbfs / 20.0)
    kept = [(s, e) for s, e in bounds if e > s and float(np.max(np.abs(wave[s:e]))) >= floor]
    return kept or bounds


def cut_bounds(wave: np.ndarray, spec: WindowSpec) -> list[tuple[int, int]]:
    """Sample bounds of the windows :func:`cut` keeps."""
    bounds = window_bounds(len(wave), spec.sample_rate, spec.window_seconds, spec.hop_seconds)
    return audible_bounds(wave, bounds, spec.silence_dbfs)


def cut(wave: np.ndarray, spec: WindowSpec) -> list[Window]:
    """The one rule: a clip at ``spec.sample_rate`` -> the windows that are embedded."""
    sr = spec.sample_rate
    return [Window(s / sr, e / sr, wave[s:e]) for s, e in cut_bounds(wave, spec)]
