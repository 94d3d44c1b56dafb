"""Assemble an index from finished shards: items table + FAISS index, streaming (never all vectors at once)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from audioaudit import schema
from audioaudit.errors import UserError
from audioaudit.index import items as items_table
from audioaudit.index.faiss import facade as fx
from audioaudit.index.options import BuildOptions
from audioaudit.index.shards import SEGMENT_COLUMNS, read_shards
from audioaudit.index.store import files_intact
from audioaudit.util.progress import progress_bar

ITEM_EXTRA_COLUMNS = ["size", "mtime_ns", "pcm_hash"]


# --------------------------------------------------------------------------- assembly
def _keep_mask(rows, key: str, chosen: dict[str, tuple[str, str]]) -> np.ndarray:
    want = rows["item_id"].map(lambda i: chosen.get(i, ("", ""))).tolist()
    return np.array([w[0] == key and w[1] == s for w, s in zip(want, rows["sha256"])], dtype=bool)


def assemble(index_dir: Path, chosen: dict[str, tuple[str, str]], order: dict[str, int], dim: int,
             opts: BuildOptions, extend: bool = True):
    """items DataFrame + FAISS index from the chosen rows of the finished shards (``extend``:
    an ivfpq index on disk may be extended; not when the encoder changed)."""
    import pandas as pd

    shard_dir = index_dir / schema.SHARDS_DIR
    members: dict[str, int] = {}
    for item_id, (key, _) in chosen.items():
        members[key] = min(members.get(key, 1 << 62), order.get(item_id, 1 << 61))
    keys = sorted(members, key=lambda k: (members[k], k))
    frames, masks = [], {}
    for key, rows, _ in read_shards(shard_dir, keys, with_embeddings=False):
        masks[key] = _keep_mask(rows, key, chosen)
        frames.append(items_table.compact(rows[masks[key]].reset_index(drop=True)))
    # per-shard frames compacted as they are read: the plain strings of all rows never exist at once
    items = items_table.concat(frames) if frames else pd.DataFrame(columns=SEGMENT_COLUMNS)
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
    base, params = _extendable_index(index_dir, items, params, opts) if extend else (None, params)
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

    from audioaudit.index.faiss.ivfpq import MAX_GROWTH

    if params.type not in fx.EXTENDABLE_TYPES:
        return None, params
    try:
        man = json.loads((index_dir / schema.MANIFEST_FILE).read_text())
        old = fx.IndexParams.from_dict(man["index"])
        same = all(man.get("request", {}).get(k) == opts.request()[k] for k in ("index_type", "nlist"))
        trained = (man.get("index_build") or {}).get("plan", {}).get("n", 0)
        grows_ok = len(items) <= MAX_GROWTH * trained  # checked here before loading it for nothing
        if not (same and old.type == params.type and grows_ok and files_intact(index_dir, man)):
            return None, params
        cols = ["item_id", "sha256", "segment", "start", "end"]
        prev = items_table.read_items(index_dir / schema.ITEMS_FILE, columns=cols)
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
