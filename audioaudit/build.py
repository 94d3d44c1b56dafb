"""``index build`` / ``index add``: a corpus → an index directory (resumable, incremental).

1. list the corpus and fingerprint every file (size + mtime; sha256 when they differ);
2. match files against the finished shards already on disk — matched files are not
   decoded again; the rest are planned into new shards and embedded
   (:mod:`audioaudit.embedding`);
3. assemble ``items.parquet`` and the FAISS index from the shards, find duplicate groups
   (exact PCM hash + near duplicates through the index), cache the train-vs-train
   reference, and write ``manifest.json`` last (the commit point).

A rerun on an unchanged corpus matches every file and finds the manifest digest equal:
it does no work. An interrupted run leaves only complete shards, so the rerun redoes at
most the shard that was in flight.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from audioaudit import dedup, schema, store
from audioaudit import faiss_index as fx
from audioaudit.audio import LoadOptions, file_sha256, scan_corpus
from audioaudit.embedding import (SEGMENT_COLUMNS, EmbedStats, ShardPlan, WorkItem, embed_shards, plan_shards,
                                  read_shards, scan_shards, shard_path, work_item)
from audioaudit.errors import UserError
from audioaudit.progress import progress_bar

ITEM_EXTRA_COLUMNS = ["size", "mtime_ns", "pcm_hash"]


@dataclass
class BuildOptions:
    index_type: str = "auto"
    nlist: int | None = None
    nprobe: int | None = None
    hnsw_m: int | None = None
    ef_search: int | None = None
    shard_size: int = 256
    batch_size: int = 32
    workers: int | None = None  # None: min(4, cores - 1)
    near_dups: bool = True
    near_threshold: float = dedup.NEAR_THRESHOLD
    max_reference: int = 10_000
    progress: bool = True

    def request(self) -> dict:
        return {"index_type": self.index_type, "nlist": self.nlist, "nprobe": self.nprobe, "hnsw_m": self.hnsw_m,
                "ef_search": self.ef_search, "near_dups": self.near_dups, "near_threshold": self.near_threshold,
                "max_reference": self.max_reference}

    def n_workers(self) -> int:
        return max(1, min(4, (os.cpu_count() or 2) - 1)) if self.workers is None else int(self.workers)


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
    duplicates: dedup.DupSummary | None = None
    index_build: dict | None = None  # ivfpq: plan, seconds and memory figures (manifest "index_build")
    seconds: float = 0.0


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


# --------------------------------------------------------------------------- assembly
def _keep_mask(rows, key: str, chosen: dict[str, tuple[str, str]]) -> np.ndarray:
    want = rows["item_id"].map(lambda i: chosen.get(i, ("", ""))).tolist()
    return np.array([w[0] == key and w[1] == s for w, s in zip(want, rows["sha256"])], dtype=bool)


def assemble(index_dir: Path, chosen: dict[str, tuple[str, str]], order: dict[str, int], dim: int,
             opts: BuildOptions):
    """items DataFrame + FAISS index from the chosen rows of the finished shards."""
    import pandas as pd

    shard_dir = index_dir / schema.SHARDS_DIR
    members: dict[str, int] = {}
    for item_id, (key, _) in chosen.items():
        members[key] = min(members.get(key, 1 << 62), order.get(item_id, 1 << 61))
    keys = sorted(members, key=lambda k: (members[k], k))
    frames, masks = [], {}
    for key, rows, _ in read_shards(shard_dir, keys, with_embeddings=False):
        masks[key] = _keep_mask(rows, key, chosen)
        frames.append(rows[masks[key]])
    items = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SEGMENT_COLUMNS)
    items["row"] = np.arange(len(items), dtype=np.int64)
    items = items[schema.ITEM_COLUMNS + ITEM_EXTRA_COLUMNS]
    params = fx.choose_params(len(items), dim, opts.index_type, nlist=opts.nlist, nprobe=opts.nprobe,
                              hnsw_m=opts.hnsw_m, ef_search=opts.ef_search)

    def batches(skip: int = 0):
        """The kept embeddings in row order from row ``skip`` on (earlier shards are not read)."""
        start = 0
        for key in keys:
            n_key = int(masks[key].sum())
            if start + n_key > skip:
                _, _, emb = next(read_shards(shard_dir, [key]))
                yield emb[masks[key]][max(0, skip - start):]
            start += n_key

    train = None
    n_train = fx.train_sample_size(params)
    if n_train:
        pick = np.sort(np.random.default_rng(0).choice(len(items), min(n_train, len(items)), replace=False))
        train = _gather(batches(), pick)  # one streaming pass: never all vectors at once
    base, params = _extendable_index(index_dir, items, params, opts)
    with progress_bar(len(items), f"indexing {len(items)} vectors ({params.type})", enabled=opts.progress,
                      unit="vectors") as adv:
        done = [0]

        def progress(at: int, _n: int) -> None:
            adv(at - done[0])
            done[0] = at

        index = fx.build(params, batches, train, n=len(items), workdir=index_dir, base=base, progress=progress)
    return items, index, params


def _extendable_index(index_dir: Path, items, params: fx.IndexParams, opts: BuildOptions):
    """(the index on disk, its params) when this build may extend it instead of rebuilding
    (:func:`faiss_index.can_extend`: ivfpq, whose trained quantizer is reused and only the new
    rows are added — ``index add``); else (None, ``params``). Needs a complete manifest whose
    files are intact, the same index request, and the old rows an exact prefix of ``items``."""
    import dataclasses

    import pandas as pd

    from audioaudit.faiss_ivfpq import MAX_GROWTH

    if params.type not in fx.EXTENDABLE_TYPES:
        return None, params
    try:
        man = json.loads((index_dir / schema.MANIFEST_FILE).read_text())
        old = fx.IndexParams.from_dict(man["index"])
        same = all(man.get("request", {}).get(k) == opts.request()[k] for k in ("index_type", "nlist"))
        trained = (man.get("index_build") or {}).get("plan", {}).get("n", 0)
        grows_ok = len(items) <= MAX_GROWTH * trained  # checked here before loading it for nothing
        if not (same and old.type == params.type and grows_ok and _files_intact(index_dir, man)):
            return None, params
        cols = ["item_id", "sha256", "segment", "start", "end"]
        prev = pd.read_parquet(index_dir / schema.ITEMS_FILE, columns=cols)
        if len(prev) > len(items) or not all(np.array_equal(prev[c].to_numpy(), items[c].to_numpy()[: len(prev)])
                                             for c in cols):
            return None, params
        base = fx.load(index_dir / schema.INDEX_FILE, old)
    except (OSError, ValueError, KeyError, TypeError, UserError):
        return None, params
    if base.ntotal != len(prev) or not fx.can_extend(old, base, len(items)):
        return None, params
    return base, dataclasses.replace(old, nprobe=min(int(opts.nprobe), int(old.nlist)) if opts.nprobe else old.nprobe)


def _gather(batches, pick: np.ndarray) -> np.ndarray:
    """Rows ``pick`` (sorted global positions) from a stream of batches, streaming."""
    out, start = [], 0
    for b in batches:
        sel = pick[(pick >= start) & (pick < start + len(b))] - start
        out.append(b[sel])
        start += len(b)
    return np.concatenate(out)


# --------------------------------------------------------------------------- duplicates
def find_duplicates(index, params, items, opts: BuildOptions, root: str | None = None) -> list[dedup.DupGroup]:
    """Exact groups by PCM hash; near pairs proposed by the index (window coverage ≥
    ``opts.near_threshold``) and confirmed on the audio (:mod:`audioaudit.dupverify`)."""
    from audioaudit.dupverify import verify_pairs
    from audioaudit.reference import near_duplicate_pairs

    first = items.drop_duplicates("item_id")
    ids, hashes = first["item_id"].tolist(), first["pcm_hash"].tolist()
    near = []
    if opts.near_dups:
        h = dict(zip(ids, hashes))
        cands = [p for p in near_duplicate_pairs(index, params, items, opts.near_threshold) if h[p[0]] != h[p[1]]]
        paths = {i: str(Path(root or ".") / p) for i, p in zip(first["item_id"], first["path"])}
        near = [(a, b) for a, b, _, _ in verify_pairs(cands, paths)]
    return dedup.group_duplicates(ids, hashes, near)


def write_derived(index_dir: Path, index, params, items, opts: BuildOptions, root: str | None = None) -> tuple[list, "object"]:
    """duplicates.parquet + reference.parquet for a freshly assembled index."""
    import pandas as pd

    from audioaudit.reference import reference_table

    groups = find_duplicates(index, params, items, opts, root)
    paths = dict(zip(items["item_id"], items["path"]))
    rows = dedup.groups_to_rows(groups, paths)
    dups = pd.DataFrame(rows, columns=schema.DUPLICATE_COLUMNS + ["size"])
    store.write_parquet(dups, index_dir / schema.DUPLICATES_FILE)
    source_of = {m: f"g{g.group}" for g in groups for m in g.members}
    ref = reference_table(index, params, items, source_of, max_items=opts.max_reference)
    store.write_parquet(ref, index_dir / schema.REFERENCE_FILE)
    return groups, ref


# --------------------------------------------------------------------------- the run
def _versions() -> dict:
    import faiss

    import audioaudit

    return {"audioaudit": audioaudit.__version__, "faiss": faiss.__version__, "numpy": np.__version__}


def _check_existing(index_dir: Path, encoder, overwrite: bool) -> dict | None:
    """The existing encoder.json (identity must match) or None for a fresh folder."""
    enc_file = index_dir / schema.ENCODER_FILE
    if not enc_file.exists():
        return None
    stored = store.read_encoder_json(index_dir)
    try:
        store.check_encoder(stored, encoder, index_dir)
    except UserError:
        if not overwrite:
            raise
        _wipe(index_dir)
        return None
    return stored


def _wipe(index_dir: Path) -> None:
    import shutil

    from audioaudit.faiss_ivfpq import BUILD_DIR

    for name in (*fx.all_index_files(), schema.ITEMS_FILE, schema.ENCODER_FILE, schema.MANIFEST_FILE,
                 schema.REFERENCE_FILE, schema.DUPLICATES_FILE):
        (index_dir / name).unlink(missing_ok=True)
    shutil.rmtree(index_dir / BUILD_DIR, ignore_errors=True)
    # the background set and its calibration were made with the replaced encoder
    from audioaudit.background import remove_background

    remove_background(index_dir)
    (index_dir / schema.CALIBRATION_FILE).unlink(missing_ok=True)
    for p in (index_dir / schema.SHARDS_DIR).glob("*.parquet"):
        p.unlink()


def _up_to_date(index_dir: Path, digest: str) -> dict | None:
    try:
        man = json.loads((index_dir / schema.MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    ok = man.get("state") == "complete" and man.get("digest") == digest and _files_intact(index_dir, man)
    return man if ok else None


def _files_intact(index_dir: Path, man: dict) -> bool:
    """Every file the manifest lists (index.faiss, items.parquet, rerank.npy ...) has its size."""
    files = man.get("files", {})
    return bool(files) and all((index_dir / n).is_file() and (index_dir / n).stat().st_size == size
                               for n, size in files.items())


def run_build(index_dir: Path, encoder, spec: str | None, corpus_root: str, work: list[WorkItem],
              scan_skipped: list[dict], opts: BuildOptions, *, gc: bool,
              on_shard: Callable[[ShardPlan, EmbedStats], None] | None = None,
              embed: Callable[..., EmbedStats] | None = None) -> BuildResult:
    """Shared body of build and add (the caller holds the lock and checked the encoder).
    ``embed`` replaces :func:`embed_shards` (same signature), e.g. the Ray engine's."""
    from audioaudit.encoders.base import identity_key

    t0 = time.perf_counter()
    shard_dir = index_dir / schema.SHARDS_DIR
    shard_dir.mkdir(parents=True, exist_ok=True)
    for tmp in [*shard_dir.glob(".*.tmp*"), *index_dir.glob(".*.tmp*")]:
        tmp.unlink(missing_ok=True)  # leftovers of a killed writer (shards, items, index, manifest)
    metas = scan_shards(shard_dir)
    ident = encoder.identity()
    salt = hashlib.sha1(identity_key(ident).encode()).hexdigest()
    match = match_shards(work, metas)
    reused = len(match.chosen) + len(match.skipped)
    if not match.pending:
        man = _up_to_date(index_dir, _digest(match, scan_skipped, opts.request(), ident))
        if man is not None:
            c = man.get("counts", {})
            return BuildResult(index_dir, True, c.get("clips", 0), c.get("segments", 0), man.get("skipped", []),
                               0, reused, 0, len(set(k for k, _ in match.chosen.values())),
                               fx.IndexParams.from_dict(man["index"]), seconds=time.perf_counter() - t0)
    store.write_json(index_dir / schema.ENCODER_FILE, store.encoder_record(encoder, spec))
    plans = plan_shards(match.pending, opts.shard_size, salt)
    meta = {"encoder": salt}
    with progress_bar(len(match.pending), f"embedding {len(match.pending)} files", enabled=opts.progress) as adv:
        few = len(match.pending) < 16  # not worth starting worker processes
        stats = (embed or embed_shards)(plans, encoder, shard_dir, workers=0 if few else opts.n_workers(),
                             batch_size=opts.batch_size, advance=adv, on_shard=on_shard, meta=meta,
                             opts=LoadOptions(sample_rate=int(encoder.sample_rate)))
    metas = scan_shards(shard_dir)
    match = match_shards(work, metas)
    if match.pending:  # cannot happen unless files change under us
        raise UserError(f"{len(match.pending)} files changed during the build (e.g. {match.pending[0].path}); rerun")
    return _finish(index_dir, encoder, spec, corpus_root, work, scan_skipped, match, metas, opts, gc,
                   BuildResult(index_dir, False, embedded=stats.items_embedded + stats.items_skipped,
                               reused=reused, shards_written=stats.shards_written), t0)


