"""Test-only copy transformations: what the detector never trains on.

A detector that is judged only on its own augmentations proves little. These families
model what generators, editors and distribution do to audio and are *not* in the training
views (``random_view`` never draws them): a copy must still be found through them
(``audioaudit bench --test-families``). Each maps ``strength`` 0 -> 1 from a mild to a
severe setting a listener would still call a copy.

- ``opus``: Opus in Ogg at a low bit rate (libsndfile; ~48 -> ~12 kbit/s at 16 kHz) —
  a speech codec's artefacts, unlike training's MP3;
- ``room``: a room with early reflections (sparse taps, 3-40 ms) and a two-band late tail
  (highs die faster), heard from farther away as strength grows (lower direct-to-reverb
  ratio) — not training's single-band exponential noise;
- ``layered``: the copy placed inside a longer unrelated recording (1.5-3x its length) at
  a random offset, from +6 dB over it down to -3 dB under it;
- ``phone``: telephone channel: band 100-7000 Hz -> 300-3400 Hz, 8 kHz mu-law (ITU-T
  G.711) at the severe end, soft clipping;
- ``compressor``: feed-forward dynamic range compression (threshold -10 -> -35 dBFS,
  ratio 2 -> 12, attack 2 ms, release 80 ms) with make-up gain to the original peak;
- ``excerpt``: only a short part of the clip survives (50 % -> 25 % of it).

Signature as the other families: ``fn(x, sr, value, rng, others) -> y`` (see
:mod:`audioaudit.detector.augment_ops`), any length from one sample up.
"""
from __future__ import annotations

import io

import numpy as np
from scipy import signal


