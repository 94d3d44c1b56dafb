"""``folder:DIR`` — audio produced elsewhere, with optional per-file metadata, as a :class:`Generator`.

Every audio file under DIR (recursively, sorted; hidden files skipped) is one clip. An optional
metadata CSV — ``DIR/metadata.csv`` or ``metadata=PATH`` — has a ``path`` column (relative to DIR,
or absolute; ``file``/``filename`` also accepted) and any other columns (``prompt``/``caption``/
``text``/``class``/``label`` become the clip's condition, ``seed`` its seed); all of them travel in
``GeneratedClip.meta`` into the audit and the report. A row naming a file that does not exist is
listed as skipped; a file without a row is kept with no metadata.

:meth:`FolderGenerator.list_clips` lists paths + metadata without decoding (the audit decodes
once, itself). As a :class:`Generator` the folder produces nothing: it copies. Its usable clips
are the listed files whose header soundfile reads (with at least one frame), in listing order;
clip ``i`` of ``generate(n, seed=s)`` is usable clip ``s + i`` (so ``generate(1, seed=s + i)``
gives it alone, as the contract asks, and the seed of a ``generate`` run is the position of its
first clip). Each clip keeps its metadata seed and condition; the folder cannot be conditioned
(a condition is an error) and takes no sampler options (``uses``). Clips are mixed to mono;
those whose rate differs from the batch's (the most common one among usable clips, or
``sample_rate=``) are resampled to it once, and their original rate is recorded. Past the last
usable clip, or at a file that cannot be decoded, the batch stops short and says why in
``batch.meta["shortfall"]``; skipped files are listed in ``batch.meta["skipped"]``; nothing is
dropped silently.
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
from generators.base import GeneratedBatch, GeneratedClip, GeneratorError, Uses

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")  # = audioaudit.audio.corpus.DEFAULT_EXTENSIONS
METADATA_NAME = "metadata.csv"
PATH_COLUMNS = ("path", "file", "filename", "file_name")
CONDITION_COLUMNS = ("prompt", "caption", "text", "class", "label")
LOAD_OPTIONS = ("metadata", "extensions")
WHY = ("it copies clips made elsewhere (nothing is sampled; each clip's prompt/class comes "
       "from its metadata CSV)")


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
    uses = Uses(options=("sample_rate",), why=WHY)

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
        self._usable: tuple[list[FolderClip], list[FolderSkip], Counter] | None = None

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

    def usable(self) -> tuple[list[FolderClip], list[FolderSkip]]:
        """Listed clips whose header soundfile reads, with at least one frame, in listing order;
        and every file skipped (metadata rows without a file, unreadable, empty). Cached."""
        if self._usable is None:
            self._usable = self._check_headers()
        return self._usable[0], self._usable[1]

    def _check_headers(self):
        import soundfile as sf

        listing = self.list_clips()
        ok, skipped, rates = [], list(listing.skipped), Counter()
        for c in listing.clips:
            try:
                info = sf.info(c.path)
            except Exception as e:  # libsndfile raises its own error types for bad headers/codecs
                skipped.append(FolderSkip(c.path, "unreadable", _first_line(e)))
                continue
            if info.frames == 0:
                skipped.append(FolderSkip(c.path, "empty", "no audio frames"))
                continue
            ok.append(c)
            rates[int(info.samplerate)] += 1
        return ok, skipped, rates

    @property
    def sample_rate(self) -> int:
        """The most common sample rate among the usable clips (from file headers)."""
        self.usable()
        if not self._usable[2]:
            raise GeneratorError(f"{self.name}: no readable audio files")
        return self._usable[2].most_common(1)[0][0]

    def generate(self, n: int, *, conditions: Sequence[str | None] | None = None, seed: int = 0,
                 **opts) -> GeneratedBatch:
        """Usable clips ``seed`` .. ``seed + n - 1`` (see the module docstring); fewer, with
        ``meta["shortfall"]``, past the last one or at a file that cannot be decoded."""
        check_opts(opts, self.uses.options, "folder")
        if n < 1:
            raise GeneratorError(f"folder: asked for {n} clips; ask for at least 1")
        if seed < 0:
            raise GeneratorError(f"folder: seed {seed} is the listing position of the first clip: use 0 or more")
        given = [c for c in (conditions or []) if c not in (None, "")]
        if given:
            raise GeneratorError(f"{self.name} cannot be conditioned (got '{given[0]}'): {WHY}")
        ok, skipped = self.usable()
        decoded, bad = _decode(ok[seed : seed + n])
        target = int(opts.get("sample_rate") or (self.sample_rate if ok else 0))
        clips = [_clip(c, w, sr, target, seed + i) for i, (c, w, sr) in enumerate(decoded)]
        meta = _batch_meta(self.list_clips(), skipped + ([bad] if bad else []), n, len(ok))
        if len(clips) < n:
            meta["shortfall"] = _shortfall(self.name, len(ok), skipped, bad, (seed, n))
        return GeneratedBatch(clips, target, self.name, meta)


def _first_line(e: Exception) -> str:
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"


def _shortfall(name: str, usable: int, skipped: list[FolderSkip], bad: FolderSkip | None,
               asked: tuple[int, int]) -> str:
    if bad is not None:
        return f"{bad.path} cannot be decoded ({bad.reason})"
    seed, n = asked
    skips = f" ({len(skipped)} other file(s) skipped: missing, unreadable or empty)" if skipped else ""
    return f"{name} has {usable} usable audio file(s){skips}; files {seed}..{seed + n - 1} of its listing were asked for"


def _decode(items: list[FolderClip]) -> tuple[list, FolderSkip | None]:
    """Decoded ``items`` up to the first that fails (returned as the skip), so a batch is a prefix."""
    import soundfile as sf

    decoded = []
    for c in items:
        try:
            wave, sr = sf.read(c.path, dtype="float32", always_2d=True)
        except Exception as e:  # libsndfile raises its own error types for bad headers/codecs
            return decoded, FolderSkip(c.path, "unreadable", _first_line(e))
        if wave.shape[0] == 0:
            return decoded, FolderSkip(c.path, "empty", "no audio frames")
        decoded.append((c, wave.mean(axis=1).astype(np.float32), int(sr)))
    return decoded, None


def _clip(c: FolderClip, wave: np.ndarray, sr: int, target: int, position: int) -> GeneratedClip:
    meta = dict(c.meta, path=c.path, rel_path=c.rel_path, position=position, sample_rate=sr)
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
    """``folder:DIR`` (load options :data:`LOAD_OPTIONS`, checked by the registry)."""
    return FolderGenerator(arg, **opts)
