"""Near-duplicate training clips: candidate pairs proposed by the index, confirmed on the audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audioaudit.duplicates import groups as dupgroups
from audioaudit.index.faiss import facade as fx
from audioaudit.index.options import BuildOptions
from audioaudit.index.reference import item_blocks, item_codes, rows_by_code
from audioaudit.index.search import SearchOptions, search_clips


# --------------------------------------------------------------------------- duplicates
def find_duplicates(index, params, items, opts: BuildOptions, root: str | None = None) -> list[dupgroups.DupGroup]:
    """Exact groups by PCM hash; near pairs proposed by the index (window coverage ≥
    ``opts.near_threshold``) and confirmed on the audio (:mod:`audioaudit.duplicates.verify`)."""
    from audioaudit.duplicates.verify import verify_pairs
    from audioaudit.index.near_duplicates import near_duplicate_pairs

    first = items.drop_duplicates("item_id")
    ids, hashes = first["item_id"].tolist(), first["pcm_hash"].tolist()
    near = []
    if opts.near_dups:
        h = dict(zip(ids, hashes))
        cands = [p for p in near_duplicate_pairs(index, params, items, opts.near_threshold) if h[p[0]] != h[p[1]]]
        paths = {i: str(Path(root or ".") / p) for i, p in zip(first["item_id"], first["path"])}
        near = [(a, b) for a, b, _, _ in verify_pairs(cands, paths)]
    return dupgroups.group_duplicates(ids, hashes, near)


MAX_NEAR_K = 1024  # window hits per window examined for near-duplicate candidates


def near_duplicate_pairs(index, params: fx.IndexParams, items, threshold: float) -> list[tuple[str, str, float]]:
    """Pairs of distinct clips with clip-level similarity ≥ ``threshold`` (each once)."""
    row_code, ids = item_codes(items)
    if len(ids) < 2:
        return []
    pairs: dict[tuple[int, int], float] = {}
    for codes, vecs, q_clip in item_blocks(index, items, row_code, np.arange(len(ids))):
        hits = search_clips(index, params, vecs, q_clip, row_code, 1,
                            SearchOptions(exclude=np.arange(len(ids)), more_while_above=threshold, max_k=MAX_NEAR_K))
        m = hits.sim >= threshold
        for a, b, s in zip(hits.qclip[m], hits.source[m], hits.sim[m]):
            key = (min(a, b), max(a, b))
            pairs[key] = max(pairs.get(key, -1.0), float(s))
    rows_of = rows_by_code(row_code)
    out = []
    for (a, b), _ in sorted(pairs.items()):
        cov = coverage(fx.reconstruct(index, rows_of[a]), fx.reconstruct(index, rows_of[b]))
        if cov >= threshold:
            out.append((ids[a], ids[b], cov))
    return out


def coverage(va: np.ndarray, vb: np.ndarray) -> float:
    """How completely one clip's windows are found in the other's: min over the windows of
    one clip of their best similarity to the other's windows, the larger of both directions."""
    s = np.asarray(va, np.float32) @ np.asarray(vb, np.float32).T
    return float(max(s.max(axis=1).min(), s.max(axis=0).min()))
