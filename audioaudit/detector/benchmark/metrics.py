"""Copy-detection metrics (pure functions, small dataclasses).

The protocol is DISC21's (Douze et al. 2021, "The 2021 Image Similarity Dataset and
Challenge", §4.1) as implemented by SSCD (Pizzi et al. 2022): every query — including
distractor queries that copy nothing — contributes (query, reference, score)
predictions; all predictions of all queries are pooled into one list, sorted by score
(descending), and

    µAP = Σ_i p(i) · Δr(i)                        (DISC21, eq. 1)

where p(i) is the precision of the first i predictions and Δr(i) the change in recall
at i (1/N_pos if prediction i is correct, else 0). Ties are broken *pessimistically*:
at equal score, incorrect predictions come first, so a detector cannot gain from
constant scores.

Twins (issue 11): a query's ground truth is a *set* of references — the true source and
every duplicate of it. The first correct prediction of a query counts; later
predictions of other twins of the same source are dropped (neither a hit nor a false
alarm), so each copy query holds exactly one positive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Collection, Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class PRCurve:
    """Operating points: one per distinct score threshold (score >= threshold is 'copy')."""

    thresholds: np.ndarray  # descending
    precision: np.ndarray
    recall: np.ndarray


@dataclass(frozen=True)
class RecallAtPrecision:
    target: float
    recall: float  # 0 when the target is never reached
    threshold: float  # score threshold of that operating point (inf when unreached)
    precision: float  # precision achieved there (nan when unreached)


@dataclass(frozen=True)
class Metrics:
    micro_ap: float
    recall_at_p90: float
    recall_at_1: float
    n_queries: int
    n_positive_queries: int  # queries that copy a reference
    n_distractors: int
    n_predictions: int


@dataclass(frozen=True)
class Report:
    overall: Metrics
    per_family: dict[str, Metrics] = field(default_factory=dict)


# --------------------------------------------------------------------------- labelling
def label_predictions(
    query: np.ndarray, ref: np.ndarray, score: np.ndarray, truth: Mapping[int, Collection[int]]
) -> tuple[np.ndarray, np.ndarray]:
    """(is_correct, keep) for each prediction.

    ``truth[q]`` is the set of references that count as a correct match for query ``q``
    (empty or absent for a distractor). Of a query's correct predictions only the one
    with the highest score is kept; the others (twins) get ``keep = False``.
    """
    query, ref, score = np.asarray(query), np.asarray(ref), np.asarray(score, dtype=np.float64)
    is_pos = np.fromiter((r in truth.get(q, ()) for q, r in zip(query.tolist(), ref.tolist())), bool, len(query))
    keep = np.ones(len(query), bool)
    seen: set[int] = set()
    for i in np.flatnonzero(is_pos)[np.argsort(-score[is_pos], kind="stable")]:
        q = int(query[i])
        if q in seen:
            keep[i] = False
        seen.add(q)
    return is_pos, keep


def pessimistic_order(score: np.ndarray, is_pos: np.ndarray) -> np.ndarray:
    """Indices sorting by score descending; at equal score negatives before positives."""
    return np.lexsort((np.asarray(is_pos, bool), -np.asarray(score, np.float64)))


# --------------------------------------------------------------------------- pooled metrics
def micro_ap(score: np.ndarray, is_pos: np.ndarray, n_positives: int) -> float:
    """µAP of pooled predictions (DISC21 eq. 1), ties pessimistic. ``n_positives`` is the
    number of ground-truth pairs (copy queries), including ones never predicted."""
    if n_positives <= 0:
        return float("nan")
    order = pessimistic_order(score, is_pos)
    hits = np.asarray(is_pos, bool)[order]
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    return float(precision[hits].sum() / n_positives)


def pr_curve(score: np.ndarray, is_pos: np.ndarray, n_positives: int) -> PRCurve:
    """Precision/recall at every distinct score threshold (a threshold cannot split ties)."""
    score = np.asarray(score, np.float64)
    order = pessimistic_order(score, is_pos)
    s, hits = score[order], np.asarray(is_pos, bool)[order]
    if len(s) == 0 or n_positives <= 0:
        empty = np.zeros(0)
        return PRCurve(empty, empty, empty)
    tp = np.cumsum(hits)
    last_of_group = np.r_[s[1:] != s[:-1], True]
    idx = np.flatnonzero(last_of_group)
    return PRCurve(thresholds=s[idx], precision=tp[idx] / (idx + 1), recall=tp[idx] / n_positives)


def recall_at_precision(curve: PRCurve, target: float = 0.9) -> RecallAtPrecision:
    """Highest recall over operating points whose precision is >= ``target``."""
    ok = np.flatnonzero(curve.precision >= target - 1e-12)
    if len(ok) == 0:
        return RecallAtPrecision(target, 0.0, float("inf"), float("nan"))
    best = ok[np.argmax(curve.recall[ok])]  # recall is non-decreasing: the lowest such threshold
    return RecallAtPrecision(target, float(curve.recall[best]), float(curve.thresholds[best]),
                             float(curve.precision[best]))


def recall_at_1(query: np.ndarray, ref: np.ndarray, score: np.ndarray,
                truth: Mapping[int, Collection[int]]) -> float:
    """Fraction of copy queries whose top-scored reference is a correct one (any twin).
    A tie between a correct and an incorrect reference at the top counts as a miss."""
    query, ref, score = np.asarray(query), np.asarray(ref), np.asarray(score, np.float64)
    positives = [q for q, refs in truth.items() if refs]
    if not positives:
        return float("nan")
    is_pos, _ = label_predictions(query, ref, score, truth)
    order = pessimistic_order(score, is_pos)
    first: dict[int, bool] = {}
    for i in order.tolist():
        first.setdefault(int(query[i]), bool(is_pos[i]))
    return float(np.mean([first.get(q, False) for q in positives]))


# --------------------------------------------------------------------------- all together
def evaluate(
    query: np.ndarray,
    ref: np.ndarray,
    score: np.ndarray,
    truth: Mapping[int, Collection[int]],
    query_ids: Sequence[int] | None = None,
) -> Metrics:
    """µAP, recall at 90 % precision and recall@1 over the queries ``query_ids`` (default:
    all queries in ``truth`` and in the predictions)."""
    query, ref, score = np.asarray(query), np.asarray(ref), np.asarray(score, np.float64)
    ids = set(truth) | set(query.tolist()) if query_ids is None else set(query_ids)
    sel = np.fromiter((q in ids for q in query.tolist()), bool, len(query))
    query, ref, score = query[sel], ref[sel], score[sel]
    sub_truth = {q: truth.get(q, ()) for q in ids}
    n_pos = sum(1 for q in ids if sub_truth[q])
    is_pos, keep = label_predictions(query, ref, score, sub_truth)
    s, p = score[keep], is_pos[keep]
    return Metrics(
        micro_ap=micro_ap(s, p, n_pos),
        recall_at_p90=recall_at_precision(pr_curve(s, p, n_pos), 0.9).recall,
        recall_at_1=recall_at_1(query, ref, score, sub_truth),
        n_queries=len(ids),
        n_positive_queries=n_pos,
        n_distractors=len(ids) - n_pos,
        n_predictions=int(keep.sum()),
    )


def evaluate_by_family(
    query: np.ndarray,
    ref: np.ndarray,
    score: np.ndarray,
    truth: Mapping[int, Collection[int]],
    family: Mapping[int, str | None],
) -> Report:
    """Overall metrics plus one row per family. A family's row pools that family's copy
    queries with *all* distractor queries (``family[q]`` is ``None`` for a distractor),
    so its µAP and R@P90 say how well those copies stand out from novel clips."""
    all_ids = sorted(family)
    distractors = [q for q in all_ids if family[q] is None]
    names = sorted({f for f in family.values() if f is not None})
    per = {
        name: evaluate(query, ref, score, truth, [q for q in all_ids if family[q] == name] + distractors)
        for name in names
    }
    return Report(overall=evaluate(query, ref, score, truth, all_ids), per_family=per)
