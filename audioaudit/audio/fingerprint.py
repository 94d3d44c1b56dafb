"""Fingerprints of audio: the file's sha256 and the decoded PCM's hash."""

from __future__ import annotations

import hashlib
import os

import numpy as np


# --------------------------------------------------------------------------- corpus
def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


DUP_RATE = 16000


def pcm_hash(wave: np.ndarray, sr: int, rate: int = DUP_RATE) -> str:
    """Hash of the decoded audio: int16 PCM at ``rate``, exact-zero edges trimmed."""
    w = np.asarray(wave, dtype=np.float32).reshape(-1)
    if sr != rate and w.size > 1:
        from audioaudit.audio.io import resample

        w = resample(w, sr, rate)
    q = np.round(np.clip(w, -1.0, 1.0) * 32767.0).astype("<i2")
    nz = np.flatnonzero(q)
    q = q[nz[0] : nz[-1] + 1] if nz.size else q[:0]
    return hashlib.blake2b(q.tobytes(), digest_size=16).hexdigest()
