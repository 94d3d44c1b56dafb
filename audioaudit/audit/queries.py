"""The generated clips of an audit: decoded, windowed and embedded with the index's encoder."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audioaudit import schema
from audioaudit.audit.options import AuditOptions
from audioaudit.encoders.embed import ClipEmbeddings, FolderOptions, embed_folder
from audioaudit.errors import UserError
from audioaudit.util.workers import resolve_workers

LABEL_KEYS = ("class", "label", "condition", "prompt")


# --------------------------------------------------------------------------- queries
@dataclass
class QuerySet:
    """Generated clips that were embedded, their windows and the files skipped."""

    table: "object"  # DataFrame: query_id, path, label, duration, sample_rate, n_segments, pcm_hash, metadata...
    vectors: np.ndarray  # (S, dim)
    q_clip: np.ndarray  # (S,) clip index of each window
    start: np.ndarray
    end: np.ndarray
    skipped: list[dict] = field(default_factory=list)
    root: str = ""

    @staticmethod
    def of(table, emb: ClipEmbeddings, skipped: list[dict] | None = None, root: str = "") -> "QuerySet":
        """Queries from clip embeddings (``emb.owner`` indexes the rows of ``table``)."""
        n = len(emb.owner)
        start = emb.start if emb.start is not None else np.zeros(n)
        end = emb.end if emb.end is not None else np.zeros(n)
        return QuerySet(table, emb.vectors, emb.owner, start, end, list(skipped or []), root)


def find_metadata(folder: Path, explicit: str | None):
    """The generated folder's metadata CSV (a ``path`` column), or None."""
    import pandas as pd

    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise UserError(f"{p}: metadata CSV not found")
        cands = [p]
    else:
        cands = sorted(folder.glob("*.csv"), key=lambda p: (p.name != "metadata.csv", p.name)) if folder.is_dir() else []
    for p in cands:
        try:
            df = pd.read_csv(p)
        except Exception as e:  # noqa: BLE001
            if explicit:
                raise UserError(f"{p}: cannot read metadata CSV ({e})") from None
            continue
        if "path" in df.columns:
            df["path"] = [Path(str(v)).as_posix() for v in df["path"]]
            return df.drop_duplicates("path").set_index("path")
        if explicit:
            raise UserError(f"{p}: metadata CSV needs a 'path' column (found {list(df.columns)})")
    return None


def _query_label(meta_row: dict, folder_label: str | None) -> str | None:
    for k in LABEL_KEYS[:3]:
        v = meta_row.get(k)
        if v is not None and not (isinstance(v, float) and math.isnan(v)) and str(v) != "":
            return str(v)
    return folder_label


def load_queries(generated, encoder, opts: AuditOptions) -> QuerySet:
    """Decode + window (the one rule) + embed every generated clip (short clips: one padded
    window); labels from the folder's metadata CSV when it has one."""
    import pandas as pd

    fe = embed_folder(generated, encoder, FolderOptions(opts.batch_size, resolve_workers(opts.workers),
                                                        opts.progress, "generated clips"))
    if not fe.clips:
        if not fe.skipped:
            raise UserError(f"{generated}: no audio files found to audit (.wav .flac .ogg .mp3 .aiff)")
        reasons = "; ".join(f"{Path(s['path']).name}: {s['reason']}" for s in fe.skipped[:3])
        raise UserError(f"{generated}: none of the {len(fe.skipped)} files could be audited ({reasons})")
    meta = find_metadata(Path(generated), opts.metadata)
    rows = []
    for c in fe.clips:
        m = dict(meta.loc[c["path"]]) if meta is not None and c["path"] in meta.index else {}
        rows.append({**{k: v for k, v in m.items() if k not in schema.QUERY_COLUMNS}, "query_id": c["path"],
                     "path": c["path"], "label": _query_label(m, c["label"]), "duration": c["duration"],
                     "sample_rate": _native_rate(c["abs_path"]), "n_segments": c["n_segments"],
                     "pcm_hash": c["pcm_hash"]})
    return QuerySet.of(pd.DataFrame(rows), fe.emb, fe.skipped, fe.root)


def _native_rate(path: str) -> int | None:
    try:
        import soundfile as sf

        return int(sf.info(path).samplerate)
    except Exception:  # noqa: BLE001 - formats soundfile cannot probe
        return None
