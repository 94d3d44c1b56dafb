"""Copy-detection metrics against hand-computed cases and brute force (no sklearn)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from audioaudit.detector.benchmark import metrics as M


def test_micro_ap_hand_computed():
    # sorted: + - + -   with 3 ground-truth positives (one never predicted)
    # precision at the hits: 1/1, 2/3 -> AP = (1 + 2/3) / 3
    score = np.array([0.9, 0.8, 0.7, 0.6])
    pos = np.array([True, False, True, False])
    assert M.micro_ap(score, pos, 3) == pytest.approx((1 + 2 / 3) / 3)
    # perfect ranking -> 1; nothing positive -> nan
    assert M.micro_ap(np.array([0.9, 0.1]), np.array([True, False]), 1) == pytest.approx(1.0)
    assert math.isnan(M.micro_ap(score, pos, 0))


def test_ties_are_pessimistic():
    # all scores equal: negative first -> the positive is at rank 2 -> AP = 1/2
    score = np.array([0.5, 0.5])
    assert M.micro_ap(score, np.array([True, False]), 1) == pytest.approx(0.5)
    assert M.micro_ap(score, np.array([False, True]), 1) == pytest.approx(0.5)
    # a constant scorer cannot look good: AP = positives' precision under worst ordering
    s = np.zeros(10)
    p = np.array([True] * 3 + [False] * 7)
    assert M.micro_ap(s, p, 3) == pytest.approx((1 / 8 + 2 / 9 + 3 / 10) / 3)


def _ap_of_order(pos_in_order, n_pos):
    tp, ap = 0, 0.0
    for i, h in enumerate(pos_in_order, 1):
        if h:
            tp += 1
            ap += tp / i
    return ap / n_pos


def test_micro_ap_equals_brute_force_worst_tie_order():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(1, 8))
        score = rng.integers(0, 3, n).astype(float)  # many ties
        pos = rng.random(n) < 0.5
        n_pos = int(pos.sum()) + int(rng.integers(0, 2))
        if n_pos == 0:
            continue
        # brute force: every permutation that sorts by score; the minimum AP is the pessimistic one
        best = min(
            _ap_of_order([pos[i] for i in perm], n_pos)
            for perm in itertools.permutations(range(n))
            if all(score[perm[k]] >= score[perm[k + 1]] for k in range(n - 1))
        )
        assert M.micro_ap(score, pos, n_pos) == pytest.approx(best)


def test_pr_curve_matches_threshold_definition_and_recall_at_precision():
    rng = np.random.default_rng(1)
    score = np.round(rng.random(40), 1)
    pos = rng.random(40) < 0.4
    n_pos = int(pos.sum()) + 2
    c = M.pr_curve(score, pos, n_pos)
    assert list(c.thresholds) == sorted(set(score.tolist()), reverse=True)
    for t, p, r in zip(c.thresholds, c.precision, c.recall):
        sel = score >= t
        assert p == pytest.approx(pos[sel].mean()) and r == pytest.approx(pos[sel].sum() / n_pos)
    for target in (0.5, 0.7, 0.9, 1.0):
        got = M.recall_at_precision(c, target)
        brute = [(pos[score >= t].sum() / n_pos, t) for t in set(score.tolist()) if pos[score >= t].mean() >= target]
        if brute:
            r_best, _ = max(brute)
            assert got.recall == pytest.approx(r_best) and got.precision >= target
            assert pos[score >= got.threshold].sum() / n_pos == pytest.approx(got.recall)
        else:
            assert got.recall == 0.0 and got.threshold == math.inf


def test_recall_at_precision_hand_case():
    # + + - + - : thresholds .9 (P1 R1/3) .8 (P1 R2/3) .7 (P2/3) .6 (P3/4 R1) .5 (P3/5)
    c = M.pr_curve(np.array([0.9, 0.8, 0.7, 0.6, 0.5]), np.array([1, 1, 0, 1, 0], bool), 3)
    assert M.recall_at_precision(c, 0.9).recall == pytest.approx(2 / 3)
    assert M.recall_at_precision(c, 0.9).threshold == pytest.approx(0.8)
    assert M.recall_at_precision(c, 0.75).recall == pytest.approx(1.0)


def test_twins_count_once_and_distractors_only_add_false_alarms():
    # refs 10 and 11 are twins (the same source); query 0 copies it; query 1 copies ref 12;
    # query 2 is a distractor.
    truth = {0: {10, 11}, 1: {12}, 2: set()}
    q = np.array([0, 0, 0, 1, 1, 2])
    r = np.array([10, 11, 12, 12, 10, 10])
    s = np.array([0.9, 0.85, 0.3, 0.8, 0.2, 0.7])
    is_pos, keep = M.label_predictions(q, r, s, truth)
    assert is_pos.tolist() == [True, True, False, True, False, False]
    assert keep.tolist() == [True, False, True, True, True, True]  # the second twin is dropped
    m = M.evaluate(q, r, s, truth)
    # kept, sorted: .9+ .8+ .7- .3- .2-  -> AP = (1 + 1) / 2
    assert m.micro_ap == pytest.approx(1.0)
    assert m.recall_at_1 == pytest.approx(1.0)
    assert (m.n_queries, m.n_positive_queries, m.n_distractors, m.n_predictions) == (3, 2, 1, 5)
    # if the twin were not recognised, the second twin would be a false alarm above .8
    m_naive = M.evaluate(q, r, s, {0: {10}, 1: {12}, 2: set()})
    assert m_naive.micro_ap == pytest.approx((1 + 2 / 3) / 2)
    # a distractor scoring above every copy pulls µAP down
    s2 = s.copy()
    s2[5] = 0.95
    assert M.evaluate(q, r, s2, truth).micro_ap == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_recall_at_1_brute_force_and_tie_is_a_miss():
    rng = np.random.default_rng(2)
    truth = {i: ({int(rng.integers(5))} if i < 6 else set()) for i in range(8)}
    q = np.repeat(np.arange(8), 5)
    r = np.tile(np.arange(5), 8)
    s = rng.random(40)
    s[:5] = 0.5  # query 0: all tied -> a miss whatever its truth
    got = M.recall_at_1(q, r, s, truth)
    hits = []
    for i in range(6):
        rows = np.flatnonzero(q == i)
        top = rows[s[rows] == s[rows].max()]
        hits.append(len(top) == 1 and r[top[0]] in truth[i])
    assert got == pytest.approx(np.mean(hits))
    assert not hits[0]


def test_evaluate_by_family_pools_each_family_with_all_distractors():
    truth = {0: {0}, 1: {1}, 2: {2}, 3: set(), 4: set()}
    family = {0: "mp3", 1: "mp3", 2: "reverb", 3: None, 4: None}
    q = np.array([0, 1, 2, 2, 3, 4])
    r = np.array([0, 1, 2, 0, 0, 1])
    s = np.array([0.9, 0.8, 0.4, 0.6, 0.5, 0.3])
    rep = M.evaluate_by_family(q, r, s, truth, family)
    assert rep.per_family["mp3"].micro_ap == pytest.approx(1.0)
    assert rep.per_family["mp3"].n_distractors == 2 and rep.per_family["mp3"].n_positive_queries == 2
    # reverb: sorted .6- .5- .4+ .3- -> AP = 1/3; its top match is wrong -> R@1 = 0
    assert rep.per_family["reverb"].micro_ap == pytest.approx(1 / 3)
    assert rep.per_family["reverb"].recall_at_1 == 0.0
    assert rep.overall.n_queries == 5
    # overall: .9+ .8+ .6- .5- .4+ .3- -> (1 + 1 + 3/5) / 3
    assert rep.overall.micro_ap == pytest.approx((2 + 3 / 5) / 3)
    assert rep.overall.recall_at_p90 == pytest.approx(2 / 3)