def _opus(x, sr, v, rng, others):
    """Opus round trip; ``v`` is libsndfile's compression level (1.0: lowest bit rate)."""
    import soundfile as sf
    import soxr

    rate = 16000  # Opus codes 8/12/16/24/48 kHz; 16 kHz is its wideband speech mode
    y = soxr.resample(x, sr, rate) if sr != rate else x
    n = len(y)
    pad = np.pad(y, (0, max(0, rate // 10 - n)))  # the codec needs a few frames
    buf = io.BytesIO()
    sf.write(buf, np.clip(pad, -1, 1), rate, format="OGG", subtype="OPUS", compression_level=float(v))
    buf.seek(0)
    z, _ = sf.read(buf, dtype="float32")
    z = z[:n] if len(z) >= n else np.pad(z, (0, n - len(z)))
    z = soxr.resample(z, rate, sr) if sr != rate else z
    return z[: len(x)] if len(z) >= len(x) else np.pad(z, (0, len(x) - len(z)))  # rate round trips lose a sample


def _room_ir(sr: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """Early reflections + a two-band exponential tail (highs decay twice as fast)."""
    n = max(1, int(rt60 * sr))
    t = np.arange(n) / sr
    noise = rng.standard_normal(n)
    b_lo, a_lo = signal.butter(2, min(0.99, 1500 / (sr / 2)), "low")
    lo = signal.lfilter(b_lo, a_lo, noise)
    hi = noise - lo
    tail = lo * np.exp(-6.9 * t / rt60) + hi * np.exp(-13.8 * t / rt60)
    tail *= 0.5 / (np.sqrt(np.sum(tail**2)) + 1e-9)
    ir = np.zeros(n)
    ir[0] = 1.0
    for d, g in zip(rng.uniform(0.003, 0.04, 8), rng.uniform(0.2, 0.6, 8) * rng.choice([-1, 1], 8)):
        ir[min(n - 1, int(d * sr))] += g
    return ir + tail


def _room(x, sr, v, rng, others):
    """``v``: RT60 in seconds; the direct sound falls as the room grows (farther mic)."""
    ir = _room_ir(sr, v, rng)
    ir[0] *= 1.0 / (1.0 + 2.0 * v)
    y = signal.fftconvolve(x, ir)[: len(x)]
    peak = np.max(np.abs(y)) + 1e-9
    return y * (np.max(np.abs(x)) / peak)


def _layered(x, sr, v, rng, others):
    """``v``: copy level over the bed in dB; the bed is another clip, looped to 1.5-3x the copy."""
    bed_src = others[int(rng.integers(len(others)))] if len(others) else rng.standard_normal(len(x)) * 0.05
    n = int(len(x) * rng.uniform(1.5, 3.0)) + 1
    bed = np.resize(np.asarray(bed_src, np.float32), n)
    rms = lambda a: float(np.sqrt(np.mean(np.square(a))) + 1e-9)  # noqa: E731
    bed = bed * (rms(x) / rms(bed)) * 10 ** (-v / 20)
    at = int(rng.integers(0, n - len(x) + 1))
    bed[at : at + len(x)] += x
    return bed / max(1.0, float(np.max(np.abs(bed))))


def _phone(x, sr, v, rng, others):
    """``v`` in [0, 1]: 0 wideband (100-7000 Hz, 16-bit), 1 narrowband 8 kHz mu-law."""
    lo, hi = 100 + 200 * v, 7000 - 3600 * v
    hi = min(hi, 0.45 * sr)
    sos = signal.butter(4, [lo, hi], "bandpass", fs=sr, output="sos")
    y = signal.sosfilt(sos, x)
    if v >= 0.5:  # G.711 mu-law at 8 kHz
        import soxr

        z = soxr.resample(y, sr, 8000) if sr != 8000 else y
        mu = 255.0
        q = np.sign(z) * np.log1p(mu * np.minimum(np.abs(z), 1.0)) / np.log1p(mu)
        q = np.round(q * 127) / 127
        z = np.sign(q) * ((1 + mu) ** np.abs(q) - 1) / mu
        y = soxr.resample(z, 8000, sr)[: len(x)] if sr != 8000 else z
        y = np.pad(y, (0, max(0, len(x) - len(y))))
    return np.tanh(1.5 * y) / np.tanh(1.5)


def _compressor(x, sr, v, rng, others):
    """``v`` in [0, 1] -> threshold -10..-35 dBFS, ratio 2..12; peak restored after."""
    thr_db, ratio = -10 - 25 * v, 2 + 10 * v
    att, rel = np.exp(-1 / (0.002 * sr)), np.exp(-1 / (0.08 * sr))
    level = np.abs(x).astype(np.float64)
    env = signal.lfilter([1 - rel], [1, -rel], level)  # release-smoothed envelope
    env = np.maximum(env, signal.lfilter([1 - att], [1, -att], level))
    db = 20 * np.log10(env + 1e-9)
    gain_db = np.minimum(0.0, (thr_db - db) * (1 - 1 / ratio))
    y = x * 10 ** (gain_db / 20)
    return y * (np.max(np.abs(x)) / (np.max(np.abs(y)) + 1e-9))


def _excerpt(x, sr, v, rng, others):
    """``v``: the fraction of the clip kept (a contiguous part), at least one sample."""
    keep = max(1, int(round(len(x) * v)))
    at = int(rng.integers(0, len(x) - keep + 1))
    return x[at : at + keep]


# name: (description, parameter, mild, severe, unit, order, needs_others, length ratio, function)
UNSEEN = {
    "opus": ("Opus round trip at a low bit rate (~48 -> ~12 kbit/s)", "compression level", 0.85, 1.0, "", 16,
             False, (1.0, 1.0), _opus),
    "room": ("room: early reflections + two-band tail, farther mic", "RT60", 0.3, 1.5, "s", 10, False, (1.0, 1.0),
             _room),
    "layered": ("the copy inside a longer unrelated recording", "copy over bed", 6.0, -3.0, "dB", 6, True,
                (1.5, 3.0), _layered),
    "phone": ("telephone channel: band limit, 8 kHz mu-law, soft clip", "narrowband amount", 0.0, 1.0, "", 8,
              False, (1.0, 1.0), _phone),
    "compressor": ("dynamic range compression, make-up gain", "amount", 0.2, 1.0, "", 13, False, (1.0, 1.0),
                   _compressor),
    "excerpt": ("only a short contiguous part survives", "kept fraction", 0.5, 0.25, "fraction", 0, False,
                (0.25, 0.5), _excerpt),
}
