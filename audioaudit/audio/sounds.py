"""A procedural sound-effect corpus: realistic-enough classes, every clip different.

Used by the demo, the benchmark and the tests, where no real corpus may be downloaded.
Each class is a small synthesiser whose parameters (pitch, timbre, rhythm, count, room,
level, noise floor ...) are drawn per clip from a seeded generator, so two clips of a
class are different recordings of the same *kind* of sound — the situation in which a
generic embedding confuses them and a copy detector must not.

Classes: impact, footsteps, engine, rain, bell, chirps (birdsong-like FM syllables),
typing, bark (dog-bark-like formant bursts), siren, wind, and speech (espeak-ng, in
:mod:`audioaudit.audio.speech`: only when the ``espeak-ng`` program is installed;
otherwise skipped with a note).

numpy/scipy only; a few milliseconds per clip (speech: one espeak-ng call per clip).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy import signal

from audioaudit.audio import speech as spoken

TWO_PI = 2.0 * np.pi


# --------------------------------------------------------------------------- helpers
def _t(n: int, sr: int) -> np.ndarray:
    return np.arange(n, dtype=np.float32) / sr


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _band(x: np.ndarray, sr: int, lo: float | None, hi: float | None, order: int = 2) -> np.ndarray:
    """Butterworth low/high/band-pass (``None`` leaves that edge open)."""
    nyq = 0.5 * sr
    lo = None if lo is None or lo <= 10 else min(lo, 0.45 * sr)
    hi = None if hi is None or hi >= 0.48 * sr else hi
    if lo is not None and hi is not None and hi <= lo * 1.05:
        hi = None if lo * 1.5 >= 0.48 * sr else lo * 1.5
    if lo is None and hi is None:
        return x
    if lo is not None and hi is not None:
        sos = signal.butter(order, [lo / nyq, hi / nyq], btype="band", output="sos")
    elif lo is not None:
        sos = signal.butter(order, lo / nyq, btype="high", output="sos")
    else:
        sos = signal.butter(order, hi / nyq, btype="low", output="sos")
    return signal.sosfilt(sos, x).astype(np.float32)


def _resonator(x: np.ndarray, sr: int, freq: float, q: float) -> np.ndarray:
    """Two-pole peaking resonator (a formant / a mode)."""
    freq = min(freq, 0.45 * sr)
    b, a = signal.iirpeak(freq, max(q, 0.5), fs=sr)
    return signal.lfilter(b, a, x).astype(np.float32)


def _add(out: np.ndarray, x: np.ndarray, start: int, gain: float = 1.0) -> None:
    """Add ``x`` into ``out`` at ``start`` (clipped to the buffer)."""
    if start >= len(out) or start + len(x) <= 0:
        return
    s0 = max(start, 0)
    x = x[s0 - start :]
    e = min(len(out), s0 + len(x))
    out[s0:e] += gain * x[: e - s0]


def _decay(n: int, sr: int, tau: float, attack: float = 0.0005) -> np.ndarray:
    t = _t(n, sr)
    env = np.exp(-t / max(tau, 1e-4))
    if attack > 0:
        env *= np.minimum(1.0, t / attack)
    return env.astype(np.float32)


def _coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power ∝ 1/f^exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / f ** (exponent / 2.0), n)
    return (x / (np.std(x) + 1e-12)).astype(np.float32)


# --------------------------------------------------------------------------- classes
def impact(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Struck objects: a noise transient exciting a few decaying modes (wood, metal, glass ...)."""
    out = np.zeros(n, np.float32)
    n_modes = int(rng.integers(2, 7))
    modes = [_loguniform(rng, 70, 0.4 * sr) for _ in range(n_modes)]
    taus = [_loguniform(rng, 0.02, 0.6) for _ in range(n_modes)]
    amps = rng.uniform(0.2, 1.0, n_modes)
    click_band = (_loguniform(rng, 60, 1500), _loguniform(rng, 2000, 0.45 * sr))
    for _ in range(int(rng.integers(1, 5))):
        start = int(rng.uniform(0, 0.8) * n)
        ln = min(n - start, int(sr * 1.5))
        if ln <= 16:
            continue
        t = _t(ln, sr)
        hit = _band(rng.standard_normal(ln).astype(np.float32), sr, *click_band) * _decay(ln, sr, _loguniform(rng, 0.003, 0.03))
        for f, tau, a in zip(modes, taus, amps):
            f *= rng.uniform(0.98, 1.02)
            hit += a * np.sin(TWO_PI * f * t + rng.uniform(0, TWO_PI)).astype(np.float32) * _decay(ln, sr, tau)
        _add(out, hit, start, rng.uniform(0.3, 1.0))
    return out


