"""Corpus scan: a folder (or a manifest) -> the audio files it holds, with class labels.

Never raises for one bad entry: unreadable directories, broken symlinks, symlink loops
and manifest paths that escape the root are listed as :class:`Skipped` records.
Decoding is not done here (:mod:`audioaudit.audio.io`).
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from audioaudit.audio.decode import WorkItem, work_item
from audioaudit.audio.io import Skipped
from audioaudit.errors import UserError

DEFAULT_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


@dataclass(frozen=True)
class CorpusItem:
    path: str  # absolute path
    rel_path: str  # path relative to the corpus root (posix)
    label: str | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass
class ScanResult:
    root: str
    items: list[CorpusItem]
    skipped: list[Skipped]


def _walk(root: Path, exts: set[str]) -> Iterator[Path | Skipped]:
    """Recursive walk that follows directory symlinks once (loops are reported, not followed)."""
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            st = d.stat()
        except OSError as e:
            yield Skipped(str(d), "unreadable", f"cannot stat directory ({e.strerror})")
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            yield Skipped(str(d), "symlink_loop", "directory already visited (symlink loop)")
            continue
        seen.add(key)
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as e:
            yield Skipped(str(d), "unreadable", f"cannot list directory ({e.strerror})")
            continue
        subdirs = []
        for e in entries:
            p = Path(e.path)
            try:
                is_dir = e.is_dir(follow_symlinks=True)
            except OSError as err:
                yield Skipped(str(p), "unreadable", f"cannot stat ({err.strerror})")
                continue
            if is_dir:
                subdirs.append(p)
            elif p.suffix.lower() in exts:
                if e.is_symlink() and not p.exists():
                    yield Skipped(str(p), "unreadable", "broken symlink")
                    continue
                yield p
        stack.extend(reversed(subdirs))


class ManifestError(UserError, ValueError):
    """A manifest the scanner cannot use (the CLI prints it as one line)."""


def read_manifest(path: str | os.PathLike) -> dict[str, dict]:
    """CSV or parquet with a ``path`` column (relative to the corpus root) and optional ``label``/``class``."""
    path = str(path)
    if path.endswith(".parquet"):
        import pandas as pd

        rows = pd.read_parquet(path).to_dict("records")
    else:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    out: dict[str, dict] = {}
    for r in rows:
        if "path" not in r:
            raise ManifestError(f"{path}: manifest needs a 'path' column (found {sorted(r)})")
        rel = Path(str(r["path"])).as_posix()
        out[rel] = {k: v for k, v in r.items() if k != "path"}
    return out


def _inside(root: Path, p: Path) -> bool:
    try:
        p.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def scan_corpus(
    root: str | os.PathLike,
    *,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    labels: str = "folders",
    manifest: str | os.PathLike | None = None,
) -> ScanResult:
    """List the audio files of a corpus with class labels. Never raises for one bad entry.

    ``labels``: ``"folders"`` (first sub-folder under the root is the class), or ``"none"``.
    ``manifest``: a CSV/parquet listing ``path`` (relative to root) and optional
    ``label``/``class`` — then only the listed files are used, and a listed path that
    escapes the root or does not exist is skipped with that reason.
    Decoding is *not* done here (see :func:`load_audio`).
    """
    rootp = Path(root).expanduser()
    if not rootp.exists():
        raise FileNotFoundError(f"{root}: corpus folder not found")
    if rootp.is_file():
        # a single file is a corpus of one
        return ScanResult(str(rootp.parent.resolve()), [CorpusItem(str(rootp.resolve()), rootp.name, None)], [])
    rootp = rootp.resolve()
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    items: list[CorpusItem] = []
    skipped: list[Skipped] = []
    if manifest is not None:
        for rel, meta in read_manifest(manifest).items():
            p = rootp / rel  # an absolute path stays absolute; accepted only inside the root
            if not _inside(rootp, p):
                skipped.append(Skipped(rel, "outside_root", "manifest path escapes the corpus root"))
                continue
            if not p.is_file():
                skipped.append(Skipped(str(p), "missing", "listed in manifest but not found"))
                continue
            label = meta.get("label", meta.get("class"))
            missing = label is None or label == "" or (isinstance(label, float) and math.isnan(label))
            label = None if missing else str(label)  # an empty CSV cell is no label
            rel = os.path.relpath(p.resolve(), rootp) if Path(rel).is_absolute() else os.path.normpath(rel)
            items.append(CorpusItem(str(p), Path(rel).as_posix(), label, meta))
        return ScanResult(str(rootp), items, skipped)
    for entry in _walk(rootp, exts):
        if isinstance(entry, Skipped):
            skipped.append(entry)
            continue
        rel = entry.relative_to(rootp)
        label = rel.parts[0] if labels == "folders" and len(rel.parts) > 1 else None
        items.append(CorpusItem(str(entry), rel.as_posix(), label))
    return ScanResult(str(rootp), items, skipped)


# --------------------------------------------------------------------------- matching
def corpus_work(corpus, labels: str = "folders", manifest=None) -> tuple[str, list[WorkItem], list[dict]]:
    """Scan a corpus folder → (root, work items, scan-level skipped records)."""
    try:
        scan = scan_corpus(corpus, labels=labels, manifest=manifest)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    skipped = [{"path": s.path, "kind": s.kind, "reason": s.reason} for s in scan.skipped]
    work = []
    for it in scan.items:
        try:
            work.append(work_item(it.path, it.rel_path, it.rel_path, it.label))
        except OSError as e:
            skipped.append({"path": it.path, "kind": "unreadable", "reason": f"cannot stat ({e.strerror})"})
    return scan.root, work, skipped


def corpus_waves(folder, sr: int) -> tuple[list[str], list[str], list[np.ndarray]]:
    """(relative paths, class labels, waves at ``sr``) of every clip of a corpus folder; a clip
    that cannot be read is an error naming it (for corpora we made ourselves: demo, benchmarks)."""
    from audioaudit.audio.io import load_waves

    scan = scan_corpus(folder)
    waves, skipped = load_waves([it.path for it in scan.items], sr)
    if skipped:
        raise UserError(f"{skipped[0]['path']}: {skipped[0]['reason']}")
    return [it.rel_path for it in scan.items], [it.label or "" for it in scan.items], waves
