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
transform is a pure function of (wave, sr, family, strength, rng state).

Cost per 10 s clip at 48 kHz here: gain/shift/crop < 1 ms, filters/noise/resampling
2–20 ms, reverb ~11 ms, pitch shift/time stretch (signalsmith) ~60–80 ms, MP3 round trip
~120–140 ms. ``pitch`` and ``stretch`` are outside the standard set: a 3-semitone shift
is a different rendition as much as a copy.
"""

from __future__ import annotations

import io
import random
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np


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

    def value(self, strength: float) -> float:
        s = float(np.clip(strength, 0.0, 1.0))
        return self.mild + (self.severe - self.mild) * s


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family("crop", "keep one contiguous part of the clip", "kept fraction", 0.9, 0.5, "fraction", 0),
        Family("shift", "delay or advance in a fixed-length frame (zeros fill)", "shift", 0.05, 0.5, "s", 1),
        Family("partial", "a span of the clip spliced into another clip of the same length",
               "span fraction", 0.9, 0.5, "fraction", 2, needs_others=True),
        Family("speed", "speed change: pitch and tempo together (resampling)", "|rate - 1|", 0.02, 0.12, "ratio", 3),
        Family("stretch", "time stretch, pitch kept (signalsmith)", "|rate - 1|", 0.03, 0.2, "ratio", 4,
               standard=False),
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
}


STANDARD_FAMILIES: tuple[str, ...] = tuple(n for n, f in FAMILIES.items() if f.standard)


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


def _sign(rng: np.random.Generator) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _pick_other(wave: np.ndarray, others: Sequence[np.ndarray], rng: np.random.Generator, family: str) -> np.ndarray:
    pool = [o for o in others if o is not wave and len(o) > 0]
    if not pool:
        raise ValueError(f"augment family '{family}' needs a pool of other clips (others=...)")
    return np.asarray(pool[int(rng.integers(len(pool)))], dtype=np.float32)


def _fit_loop(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of ``x`` from a random offset, looping it when it is shorter."""
    reps = int(np.ceil((n + len(x)) / len(x)))
    tiled = np.tile(x, reps)
    start = int(rng.integers(0, len(x)))
    return tiled[start : start + n]


def _resample(x: np.ndarray, sr_in: float, sr_out: float) -> np.ndarray:
    import soxr

    return soxr.resample(x, sr_in, sr_out, quality="HQ").astype(np.float32)


# --------------------------------------------------------------------------- families
def _crop(x, sr, v, rng, others):
    n = max(1, int(round(len(x) * v)))
    start = int(rng.integers(0, len(x) - n + 1))
    return x[start : start + n]


def _shift(x, sr, v, rng, others):
    from audiomentations import Shift

    d = _sign(rng) * v
    return Shift(min_shift=d, max_shift=d, shift_unit="seconds", rollover=False, p=1.0)(x, sr)


def _partial(x, sr, v, rng, others):
    """Splice a span (fraction ``v`` of the clip) into a host clip at the same level,
    10 ms linear crossfades at both joins. Output length = input length."""
    host = _fit_loop(_pick_other(x, others, rng, "partial"), len(x), rng)
    n = max(1, int(round(len(x) * v)))
    src = int(rng.integers(0, len(x) - n + 1))
    dst = int(rng.integers(0, len(x) - n + 1))
    span = x[src : src + n]
    host = host * (_rms(span) / max(_rms(host), 1e-8))
    fade = np.ones(n, dtype=np.float32)
    k = min(int(0.01 * sr), n // 2)
    if k > 0:
        ramp = np.linspace(0.0, 1.0, k, dtype=np.float32)
        fade[:k], fade[-k:] = ramp, ramp[::-1]
    out = host.astype(np.float32).copy()
    out[dst : dst + n] = fade * span + (1 - fade) * out[dst : dst + n]
    return out


def _speed(x, sr, v, rng, others):
    rate = 1.0 + _sign(rng) * v  # > 1 plays faster: fewer samples, higher pitch
    return _resample(x, sr * rate, sr)


def _stretch(x, sr, v, rng, others):
    from audiomentations import TimeStretch

    r = 1.0 + _sign(rng) * v
    return TimeStretch(min_rate=r, max_rate=r, leave_length_unchanged=False, p=1.0)(x, sr)


def _pitch(x, sr, v, rng, others):
    from audiomentations import PitchShift

    st = _sign(rng) * v
    return PitchShift(min_semitones=st, max_semitones=st, p=1.0)(x, sr)


def _mix(x, sr, v, rng, others):
    bg = _fit_loop(_pick_other(x, others, rng, "mix"), len(x), rng)
    scale = _rms(x) / max(_rms(bg), 1e-8) * 10 ** (-v / 20)
    return x + scale * bg


def _eq(x, sr, v, rng, others):
    """Low shelf, peaks at octave-ish centres below 0.8·Nyquist, high shelf; each band's
    gain uniform in ±``v`` dB (audiomentations' biquads, its SevenBandParametricEQ
    layout made sample-rate aware)."""
    from audiomentations import HighShelfFilter, LowShelfFilter, PeakingFilter

    nyq = sr / 2
    gains = iter(rng.uniform(-v, v, size=8))
    chain = [LowShelfFilter(100.0, 100.0, (g := next(gains)), g, p=1.0)]
    for fc in (250.0, 600.0, 1500.0, 3500.0, 8000.0):
        if fc < 0.8 * nyq:
            chain.append(PeakingFilter(fc, fc, (g := next(gains)), g, p=1.0))
    hs = min(12000.0, 0.7 * nyq)
    chain.append(HighShelfFilter(hs, hs, (g := next(gains)), g, p=1.0))
    for t in chain:
        x = t(x, sr)
    return x


def _lowpass(x, sr, v, rng, others):
    from audiomentations import LowPassFilter

    fc = min(v, 0.45 * sr)
    return LowPassFilter(min_cutoff_freq=fc, max_cutoff_freq=fc, min_rolloff=24, max_rolloff=24, p=1.0)(x, sr)


def _highpass(x, sr, v, rng, others):
    from audiomentations import HighPassFilter

    fc = min(v, 0.4 * sr)
    return HighPassFilter(min_cutoff_freq=fc, max_cutoff_freq=fc, min_rolloff=24, max_rolloff=24, p=1.0)(x, sr)


def _reverb(x, sr, v, rng, others):
    """Convolve with h(t) = δ(t) + g·n(t)·exp(−6.91 t / RT60), n white noise; the
    direct-to-reverberant ratio drops with strength (RT60 ``v``). Length kept."""
    from scipy.signal import fftconvolve

    n = max(1, int(v * sr))
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-6.91 * t / v)  # −60 dB at t = RT60
    tail[: int(0.002 * sr)] = 0.0  # 2 ms pre-delay before the first reflections
    drr_db = 6.0 - 12.0 * (v - 0.2)  # ~+6 dB at 0.2 s, ~−6 dB at 1.2 s
    tail *= 10 ** (-drr_db / 20) / max(np.sqrt(np.sum(tail**2)), 1e-8)
    tail[0] = 1.0
    y = fftconvolve(x, tail.astype(np.float32))[: len(x)]
    return y * (np.max(np.abs(x)) / max(np.max(np.abs(y)), 1e-8))