def _finish(index_dir, encoder, spec, corpus_root, work, scan_skipped, match, metas, opts, gc, res, t0):
    if not match.chosen:
        raise UserError(f"{corpus_root}: no usable audio ({len(match.skipped) + len(scan_skipped)} files skipped, "
                        "none embedded); see the reasons with `audioaudit index info`")
    order = {it.item_id: n for n, it in enumerate(work)}
    items, index, params = assemble(index_dir, match.chosen, order, int(encoder.dim), opts)
    fx.save(index, index_dir / schema.INDEX_FILE)
    for name in set(fx.all_index_files()) - set(fx.index_files(params)):
        (index_dir / name).unlink(missing_ok=True)  # companions of a previous index type
    store.write_parquet(items, index_dir / schema.ITEMS_FILE)
    groups, ref = write_derived(index_dir, index, params, items, opts, corpus_root)
    used = sorted(set(k for k, _ in match.chosen.values()) | set(_skip_keys(match, metas)))
    if gc:
        for key in set(metas) - set(used):
            shard_path(index_dir / schema.SHARDS_DIR, key).unlink(missing_ok=True)
    skipped = scan_skipped + [{"path": r.get("path", i), "kind": r["kind"], "reason": r["reason"], "item_id": i,
                               "size": r["size"], "mtime_ns": r["mtime_ns"]} for i, r in sorted(match.skipped.items())]
    summ = dedup.summarise(groups)
    res.clips, res.segments, res.skipped = int(items["item_id"].nunique()), len(items), skipped
    res.shards_reused = len(used) - res.shards_written
    res.params, res.duplicates = params, summ
    res.index_build = fx.build_record(index)
    _write_manifest(index_dir, encoder, spec, corpus_root, match, scan_skipped, opts, res, used, len(ref))
    res.seconds = time.perf_counter() - t0
    return res


