"""``folder:DIR`` — audio produced elsewhere, with optional per-file metadata, as a :class:`Generator`.

Every audio file under DIR (recursively, sorted; hidden files skipped) is one clip. An optional
metadata CSV — ``DIR/metadata.csv`` or ``metadata=PATH`` — has a ``path`` column (relative to DIR,
or absolute; ``file``/``filename`` also accepted) and any other columns (``prompt``/``caption``/
``text``/``class``/``label`` become the clip's condition, ``seed`` its seed); all of them travel in
``GeneratedClip.meta`` into the audit and the report. A row naming a file that does not exist is
listed as skipped; a file without a row is kept with no metadata.

:meth:`FolderGenerator.list_clips` lists paths + metadata without decoding (the audit decodes
once, itself); :meth:`FolderGenerator.generate` decodes with soundfile, mixes to mono, and keeps
each clip's own sample rate — clips whose rate differs from the batch's (the most common one,
or ``sample_rate=``) are resampled to it once, and their original rate is recorded. Files that
cannot be decoded are skipped and listed in ``batch.meta["skipped"]``; nothing is dropped silently.
"""
from __future__ import annotations

import csv
import math
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from generators.adapters.common import check_opts
from generators.base import GeneratedBatch, GeneratedClip, GeneratorError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")  # = audioaudit.audio.corpus.DEFAULT_EXTENSIONS
METADATA_NAME = "metadata.csv"
PATH_COLUMNS = ("path", "file", "filename", "file_name")
CONDITION_COLUMNS = ("prompt", "caption", "text", "class", "label")


@dataclass
class FolderClip:
    path: str  # absolute
    rel_path: str  # relative to the folder (or the path as the metadata wrote it)
    condition: str | None = None
    seed: int | None = None
    meta: dict = field(default_factory=dict)


@dataclass
class FolderSkip:
    path: str
    kind: str  # missing | unreadable | empty
    reason: str


@dataclass
class FolderListing:
    root: str
    clips: list[FolderClip]
    skipped: list[FolderSkip]
    metadata: str | None  # the CSV that was read, if any


