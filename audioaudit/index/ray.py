"""``index build --engine ray``: decode and embed on a Ray cluster, write the same shards.

The single-machine build (:mod:`audioaudit.index.build`) lists the corpus, matches files against
the finished shards, plans the rest into shards (:func:`audioaudit.index.shards.plan_shards`)
and embeds them with :func:`audioaudit.index.shards.embed_shards`. This engine swaps only that
last step for a Ray Data pipeline (https://docs.ray.io/en/latest/data/):

    from_pandas(files of the pending shards)               one row per file
      -> map_batches(decode)          Ray tasks, all CPUs  one row per window (+ a marker row
                                                           for skipped / window-less files)
      -> map_batches(Embedder, ActorPoolStrategy(size=N), num_gpus=G, batch_size=B)
                                      the model is loaded once per actor (on its GPU if G > 0)
      -> iter_batches in the driver   rows arrive in input order (preserve_order), so each
                                      shard is complete when the next one starts: it is
                                      written with :func:`audioaudit.index.shards.write_shard`

Everything else — shard plan and keys, resume (finished shards are matched and never
redone), items.parquet, the FAISS index, duplicates, reference, manifest — is the
single-machine code path. The driver writes the shards, so only the driver needs the index
folder; the workers must see the corpus files at the same paths (shared filesystem).

``ray`` is the optional extra ``audioaudit[distributed]``.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from audioaudit.errors import UserError, require
from audioaudit.index.shards import EmbedSettings, EmbedStats

DECODE_MEMORY = 512 * 2**20  # reserved per decode task (4 files, their PCM and windows)


_META_COLS = ["shard", "pos", "seg", "start", "end", "duration", "sha256", "pcm_hash", "kind", "reason"]
_EMPTY = {"sha256": "", "pcm_hash": "", "kind": "", "reason": ""}


@dataclass(frozen=True)
class RayPlan:
    """Where and how the embedding step runs on Ray."""

    spec: str  # the encoder spec every actor loads
    address: str | None = None  # None: start a local cluster
    actors: int = 1  # embedding actors (one per GPU on a GPU cluster)
    gpus_per_worker: float = 0
    cpus_per_worker: float = 1


# --------------------------------------------------------------------------- ray stages
def _decode_batch(batch, spec, opts) -> dict:
    """Ray task: decode + window every file of ``batch`` with the single-machine decoder."""
    from audioaudit.audio.decode import WorkItem, decode_item
    from audioaudit.audio.io import Skipped

    cols: dict[str, list] = {c: [] for c in _META_COLS + ["wave"]}

    def emit(row: dict, wave=None) -> None:
        """One output row: ``row`` holds some of _META_COLS (the rest get their empty value)."""
        for c in _META_COLS:
            cols[c].append(row.get(c, _EMPTY.get(c, 0.0)))
        cols["wave"].append(np.zeros(0, np.float32) if wave is None else np.asarray(wave, np.float32))

    for i in range(len(batch["shard"])):
        item = WorkItem(*(_cell(batch[f][i]) for f in WorkItem.__dataclass_fields__))
        shard, pos = int(batch["shard"][i]), int(batch["pos"][i])
        got = decode_item(item, spec, opts)
        key = {"shard": shard, "pos": pos}
        if isinstance(got, Skipped):
            emit(dict(key, seg=-1, kind=got.kind, reason=got.reason))
            continue
        found = dict(key, duration=got.duration, sha256=got.sha256, pcm_hash=got.pcm_hash)
        if not got.waves:  # recorded as a member with no segments, as embed_shards does
            emit(dict(found, seg=-1))
        for seg, ((s, e), w) in enumerate(zip(got.bounds, got.waves)):
            emit(dict(found, seg=seg, start=s, end=e), wave=w)
    out = {c: np.asarray(v) for c, v in cols.items() if c != "wave"}
    out["wave"] = _ragged(cols["wave"])
    return out


def _cell(v):
    """A pandas/arrow cell back to a Python value (None for missing)."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    return v.item() if isinstance(v, np.generic) else v


