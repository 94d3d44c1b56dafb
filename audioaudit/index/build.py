"""``index build`` / ``index add``: a corpus → an index directory (resumable, incremental).

1. list the corpus and fingerprint every file (size + mtime; sha256 when they differ);
2. match files against the finished shards already on disk — matched files are not
   decoded again; the rest are planned into new shards and embedded
   (:mod:`audioaudit.index.shards`);
3. assemble ``items.parquet`` and the FAISS index from the shards, find duplicate groups
   (exact PCM hash + near duplicates through the index), cache the train-vs-train
   reference and write ``manifest.json``, all into a staging folder; then commit them
   (:func:`audioaudit.index.store.commit`): an ``audit`` running meanwhile reads the old
   index whole or waits for the renames, never a mix. Shards no file uses any more go
   after the commit.

A rerun on an unchanged corpus matches every file and finds the manifest digest equal:
it does no work. An interrupted run leaves only complete shards, so the rerun redoes at
most the shard that was in flight; a run killed during its commit is finished by the
next reader or writer. Shards record the encoder they were made with: a build with
another encoder (``--overwrite``) never reuses them, and keeps the old index readable
until its own commit replaces it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from audioaudit import schema
from audioaudit.audio.corpus import corpus_work
from audioaudit.audio.decode import WorkItem
from audioaudit.audio.fingerprint import file_sha256
from audioaudit.audio.io import LoadOptions
from audioaudit.duplicates import groups as dupgroups
from audioaudit.encoders.registry import load_stored_encoder
from audioaudit.errors import UserError
from audioaudit.index import items as items_table
from audioaudit.index import store
from audioaudit.index.assemble import assemble
from audioaudit.index.faiss import facade as fx
from audioaudit.index.near_duplicates import find_duplicates
from audioaudit.index.options import BuildOptions, options_from_manifest
from audioaudit.index.shards import (
    EmbedSettings,
    EmbedStats,
    ShardPlan,
    embed_shards,
    plan_shards,
    scan_shards,
    shard_path,
)
from audioaudit.index.store import files_intact
from audioaudit.util import atomic
from audioaudit.util.progress import progress_bar


@dataclass
class BuildResult:
    index_dir: Path
    up_to_date: bool
    clips: int = 0
    segments: int = 0
    skipped: list[dict] = field(default_factory=list)
    embedded: int = 0  # files decoded this run (embedded or skipped as bad)
    reused: int = 0  # files found in finished shards
    shards_written: int = 0
    shards_reused: int = 0
    params: fx.IndexParams | None = None
    duplicates: dupgroups.DupSummary | None = None
    index_build: dict | None = None  # ivfpq: plan, seconds and memory figures (manifest "index_build")
    seconds: float = 0.0


@dataclass
class Match:
    chosen: dict[str, tuple[str, str]]  # item_id -> (shard key, sha256)
    skipped: dict[str, dict]  # item_id -> skipped record from a shard
    pending: list[WorkItem]


def match_shards(work: Sequence[WorkItem], metas: dict[str, dict]) -> Match:
    """Which files are already done (in a finished shard, same size+mtime or same sha256)."""
    by_id: dict[str, list[tuple[str, dict, bool]]] = {}
    for key, meta in metas.items():
        for m in meta.get("members", []):
            by_id.setdefault(m["item_id"], []).append((key, m, False))
        for m in meta.get("skipped", []):
            by_id.setdefault(m["item_id"], []).append((key, m, True))
    out = Match({}, {}, [])
    for it in work:
        cands = by_id.get(it.item_id, [])
        hit = next((c for c in cands if c[1]["size"] == it.size and c[1]["mtime_ns"] == it.mtime_ns), None)
        sha = None
        if hit is None and any(c[1]["size"] == it.size and c[1].get("sha256") for c in cands):
            sha = file_sha256(it.path)  # touched but maybe unchanged: compare contents
            hit = next((c for c in cands if c[1].get("sha256") == sha), None)
        if hit is None:
            out.pending.append(WorkItem(**{**it.__dict__, "sha256": sha}))
        elif hit[2]:
            out.skipped[it.item_id] = dict(hit[1])
        else:
            out.chosen[it.item_id] = (hit[0], hit[1]["sha256"])
    return out


def _digest(match: Match, scan_skipped: list[dict], request: dict, identity: dict) -> str:
    blob = json.dumps([sorted(match.chosen.items()), sorted(match.skipped), scan_skipped, request, identity],
                      sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()


def write_derived(index_dir: Path, index, params, items, opts: BuildOptions, root: str | None = None) -> tuple[list, "object"]:
    """duplicates.parquet + reference.parquet for a freshly assembled index (into ``index_dir``:
    the build's staging folder)."""
    import pandas as pd

    from audioaudit.index.reference import reference_table

    groups = find_duplicates(index, params, items, opts, root)
    first = items_table.first_rows(items)
    paths = dict(zip(first["item_id"], first["path"]))
    rows = dupgroups.groups_to_rows(groups, paths)
    dups = pd.DataFrame(rows, columns=schema.DUPLICATE_COLUMNS + ["size"])
    atomic.write_parquet(dups, index_dir / schema.DUPLICATES_FILE)
    source_of = dupgroups.source_of(groups)
    ref = reference_table(index, params, items, source_of, max_items=opts.max_reference)
    atomic.write_parquet(ref, index_dir / schema.REFERENCE_FILE)
    return groups, ref


# --------------------------------------------------------------------------- the run
def _versions() -> dict:
    import faiss

    import audioaudit

    return {"audioaudit": audioaudit.__version__, "faiss": faiss.__version__, "numpy": np.__version__}


def _check_existing(index_dir: Path, encoder, overwrite: bool) -> bool:
    """Whether the folder's index was made with another encoder (refused without ``overwrite``;
    with it, the commit replaces the index and drops its background set and calibration)."""
    store.recover(index_dir)
    if not (index_dir / schema.ENCODER_FILE).exists():
        return False
    try:
        store.check_encoder(store.read_encoder_json(index_dir), encoder, index_dir)
    except UserError:
        if not overwrite:
            raise
        return True
    return False


def _encoder_bound_files() -> list[str]:
    """What a commit removes when the encoder changes: made with the replaced encoder."""
    from audioaudit.index import background as bgset

    return [f"{bgset.DIR}/{n}" for n in (bgset.VECTORS, bgset.CLIPS, bgset.META)] + [schema.CALIBRATION_FILE]


def _wipe(index_dir: Path) -> None:
    """Remove the whole index (one commit: a reader sees it whole or not at all), its
    background set, calibration, shards and any ivfpq build left over."""
    import shutil

    from audioaudit.index.faiss.ivfpq import BUILD_DIR

    with store.build_lock(index_dir):
        store.commit(index_dir, None, [*fx.all_index_files(), schema.ITEMS_FILE, schema.ENCODER_FILE,
                                       schema.REFERENCE_FILE, schema.DUPLICATES_FILE, *_encoder_bound_files(),
                                       schema.MANIFEST_FILE])
        shutil.rmtree(index_dir / BUILD_DIR, ignore_errors=True)
        for p in (index_dir / schema.SHARDS_DIR).glob("*.parquet"):
            p.unlink()


def _up_to_date(index_dir: Path, digest: str) -> dict | None:
    try:
        man = json.loads((index_dir / schema.MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    ok = man.get("state") == "complete" and man.get("digest") == digest and files_intact(index_dir, man)
    return man if ok else None


@dataclass
class BuildHooks:
    """Callbacks of a build: ``on_shard`` after each shard written (tests interrupt with it);
    ``embed`` replaces :func:`embed_shards` (same signature), e.g. the Ray engine's."""

    on_shard: Callable[[ShardPlan, EmbedStats], None] | None = None
    embed: Callable[..., EmbedStats] | None = None


@dataclass
class BuildRun:
    """One build or add: where, with what encoder, over which files, how."""

    index_dir: Path
    encoder: object
    spec: str | None
    corpus_root: str
    work: list[WorkItem]
    scan_skipped: list[dict]
    opts: BuildOptions
    gc: bool  # drop shards no file uses any more (build: yes; add: no)
    hooks: BuildHooks = field(default_factory=BuildHooks)
    new_encoder: bool = False  # replaces an index made with another encoder (build --overwrite)


def run_build(run: BuildRun) -> BuildResult:
    """Shared body of build and add (the caller holds the lock and checked the encoder)."""
    from audioaudit.encoders.base import identity_key

    index_dir, encoder, work, opts = run.index_dir, run.encoder, run.work, run.opts
    t0 = time.perf_counter()
    shard_dir = index_dir / schema.SHARDS_DIR
    shard_dir.mkdir(parents=True, exist_ok=True)
    store.recover(index_dir)  # a commit killed during its renames is finished before anything is read
    for tmp in [*shard_dir.glob(".*.tmp*"), *index_dir.glob(".*.tmp*")]:
        tmp.unlink(missing_ok=True)  # leftovers of a killed writer (shards, items, index, manifest)
    ident = encoder.identity()
    salt = hashlib.sha1(identity_key(ident).encode()).hexdigest()
    metas = _own_shards(shard_dir, salt)
    match = match_shards(work, metas)
    reused = len(match.chosen) + len(match.skipped)
    if not match.pending:
        man = _up_to_date(index_dir, _digest(match, run.scan_skipped, opts.request(), ident))
        if man is not None:
            c = man.get("counts", {})
            return BuildResult(index_dir, True, c.get("clips", 0), c.get("segments", 0), man.get("skipped", []),
                               0, reused, 0, len(set(k for k, _ in match.chosen.values())),
                               fx.IndexParams.from_dict(man["index"]), seconds=time.perf_counter() - t0)
    plans = plan_shards(match.pending, opts.shard_size, salt)
    meta = {"encoder": salt}
    with progress_bar(len(match.pending), f"embedding {len(match.pending)} files", enabled=opts.progress) as adv:
        few = len(match.pending) < 16  # not worth starting worker processes
        stats = (run.hooks.embed or embed_shards)(plans, encoder, shard_dir, EmbedSettings(
            workers=0 if few else opts.n_workers(), batch_size=opts.batch_size, advance=adv,
            on_shard=run.hooks.on_shard, meta=meta, opts=LoadOptions(sample_rate=int(encoder.sample_rate))))
    metas = _own_shards(shard_dir, salt)
    match = match_shards(work, metas)
    if match.pending:  # cannot happen unless files change under us
        raise UserError(f"{len(match.pending)} files changed during the build (e.g. {match.pending[0].path}); rerun")
    return _finish(run, match, metas, BuildResult(index_dir, False, embedded=stats.items_embedded + stats.items_skipped,
                                                  reused=reused, shards_written=stats.shards_written), t0)


def _own_shards(shard_dir: Path, salt: str) -> dict[str, dict]:
    """The finished shards made with this encoder (a shard without the record predates it)."""
    return {k: m for k, m in scan_shards(shard_dir).items() if m.get("encoder", salt) == salt}


def _finish(run: BuildRun, match: Match, metas: dict[str, dict], res: BuildResult, t0: float) -> BuildResult:
    index_dir, work, opts = run.index_dir, run.work, run.opts
    if not match.chosen:
        raise UserError(f"{run.corpus_root}: no usable audio ({len(match.skipped) + len(run.scan_skipped)} files skipped, "
                        "none embedded); see the reasons with `audioaudit index info`")
    order = {it.item_id: n for n, it in enumerate(work)}
    used = sorted(set(k for k, _ in match.chosen.values()) | set(_skip_keys(match, metas)))
    with store.staging(index_dir) as stage:
        items, index, params = assemble(index_dir, match.chosen, order, int(run.encoder.dim), opts,
                                        extend=not run.new_encoder)
        if fx.saved_in(index) != index_dir.resolve():  # else: an ivfpq index that did not change, already there
            fx.save(index, stage / schema.INDEX_FILE)
        atomic.write_parquet(items, stage / schema.ITEMS_FILE)
        groups, ref = write_derived(stage, index, params, items, opts, run.corpus_root)
        atomic.write_json(stage / schema.ENCODER_FILE, store.encoder_record(run.encoder, run.spec))
        _fill_result(run, match, res, (items, index, params, groups), used)
        _write_manifest(run, match, res, used, (stage, len(ref)))
        stale = sorted(set(fx.all_index_files()) - set(fx.index_files(params)))  # a previous index type's
        store.commit(index_dir, stage, stale + (_encoder_bound_files() if run.new_encoder else []))
    if run.gc:  # after the commit: until then the old index's shards may still be needed
        for key in set(scan_shards(index_dir / schema.SHARDS_DIR)) - set(used):
            shard_path(index_dir / schema.SHARDS_DIR, key).unlink(missing_ok=True)
    res.seconds = time.perf_counter() - t0
    return res


def _fill_result(run: BuildRun, match: Match, res: BuildResult, built: tuple, used: list[str]) -> None:
    items, index, params, groups = built
    skipped = run.scan_skipped + [{"path": r.get("path", i), "kind": r["kind"], "reason": r["reason"], "item_id": i,
                               "size": r["size"], "mtime_ns": r["mtime_ns"]} for i, r in sorted(match.skipped.items())]
    summ = dupgroups.summarise(groups)
    res.clips, res.segments, res.skipped = int(items["item_id"].nunique()), len(items), skipped
    res.shards_reused = len(used) - res.shards_written
    res.params, res.duplicates = params, summ
    res.index_build = fx.build_record(index)


def _skip_keys(match: Match, metas: dict[str, dict]) -> list[str]:
    keys = []
    for key, meta in metas.items():
        ids = {m["item_id"] for m in meta.get("skipped", [])}
        if ids & set(match.skipped):
            keys.append(key)
    return keys


def _write_manifest(run: BuildRun, match: Match, res: BuildResult, used: list[str], into: tuple[Path, int]) -> None:
    """manifest.json into the staging folder ``into[0]`` (``into[1]``: reference rows)."""
    from dataclasses import asdict

    index_dir, encoder, opts = run.index_dir, run.encoder, run.opts
    stage, n_ref = into

    prev = {}
    if (index_dir / schema.MANIFEST_FILE).exists():
        try:
            prev = json.loads((index_dir / schema.MANIFEST_FILE).read_text())
        except ValueError:
            prev = {}
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    files = {n: ((stage / n) if (stage / n).exists() else (index_dir / n)).stat().st_size
             for n in (*fx.index_files(res.params), schema.ITEMS_FILE)}
    atomic.write_json(stage / schema.MANIFEST_FILE, {
        "name": index_dir.name, "state": "complete", "corpus_root": run.corpus_root,
        "created": prev.get("created", now), "updated": now,
        "digest": _digest(match, run.scan_skipped, opts.request(), encoder.identity()),
        "counts": {"clips": res.clips, "segments": res.segments, "skipped": len(res.skipped),
                   "duplicate_groups": res.duplicates.groups, "duplicate_items": res.duplicates.items_in_groups,
                   "shards": len(used), "reference_items": n_ref},
        "index": res.params.as_dict(), "index_description": res.params.describe(), "request": opts.request(),
        "encoder": {"spec": run.spec, "name": getattr(encoder, "name", None)},
        "index_build": res.index_build,
        "duplicates": asdict(res.duplicates), "skipped": res.skipped, "shards": used, "files": files,
        "build": {"shard_size": opts.shard_size, "batch_size": opts.batch_size, "workers": opts.n_workers()},
        "versions": _versions(),
    })


# --------------------------------------------------------------------------- entry points
def build_index(corpus, encoder, index_dir, *, spec: str | None = None, opts: BuildOptions | None = None,
                hooks: BuildHooks | None = None) -> BuildResult:
    """Build (or bring up to date) ``index_dir`` from the corpus folder ``corpus`` (class labels,
    corpus manifest and overwrite: ``opts.labels``, ``opts.corpus_manifest``, ``opts.overwrite``).

    The index is synced to the folder: new and changed files are embedded, removed ones
    (and files once added from elsewhere with :func:`add_to_index`) are dropped."""
    opts = opts or BuildOptions()
    index_dir = Path(index_dir)
    with store.build_lock(index_dir):
        new_encoder = _check_existing(index_dir, encoder, opts.overwrite)
        root, work, scan_skipped = corpus_work(corpus, opts.labels, opts.corpus_manifest)
        if not work:
            raise UserError(f"{corpus}: no audio files found (extensions .wav .flac .ogg .mp3 .aiff)")
        return run_build(BuildRun(index_dir, encoder, spec, root, work, scan_skipped, opts, True, hooks or BuildHooks(),
                                  new_encoder))


def add_to_index(index_dir, paths: Sequence[str], encoder=None, *, opts: BuildOptions | None = None,
                 labels: str = "folders", hooks: BuildHooks | None = None) -> BuildResult:
    """Embed only the files of ``paths`` that the index does not hold yet; keep the rest."""
    index_dir = Path(index_dir)
    with store.build_lock(index_dir):
        old = store.open_index(index_dir, load_faiss=False)
        if encoder is None:
            encoder = load_stored_encoder(old.encoder, index_dir)
        store.check_encoder(old.encoder, encoder, index_dir)
        opts = opts or options_from_manifest(old.manifest)
        root = old.manifest.get("corpus_root") or "."
        work = _previous_work(old, root)
        known = {w.item_id for w in work} | {s.get("item_id") for s in old.manifest.get("skipped", [])}
        scan_skipped = [s for s in old.manifest.get("skipped", []) if "item_id" not in s]
        for p in paths:
            _, new, skipped = corpus_work(p, labels)
            for w in new:
                item_id = _item_id(Path(w.path), Path(root))
                if item_id not in known:
                    known.add(item_id)
                    work.append(WorkItem(**{**w.__dict__, "item_id": item_id, "rel_path": item_id}))
            scan_skipped += skipped
        return run_build(BuildRun(index_dir, encoder, old.encoder.get("spec"), root, work, scan_skipped, opts,
                                  False, hooks or BuildHooks()))


def _item_id(path: Path, root: Path) -> str:
    """Path relative to the index's corpus root, or the absolute path for files outside it."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def _previous_work(old: store.OpenIndex, root: str) -> list[WorkItem]:
    first = items_table.first_rows(old.items)
    work = [WorkItem(r.item_id, str(Path(root) / r.path), r.path, None if r.label is None else r.label,
                     int(r.size), int(r.mtime_ns), r.sha256) for r in first.itertuples()]
    for s in old.manifest.get("skipped", []):
        if "item_id" in s:
            work.append(WorkItem(s["item_id"], str(Path(root) / s["item_id"]), s["item_id"], None,
                                 int(s["size"]), int(s["mtime_ns"])))
    return work