def _skip_keys(match: Match, metas: dict[str, dict]) -> list[str]:
    keys = []
    for key, meta in metas.items():
        ids = {m["item_id"] for m in meta.get("skipped", [])}
        if ids & set(match.skipped):
            keys.append(key)
    return keys


def _write_manifest(index_dir, encoder, spec, corpus_root, match, scan_skipped, opts, res, used, n_ref) -> None:
    from dataclasses import asdict

    prev = {}
    if (index_dir / schema.MANIFEST_FILE).exists():
        try:
            prev = json.loads((index_dir / schema.MANIFEST_FILE).read_text())
        except ValueError:
            prev = {}
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    files = {n: (index_dir / n).stat().st_size for n in (*fx.index_files(res.params), schema.ITEMS_FILE)}
    store.write_json(index_dir / schema.MANIFEST_FILE, {
        "name": index_dir.name, "state": "complete", "corpus_root": corpus_root,
        "created": prev.get("created", now), "updated": now,
        "digest": _digest(match, scan_skipped, opts.request(), encoder.identity()),
        "counts": {"clips": res.clips, "segments": res.segments, "skipped": len(res.skipped),
                   "duplicate_groups": res.duplicates.groups, "duplicate_items": res.duplicates.items_in_groups,
                   "shards": len(used), "reference_items": n_ref},
        "index": res.params.as_dict(), "index_description": res.params.describe(), "request": opts.request(),
        "encoder": {"spec": spec, "name": getattr(encoder, "name", None)},
        "index_build": res.index_build,
        "duplicates": asdict(res.duplicates), "skipped": res.skipped, "shards": used, "files": files,
        "build": {"shard_size": opts.shard_size, "batch_size": opts.batch_size, "workers": opts.n_workers()},
        "versions": _versions(),
    })


