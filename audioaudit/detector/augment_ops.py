"""The DSP of each copy-transformation family (:mod:`audioaudit.detector.augment` holds
the registry, the parameter ranges and the public API; this module only renders).

Every function here takes ``(x, sr, v, rng, others)`` — a non-empty float32 mono clip,
its rate, the family's parameter at the drawn strength, the generator, the mixing pool —
and works for any clip length from one sample up: distances in seconds are capped by the
clip's own length, DSP that needs a working length (resampling, MP3 frames) pads and cuts
back, and codec delays are removed so the output lines up with the input.
"""

from __future__ import annotations

import io
from typing import Callable, Sequence

import numpy as np

# LAME's encoder delay (576) + the MPEG layer III decoder delay (529): what an MP3 stream
# without a LAME/Xing info tag (libsndfile omits it at low bitrates) decodes with in front.
MP3_DELAY = 1105
MIN_RESAMPLE_WORK = 32  # samples the intermediate rate of a resampling round trip must hold


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


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    """``y`` cut or zero-padded at the end to ``n`` samples."""
    return y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))


def _resample(x: np.ndarray, sr_in: float, sr_out: float) -> np.ndarray:
    import soxr

    return soxr.resample(x, sr_in, sr_out, quality="HQ").astype(np.float32)


# --------------------------------------------------------------------------- families
def _crop(x, sr, v, rng, others):
    n = max(1, int(round(len(x) * v)))
    start = int(rng.integers(0, len(x) - n + 1))
    return x[start : start + n]


def _shift(x, sr, v, rng, others):
    """Delay or advance by ``v`` s in the clip's own frame, zeros filling, a fade of up to
    5 ms where the clip meets the zeros. The shift is capped at half the clip, so at least
    half of it stays in the frame (a clip shorter than the shift would leave silence), and
    the fade at a quarter of what stays (a 5 ms fade would silence a 2 ms remainder)."""
    from audiomentations import Shift
    from audiomentations.augmentations.shift import DURATION_EPSILON

    k = int(_sign(rng) * min(int(round(v * sr)), len(x) // 2))
    if k == 0:
        return x.copy()
    fade = min(0.005, (len(x) - abs(k)) / (4 * sr))
    fade = fade if fade >= DURATION_EPSILON else 0.0  # audiomentations' shortest fade
    return Shift(min_shift=k, max_shift=k, shift_unit="samples", rollover=False, fade_duration=fade, p=1.0)(x, sr)


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
    """Down to ``v``·sr (at least 4 kHz) and back up. A clip too short to hold
    ``MIN_RESAMPLE_WORK`` samples at the intermediate rate is zero-padded at the end
    first (as a longer clip's end is): a 1-sample clip would have no samples there."""
    mid = max(4000, int(round(sr * v)))
    n = len(x)
    work = max(n, int(np.ceil(MIN_RESAMPLE_WORK * sr / mid)))
    y = _resample(_resample(np.pad(x, (0, work - n)), sr, mid), mid, sr)
    return _fit(y, n)


def _mp3(x, sr, v, rng, others):
    """Encode to MP3 (constant bitrate) and decode, in memory; aligned and cut to length.

    Where the stream carries a LAME info tag the decoder trims the codec delay and padding
    itself (output length = input length); at low bitrates libsndfile writes none, and the
    decoded audio starts ``MP3_DELAY`` samples late and is padded to whole frames."""
    import soundfile as sf

    buf = io.BytesIO()
    peak = float(np.max(np.abs(x)))
    scale = 1.0 / peak if peak > 1.0 else 1.0  # the encoder clips at full scale
    sf.write(buf, x * scale, sr, format="MP3", compression_level=float(v), bitrate_mode="CONSTANT")
    buf.seek(0)
    y, _ = sf.read(buf, dtype="float32")
    y = y.mean(axis=1) if y.ndim == 2 else y
    if len(y) != len(x):  # no gapless information: drop the delay ourselves
        y = y[MP3_DELAY:]
    return _fit(y / scale, len(x))


APPLY: dict[str, Callable] = {
    "crop": _crop, "shift": _shift, "partial": _partial, "speed": _speed, "stretch": _stretch,
    "pitch": _pitch, "mix": _mix, "eq": _eq, "lowpass": _lowpass, "highpass": _highpass,
    "reverb": _reverb, "noise_white": _noise_white, "noise_colour": _noise_colour, "gain": _gain,
    "clipping": _clipping, "resample": _resample_rt, "mp3": _mp3,
}  # fmt: skip
