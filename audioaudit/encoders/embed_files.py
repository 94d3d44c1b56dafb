"""``audioaudit embed``: embed files for inspection, one row per window (the one windowing
rule), written as parquet with the encoder identity in the schema metadata."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from audioaudit.audio.corpus import scan_corpus
from audioaudit.audio.fingerprint import file_sha256
from audioaudit.audio.io import Clip, LoadOptions, Skipped, try_load
from audioaudit.audio.windows import WindowSpec, cut
from audioaudit.encoders.embed import embed_waves
from audioaudit.util.atomic import atomic_path
from audioaudit.util.progress import progress_bar

EMBED_COLUMNS = ["path", "segment", "start", "end", "duration", "sha256", "embedding"]
IDENTITY_KEY = b"audioaudit.encoder"


def expand_inputs(inputs: list[Path]):
    """Files as given; folders through the corpus scanner (its skips are kept)."""
    paths: list[str] = []
    skipped: list = []
    for p in inputs:
        if p.is_dir():
            res = scan_corpus(p, labels="none")
            paths += [i.path for i in res.items]
            skipped += res.skipped
        elif p.exists():
            paths.append(str(p))
        else:
            skipped.append(Skipped(str(p), "missing", "file not found"))
    return paths, skipped


def embed_files(enc, paths: list[str], batch_size: int):
    """(rows, skipped): rows hold one segment each, in file order then time order."""
    opts = LoadOptions(sample_rate=enc.sample_rate)
    rows: list[dict] = []
    skipped = []
    with progress_bar(len(paths), "embedding", enabled=os.isatty(2)) as advance:
        for path in paths:
            clip = try_load(path, opts)
            advance(1)
            if not isinstance(clip, Clip):
                skipped.append(clip)
                continue
            segs = cut(clip.wave, WindowSpec.of(enc))
            vecs = embed_waves(enc, [s.wave for s in segs], batch_size)
            digest = file_sha256(path)
            for i, (s, v) in enumerate(zip(segs, vecs)):
                rows.append({"path": path, "segment": i, "start": s.start, "end": s.end,
                             "duration": clip.seconds, "sha256": digest, "embedding": v})
    return rows, skipped


def write_embeddings(rows: list[dict], identity: dict, dim: int, out: Path) -> None:
    """Atomic parquet write; the encoder identity rides in the schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {c: [r[c] for r in rows] for c in EMBED_COLUMNS if c != "embedding"}
    flat = pa.array(np.stack([r["embedding"] for r in rows]).astype(np.float32).ravel())
    table = pa.table({**cols, "embedding": pa.FixedSizeListArray.from_arrays(flat, dim)})
    table = table.replace_schema_metadata({IDENTITY_KEY: json.dumps(identity, sort_keys=True).encode()})
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)


def write_skipped(skipped, path: Path) -> None:
    """skipped.csv (path, kind, reason) of the inputs that could not be embedded."""
    import csv

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "kind", "reason"])
        w.writerows([s.path, s.kind, s.reason] for s in skipped)