def _ragged(waves: list[np.ndarray]) -> np.ndarray:
    out = np.empty(len(waves), dtype=object)
    out[:] = waves
    return out


class Embedder:
    """Ray actor: one encoder per actor, loaded once, batched windows in, embeddings out."""

    def __init__(self, spec: str, device: str, batch_size: int, threads: int = 0):
        import torch

        from audioaudit.encoders import load_encoder

        if threads:
            torch.set_num_threads(threads)
        self.encoder = load_encoder(spec, device=device, batch_size=batch_size)
        self.dim = int(self.encoder.dim)

    def __call__(self, batch: dict) -> dict:
        real = np.flatnonzero(np.asarray(batch["seg"]) >= 0)
        emb = np.zeros((len(batch["seg"]), self.dim), dtype=np.float32)
        if len(real):
            emb[real] = self.encoder.embed([np.asarray(batch["wave"][i], np.float32) for i in real])
        out = {c: batch[c] for c in _META_COLS}
        out["embedding"] = emb
        return out


# --------------------------------------------------------------------------- shard assembly
@dataclass
class _Pending:
    """Rows of the shard being received, built exactly as the single-machine buffer does."""

    plan: object
    rows: list = field(default_factory=list)
    embs: list = field(default_factory=list)
    members: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)

    def add(self, r: dict, emb: np.ndarray) -> None:
        it = self.plan.items[r["pos"]]
        if r["kind"]:
            self.skipped[r["pos"]] = dict(it.member(None), path=it.rel_path, kind=r["kind"], reason=r["reason"])
            return
        self.members.setdefault(r["pos"], it.member(r["sha256"]))
        if r["seg"] < 0:
            return
        self.rows.append({"row": len(self.rows), "item_id": it.item_id, "path": it.rel_path, "label": it.label,
                          "segment": r["seg"], "start": r["start"], "end": r["end"], "duration": r["duration"],
                          "sha256": r["sha256"], "size": it.size, "mtime_ns": it.mtime_ns, "pcm_hash": r["pcm_hash"]})
        self.embs.append(emb)

    def done(self) -> int:
        return len(self.members) + len(self.skipped)


def _rows_of(batch: dict):
    for i in range(len(batch["shard"])):
        r = {c: _cell(batch[c][i]) for c in _META_COLS}
        r["shard"], r["pos"], r["seg"] = int(r["shard"]), int(r["pos"]), int(r["seg"])
        yield r, np.asarray(batch["embedding"][i], dtype=np.float32)


def _files_frame(plans):
    import pandas as pd

    recs = [dict(it.__dict__, shard=s, pos=p) for s, plan in enumerate(plans) for p, it in enumerate(plan.items)]
    return pd.DataFrame.from_records(recs)


