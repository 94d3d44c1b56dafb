"""The run's tables: one row per (query, rank) match and one row per query."""

from __future__ import annotations

import numpy as np

from audioaudit import schema, similarity
from audioaudit.audit.queries import QuerySet
from audioaudit.audit.sources import Sources
from audioaudit.audit.threshold import Threshold, flag_mask
from audioaudit.index import items as items_table


def match_table(ix, qs: QuerySet, hits, src: Sources, background: np.ndarray, top_k: int, thr: Threshold):
    import pandas as pd

    keep = hits.rank < top_k
    qc, rows, qseg = hits.qclip[keep], hits.row[keep], hits.qseg[keep]
    sim = hits.sim[keep].astype(np.float64)
    score = similarity.normalise(sim, background[qc])
    it = ix.items
    item_ids = np.asarray([str(i) for i in items_table.values_at(it, "item_id", rows)], dtype=object)
    groups = [src.group_of.get(i) for i in item_ids]
    return pd.DataFrame({
        "query_id": qs.table["query_id"].to_numpy()[qc], "rank": hits.rank[keep] + 1, "item_id": item_ids,
        "train_path": items_table.values_at(it, "path", rows),
        "train_label": items_table.values_at(it, "label", rows),
        "similarity": sim, "score": score,
        "query_start": qs.start[qseg], "query_end": qs.end[qseg],
        "train_start": it["start"].to_numpy()[rows], "train_end": it["end"].to_numpy()[rows],
        "flag": flag_mask(sim, score, thr),
        "dup_group": pd.array(groups, dtype="Int64"),
        "dup_size": [1 if g is None else len(src.members[g]) for g in groups],
        "dup_members": ["" if g is None else ";".join(src.members[g]) for g in groups],
    })


def query_table(ix, qs: QuerySet, hits, src: Sources, matches, sims: np.ndarray, background: np.ndarray):
    from audioaudit.audit.statistics import nn_ratio

    q = qs.table.copy()
    top1 = matches[matches["rank"] == 1].set_index("query_id")
    q["top1_similarity"] = q["query_id"].map(top1["similarity"]).astype(float)
    q["top1_score"] = q["query_id"].map(top1["score"]).astype(float)
    q["top1_item_id"] = q["query_id"].map(top1["item_id"])
    q["top1_dup_group"] = q["query_id"].map(top1["dup_group"]).astype("Int64")
    if "verify_corr" in top1:  # audit --verify
        q["top1_verify_corr"] = q["query_id"].map(top1["verify_corr"]).astype(float)
    q["background"] = background.astype(float)
    q["nn_ratio"] = nn_ratio(sims[:, 0], sims[:, 1] if sims.shape[1] > 1 else np.full(len(q), np.nan))
    q["flag"] = q["query_id"].map(matches.groupby("query_id")["flag"].any()).fillna(False).astype(bool)
    first = items_table.first_rows(ix.items)
    by_hash = dict(zip(first["pcm_hash"], first["item_id"])) if "pcm_hash" in first else {}
    q["exact_copy_of"] = [by_hash.get(h) for h in q["pcm_hash"]]
    lead = [c for c in schema.QUERY_COLUMNS if c in q.columns]
    return q[lead + [c for c in q.columns if c not in lead]]
