"""FAD between two folders of audio: decode, cut with the one windowing rule, embed, compare.

Every window of every clip is one embedding (:func:`audioaudit.encoders.embed.embed_clips`
cuts with :func:`audioaudit.audio.windows.cut`, as the index and the audit do). A clip's
class is its first sub-folder or, for a generated folder, the class/label/condition of its
row in the folder's metadata CSV. The maths is in :mod:`audioaudit.generation.fad`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audioaudit.errors import UserError
from audioaudit.generation.fad import FADResult, fad, fad_per_class


@dataclass
class FolderEmbeddings:
    vectors: np.ndarray  # (windows, dim) L2-normalised
    labels: np.ndarray  # (windows,) object: class of each window's clip (None: unlabelled)
    skipped: list  # audioaudit.audio.io.Skipped records (path, kind, reason)


@dataclass
class FolderFAD:
    overall: FADResult
    per_class: dict[str, FADResult]
    skipped: list  # files of either folder that could not be embedded

    def to_json(self, encoder: str, generated: Path, reference: Path) -> dict:
        """The document ``audioaudit fad --out`` writes."""
        return {"encoder": encoder, "generated": str(generated), "reference": str(reference),
                "overall": vars(self.overall), "per_class": {c: vars(r) for c, r in self.per_class.items()},
                "skipped": [{"path": s.path, "kind": s.kind, "reason": s.reason} for s in self.skipped]}


def _metadata_label(meta, rel_path: str, label):
    from audioaudit.audit.queries import LABEL_KEYS

    if meta is None or rel_path not in meta.index:
        return label
    row = meta.loc[rel_path]
    return next((str(row[k]) for k in LABEL_KEYS[:3] if k in row and isinstance(row[k], str)), label)


def embed_folder(folder: Path, encoder, *, progress: bool = True, label_from_meta: bool = False) -> FolderEmbeddings:
    """Every window of every clip in ``folder`` embedded, with its class (folder or metadata)."""
    from audioaudit.audio.corpus import scan_corpus
    from audioaudit.audio.io import LoadOptions, Skipped, load_many
    from audioaudit.audit.queries import find_metadata
    from audioaudit.encoders.embed import embed_clips
    from audioaudit.util.progress import progress_bar

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder of audio")
    scan = scan_corpus(folder)
    meta = find_metadata(folder, None) if label_from_meta else None
    waves, labels, skipped = [], [], list(scan.skipped)
    items = {it.path: it for it in scan.items}
    with progress_bar(len(items), f"decoding {folder.name}", enabled=progress) as advance:
        for path, res in load_many(list(items), LoadOptions(sample_rate=encoder.sample_rate)):
            advance(1)
            if isinstance(res, Skipped):
                skipped.append(res)
                continue
            waves.append(res.wave)
            labels.append(_metadata_label(meta, items[path].rel_path, items[path].label))
    if not waves:
        raise UserError(f"{folder}: no audio could be embedded ({len(skipped)} files skipped)")
    with progress_bar(len(waves), f"embedding {folder.name}", enabled=progress) as advance:
        emb = embed_clips(encoder, waves, progress=advance)
    return FolderEmbeddings(emb.vectors, np.asarray(labels, dtype=object)[emb.owner], skipped)


def folder_fad(generated: Path, reference: Path, encoder, *, progress: bool = True) -> FolderFAD:
    """Overall and per-class FAD of GENERATED (classes from its metadata) against REFERENCE."""
    a = embed_folder(generated, encoder, progress=progress, label_from_meta=True)
    b = embed_folder(reference, encoder, progress=progress, label_from_meta=False)
    return FolderFAD(fad(a.vectors, b.vectors), fad_per_class(a.vectors, a.labels, b.vectors, b.labels),
                     a.skipped + b.skipped)
