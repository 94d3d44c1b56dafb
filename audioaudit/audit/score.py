"""Search every query window and score each query against its best training sources (normalised)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audioaudit import similarity
from audioaudit.audit.queries import QuerySet
from audioaudit.audit.sources import Sources, training_sources
from audioaudit.index import items as items_table
from audioaudit.index import store
from audioaudit.index.background import Background
from audioaudit.index.faiss import facade as fx

BACKGROUND_DEPTH = 11  # ranks 2..11 make the background (SSCD)


@dataclass
class IndexView:
    """The index as queries are scored against it: the open index, its search parameters,
    its training sources and its background set (None: normalise by the references)."""

    ix: store.OpenIndex
    params: fx.IndexParams
    src: Sources
    bg: Background | None = None

    @staticmethod
    def of(ix: store.OpenIndex, params: fx.IndexParams | None = None, bg: Background | None = None) -> "IndexView":
        return IndexView(ix, params if params is not None else ix.params, training_sources(ix), bg)


def search_queries(view: IndexView, qs: QuerySet, depth: int, same_class: bool):
    """Clip-level hits for every query; with ``same_class``, only training rows of the
    query's class are searched (queries without a known class search everything)."""
    from audioaudit.index.search import SearchOptions, concat_hits, search_clips

    ix, params, src = view.ix, view.params, view.src

    if not same_class:
        return search_clips(ix.index, params, qs.vectors, qs.q_clip, src.row_source, depth), 0
    label_code, label_names = items_table.row_codes(ix.items, "label")  # codes, not 10M strings
    code_of = {str(n): c for c, n in enumerate(label_names)}
    q_labels = qs.table["label"].astype("string").fillna("").to_numpy()
    known = set(code_of) - {""}
    parts, fallback = [], 0
    for lab in sorted(set(q_labels)):
        clips = np.flatnonzero(q_labels == lab)
        seg = np.flatnonzero(np.isin(qs.q_clip, clips))
        rows = np.flatnonzero(label_code == code_of[lab]) if lab in known else None
        fallback += 0 if rows is not None else len(clips)
        parts.append(search_clips(ix.index, params, qs.vectors[seg], qs.q_clip[seg], src.row_source, depth,
                                  SearchOptions(rows_allowed=rows)))
    return concat_hits(parts), fallback


def score_queries(view: IndexView, qs: QuerySet, depth: int = BACKGROUND_DEPTH, same_class: bool = False,
                  exclude_bg: np.ndarray | None = None):
    """(hits, same-class fallbacks, (Q, depth) sorted clip similarities, per-query background
    level). The level is the mean of the ``k`` best background-set clips when the index has a
    background set (:mod:`audioaudit.index.background`), else the 2nd–11th training sources (SSCD)."""
    from audioaudit.index.search import top_matrix

    hits, fallback = search_queries(view, qs, depth, same_class)
    sims = top_matrix(hits, len(qs.table), depth)
    if view.bg is not None:
        background = view.bg.level(qs.vectors, qs.q_clip, len(qs.table), exclude=exclude_bg)
    else:
        background = similarity.background_level(sims).astype(np.float64)
    return hits, fallback, sims, background
