"""Near-duplicate training clips: candidate pairs proposed by the index, confirmed on the audio."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from audioaudit.duplicates import groups as dupgroups
from audioaudit.index import items as items_table
from audioaudit.index.faiss import facade as fx
from audioaudit.index.options import BuildOptions
from audioaudit.index.reference import item_codes, rows_by_code
from audioaudit.index.search import SearchOptions, search_clips


# --------------------------------------------------------------------------- duplicates
def find_duplicates(index, params, items, opts: BuildOptions, root: str | None = None) -> list[dupgroups.DupGroup]:
    """Exact groups by PCM hash; near pairs proposed by the index (window coverage ≥
    ``opts.near_threshold``) and confirmed on the audio (:mod:`audioaudit.duplicates.verify`)."""
    from audioaudit.duplicates.verify import verify_pairs

    first = items_table.first_rows(items)
    ids, hashes = first["item_id"].tolist(), first["pcm_hash"].tolist()
    near = []
    if opts.near_dups:
        h = dict(zip(ids, hashes))
        cands = [p for p in near_duplicate_pairs(index, params, items, opts.near_threshold) if h[p[0]] != h[p[1]]]
        paths = {i: str(Path(root or ".") / p) for i, p in zip(first["item_id"], first["path"])}
        near = [(a, b) for a, b, _, _ in verify_pairs(cands, paths)]
    return dupgroups.group_duplicates(ids, hashes, near)


MAX_NEAR_K = 1024  # window hits per probe examined for near-duplicate candidates
NEAR_K0 = 16  # first depth per probe (deepened x4 while the k-th hit is still above the threshold)
BLOCK_PROBES = 8192  # probes searched per call
# ivfpq: a match >= 0.97 sits in the probe's own coarse cell or a neighbour and ranks near the
# top even on PQ codes, so the pass probes fewer cells and re-ranks fewer candidates than the
# audit's search (the plan's nprobe / rerank factor): 1M windows in ~3 min instead of ~90, all
# 976 planted near duplicates found (benchmarks/index_cli_path.py)
NEAR_RERANK_FACTOR = 2
NEAR_NPROBE = 32


def probe_rows(rows_of: list[np.ndarray]) -> np.ndarray:
    """One window per clip (its middle one, from :func:`rows_by_code`): the probe that
    proposes the clip's candidates."""
    return np.array([r[len(r) // 2] for r in rows_of], dtype=np.int64)


def near_duplicate_pairs(index, params: fx.IndexParams, items, threshold: float) -> list[tuple[str, str, float]]:
    """Pairs of distinct clips whose :func:`coverage` is ≥ ``threshold`` (each pair once).

    Candidates come from one probe window per clip, not from every window: coverage(A, B)
    ≥ t means every window of A (or every window of B) has a match ≥ t in the other, so
    A's probe finds B (or B's probe finds A) and no pair is lost by probing one window —
    the candidate pass costs a search per clip instead of per window. Each candidate is
    then scored on all of its windows (exact vectors)."""
    row_code, ids = item_codes(items)
    if len(ids) < 2:
        return []
    rows_of = rows_by_code(row_code)
    probes = probe_rows(rows_of)
    if params.type == "ivfpq":
        params = dataclasses.replace(params, rerank_factor=min(int(params.rerank_factor), NEAR_RERANK_FACTOR),
                                     nprobe=min(int(params.nprobe), NEAR_NPROBE))
    opts = SearchOptions(exclude=np.arange(len(ids)), more_while_above=threshold, max_k=MAX_NEAR_K, k0=NEAR_K0)
    pairs: set[tuple[int, int]] = set()
    for s in range(0, len(probes), BLOCK_PROBES):
        rows = probes[s : s + BLOCK_PROBES]
        # depth 0: no "n best sources" wanted, only every source above the threshold
        hits = search_clips(index, params, fx.reconstruct(index, rows), row_code[rows], row_code, 0, opts)
        m = hits.sim >= threshold
        pairs.update((min(a, b), max(a, b)) for a, b in zip(hits.qclip[m].tolist(), hits.source[m].tolist()))
    out = []
    for a, b in sorted(pairs):
        cov = coverage(fx.reconstruct(index, rows_of[a]), fx.reconstruct(index, rows_of[b]))
        if cov >= threshold:
            out.append((ids[a], ids[b], cov))
    return out


def coverage(va: np.ndarray, vb: np.ndarray) -> float:
    """How completely one clip's windows are found in the other's: min over the windows of
    one clip of their best similarity to the other's windows, the larger of both directions."""
    s = np.asarray(va, np.float32) @ np.asarray(vb, np.float32).T
    return float(max(s.max(axis=1).min(), s.max(axis=0).min()))
