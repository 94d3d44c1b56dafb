"""The sharded embedding pipeline: corpus items → decode → segments → embed → shards.

A *shard* is the resumable unit of work: one parquet file in ``index/NAME/shards/``
holding the segment rows (``schema.ITEM_COLUMNS`` with ``row`` = position in the shard,
plus ``size``, ``mtime_ns``, ``pcm_hash``) and their ``embedding`` (fixed-size list of
float32), with the shard's members and skipped files in the parquet schema metadata
(readable from the footer alone). A shard is written atomically when all its items are
done, so after Ctrl-C or a kill every shard on disk is complete and only the shard in
flight is redone. Decoding (and resampling, PCM hashing, windowing) runs in worker
processes, ``workers`` ahead of the model, so it overlaps the forward passes.

Public pieces reused by the Ray engine: :func:`plan_shards`, :func:`write_shard`,
:func:`read_shard`, :func:`read_shards`, :func:`read_shard_meta`, :func:`decode_item`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from audioaudit.audio.decode import Decoded, WorkItem, decoded_stream
from audioaudit.audio.io import LoadOptions, Skipped
from audioaudit.audio.windows import WindowSpec
from audioaudit.util.atomic import atomic_path
from audioaudit.util.workers import model_threads, torch_threads

SHARD_META_KEY = b"audioaudit.shard"


SHARD_VERSION = 1


SEGMENT_COLUMNS = ["row", "item_id", "path", "label", "segment", "start", "end", "duration",
                   "sha256", "size", "mtime_ns", "pcm_hash"]


@dataclass(frozen=True)
class ShardPlan:
    key: str
    items: tuple[WorkItem, ...]


@dataclass
class EmbedStats:
    items_embedded: int = 0
    items_skipped: int = 0
    segments: int = 0
    shards_written: int = 0
    shard_keys: list[str] = field(default_factory=list)


def plan_shards(items: Sequence[WorkItem], shard_size: int, salt: str = "") -> list[ShardPlan]:
    """Cut ``items`` (in order) into shards of ``shard_size``; the key hashes the members'
    ids, sizes and mtimes (and ``salt``, e.g. the encoder identity), so the same work
    always gets the same shard name."""
    shard_size = max(1, int(shard_size))
    plans = []
    for s in range(0, len(items), shard_size):
        chunk = tuple(items[s : s + shard_size])
        h = hashlib.sha1(salt.encode())
        for it in chunk:
            h.update(f"\n{it.item_id}\t{it.size}\t{it.mtime_ns}".encode())
        plans.append(ShardPlan(h.hexdigest()[:24], chunk))
    return plans


def shard_path(shard_dir: str | os.PathLike, key: str) -> Path:
    return Path(shard_dir) / f"{key}.parquet"


# --------------------------------------------------------------------------- shard io
def write_shard(path: str | os.PathLike, rows: list[dict], embeddings: np.ndarray, meta: dict) -> None:
    """Atomically write one shard: ``rows`` (SEGMENT_COLUMNS) + ``embeddings`` (N, dim)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or len(emb) != len(rows):
        raise ValueError(f"{len(rows)} rows but embeddings of shape {emb.shape}")
    cols = {c: [r.get(c) for r in rows] for c in SEGMENT_COLUMNS}
    types = {"row": pa.int64(), "segment": pa.int32(), "start": pa.float64(), "end": pa.float64(),
             "duration": pa.float64(), "size": pa.int64(), "mtime_ns": pa.int64()}
    arrays = [pa.array(cols[c], type=types.get(c, pa.string())) for c in SEGMENT_COLUMNS]
    dim = int(emb.shape[1])
    arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1), type=pa.float32()), dim))
    table = pa.Table.from_arrays(arrays, names=SEGMENT_COLUMNS + ["embedding"])
    meta = dict(meta, version=SHARD_VERSION, dim=dim, n_rows=len(rows))
    table = table.replace_schema_metadata({SHARD_META_KEY: json.dumps(meta).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_shard_meta(path: str | os.PathLike) -> dict | None:
    """A shard's members/skipped from the parquet footer; ``None`` if unreadable."""
    import pyarrow.parquet as pq

    try:
        md = pq.read_schema(path).metadata or {}
        meta = json.loads(md[SHARD_META_KEY])
        return meta if meta.get("version") == SHARD_VERSION else None
    except Exception:  # noqa: BLE001 - a corrupt or foreign file is simply not a finished shard
        return None


def read_shard(path: str | os.PathLike, with_embeddings: bool = True):
    """(rows DataFrame, embeddings (N, dim) float32 or None)."""
    import pyarrow.parquet as pq

    cols = SEGMENT_COLUMNS + (["embedding"] if with_embeddings else [])
    table = pq.read_table(path, columns=cols)
    emb = None
    if with_embeddings:
        col = table.column("embedding").combine_chunks()
        dim = col.type.list_size
        emb = np.asarray(col.values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, dim)
        table = table.drop(["embedding"])
    return table.to_pandas(), emb


def read_shards(shard_dir: str | os.PathLike, keys: Iterable[str] | None = None, with_embeddings: bool = True):
    """Iterate ``(key, rows, embeddings)`` over the given shards (default: all, by name)."""
    d = Path(shard_dir)
    if keys is None:
        keys = sorted(p.stem for p in d.glob("*.parquet"))
    for key in keys:
        rows, emb = read_shard(shard_path(d, key), with_embeddings)
        yield key, rows, emb


def scan_shards(shard_dir: str | os.PathLike) -> dict[str, dict]:
    """key → metadata of every finished shard (unreadable files are left out)."""
    d = Path(shard_dir)
    out = {}
    for p in sorted(d.glob("*.parquet")):
        meta = read_shard_meta(p)
        if meta is not None:
            out[p.stem] = meta
    return out


# --------------------------------------------------------------------------- embed
class _ShardBuffer:
    """Segments of the shard in flight; embedded in model batches as they arrive."""

    def __init__(self, encoder, batch_size: int):
        self.encoder, self.batch_size = encoder, batch_size
        self.rows: list[dict] = []
        self.members: list[dict] = []
        self.skipped: list[dict] = []
        self.waves: list[np.ndarray] = []
        self.embs: list[np.ndarray] = []

    def add(self, d: Decoded) -> None:
        it = d.item
        self.members.append(it.member(d.sha256))
        for i, ((s, e), w) in enumerate(zip(d.bounds, d.waves)):
            self.rows.append({"row": len(self.rows), "item_id": it.item_id, "path": it.rel_path, "label": it.label,
                              "segment": i, "start": s, "end": e, "duration": d.duration, "sha256": d.sha256,
                              "size": it.size, "mtime_ns": it.mtime_ns, "pcm_hash": d.pcm_hash})
            self.waves.append(w)
        while len(self.waves) >= self.batch_size:
            self._embed(self.batch_size)

    def skip(self, it: WorkItem, s: Skipped) -> None:
        self.skipped.append(dict(it.member(None), path=it.rel_path, kind=s.kind, reason=s.reason))

    def _embed(self, n: int) -> None:
        batch, self.waves = self.waves[:n], self.waves[n:]
        self.embs.append(np.asarray(self.encoder.embed(batch), dtype=np.float32))

    def finish(self) -> np.ndarray:
        if self.waves:
            self._embed(len(self.waves))
        if not self.embs:
            return np.zeros((0, int(self.encoder.dim)), dtype=np.float32)
        return np.concatenate(self.embs, axis=0)


@dataclass
class EmbedSettings:
    """How shards are embedded: decode processes, model batch, decode options, callbacks."""

    workers: int = 0
    batch_size: int = 32
    opts: LoadOptions | None = None  # default: the encoder's rate
    advance: Callable[[int], None] | None = None  # advance(1) after each file
    on_shard: Callable[[ShardPlan, EmbedStats], None] | None = None  # after each shard written
    meta: dict | None = None  # extra keys for every shard's metadata
    threads: int | None = None  # model threads; None: the cores the decode workers leave


def embed_shards(plans: Sequence[ShardPlan], encoder, shard_dir: str | os.PathLike,
                 settings: EmbedSettings = EmbedSettings()) -> EmbedStats:
    """Embed every planned shard and write it."""
    spec = WindowSpec.of(encoder)
    opts = settings.opts or LoadOptions(sample_rate=spec.sample_rate)
    workers, batch_size, advance, on_shard, meta = (settings.workers, settings.batch_size, settings.advance,
                                                    settings.on_shard, settings.meta)
    threads = settings.threads or (model_threads(workers) if workers > 0 else None)
    with torch_threads(threads):
        return _embed_planned(plans, encoder, shard_dir, EmbedSettings(workers, batch_size, opts, advance, on_shard,
                                                                        meta, threads))


def _embed_planned(plans: Sequence[ShardPlan], encoder, shard_dir, settings: EmbedSettings) -> EmbedStats:
    """The loop of :func:`embed_shards`: decode ahead, embed, write each shard when complete."""
    spec = WindowSpec.of(encoder)
    workers, batch_size, opts, advance, on_shard, meta = (settings.workers, settings.batch_size, settings.opts,
                                                          settings.advance, settings.on_shard, settings.meta)
    stats = EmbedStats()
    items = [it for p in plans for it in p.items]
    stream = decoded_stream(items, spec, opts, workers)
    try:
        for plan in plans:
            buf = _ShardBuffer(encoder, batch_size)
            for it in plan.items:
                d = next(stream)
                if isinstance(d, Skipped):
                    buf.skip(it, d)
                    stats.items_skipped += 1
                else:
                    buf.add(d)
                    stats.items_embedded += 1
                if advance:
                    advance(1)
            emb = buf.finish()
            write_shard(shard_path(shard_dir, plan.key), buf.rows, emb,
                        dict(meta or {}, members=buf.members, skipped=buf.skipped))
            stats.segments += len(buf.rows)
            stats.shards_written += 1
            stats.shard_keys.append(plan.key)
            if on_shard:
                on_shard(plan, stats)
    finally:
        stream.close()
    return stats
