"""Train-vs-train searches over a built index: near-duplicate pairs and the reference
distribution.

* near duplicates: candidate clip pairs whose max window-pair similarity is ≥ a strict
  threshold (:data:`audioaudit.duplicates.groups.NEAR_THRESHOLD`), searched for every clip, then
  verified on *coverage*: every window of one clip must have a match ≥ the threshold in
  the other (min over windows of the max over the other's windows, the better of the two
  directions, so a padded or trimmed copy still qualifies). A max over window pairs alone
  would merge any two clips that share one similar window (e.g. quiet tails);
* reference: each training clip's nearest *non-self* neighbour similarity, excluding the
  other segments of the same clip and the members of its duplicate group — the
  distribution a generator that does not copy should resemble (EDMSound, Zhu et al. 2023,
  compares generated-vs-train against exactly this). Computed once per index on at most
  ``max_items`` clips (a seeded sample) and cached in ``reference.parquet``.
"""

from __future__ import annotations

import numpy as np

from audioaudit import schema
from audioaudit.index import items as items_table
from audioaudit.index.faiss import facade as fx
from audioaudit.index.search import SearchOptions, search_clips
from audioaudit.util.atomic import write_parquet
from audioaudit.util.read import read_parquet

MAX_REFERENCE_ITEMS = 10_000


BLOCK_ITEMS = 4096


def item_codes(items) -> tuple[np.ndarray, np.ndarray]:
    """(code per row, unique item ids) for an items DataFrame (rows in vector-id order)."""
    return items_table.row_codes(items, "item_id")


def item_blocks(index, items, row_code: np.ndarray, wanted: np.ndarray):
    """Yield (wanted codes of this block, query vectors, q_clip) block by block."""
    rows_of = rows_by_code(row_code)
    for s in range(0, len(wanted), BLOCK_ITEMS):
        codes = wanted[s : s + BLOCK_ITEMS]
        rows = np.concatenate([rows_of[c] for c in codes])
        yield codes, fx.reconstruct(index, rows), row_code[rows]


def rows_by_code(row_code: np.ndarray) -> list[np.ndarray]:
    order = np.argsort(row_code, kind="stable")
    bounds = np.searchsorted(row_code[order], np.arange(row_code.max() + 2))
    return [order[bounds[c] : bounds[c + 1]] for c in range(len(bounds) - 1)]


def reference_table(index, params: fx.IndexParams, items, source_of: dict[str, str] | None = None,
                    max_items: int = MAX_REFERENCE_ITEMS, seed: int = 0):
    """DataFrame (item_id, nn_item_id, similarity[, nn_start, nn_end]): nearest training
    clip from another source for up to ``max_items`` clips (schema.REFERENCE_COLUMNS)."""
    import pandas as pd

    row_code, ids = item_codes(items)
    src_names = np.asarray([(source_of or {}).get(i, i) for i in ids], dtype=object)
    src_code_of_item, _ = pd.factorize(src_names)
    row_source = src_code_of_item[row_code]
    wanted = np.arange(len(ids))
    if len(wanted) > max_items:
        wanted = np.sort(np.random.default_rng(seed).choice(wanted, max_items, replace=False))
    out = []
    if len(np.unique(src_code_of_item)) < 2:
        return pd.DataFrame(columns=["item_id", "nn_item_id", "similarity"])
    for codes, vecs, q_clip in item_blocks(index, items, row_code, wanted):
        hits = search_clips(index, params, vecs, q_clip, row_source, 1, SearchOptions(exclude=src_code_of_item))
        r = hits.row
        out.append(pd.DataFrame({"item_id": ids[hits.qclip], "nn_item_id": items_table.values_at(items, "item_id", r),
                                 "similarity": hits.sim.astype(np.float64)}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=["item_id", "nn_item_id", "similarity"])


def cached_reference(ix, params: fx.IndexParams, source_of: dict[str, str]):
    """The index's ``reference.parquet``; computed (with the build's ``max_reference``) and
    cached when missing. A read-only index still audits: the table is then just not cached."""
    path = ix.dir / schema.REFERENCE_FILE
    if path.is_file():
        return read_parquet(path, "reference distribution (reference.parquet)", schema.REFERENCE_COLUMNS)
    max_items = int((ix.manifest.get("request") or {}).get("max_reference") or MAX_REFERENCE_ITEMS)
    ref = reference_table(ix.index, params, ix.items, source_of, max_items=max_items)
    try:
        write_parquet(ref, path)
    except OSError:
        pass
    return ref
