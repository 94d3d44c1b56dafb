"""Copy transformations: what a generator may do to a training clip it reproduces.

Each *family* is one kind of change (a codec round trip, a speed change, a span pasted
into other audio ...) with a documented parameter range. ``strength`` in [0, 1] maps
linearly from the mild end of the range (0) to the severe end (1); the sign or colour of
a change (faster/slower, pink/blue noise ...) is drawn from the ``rng``. The same
functions make training pairs (:func:`random_view`, SSCD-style heavy augmentation —
Pizzi et al. 2022 §3.2) and benchmark queries (DISC21-style, Douze et al. 2021).

The DSP is audiomentations' (MIT) wherever it has the transform; MP3 goes through
libsndfile's LAME encoder in memory; speed/resampling through soxr; the reverb
convolves a synthetic exponentially-decaying-noise impulse response (the standard
stochastic late-reverb model, e.g. Moorer 1979). audiomentations draws its randomness
from the global ``random``/``np.random``; we pin every parameter from our own ``rng``
and seed those globals from it for the duration of one call (then restore them), so a
transform is a pure function of (wave, sr, family, strength, rng state). The rendering
itself is in :mod:`audioaudit.detector.augment_ops`; every family takes clips of any
length, one sample up (a shift is capped at half the clip, resampling pads to a working
length, the MP3 codec delay is removed), so a short corpus clip or a short view never
breaks a chain.

Cost per 10 s clip at 48 kHz here: gain/shift/crop < 1 ms, filters/noise/resampling
2–20 ms, reverb ~11 ms, pitch shift/time stretch (signalsmith) ~60–80 ms, MP3 round trip
~120–140 ms. ``pitch`` and ``stretch`` are outside the standard set: a 3-semitone shift
is a different rendition as much as a copy.
"""

from __future__ import annotations

import math
import random
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from audioaudit.detector.augment_ops import APPLY
from audioaudit.detector.unseen import UNSEEN


@dataclass(frozen=True)
class Family:
    """A named transformation family. ``mild``/``severe`` are the parameter at strength 0/1."""

    name: str
    description: str
    parameter: str  # what strength controls
    mild: float
    severe: float
    unit: str
    order: int  # position in a chain: edits, then mixing, filters, room, noise, level, codec
    standard: bool = True  # part of the set the µAP >= 0.95 goal is stated on
    needs_others: bool = False  # needs a pool of other clips (mixing, partial copy)
    length_ratio: tuple[float, float] = (1.0, 1.0)  # output/input length, lowest and highest
    training: bool = True  # False: test-only (:mod:`audioaudit.detector.unseen`), never in training views

    def value(self, strength: float) -> float:
        s = float(np.clip(strength, 0.0, 1.0))
        return self.mild + (self.severe - self.mild) * s


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family("crop", "keep one contiguous part of the clip", "kept fraction", 0.9, 0.5, "fraction", 0,
               length_ratio=(0.5, 0.9)),
        Family("shift", "delay or advance in a fixed-length frame (zeros fill; at most half the clip)", "shift",
               0.05, 0.5, "s", 1),
        Family("partial", "a span of the clip spliced into another clip of the same length",
               "span fraction", 0.9, 0.5, "fraction", 2, needs_others=True),
        Family("speed", "speed change: pitch and tempo together (resampling)", "|rate - 1|", 0.02, 0.12, "ratio", 3,
               length_ratio=(1 / 1.12, 1 / 0.88)),
        Family("stretch", "time stretch, pitch kept (signalsmith)", "|rate - 1|", 0.03, 0.2, "ratio", 4,
               standard=False, length_ratio=(1 / 1.2, 1 / 0.8)),
        Family("pitch", "pitch shift, tempo kept (signalsmith)", "|semitones|", 0.3, 3.0, "semitones", 5,
               standard=False),
        Family("mix", "another clip mixed underneath", "foreground/background ratio", 20.0, 3.0, "dB", 6,
               needs_others=True),
        Family("eq", "parametric EQ: shelves + peaking bands", "max |band gain|", 3.0, 12.0, "dB", 7),
        Family("lowpass", "Butterworth low-pass", "cutoff", 8000.0, 1000.0, "Hz", 8),
        Family("highpass", "Butterworth high-pass", "cutoff", 100.0, 2000.0, "Hz", 9),
        Family("reverb", "synthetic room impulse response", "RT60", 0.2, 1.2, "s", 10),
        Family("noise_white", "additive white Gaussian noise", "SNR", 30.0, 5.0, "dB", 11),
        Family("noise_colour", "additive pink/brown/blue/violet noise", "SNR", 30.0, 5.0, "dB", 12),
        Family("gain", "level change (down to -24 dB, up to +8 dB)", "|gain|", 3.0, 24.0, "dB", 13),
        Family("clipping", "hard clipping at a percentile of |x|", "clipped samples", 1.0, 30.0, "%", 14),
        Family("resample", "down- and up-sampling round trip", "intermediate rate", 0.5, 0.2, "x sr", 15),
        Family("mp3", "MP3 round trip (LAME CBR via libsndfile); ~160->48 kbps at 44.1/48 kHz",
               "compression level", 0.5, 0.95, "libsndfile level", 16),
    ]
} | {
    name: Family(name, desc, param, mild, severe, unit, order, standard=False, needs_others=others,
                 length_ratio=ratio, training=False)
    for name, (desc, param, mild, severe, unit, order, others, ratio, _fn) in UNSEEN.items()
}
_APPLY = {**APPLY, **{name: u[-1] for name, u in UNSEEN.items()}}