def footsteps(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Walking on a surface: heel thump + toe scuff, at a walker's own pace."""
    out = np.zeros(n, np.float32)
    interval = rng.uniform(0.3, 0.75)
    thump_lp = _loguniform(rng, 150, 900)
    scuff_band = (_loguniform(rng, 500, 2500), _loguniform(rng, 3000, 0.45 * sr))
    gravel = rng.random() < 0.5
    toe_delay = rng.uniform(0.04, 0.12)
    pos = rng.uniform(0, interval)
    while pos < n / sr:
        ln = int(sr * 0.35)
        heel = _band(rng.standard_normal(ln).astype(np.float32), sr, None, thump_lp) * _decay(ln, sr, rng.uniform(0.02, 0.06))
        scuff_env = _decay(ln, sr, rng.uniform(0.01, 0.05), attack=0.004)
        scuff = _band(rng.standard_normal(ln).astype(np.float32), sr, *scuff_band) * scuff_env
        if gravel:  # crunchy: sparse grains
            scuff *= (rng.random(ln) < 0.15).astype(np.float32) * 3.0
        step = 2.5 * heel
        _add(step, rng.uniform(0.2, 0.8) * scuff, int(toe_delay * sr))
        _add(out, step, int(pos * sr), rng.uniform(0.5, 1.0))
        pos += interval * rng.uniform(0.9, 1.1)
    return out


def engine(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Combustion engine: firing-rate harmonics following an RPM curve, plus rumble."""
    t = _t(n, sr)
    f0 = _loguniform(rng, 18, 90)
    rev = rng.uniform(-0.4, 0.8)  # relative change over the clip
    wobble = rng.uniform(0, 0.08) * np.sin(TWO_PI * rng.uniform(0.2, 2.0) * t + rng.uniform(0, TWO_PI))
    f_inst = f0 * (1.0 + rev * (t / t[-1]) ** rng.uniform(0.5, 2.0) + wobble)
    phase = np.cumsum(f_inst) / sr
    # one period of the firing waveform, with its own spectral tilt, looked up by phase
    k_max = max(2, int(0.45 * sr / (f_inst.max() * 1.0)))
    k = np.arange(1, min(k_max, 48) + 1)
    amps = k ** -rng.uniform(0.6, 1.6) * rng.uniform(0.3, 1.0, len(k))
    table_t = np.linspace(0, 1, 2048, endpoint=False)
    table = (amps[:, None] * np.sin(TWO_PI * k[:, None] * table_t + rng.uniform(0, TWO_PI, len(k))[:, None])).sum(0)
    x = table[((phase % 1.0) * 2048).astype(np.int64)].astype(np.float32)
    rumble = _band(rng.standard_normal(n).astype(np.float32), sr, 30, _loguniform(rng, 300, 2000))
    x = x / (np.std(x) + 1e-9) + rng.uniform(0.1, 0.6) * rumble * (1 + 0.5 * np.sin(TWO_PI * phase))
    return _band(x, sr, None, _loguniform(rng, 800, 0.45 * sr))


def rain(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Rain: a coloured-noise bed and many droplets (short decaying rising blips)."""
    bed = _coloured_noise(rng, n, rng.uniform(0.3, 1.5))
    bed = _band(bed, sr, _loguniform(rng, 100, 1500), _loguniform(rng, 3000, 0.45 * sr))
    bed *= 1 + rng.uniform(0, 0.4) * np.sin(TWO_PI * rng.uniform(0.05, 0.5) * _t(n, sr))
    out = rng.uniform(0.1, 0.5) * bed
    density = _loguniform(rng, 15, 160)
    f_lo, f_hi = _loguniform(rng, 800, 2500), _loguniform(rng, 3000, 0.45 * sr)
    ln = int(0.02 * sr)
    t = _t(ln, sr)
    bank = []
    for _ in range(12):  # a small bank of droplet sounds, reused with random gains
        f = rng.uniform(f_lo, f_hi)
        chirp = np.sin(TWO_PI * f * (t + rng.uniform(5, 40) * t * t))
        bank.append((chirp * _decay(ln, sr, rng.uniform(0.002, 0.008))).astype(np.float32))
    for start in rng.integers(0, n, int(density * n / sr)):
        _add(out, bank[int(rng.integers(len(bank)))], int(start), rng.uniform(0.05, 1.0))
    return out


_BELL_RATIOS = np.array([0.5, 1.0, 1.19, 1.5, 2.0, 2.5, 2.67, 3.0, 4.17, 5.43])


def bell(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Bells / chimes: inharmonic partials with partial-dependent decay, one or more strikes."""
    out = np.zeros(n, np.float32)
    base = _loguniform(rng, 150, 1400)
    n_partials = int(rng.integers(4, 9))
    pick = np.sort(rng.choice(len(_BELL_RATIOS), n_partials, replace=False))
    ratios = _BELL_RATIOS[pick] * rng.uniform(0.97, 1.03, n_partials)
    amps = rng.uniform(0.2, 1.0, n_partials)
    tau0 = _loguniform(rng, 0.4, 3.0)
    n_strikes = int(rng.integers(1, 4))
    for _ in range(n_strikes):
        start = int(rng.uniform(0, 0.7) * n) if n_strikes > 1 else int(rng.uniform(0, 0.3) * n)
        ln = n - start
        t = _t(ln, sr)
        note = base * (rng.choice([1.0, 1.25, 1.5, 2.0]) if rng.random() < 0.4 else 1.0)
        strike = np.zeros(ln, np.float32)
        for r, a in zip(ratios, amps):
            f = note * r
            if f < 0.45 * sr:
                tau = tau0 / max(r, 0.5) ** rng.uniform(0.3, 1.0)
                strike += a * np.sin(TWO_PI * f * t).astype(np.float32) * _decay(ln, sr, tau, attack=0.001)
        _add(out, strike, start, rng.uniform(0.4, 1.0))
    return out


def chirps(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Birdsong-like: syllables of frequency-modulated tones (up, down, arch, trill)."""
    out = np.zeros(n, np.float32)
    f_center = _loguniform(rng, 1500, min(7000, 0.4 * sr))
    span = rng.uniform(0.1, 0.7)
    song = [rng.integers(4) for _ in range(int(rng.integers(1, 4)))]  # a motif of syllable shapes
    pos = rng.uniform(0, 0.3)
    while pos < n / sr:
        for shape in song:
            dur = rng.uniform(0.03, 0.18)
            ln = int(dur * sr)
            u = np.linspace(0, 1, ln, dtype=np.float32)
            lo, hi = f_center * (1 - span / 2), f_center * (1 + span / 2)
            curve = [u, 1 - u, np.sin(np.pi * u), 0.5 + 0.5 * np.sin(TWO_PI * rng.uniform(3, 12) * u)][shape]
            f_inst = lo + (hi - lo) * curve * rng.uniform(0.8, 1.2)
            ph = TWO_PI * np.cumsum(f_inst) / sr
            syl = np.sin(ph) + rng.uniform(0, 0.3) * np.sin(2 * ph)
            syl *= np.hanning(ln) ** rng.uniform(0.5, 2.0)
            _add(out, syl.astype(np.float32), int(pos * sr), rng.uniform(0.4, 1.0))
            pos += dur + rng.uniform(0.01, 0.08)
        pos += rng.uniform(0.1, 0.9)
    return out


def typing(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Keyboard typing: press/release clicks with a keyboard's own resonance, in word bursts."""
    out = np.zeros(n, np.float32)
    res = [_loguniform(rng, 800, 0.4 * sr) for _ in range(int(rng.integers(1, 4)))]
    bright = _loguniform(rng, 1000, 5000)
    ln = int(0.03 * sr)
    pos = rng.uniform(0, 0.3)
    while pos < n / sr:
        for _ in range(int(rng.integers(2, 9))):  # one word
            space = rng.random() < 0.12
            for part, g in ((0.0, 1.0), (rng.uniform(0.04, 0.11), rng.uniform(0.3, 0.7))):
                click = _band(rng.standard_normal(ln).astype(np.float32), sr, bright * (0.3 if space else 1.0), None)
                click *= _decay(ln, sr, rng.uniform(0.001, 0.006))
                for f in res:
                    click += 0.5 * _resonator(click, sr, f * rng.uniform(0.95, 1.05), 20)
                _add(out, click, int((pos + part) * sr), g * rng.uniform(0.5, 1.0) * (1.5 if space else 1.0))
            pos += rng.uniform(0.07, 0.22)
        pos += rng.uniform(0.2, 0.7)
    return out


def bark(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Dog-bark-like bursts: a pitched glottal pulse train through formant resonators."""
    out = np.zeros(n, np.float32)
    f0_base = _loguniform(rng, 250, 900)
    formants = [_loguniform(rng, 450, 1100), _loguniform(rng, 1200, 2400), _loguniform(rng, 2500, 0.4 * sr)]
    qs = rng.uniform(3, 10, 3)
    pos = rng.uniform(0, 0.4)
    while pos < n / sr:
        dur = rng.uniform(0.08, 0.28)
        ln = int(dur * sr)
        u = np.linspace(0, 1, ln, dtype=np.float32)
        f0 = f0_base * rng.uniform(0.85, 1.15) * (1 + rng.uniform(-0.4, 0.2) * u + 0.3 * np.sin(np.pi * u))
        ph = np.cumsum(f0) / sr
        src = (2 * (ph % 1.0) - 1).astype(np.float32)  # sawtooth glottal source
        src += rng.uniform(0.1, 0.6) * rng.standard_normal(ln).astype(np.float32)  # breath
        burst = sum(_resonator(src, sr, f, q) * g for f, q, g in zip(formants, qs, (1.0, 0.6, 0.3)))
        env = np.minimum(1.0, u * dur / 0.01) * np.exp(-u * rng.uniform(1.5, 5.0))
        _add(out, (burst * env).astype(np.float32), int(pos * sr), rng.uniform(0.5, 1.0))
        pos += dur + (rng.uniform(0.05, 0.15) if rng.random() < 0.5 else rng.uniform(0.3, 0.9))
    return out


def siren(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Sirens / alarms: a harmonic tone whose pitch sweeps (wail) or alternates (hi-lo)."""
    t = _t(n, sr)
    lo = _loguniform(rng, 400, 900)
    hi = lo * rng.uniform(1.3, 2.2)
    rate = rng.uniform(0.2, 2.5)
    if rng.random() < 0.5:
        curve = 0.5 - 0.5 * np.cos(TWO_PI * rate * t + rng.uniform(0, TWO_PI))
    else:
        curve = (np.sin(TWO_PI * rate * t + rng.uniform(0, TWO_PI)) > 0).astype(np.float32)
        curve = _band(curve, sr, None, 40)
    f = lo + (hi - lo) * curve
    ph = TWO_PI * np.cumsum(f) / sr
    x = sum(rng.uniform(0.2, 1.0) / k * np.sin(k * ph) for k in range(1, int(rng.integers(2, 6))))
    doppler = 1 + rng.uniform(-0.5, 0.5) * t / t[-1]
    return (x * doppler).astype(np.float32)


def wind(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Wind: coloured noise through a band-pass whose centre and level drift (gusts)."""
    x = _coloured_noise(rng, n, rng.uniform(0.5, 2.0))
    centre = _loguniform(rng, 200, 1500)
    gust = _band(rng.standard_normal(n).astype(np.float32), sr, None, rng.uniform(0.5, 3.0), order=1)
    gust = 1 + gust / (np.abs(gust).max() + 1e-9) * rng.uniform(0.3, 0.9)
    lo_band = _band(x, sr, centre * 0.6, centre * 1.6)
    hi_band = _band(x, sr, centre * 2.0, min(centre * 5, 0.45 * sr))
    return (lo_band * gust + rng.uniform(0, 0.5) * hi_band * gust**2).astype(np.float32)


# --------------------------------------------------------------------------- corpus
SYNTHS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "impact": impact,
    "footsteps": footsteps,
    "engine": engine,
    "rain": rain,
    "bell": bell,
    "chirps": chirps,
    "typing": typing,
    "bark": bark,
    "siren": siren,
    "wind": wind,
    "speech": spoken.speech,
}


CLASSES: tuple[str, ...] = tuple(SYNTHS)


def _room(x: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
    """A random small/large room: exponentially decaying noise impulse response (or none)."""
    if rng.random() < 0.4:
        return x
    rt = _loguniform(rng, 0.1, 1.2)
    ln = int(rt * sr)
    ir = rng.standard_normal(ln).astype(np.float32) * _decay(ln, sr, rt / 6.9)
    ir = _band(ir, sr, None, _loguniform(rng, 2000, 0.45 * sr))
    ir[0] = 1.0 / rng.uniform(0.2, 1.0)  # direct sound
    wet = signal.fftconvolve(x, ir)[: len(x)]
    return wet.astype(np.float32)


def synthesize(cls: str, rng: np.random.Generator, seconds: float, sample_rate: int = 16000) -> np.ndarray:
    """One clip of class ``cls``: float32 mono at ``sample_rate``, peak-normalised to a
    random level, with a random room and a faint noise floor."""
    if cls not in SYNTHS:
        raise ValueError(f"unknown synth class {cls!r}; known: {', '.join(CLASSES)}")
    n = int(round(seconds * sample_rate))
    x = SYNTHS[cls](rng, n, sample_rate).astype(np.float32)
    x = _room(x, rng, sample_rate)
    x /= np.abs(x).max() + 1e-9
    floor = _coloured_noise(rng, n, rng.uniform(0, 2)) * 10 ** (rng.uniform(-70, -45) / 20)
    x = x + floor
    x *= 10 ** (rng.uniform(-14, -1) / 20) / (np.abs(x).max() + 1e-9)
    return x.astype(np.float32)


def available_classes(classes: Sequence[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """(usable classes, {skipped class: reason}). Unknown names raise ``ValueError``."""
    wanted = list(CLASSES if classes is None else classes)
    unknown = [c for c in wanted if c not in SYNTHS]
    if unknown:
        raise ValueError(f"unknown synth class(es) {', '.join(unknown)}; known: {', '.join(CLASSES)}")
    skipped = {}
    if "speech" in wanted and spoken.espeak_program() is None:
        skipped["speech"] = "espeak-ng is not installed (apt-get install espeak-ng)"
    return [c for c in wanted if c not in skipped], skipped
