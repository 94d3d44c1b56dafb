"""The decode pool: files -> decoded, hashed, windowed waves, in worker processes.

Decoding (and resampling, PCM hashing, windowing) runs ``workers`` ahead of the model,
so it overlaps the forward passes. Used by the index build, the audit and the Ray engine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from audioaudit.audio.fingerprint import file_sha256, pcm_hash
from audioaudit.audio.io import LoadOptions, Skipped, try_load
from audioaudit.audio.windows import WindowSpec, cut_bounds
from audioaudit.util.workers import ordered_map


# --------------------------------------------------------------------------- types
@dataclass(frozen=True)
class WorkItem:
    """One file to embed: ``item_id``/``rel_path`` as stored, ``path`` absolute."""

    item_id: str
    path: str
    rel_path: str
    label: str | None
    size: int
    mtime_ns: int
    sha256: str | None = None  # known when it came from a previous shard

    def member(self, sha256: str | None) -> dict:
        return {"item_id": self.item_id, "sha256": sha256, "size": self.size, "mtime_ns": self.mtime_ns}


@dataclass
class Decoded:
    item: WorkItem
    sha256: str
    pcm_hash: str
    duration: float
    bounds: list[tuple[float, float]]
    waves: list[np.ndarray]


# --------------------------------------------------------------------------- planning
def work_item(path: str, item_id: str, rel_path: str, label: str | None) -> WorkItem:
    st = os.stat(path)
    return WorkItem(item_id, str(path), rel_path, label, int(st.st_size), int(st.st_mtime_ns))


# --------------------------------------------------------------------------- decode (worker)
def decode_item(item: WorkItem, spec: WindowSpec, opts: LoadOptions) -> Decoded | Skipped:
    """Decode, hash and window one file (runs in a worker process); windows by the one
    rule of :mod:`audioaudit.audio.windows`."""
    got = try_load(item.path, opts)
    if isinstance(got, Skipped):
        return got
    sha = item.sha256 or file_sha256(item.path)
    wave, sr = got.wave, got.sample_rate
    bounds = cut_bounds(wave, spec)
    return Decoded(item, sha, pcm_hash(wave, sr), len(wave) / sr, [(s / sr, e / sr) for s, e in bounds],
                   [wave[s:e] for s, e in bounds])


def _decode_chunk(args) -> list:
    items, spec, opts = args
    return [decode_item(it, spec, opts) for it in items]


def decoded_stream(items: Sequence[WorkItem], spec: WindowSpec, opts: LoadOptions, workers: int,
                   chunk: int = 4) -> Iterator[Decoded | Skipped]:
    """Decoded items in input order (chunks of ``chunk`` per task to cut IPC overhead)."""
    chunks = ((tuple(items[i : i + chunk]), spec, opts) for i in range(0, len(items), chunk))
    for res in ordered_map(_decode_chunk, chunks, workers):
        yield from res
