"""Embed many clips: waves or a folder of files -> window vectors, with the clip each belongs to.

Every path that embeds whole clips comes through here and cuts them with the one
windowing rule (:func:`audioaudit.audio.windows.cut`), so the index, the audit, the
background set, the benchmark and the calibrations all see the same windows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from audioaudit.audio.corpus import corpus_work
from audioaudit.audio.decode import decoded_stream
from audioaudit.audio.io import LoadOptions, Skipped
from audioaudit.audio.windows import WindowSpec, cut
from audioaudit.util.progress import progress_bar
from audioaudit.util.workers import model_threads, torch_threads


@dataclass(frozen=True)
class ClipEmbeddings:
    """Window vectors of ``n_clips`` clips; ``owner[i]`` is the clip of vector ``i``
    (non-decreasing: a clip's windows are contiguous); ``start``/``end``: the window's span
    in seconds within its clip."""

    vectors: np.ndarray  # (n_windows, dim) float32, L2-normalised
    owner: np.ndarray  # (n_windows,) int64
    n_clips: int
    start: np.ndarray | None = None
    end: np.ndarray | None = None


def embed_waves(encoder, waves: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
    """Embed already-windowed waves in model batches -> (N, dim) float32."""
    out = [np.asarray(encoder.embed(list(waves[i : i + batch_size])), dtype=np.float32)
           for i in range(0, len(waves), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, int(encoder.dim)), dtype=np.float32)


def embed_clips(encoder, waves: Sequence[np.ndarray], *, batch_size: int = 16,
                progress: Callable[[int], None] | None = None) -> ClipEmbeddings:
    """Embed every window of every clip (waves at ``encoder.sample_rate``).
    ``progress(n)`` is called with the number of clips finished since the last call."""
    spec = WindowSpec.of(encoder)
    vecs, owner, start, end = [], [], [], []
    for first in range(0, len(waves), batch_size):
        chunk = waves[first : first + batch_size]
        wins = [(first + i, w) for i, wave in enumerate(chunk) for w in cut(np.asarray(wave, np.float32), spec)]
        vecs.append(embed_waves(encoder, [w.wave for _, w in wins], batch_size))
        owner += [i for i, _ in wins]
        start += [w.start for _, w in wins]
        end += [w.end for _, w in wins]
        if progress:
            progress(len(chunk))
    dim = int(encoder.dim)
    v = np.concatenate(vecs, axis=0) if vecs else np.zeros((0, dim), np.float32)
    return ClipEmbeddings(v, np.asarray(owner, np.int64), len(waves), np.asarray(start, np.float64),
                          np.asarray(end, np.float64))


@dataclass
class FolderEmbeddings:
    """The clips of a folder that could be embedded, their windows' vectors and the rest."""

    clips: list[dict]  # per clip: path (relative to root), abs_path, label, duration, n_segments, pcm_hash
    emb: ClipEmbeddings
    skipped: list[dict] = field(default_factory=list)  # path, kind, reason
    root: str = ""


@dataclass(frozen=True)
class FolderOptions:
    batch_size: int = 32
    workers: int = 0  # decode processes beside the model
    progress: bool = True
    what: str = "clips"  # for the progress bars


def embed_folder(folder, encoder, opts: FolderOptions = FolderOptions()) -> FolderEmbeddings:
    """Decode, cut (the one rule) and embed every audio file under ``folder``; unusable files
    are listed in ``skipped`` with the reason, never dropped silently."""
    root, work, skipped = corpus_work(Path(folder), "folders")
    spec = WindowSpec.of(encoder)
    clips, waves, owner, start, end = [], [], [], [], []
    with progress_bar(len(work), f"decoding {opts.what}", enabled=opts.progress) as adv:
        for it, d in zip(work, decoded_stream(work, spec, LoadOptions(sample_rate=spec.sample_rate), opts.workers)):
            adv(1)
            if isinstance(d, Skipped):
                skipped.append({"path": it.rel_path, "kind": d.kind, "reason": d.reason})
                continue
            clips.append({"path": it.rel_path, "abs_path": it.path, "label": it.label, "duration": d.duration,
                          "n_segments": len(d.bounds), "pcm_hash": d.pcm_hash})
            owner += [len(clips) - 1] * len(d.waves)
            start += [s for s, _ in d.bounds]
            end += [e for _, e in d.bounds]
            waves += d.waves
    threads = model_threads(opts.workers) if opts.workers > 0 else None  # the cores the decoders left
    with progress_bar(len(waves), f"embedding {opts.what}", enabled=opts.progress, unit="windows") as adv, \
            torch_threads(threads):
        vecs = []
        for i in range(0, len(waves), opts.batch_size):
            vecs.append(embed_waves(encoder, waves[i : i + opts.batch_size], opts.batch_size))
            adv(len(vecs[-1]))
    dim = int(encoder.dim)
    emb = ClipEmbeddings(np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32),
                         np.asarray(owner, np.int64), len(clips), np.asarray(start, np.float64),
                         np.asarray(end, np.float64))
    return FolderEmbeddings(clips, emb, skipped, root)