def _noise_white(x, sr, v, rng, others):
    from audiomentations import AddGaussianSNR

    return AddGaussianSNR(min_snr_db=v, max_snr_db=v, p=1.0)(x, sr)


_COLOURS = (-3.01, -6.02, 3.01, 6.02)  # dB/octave: pink, brown, blue, violet


def _noise_colour(x, sr, v, rng, others):
    from audiomentations import AddColorNoise

    d = _COLOURS[int(rng.integers(len(_COLOURS)))]
    return AddColorNoise(min_snr_db=v, max_snr_db=v, min_f_decay=d, max_f_decay=d, p=1.0)(x, sr)


def _gain(x, sr, v, rng, others):
    from audiomentations import Gain

    db = -v if rng.random() < 0.7 else v / 3.0  # boosts are capped at +8 dB
    return Gain(min_gain_db=db, max_gain_db=db, p=1.0)(x, sr)


def _clipping(x, sr, v, rng, others):
    """Hard clip so that ``v`` % of the samples hit the rails (audiomentations'
    ClippingDistortion rounds its percentile to even numbers, so 1 % would be a no-op)."""
    thr = float(np.percentile(np.abs(x), 100.0 - v))
    return np.clip(x, -thr, thr)


def _resample_rt(x, sr, v, rng, others):
    mid = max(4000, int(round(sr * v)))
    y = _resample(_resample(x, sr, mid), mid, sr)
    return y[: len(x)] if len(y) >= len(x) else np.pad(y, (0, len(x) - len(y)))


def _mp3(x, sr, v, rng, others):
    """Encode to MP3 (constant bitrate) and decode, in memory; trimmed/padded to length."""
    import soundfile as sf

    buf = io.BytesIO()
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    scale = 1.0 / peak if peak > 1.0 else 1.0  # the encoder clips at full scale
    sf.write(buf, x * scale, sr, format="MP3", compression_level=float(v), bitrate_mode="CONSTANT")
    buf.seek(0)
    y, _ = sf.read(buf, dtype="float32")
    y = y.mean(axis=1) if y.ndim == 2 else y
    y = y / scale
    return y[: len(x)] if len(y) >= len(x) else np.pad(y, (0, len(x) - len(y)))


_APPLY: dict[str, Callable] = {
    "crop": _crop, "shift": _shift, "partial": _partial, "speed": _speed, "stretch": _stretch,
    "pitch": _pitch, "mix": _mix, "eq": _eq, "lowpass": _lowpass, "highpass": _highpass,
    "reverb": _reverb, "noise_white": _noise_white, "noise_colour": _noise_colour, "gain": _gain,
    "clipping": _clipping, "resample": _resample_rt, "mp3": _mp3,
}  # fmt: skip


# --------------------------------------------------------------------------- API
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

    ``others``: clips at the same ``sr`` for ``mix`` and ``partial`` (required there).
    Returns finite float32 mono at ``sr``; the length may change (crop, speed, stretch).
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown augment family '{family}' (known: {', '.join(FAMILIES)})")
    x = np.asarray(wave, dtype=np.float32).reshape(-1)
    if x.size == 0:
        raise ValueError("cannot transform an empty waveform")
    v = FAMILIES[family].value(strength)
    with _library_seed(rng):
        y = _APPLY[family](x, int(sr), v, rng, others)
    y = np.nan_to_num(np.asarray(y, dtype=np.float32).reshape(-1), nan=0.0, posinf=1.0, neginf=-1.0)
    return y if y.size else np.zeros(1, dtype=np.float32)


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
    Returns the view and the names of the families applied, in order."""
    names = [f for f in (families or FAMILIES) if others or not FAMILIES[f].needs_others]
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