# --------------------------------------------------------------------------- entry points
def build_index(corpus, encoder, index_dir, *, spec: str | None = None, opts: BuildOptions | None = None,
                labels: str = "folders", corpus_manifest=None, overwrite: bool = False,
                on_shard: Callable[[ShardPlan, EmbedStats], None] | None = None,
                embed: Callable[..., EmbedStats] | None = None) -> BuildResult:
    """Build (or bring up to date) ``index_dir`` from the corpus folder ``corpus``.

    The index is synced to the folder: new and changed files are embedded, removed ones
    (and files once added from elsewhere with :func:`add_to_index`) are dropped."""
    opts = opts or BuildOptions()
    index_dir = Path(index_dir)
    with store.build_lock(index_dir):
        _check_existing(index_dir, encoder, overwrite)
        root, work, scan_skipped = corpus_work(corpus, labels, corpus_manifest)
        if not work:
            raise UserError(f"{corpus}: no audio files found (extensions .wav .flac .ogg .mp3 .aiff)")
        return run_build(index_dir, encoder, spec, root, work, scan_skipped, opts, gc=True, on_shard=on_shard,
                         embed=embed)


def add_to_index(index_dir, paths: Sequence[str], encoder=None, *, opts: BuildOptions | None = None,
                 labels: str = "folders", on_shard=None) -> BuildResult:
    """Embed only the files of ``paths`` that the index does not hold yet; keep the rest."""
    index_dir = Path(index_dir)
    with store.build_lock(index_dir):
        old = store.open_index(index_dir, load_faiss=False)
        if encoder is None:
            encoder = load_stored_encoder(old.encoder, index_dir)
        store.check_encoder(old.encoder, encoder, index_dir)
        opts = opts or _opts_from_manifest(old.manifest)
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
        return run_build(index_dir, encoder, old.encoder.get("spec"), root, work, scan_skipped, opts,
                         gc=False, on_shard=on_shard)


