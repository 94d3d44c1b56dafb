"""Threshold calibration: the pure threshold pick, the scoring of views, calibration.json."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers_bench import SpectrumEncoder, plant_duplicates, tiny_corpus

from audioaudit.detector import calibrate as C


def test_pick_threshold_hand_cases():
    pos, neg = np.array([0.9, 0.8, 0.7]), np.array([0.75, 0.3])
    t = C.pick_threshold(pos, neg, 0.95)
    assert (t.threshold, t.precision, t.recall, t.reached) == (0.8, 1.0, pytest.approx(2 / 3), True)
    t = C.pick_threshold(pos, neg, 0.75)  # at 0.7: 3 copies, 1 false flag -> precision 0.75
    assert t.threshold == 0.7 and t.recall == 1.0 and t.precision == pytest.approx(0.75)
    # a tie between a copy and a distinct clip cannot be split
    t = C.pick_threshold(np.array([0.5, 0.4]), np.array([0.5]), 0.9)
    assert t.reached is False and t.threshold > 0.5 and t.recall == 0.0
    assert math.isnan(t.precision)


def test_pick_threshold_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        pos = np.round(rng.normal(0.6, 0.2, 30), 2)
        neg = np.round(rng.normal(0.3, 0.2, 30), 2)
        t = C.pick_threshold(pos, neg, 0.9)
        cands = [c for c in np.unique(np.r_[pos, neg])
                 if (pos >= c).sum() / max((pos >= c).sum() + (neg >= c).sum(), 1) >= 0.9 and (pos >= c).sum()]
        if cands:
            best_recall = max((pos >= c).mean() for c in cands)
            # among thresholds with the best recall, the highest (most precise) one
            best = max(c for c in cands if (pos >= c).mean() == best_recall)
            assert t.threshold == pytest.approx(best) and t.precision >= 0.9
            assert t.recall == pytest.approx(best_recall)


def test_calibration_scores_positive_vs_novel():
    # clips 0 and 1 are twins; views: 0 -> positive of clip 0, 1 -> negative (novel) of clip 0
    sim = np.array([[0.95, 0.9, 0.3] + [0.2] * 10,
                    [0.95, 0.9, 0.3] + [0.2] * 10], np.float32)
    twins = [{0, 1}, {0, 1}] + [{i} for i in range(2, 13)]
    s, score = C.calibration_scores(sim, np.array([0, 0]), twins, np.array([True, False]))
    assert s[0] == pytest.approx(0.95)  # its own source
    assert s[1] == pytest.approx(0.3)  # best match once the clip and its twin are left out
    # background: 2nd..11th best among allowed: positive row leaves the twin (0.9) out
    assert score[0] == pytest.approx(0.95 - (0.3 + 9 * 0.2) / 10)
    assert score[1] == pytest.approx(0.3 - 0.2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tiny_corpus(tmp_path_factory.mktemp("cal") / "corpus", per_class=5, heldout=1)
    plant_duplicates(root)
    return root


def test_calibrate_encoder_writes_calibration_json(corpus, tmp_path):
    enc = SpectrumEncoder()
    opts = C.CalibrateOptions(target_precision=0.9, max_clips=12, views_per_clip=1,
                              families=("gain", "mp3", "noise_white"), seed=1)
    cal = C.calibrate_encoder(enc, corpus, tmp_path, opts)
    d = json.loads((tmp_path / "calibration.json").read_text())
    for k in ("threshold", "score", "precision", "target_precision", "recall", "n_positive", "n_negative", "encoder"):
        assert k in d
    assert d["score"] == "score" and d["encoder"] == enc.identity()
    assert d["n_positive"] == d["n_negative"] == 12
    assert d["threshold"] == pytest.approx(cal.threshold)
    if cal.reached:
        assert cal.precision >= 0.9 and cal.recall > 0
    assert set(d["alternatives"]["similarity"]) == {"threshold", "precision", "recall", "reached"}
    # the index/audit side reads it
    from audioaudit.audit.threshold import read_calibration

    assert read_calibration(tmp_path / "calibration.json")["threshold"] == pytest.approx(cal.threshold)


def test_calibrate_raw_similarity_and_bad_target(corpus, tmp_path):
    from audioaudit.errors import UserError

    enc = SpectrumEncoder()
    opts = C.CalibrateOptions(normalise=False, max_clips=6, views_per_clip=1, families=("gain",),
                              target_precision=0.8)
    cal = C.calibrate_encoder(enc, corpus, None, opts)
    # gain copies are exact for a gain-invariant descriptor: similarity ~1 beats every distinct clip
    assert cal.score == "similarity" and cal.reached and cal.recall == 1.0 and cal.precision == 1.0
    with pytest.raises(UserError):
        C.calibrate_encoder(enc, corpus, None, C.CalibrateOptions(target_precision=1.5))


def test_calibrate_cli(corpus, tmp_path):
    from typer.testing import CliRunner

    from audioaudit.cli import app

    res = CliRunner().invoke(app, ["calibrate", str(corpus), "--encoder", "mel", "--out", str(tmp_path),
                                   "--max-clips", "6", "--views", "1", "--target-precision", "0.9"])
    assert res.exit_code == 0, res.output
    assert "threshold" in res.output and (tmp_path / "calibration.json").is_file()
    assert json.loads((tmp_path / "calibration.json").read_text())["encoder"]["backend"] == "mel"
