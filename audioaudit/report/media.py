"""Browser media for the report: trimmed, transcoded audio and spectrogram PNGs.

Every spectrogram uses one fixed dB scale (dB relative to full scale, the same colour
for the same level in every image of every report), so a copy and its source can be
compared by eye. One audio file and one image per (source clip, excerpt): a training clip
matched by many generated clips at different spans is encoded and drawn once; the page
highlights each card's matched span over the shared image (:func:`highlight_fractions`).
Output names come from content keys only (never from user file names), so re-rendering
reuses finished files (resumable).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from audioaudit.report.model import Span
from audioaudit.report.paths import media_name
from audioaudit.util.atomic import atomic_path

AUDIO_FORMATS = {  # name -> (soundfile format, subtype, suffix, allowed rates or None)
    "mp3": ("MP3", "MPEG_LAYER_III", ".mp3", (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)),
    "ogg": ("OGG", "VORBIS", ".ogg", None),
    "opus": ("OGG", "OPUS", ".opus", (8000, 12000, 16000, 24000, 48000)),
    "wav": ("WAV", "PCM_16", ".wav", None),
}
N_LEVELS = 64  # colour levels of the dB scale (≈ 1.4 dB each): small palette PNGs


@dataclass(frozen=True)
class MediaSettings:
    audio_format: str = "mp3"
    compression: float = 0.5  # soundfile compression_level (mp3: VBR ≈ 60–120 kbit/s mono)
    max_seconds: float = 20.0  # longer clips are trimmed to the matched span + context
    context_seconds: float = 2.0
    spec_width: int = 300  # four clips side by side fit a 1400 px wide window
    spec_height: int = 96
    spec_rate: int = 22050  # every spectrogram is analysed at this rate (same frequency axis)
    db_floor: float = -90.0  # dBFS mapped to the darkest colour
    db_ceil: float = 0.0  # dBFS mapped to the brightest colour

    def __post_init__(self):
        if self.audio_format not in AUDIO_FORMATS:
            raise ValueError(f"audio format must be one of {sorted(AUDIO_FORMATS)}, not {self.audio_format!r}")


@dataclass(frozen=True)
class MediaJob:
    """Make the audio excerpt and the spectrogram of one source clip (span highlighted)."""

    source: str  # absolute path of the audio file
    span: Span | None  # matched span in source seconds (None: nothing highlighted)


@dataclass(frozen=True)
class MediaResult:
    job: MediaJob
    audio: str | None = None  # path relative to the report folder
    image: str | None = None
    window: Span | None = None  # the excerpt of the source that audio/image show
    total: float | None = None  # full length of the source in seconds
    error: str | None = None  # why there is no media (missing file, undecodable …)

    @property
    def highlight(self) -> tuple[float, float] | None:
        return None if self.window is None else highlight_fractions(self.job.span, self.window)


def excerpt_window(total: float, span: Span | None, s: MediaSettings) -> Span:
    """The part of a clip the report plays: all of it when short, else span ± context."""
    if total <= s.max_seconds:
        return Span(0.0, total)
    if span is None:
        return Span(0.0, s.max_seconds)
    start = max(0.0, min(span.start, total) - s.context_seconds)
    end = min(total, max(span.end, span.start) + s.context_seconds)
    if end - start > s.max_seconds:  # a long match: keep its beginning
        end = start + s.max_seconds
    return Span(start, end)


def _probe(path: str) -> tuple[float, int] | None:
    import soundfile as sf

    try:
        info = sf.info(path)
    except Exception:  # noqa: BLE001 - not readable by libsndfile: decode fully later
        return None
    if not info.samplerate or info.frames <= 0:
        return None
    return info.frames / info.samplerate, int(info.samplerate)


def read_excerpt(path: str, window: Span | None) -> tuple[np.ndarray, int, float]:
    """Mono float32 samples of ``window`` (None: whole file), the rate, and the file length."""
    import soundfile as sf

    probe = _probe(path)
    if probe is not None:
        total, sr = probe
        w = window or Span(0.0, total)
        start, stop = int(round(w.start * sr)), int(round(w.end * sr))
        data, sr = sf.read(path, start=start, stop=max(stop, start + 1), dtype="float32", always_2d=True)
        return np.nan_to_num(data.mean(axis=1)).astype(np.float32), int(sr), total
    from audioaudit.audio.io import LoadOptions, load_audio

    clip = load_audio(path, LoadOptions(sample_rate=None, max_seconds=None, silence_dbfs=None))
    total = clip.seconds
    w = window or Span(0.0, total)
    a, b = int(round(w.start * clip.sample_rate)), int(round(w.end * clip.sample_rate))
    return np.nan_to_num(clip.wave[a : max(b, a + 1)]), clip.sample_rate, total


def write_audio(path: Path, wave: np.ndarray, sr: int, s: MediaSettings) -> None:
    """Browser-playable audio (MP3/Vorbis/Opus/16-bit WAV); resampled only where the codec demands."""
    fmt, subtype, _, rates = AUDIO_FORMATS[s.audio_format]
    if rates is not None and sr not in rates:
        target = min((r for r in rates if r >= sr), default=rates[-1])
        from audioaudit.audio.io import resample

        wave, sr = resample(wave, sr, target), target
    if len(wave) < 64:  # encoders dislike empty input; a few ms of silence plays fine
        wave = np.pad(wave, (0, 64 - len(wave)))
    if s.audio_format == "wav":
        from audioaudit.audio.io import write_wav

        write_wav(path, wave, sr)  # 16-bit PCM, clipped to [-1, 1]
        return
    import soundfile as sf

    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(wave.astype(np.float32), -1.0, 1.0), sr, format=fmt, subtype=subtype,
                 compression_level=s.compression)


@lru_cache(maxsize=16)
def _mel_basis(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=sr / 2, norm=None).astype(np.float32)


def spectrogram_db(wave: np.ndarray, sr: int, s: MediaSettings) -> np.ndarray:
    """(spec_height, spec_width) mel magnitude in dBFS: a full-scale sine reads ≈ 0 dB.

    The hop is chosen so the excerpt fills exactly ``spec_width`` frames; the FFT is at
    least as long as the hop so no sample is skipped.
    """
    if sr != s.spec_rate:
        from audioaudit.audio.io import resample

        wave = resample(wave, sr, s.spec_rate)
    sr, width = s.spec_rate, s.spec_width
    hop = max(1, math.ceil(len(wave) / width))
    n_fft = max(1024, 1 << (hop - 1).bit_length())
    padded = np.pad(wave.astype(np.float32), (n_fft // 2, n_fft + hop * width))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:width]
    win = np.hanning(n_fft).astype(np.float32)
    mag = np.abs(np.fft.rfft(frames * win, axis=1)).T / (win.sum() / 2)  # (bins, width)
    mel = _mel_basis(sr, n_fft, s.spec_height) @ mag
    return 20.0 * np.log10(np.maximum(mel, 1e-10))


@lru_cache(maxsize=1)
def palette() -> tuple[int, ...]:
    """RGB palette of the dB scale (magma, dark = quiet)."""
    from matplotlib import colormaps

    rgb = (colormaps["magma"](np.linspace(0, 1, N_LEVELS))[:, :3] * 255).astype(int)
    pal = [int(c) for row in rgb for c in row]
    return tuple(pal + [0] * (768 - len(pal)))


def spectrogram_indices(db: np.ndarray, s: MediaSettings) -> np.ndarray:
    """Palette indices of a dB image, low frequencies at the bottom; one fixed scale."""
    level = (db - s.db_floor) / (s.db_ceil - s.db_floor)
    return np.clip(np.round(level * (N_LEVELS - 1)), 0, N_LEVELS - 1).astype(np.uint8)[::-1].copy()


def write_png(path: Path, idx: np.ndarray) -> None:
    """Palette PNG (one byte per pixel: small files), written atomically."""
    from PIL import Image

    im = Image.frombytes("P", (idx.shape[1], idx.shape[0]), np.ascontiguousarray(idx).tobytes())
    im.putpalette(list(palette()))
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")


def write_colorbar(path: Path, width: int = 256, height: int = 12) -> None:
    """The dB colour scale shared by every spectrogram, as a small PNG."""
    row = np.round(np.linspace(0, N_LEVELS - 1, width)).astype(np.uint8)
    write_png(path, np.tile(row, (height, 1)))


def highlight_fractions(span: Span | None, window: Span) -> tuple[float, float] | None:
    """Where ``span`` lies in the excerpt ``window``, as fractions of its width (None: outside)."""
    length = window.end - window.start
    if span is None or length <= 0:
        return None
    a = (max(span.start, window.start) - window.start) / length
    b = (min(span.end, window.end) - window.start) / length
    return None if b <= a else (round(a, 4), round(b, 4))


def make_media(job: MediaJob, out: str, s: MediaSettings) -> MediaResult:
    """Excerpt, transcode and draw one clip; files already present are reused."""
    try:
        st = os.stat(job.source)
        probe = _probe(job.source)
        wave = sr = None
        if probe is None:  # decode fully to learn the length
            wave, sr, total = read_excerpt(job.source, None)
        else:
            total = probe[0]
        window = excerpt_window(total, job.span, s)
        key = (job.source, st.st_size, st.st_mtime_ns, round(window.start, 4), round(window.end, 4))
        audio = "media/" + media_name("a", *key, s.audio_format, s.compression, suffix=AUDIO_FORMATS[s.audio_format][2])
        image = "img/" + media_name("s", *key, s.spec_width, s.spec_height, s.spec_rate, s.db_floor, s.db_ceil,
                                    N_LEVELS, suffix=".png")
        a_path, i_path = Path(out) / audio, Path(out) / image
        if not (a_path.exists() and i_path.exists()):
            if wave is not None:  # already decoded whole: cut the excerpt
                a, b = int(round(window.start * sr)), int(round(window.end * sr))
                wave = wave[a : max(b, a + 1)]
            else:
                wave, sr, _ = read_excerpt(job.source, window)
            if not a_path.exists():
                write_audio(a_path, wave, sr, s)
            if not i_path.exists():
                write_png(i_path, spectrogram_indices(spectrogram_db(wave, sr, s), s))
        return MediaResult(job, audio, image, window, total)
    except FileNotFoundError:
        return MediaResult(job, error="audio file not found")
    except Exception as e:  # noqa: BLE001 - one bad clip must not stop the report
        reason = getattr(e, "reason", None) or f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        return MediaResult(job, error=f"cannot make media ({reason})")


def _make_media_star(args: tuple[MediaJob, str, MediaSettings]) -> MediaResult:
    return make_media(*args)


def run_media_jobs(
    jobs: list[MediaJob], out: Path, s: MediaSettings, *, workers: int = 0, progress: bool = True
) -> dict[MediaJob, MediaResult]:
    """Run every distinct job (in ``workers`` processes when > 1), with a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    (out / "media").mkdir(parents=True, exist_ok=True)
    (out / "img").mkdir(parents=True, exist_ok=True)
    todo = list(dict.fromkeys(jobs))
    args = [(j, str(out), s) for j in todo]
    results: dict[MediaJob, MediaResult] = {}
    columns = (TextColumn("report media"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task("media", total=len(todo))
        if workers > 1 and len(todo) >= 4 * workers:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            # forkserver: safe even when the caller already runs torch threads (audit --report)
            ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
                for r in ex.map(_make_media_star, args, chunksize=8):
                    results[r.job] = r
                    bar.advance(task)
        else:
            for a in args:
                r = make_media(*a)
                results[r.job] = r
                bar.advance(task)
    return results