def _item_id(path: Path, root: Path) -> str:
    """Path relative to the index's corpus root, or the absolute path for files outside it."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def _previous_work(old: store.OpenIndex, root: str) -> list[WorkItem]:
    first = old.items.drop_duplicates("item_id")
    work = [WorkItem(r.item_id, str(Path(root) / r.path), r.path, None if r.label is None else r.label,
                     int(r.size), int(r.mtime_ns), r.sha256) for r in first.itertuples()]
    for s in old.manifest.get("skipped", []):
        if "item_id" in s:
            work.append(WorkItem(s["item_id"], str(Path(root) / s["item_id"]), s["item_id"], None,
                                 int(s["size"]), int(s["mtime_ns"])))
    return work


def _opts_from_manifest(man: dict) -> BuildOptions:
    req, b = man.get("request", {}), man.get("build", {})
    o = BuildOptions()
    for k, v in req.items():
        if hasattr(o, k) and k != "index_type":
            setattr(o, k, v)
    o.index_type = req.get("index_type", "auto")
    o.shard_size, o.batch_size = b.get("shard_size", o.shard_size), b.get("batch_size", o.batch_size)
    return o


def load_stored_encoder(record: dict, where):
    spec = record.get("spec")
    if not spec:
        raise UserError(f"{where}: encoder.json has no spec to reload the encoder from; pass the encoder explicitly")
    from audioaudit.encoders import load_encoder

    return load_encoder(spec)