def read_metadata(path: Path) -> dict[str, tuple[int, dict]]:
    """``{path as written: (row number, other columns)}``; a bad CSV is an error naming it."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            cols = reader.fieldnames
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise GeneratorError(f"{path}: cannot read metadata CSV ({e})") from None
    if not cols:
        raise GeneratorError(f"{path}: metadata CSV is empty (expected a header with a 'path' column)")
    key = next((c for c in PATH_COLUMNS if c in cols), None)
    if key is None:
        raise GeneratorError(f"{path}: metadata needs a 'path' column (found {', '.join(cols)})")
    out: dict[str, tuple[int, dict]] = {}
    for i, row in enumerate(rows, start=2):  # row 1 is the header
        p = (row.get(key) or "").strip()
        if not p:
            raise GeneratorError(f"{path}: row {i} has an empty '{key}'")
        if p in out:
            raise GeneratorError(f"{path}: '{p}' is listed twice (rows {out[p][0]} and {i})")
        out[p] = (i, {k: v for k, v in row.items() if k != key and k is not None})
    return out


def _condition(meta: dict) -> str | None:
    return next((str(meta[c]) for c in CONDITION_COLUMNS if meta.get(c) not in (None, "")), None)


def _seed(meta: dict) -> int | None:
    try:
        v = float(meta.get("seed", ""))
    except (TypeError, ValueError):
        return None
    return int(v) if math.isfinite(v) and v == int(v) else None


def _scan(root: Path, exts: tuple[str, ...], skip: Path | None) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            p = Path(dirpath) / fn
            if not fn.startswith(".") and p.suffix.lower() in exts and p != skip:
                found.append(p)
    return found


class FolderGenerator:
    def __init__(self, root: str | Path, metadata: str | Path | None = None,
                 extensions: Sequence[str] = AUDIO_EXTENSIONS):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise GeneratorError(f"{self.root}: folder of generated clips not found")
        self.extensions = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
        if metadata is not None and not Path(metadata).expanduser().is_file():
            raise GeneratorError(f"{metadata}: metadata CSV not found")
        default = self.root / METADATA_NAME
        self.metadata = Path(metadata).expanduser() if metadata else (default if default.is_file() else None)
        self.name = f"folder:{self.root}"
        self._listing: FolderListing | None = None
        self._rate: int | None = None

    def list_clips(self) -> FolderListing:
        """Paths + metadata of every clip, without decoding audio (cached)."""
        if self._listing is None:
            self._listing = self._list()
        return self._listing

    def _list(self) -> FolderListing:
        rows = read_metadata(self.metadata) if self.metadata else {}
        files = {p.resolve(): p for p in _scan(self.root, self.extensions, self.metadata)}
        by_path: dict[Path, tuple[str, dict]] = {}
        skipped = []
        for written, (_, meta) in rows.items():
            p = Path(written).expanduser()
            p = p if p.is_absolute() else self.root / p
            if not p.is_file():
                skipped.append(FolderSkip(str(p), "missing", f"listed in {self.metadata.name} but not found"))
                continue
            by_path[p.resolve()] = (written, meta)
            files.setdefault(p.resolve(), p)
        clips = []
        for resolved, p in files.items():
            written, meta = by_path.get(resolved, (None, {}))
            rel = written or (p.relative_to(self.root).as_posix() if p.is_relative_to(self.root) else str(p))
            clips.append(FolderClip(str(resolved), rel, _condition(meta), _seed(meta), dict(meta)))
        clips.sort(key=lambda c: c.rel_path)
        return FolderListing(str(self.root.resolve()), clips, skipped, str(self.metadata) if self.metadata else None)

    @property
    def sample_rate(self) -> int:
        """The most common sample rate among the clips (from file headers)."""
        import soundfile as sf

        if self._rate is not None:
            return self._rate
        rates = Counter()
        for c in self.list_clips().clips:
            try:
                rates[sf.info(c.path).samplerate] += 1
            except Exception:  # unreadable: reported when decoded
                continue
        if not rates:
            raise GeneratorError(f"{self.root}: no readable audio files")
        self._rate = rates.most_common(1)[0][0]
        return self._rate

    def generate(self, n: int, *, conditions: Sequence[str | None] | None = None, seed: int = 0,
                 **opts) -> GeneratedBatch:
        """The first ``n`` clips (listing order); with ``conditions``, only clips whose
        prompt/class is one of them. ``seed`` is not used: each clip keeps its metadata seed."""
        check_opts(opts, ("sample_rate",), "folder")
        if n < 1:
            raise GeneratorError(f"folder: asked for {n} clips; ask for at least 1")
        listing = self.list_clips()
        pool = listing.clips
        if conditions:
            wanted = {str(c) for c in conditions if c is not None}
            pool = [c for c in pool if c.condition in wanted]
        decoded, skipped = _decode(pool[:n])
        skipped = listing.skipped + skipped
        if not decoded:
            return GeneratedBatch([], int(opts.get("sample_rate") or 0), self.name,
                                  _batch_meta(listing, skipped, n, len(pool)))
        target = int(opts.get("sample_rate") or Counter(sr for _, _, sr in decoded).most_common(1)[0][0])
        clips = [_clip(c, w, sr, target) for c, w, sr in decoded]
        return GeneratedBatch(clips, target, self.name, _batch_meta(listing, skipped, n, len(pool)))


def _decode(items: list[FolderClip]):
    import soundfile as sf

    decoded, skipped = [], []
    for c in items:
        try:
            wave, sr = sf.read(c.path, dtype="float32", always_2d=True)
        except Exception as e:  # libsndfile raises its own error types for bad headers/codecs
            skipped.append(FolderSkip(c.path, "unreadable", f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"))
            continue
        if wave.shape[0] == 0:
            skipped.append(FolderSkip(c.path, "empty", "no audio frames"))
            continue
        decoded.append((c, wave.mean(axis=1).astype(np.float32), int(sr)))
    return decoded, skipped


def _clip(c: FolderClip, wave: np.ndarray, sr: int, target: int) -> GeneratedClip:
    meta = dict(c.meta, path=c.path, rel_path=c.rel_path, sample_rate=sr)
    if sr != target:
        from scipy.signal import resample_poly

        g = math.gcd(sr, target)
        wave = resample_poly(wave, target // g, sr // g).astype(np.float32)
        meta.update(sample_rate=target, original_sample_rate=sr)
    return GeneratedClip(wave, c.seed, c.condition, meta)


def _batch_meta(listing: FolderListing, skipped: list[FolderSkip], n: int, available: int) -> dict:
    return dict(root=listing.root, metadata=listing.metadata, requested=n, available=available,
                skipped=[asdict(s) for s in skipped])


def from_spec(arg: str, **opts) -> FolderGenerator:
    check_opts(opts, ("metadata", "extensions"), "folder")
    return FolderGenerator(arg, **opts)
