"""Audio I/O: the one place where files become waveforms.

Every waveform inside audioaudit is a float32 mono numpy array with an explicit sample
rate. Files are decoded, mixed to mono and resampled *once*, here, to the rate the
consumer declares. Every failure is an :class:`AudioError` carrying the path and a
short reason; a batch never dies on one bad file.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from audioaudit.util.atomic import atomic_path


# --------------------------------------------------------------------------- errors
class AudioError(Exception):
    """A file that cannot be used, with the path and a one-line reason."""

    kind = "error"

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class UnreadableAudio(AudioError):
    kind = "unreadable"


class EmptyAudio(AudioError):
    kind = "empty"


class SilentAudio(AudioError):
    kind = "silent"


class NonFiniteAudio(AudioError):
    kind = "non_finite"


class TooShortAudio(AudioError):
    kind = "too_short"


class TooLongAudio(AudioError):
    kind = "too_long"


class TruncatedAudio(AudioError):
    kind = "truncated"


# --------------------------------------------------------------------------- types
@dataclass(frozen=True)
class LoadOptions:
    """What a consumer accepts. ``sample_rate=None`` keeps the file's rate."""

    sample_rate: int | None = None
    min_seconds: float = 0.0
    max_seconds: float | None = 3600.0
    silence_dbfs: float | None = -80.0  # peak below this is "silent"; None disables
    pad_to_min: bool = False  # pad clips shorter than min_seconds instead of refusing


@dataclass
class Clip:
    path: str
    wave: np.ndarray  # float32 mono
    sample_rate: int
    original_rate: int
    original_channels: int

    @property
    def seconds(self) -> float:
        return len(self.wave) / float(self.sample_rate)


@dataclass(frozen=True)
class Skipped:
    path: str
    kind: str
    reason: str


# --------------------------------------------------------------------------- decode
def _decode(path: str) -> tuple[np.ndarray, int]:
    """Decode to float32 (frames, channels). soundfile first (wav/flac/ogg/mp3), then librosa."""
    import soundfile as sf

    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
        return data, int(sr)
    except Exception as sf_err:  # noqa: BLE001 - fall back, then report the first reason
        try:
            import warnings

            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                y, sr = librosa.load(path, sr=None, mono=False)
            y = np.atleast_2d(np.asarray(y, dtype=np.float32)).T
            return y, int(sr)
        except Exception:  # noqa: BLE001
            msg = str(sf_err).splitlines()[0] if str(sf_err) else type(sf_err).__name__
            raise UnreadableAudio(path, f"cannot decode audio ({msg})") from None


def wav_truncation(path: str) -> str | None:
    """Why a RIFF/WAVE file is truncated (its data chunk declares more bytes than the file
    holds), or None. libsndfile silently decodes only the samples that are present, so a
    half-downloaded WAV would otherwise be indexed as a shorter clip. Placeholder sizes
    of streaming writers (0, 0xFFFFFFFF) are not truncation."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            pos, byte_rate = 12, 0
            for _ in range(64):  # chunk walk: fmt , LIST, fact ... then data
                f.seek(pos)
                hdr = f.read(8)
                if len(hdr) < 8:
                    return None
                cid, n = hdr[:4], int.from_bytes(hdr[4:], "little")
                if cid == b"fmt ":
                    fmt = f.read(16)
                    byte_rate = int.from_bytes(fmt[8:12], "little") if len(fmt) == 16 else 0
                elif cid == b"data":
                    present = size - pos - 8
                    if n in (0, 0xFFFFFFFF) or present >= n:
                        return None
                    if byte_rate:
                        return (f"the header declares {n / byte_rate:.3f} s of audio but the file holds only "
                                f"{max(present, 0) / byte_rate:.3f} s (truncated)")
                    return f"the header declares {n} bytes of audio but the file holds only {max(present, 0)} (truncated)"
                pos += 8 + n + (n & 1)
    except OSError:
        return None
    return None


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling (soxr via librosa); identity when rates match."""
    if orig_sr == target_sr:
        return wave.astype(np.float32, copy=False)
    import librosa

    return librosa.resample(wave, orig_sr=orig_sr, target_sr=target_sr, res_type="soxr_hq").astype(np.float32)


def check_wave(path: str, wave: np.ndarray, sr: int, opts: LoadOptions) -> np.ndarray:
    """Validate a mono waveform against ``opts``; returns it (maybe padded) or raises."""
    if wave.size == 0:
        raise EmptyAudio(path, "zero length (no samples)")
    if not np.all(np.isfinite(wave)):
        bad = int(np.count_nonzero(~np.isfinite(wave)))
        raise NonFiniteAudio(path, f"{bad} NaN/inf samples")
    seconds = len(wave) / sr
    if opts.max_seconds is not None and seconds > opts.max_seconds:
        raise TooLongAudio(path, f"{seconds:.1f} s is longer than the cap of {opts.max_seconds:g} s")
    if opts.silence_dbfs is not None:
        peak = float(np.max(np.abs(wave)))
        peak_db = -math.inf if peak == 0 else 20 * math.log10(peak)
        if peak_db < opts.silence_dbfs:
            shown = "-inf" if peak == 0 else f"{peak_db:.1f}"
            raise SilentAudio(path, f"silent (peak {shown} dBFS < {opts.silence_dbfs:g} dBFS)")
    if seconds < opts.min_seconds:
        if not opts.pad_to_min:
            raise TooShortAudio(path, f"{seconds:.3f} s is shorter than the minimum {opts.min_seconds:g} s")
        wave = np.pad(wave, (0, int(math.ceil(opts.min_seconds * sr)) - len(wave)))
    return wave.astype(np.float32, copy=False)