# --------------------------------------------------------------------------- the engine
def ray_embed_shards(plans: Sequence, encoder, shard_dir, settings: EmbedSettings, plan: RayPlan) -> EmbedStats:
    """Drop-in for :func:`audioaudit.index.shards.embed_shards` (bind ``plan`` with
    functools.partial) that runs on the connected Ray cluster; ``encoder`` (the driver's
    copy) only supplies the window settings; ``settings.workers`` is not used (Ray places
    the decode tasks). Shards already on disk are not redone."""
    ray = require("ray", "distributed")
    from audioaudit.audio.io import LoadOptions
    from audioaudit.audio.windows import WindowSpec
    from audioaudit.index.shards import shard_path, write_shard

    seg_spec = WindowSpec.of(encoder)
    opts = settings.opts or LoadOptions(sample_rate=seg_spec.sample_rate)
    batch_size, advance, on_shard, meta = settings.batch_size, settings.advance, settings.on_shard, settings.meta
    todo = [p for p in plans if not shard_path(shard_dir, p.key).exists()]
    stats = EmbedStats()
    if not todo:
        return stats
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    files = _files_frame(todo)
    blocks = max(1, min(len(files) // 8, 1024))  # decode parallelism: many small blocks
    cuts = np.linspace(0, len(files), blocks + 1).astype(int)  # contiguous: block order = shard order
    ds = ray.data.from_pandas([files.iloc[a:b] for a, b in zip(cuts[:-1], cuts[1:])])
    # the memory reservation also makes the decode stage's remote args differ from the
    # actors', so Ray Data does not fuse decoding into the embedding actors: decoding runs
    # as parallel CPU tasks on every node, the actors (GPUs) only run the model
    ds = ds.map_batches(_decode_batch, fn_kwargs={"spec": seg_spec, "opts": opts}, batch_size=4,
                        batch_format="numpy", num_cpus=1, memory=DECODE_MEMORY)
    ds = ds.map_batches(
        Embedder, fn_constructor_kwargs={"spec": plan.spec, "device": "cuda" if plan.gpus_per_worker else "cpu",
                                         "batch_size": batch_size, "threads": int(plan.cpus_per_worker)},
        compute=ray.data.ActorPoolStrategy(size=max(1, int(plan.actors))), num_gpus=plan.gpus_per_worker or None,
        num_cpus=plan.cpus_per_worker, batch_size=batch_size, batch_format="numpy")
    cur: _Pending | None = None
    cur_shard = -1

    def flush(p: _Pending) -> None:
        if p.done() != len(p.plan.items):
            raise UserError(f"ray engine: shard {p.plan.key} got {p.done()} of {len(p.plan.items)} files back")
        emb = np.stack(p.embs) if p.embs else np.zeros((0, int(encoder.dim)), np.float32)
        order = sorted(set(p.members) | set(p.skipped))
        write_shard(shard_path(shard_dir, p.plan.key), p.rows, emb,
                    dict(meta or {}, members=[p.members[i] for i in order if i in p.members],
                         skipped=[p.skipped[i] for i in order if i in p.skipped]))
        stats.items_embedded += len(p.members)
        stats.items_skipped += len(p.skipped)
        stats.segments += len(p.rows)
        stats.shards_written += 1
        stats.shard_keys.append(p.plan.key)
        if on_shard:
            on_shard(p.plan, stats)

    batches = iter(ds.iter_batches(batch_format="numpy", batch_size=None))
    try:
        for batch in batches:
            for r, emb in _rows_of(batch):
                if r["shard"] != cur_shard:
                    if cur is not None:
                        flush(cur)
                    cur, cur_shard = _Pending(todo[r["shard"]]), r["shard"]
                before = cur.done()
                cur.add(r, emb)
                if advance and cur.done() > before:
                    advance(cur.done() - before)
    finally:
        close = getattr(batches, "close", None)
        if close:
            close()  # an interrupted run stops the executor and frees its actors now
    if cur is not None:
        flush(cur)
    if stats.shards_written != len(todo):
        raise UserError(f"ray engine: {len(todo) - stats.shards_written} planned shards produced no rows")
    return stats


def connect(address: str | None):
    """``ray.init`` (local cluster, or ``address``) unless already connected; returns
    (ray module, whether we started it)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray = require("ray", "distributed")
    if ray.is_initialized():
        return ray, False
    ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    return ray, True


def build_with_ray(corpus, index_dir, plan: RayPlan, *, opts=None, on_shard: Callable | None = None, encoder=None):
    """``audioaudit index build --engine ray``: the single-machine build with the embedding
    step on Ray (``plan.actors`` embedding actors with ``plan.gpus_per_worker`` GPUs each;
    shard and batch sizes, labels, manifest and overwrite from ``opts``).
    ``encoder``: the driver's already-loaded copy of ``plan.spec``, if any."""
    ray, started = connect(plan.address)
    from audioaudit.encoders import load_encoder
    from audioaudit.index.build import BuildHooks, build_index
    from audioaudit.index.options import BuildOptions

    try:
        opts = opts or BuildOptions()
        opts.workers = plan.actors
        enc = encoder or load_encoder(plan.spec)  # identity / window settings for the driver
        hooks = BuildHooks(on_shard=on_shard, embed=functools.partial(ray_embed_shards, plan=plan))
        return build_index(corpus, enc, Path(index_dir), spec=plan.spec, opts=opts, hooks=hooks)
    finally:
        if started:
            ray.shutdown()