STANDARD_FAMILIES: tuple[str, ...] = tuple(n for n, f in FAMILIES.items() if f.standard)
TRAINING_FAMILIES: tuple[str, ...] = tuple(n for n, f in FAMILIES.items() if f.training)  # the 17 views draw on
UNSEEN_FAMILIES: tuple[str, ...] = tuple(n for n, f in FAMILIES.items() if not f.training)  # test-only


# --------------------------------------------------------------------------- helpers
@contextmanager
def _library_seed(rng: np.random.Generator) -> Iterator[None]:
    """Seed the globals audiomentations draws from, from ``rng``; restore them after."""
    py_state, np_state = random.getstate(), np.random.get_state()
    seed = int(rng.integers(0, 2**32 - 1))
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


# --------------------------------------------------------------------------- API
def length_range(n: int, family: str) -> tuple[int, int]:
    """The shortest and longest output :func:`transform` gives a clip of ``n`` >= 1
    samples under ``family``, at any strength: ``max(1, floor(lo·n))`` to
    ``max(1, ceil(hi·n))`` with ``(lo, hi)`` the family's ``length_ratio`` — only
    ``crop`` (0.5–0.9), ``speed`` (1/1.12–1/0.88) and ``stretch`` (1/1.2–1/0.8) and the
    test-only ``layered`` (1.5–3) and ``excerpt`` (0.25–0.5) change the length; every
    other family keeps it exactly. Chained (:func:`random_view`), the
    bounds compose: apply this to the previous bounds, op by op."""
    lo, hi = FAMILIES[family].length_ratio
    eps = 1e-9  # 0.9 * 10 is 9.000000000000002 in floating point
    return max(1, math.floor(lo * n + eps)), max(1, math.ceil(hi * n - eps))


def transform(
    wave: np.ndarray,
    sr: int,
    family: str,
    strength: float,
    rng: np.random.Generator,
    *,
    others: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """Apply one family at ``strength`` in [0, 1] (mild → severe end of its range).

    ``wave``: a non-empty mono clip of any length, one sample up. ``others``: clips at the
    same ``sr``, of any lengths, for ``mix`` and ``partial`` (required there). Returns
    finite float32 mono at ``sr``, its length within :func:`length_range` (only crop,
    speed, stretch, layered and excerpt change it)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown augment family '{family}' (known: {', '.join(FAMILIES)})")
    x = np.asarray(wave, dtype=np.float32).reshape(-1)
    if x.size == 0:
        raise ValueError("cannot transform an empty waveform")
    v = FAMILIES[family].value(strength)
    with _library_seed(rng):
        y = _APPLY[family](x, int(sr), v, rng, others)
    return np.nan_to_num(np.asarray(y, dtype=np.float32).reshape(-1), nan=0.0, posinf=1.0, neginf=-1.0)


def random_view(
    wave: np.ndarray,
    sr: int,
    rng: np.random.Generator,
    *,
    families: Sequence[str] | None = None,
    n_ops: tuple[int, int] = (1, 3),
    others: Sequence[np.ndarray] = (),
    max_strength: float = 1.0,
) -> tuple[np.ndarray, list[str]]:
    """A random chain of ``n_ops`` (inclusive range) distinct families at uniform random
    strengths in [0, ``max_strength``], applied in the canonical order (edits → mix → filters → room → noise →
    level → codec). Families needing ``others`` are left out when none are given.
    Any clip length is accepted (see :func:`transform`; the view's length is within
    :func:`length_range` composed over the families applied).
    Returns the view and the names of the families applied, in order."""
    names = [f for f in (families or TRAINING_FAMILIES) if others or not FAMILIES[f].needs_others]
    for f in names:
        if f not in FAMILIES:
            raise ValueError(f"unknown augment family '{f}'")
    if not names:
        return np.asarray(wave, dtype=np.float32).copy(), []
    k = int(rng.integers(n_ops[0], n_ops[1] + 1))
    k = min(max(k, 0), len(names))
    chosen = list(rng.choice(names, size=k, replace=False)) if k else []
    chosen.sort(key=lambda f: FAMILIES[f].order)
    y = np.asarray(wave, dtype=np.float32)
    for f in chosen:
        y = transform(y, sr, f, float(rng.random()) * max_strength, rng, others=others)
    return y, [str(f) for f in chosen]