def load_audio(path: str | os.PathLike, opts: LoadOptions = LoadOptions()) -> Clip:
    """Read a file, mix to mono, resample once, validate. Raises :class:`AudioError`."""
    path = str(path)
    if not os.path.exists(path):
        raise UnreadableAudio(path, "file not found")
    if os.path.isdir(path):
        raise UnreadableAudio(path, "is a directory")
    if not os.path.isfile(path):  # a FIFO or device would block the decoder or never end
        raise UnreadableAudio(path, "not a regular file (pipe, socket or device)")
    if os.path.getsize(path) == 0:
        raise EmptyAudio(path, "zero-byte file")
    truncated = wav_truncation(path)
    if truncated:
        raise TruncatedAudio(path, truncated)
    # cheap pre-check of the length so a huge file is refused before it is decoded
    if opts.max_seconds is not None:
        try:
            import soundfile as sf

            info = sf.info(path)
            if info.samplerate and info.frames / info.samplerate > opts.max_seconds:
                raise TooLongAudio(
                    path, f"{info.frames / info.samplerate:.1f} s is longer than the cap of {opts.max_seconds:g} s"
                )
        except AudioError:
            raise
        except Exception:  # noqa: BLE001 - let the decoder give the real reason
            pass
    data, sr = _decode(path)
    channels = data.shape[1] if data.ndim == 2 else 1
    if data.shape[0] == 0:
        raise EmptyAudio(path, "zero length (no samples)")
    mono = data.mean(axis=1) if data.ndim == 2 else data
    mono = np.asarray(mono, dtype=np.float32)
    if not np.all(np.isfinite(mono)):
        raise NonFiniteAudio(path, f"{int(np.count_nonzero(~np.isfinite(mono)))} NaN/inf samples")
    target = opts.sample_rate or sr
    if len(mono) > 1:
        mono = resample(mono, sr, target)
    elif target != sr:
        mono = mono[:1]
    mono = check_wave(path, mono, target, opts)
    return Clip(path=path, wave=mono, sample_rate=target, original_rate=sr, original_channels=channels)


def try_load(path: str | os.PathLike, opts: LoadOptions = LoadOptions()) -> Clip | Skipped:
    """:func:`load_audio` that returns a :class:`Skipped` record instead of raising."""
    try:
        return load_audio(path, opts)
    except AudioError as e:
        return Skipped(path=e.path, kind=e.kind, reason=e.reason)
    except Exception as e:  # noqa: BLE001 - an unexpected decoder failure is still one file's problem
        return Skipped(path=str(path), kind="unreadable", reason=f"{type(e).__name__}: {e}")


def write_wav(path: str | os.PathLike, wave: np.ndarray, sample_rate: int) -> None:
    """Atomic 16-bit PCM WAV write."""
    import soundfile as sf

    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(np.asarray(wave, dtype=np.float32), -1.0, 1.0), sample_rate, subtype="PCM_16",
                 format="WAV")


def fit_length(wave: np.ndarray, n: int) -> np.ndarray:
    """Zero-pad at the end or crop at the end to exactly ``n`` samples (deterministic)."""
    if len(wave) >= n:
        return wave[:n]
    return np.pad(wave, (0, n - len(wave)))


def load_many(
    paths: Iterable[str], opts: LoadOptions, workers: int = 0
) -> Iterator[tuple[str, Clip | Skipped]]:
    """Decode files in order, in ``workers`` processes when > 0 (decoding overlaps the model)."""
    paths = list(paths)
    if workers <= 0:
        for p in paths:
            yield p, try_load(p, opts)
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as ex:
        for p, r in zip(paths, ex.map(try_load, paths, [opts] * len(paths), chunksize=4)):
            yield p, r


def load_waves(paths: list[str], sr: int) -> tuple[list[np.ndarray | None], list[dict]]:
    """Decode at the encoder's rate; an unreadable file becomes ``None`` and a record."""
    from audioaudit.audio.io import LoadOptions, Skipped, load_many

    waves, skipped = [], []
    for _, res in load_many(paths, LoadOptions(sample_rate=sr, silence_dbfs=None)):
        if isinstance(res, Skipped):
            skipped.append({"path": res.path, "kind": res.kind, "reason": res.reason})
            waves.append(None)
        else:
            waves.append(res.wave)
    return waves, skipped
