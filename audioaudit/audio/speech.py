"""The ``speech`` class of :mod:`audioaudit.audio.sounds`: random sentences spoken by espeak-ng.

Only available when the ``espeak-ng`` (or ``espeak``) program is installed; otherwise
:func:`audioaudit.audio.sounds.available_classes` skips the class with a note. One
espeak-ng call per clip.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess

import numpy as np
from scipy import signal

_WORDS = (
    "the a one two three seven red green blue river stone window garden morning evening "
    "quick slow bright quiet paper metal signal harbour engine station winter summer "
    "follow listen remember carry open close under over before after maybe always never "
    "north south market doctor teacher number letter answer question water fire light "
    "shadow mountain island forest yellow purple orange basket ticket rocket pocket"
).split()


_VOICES = ("en", "en-us", "en-gb-scotland", "en-029")


_VARIANTS = ("", "+m1", "+m2", "+m3", "+m4", "+m5", "+m7", "+f1", "+f2", "+f3", "+f4", "+f5", "+croak",
             "+klatt", "+klatt3", "+whisper", "+grandpa", "+edward", "+steph")


@functools.lru_cache(maxsize=1)
def espeak_program() -> str | None:
    """Path of ``espeak-ng`` (or ``espeak``) if installed, else ``None``."""
    return shutil.which("espeak-ng") or shutil.which("espeak")


def speech(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Speech: a random sentence spoken by espeak-ng with a random voice, rate and pitch."""
    import soundfile as sf

    prog = espeak_program()
    if prog is None:
        raise RuntimeError("speech needs espeak-ng (apt-get install espeak-ng)")
    words = " ".join(rng.choice(_WORDS, int(rng.integers(4, 12))))
    voice = str(rng.choice(_VOICES)) + str(rng.choice(_VARIANTS))
    cmd = [prog, "-v", voice, "-s", str(int(rng.integers(120, 230))), "-p", str(int(rng.integers(20, 80))),
           "-g", str(int(rng.integers(0, 8))), "--stdout", words]
    res = subprocess.run(cmd, capture_output=True, timeout=30, check=False)
    if res.returncode != 0 or len(res.stdout) < 64:  # an unknown voice variant: fall back to plain
        res = subprocess.run([prog, "--stdout", words], capture_output=True, timeout=30, check=True)
    x, file_sr = sf.read(io.BytesIO(res.stdout), dtype="float32")
    x = np.asarray(x, np.float32).reshape(len(x), -1).mean(1)
    if file_sr != sr:
        g = np.gcd(int(file_sr), int(sr))
        x = signal.resample_poly(x, sr // g, file_sr // g).astype(np.float32)
    if len(x) >= n:  # a random n-sample excerpt
        s = int(rng.integers(0, len(x) - n + 1))
        return x[s : s + n].copy()
    out = np.zeros(n, np.float32)  # or the whole utterance at a random place in silence
    s = int(rng.integers(0, n - len(x) + 1))
    out[s : s + len(x)] = x
    return out
