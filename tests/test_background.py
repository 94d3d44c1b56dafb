"""Background set: score normalisation by novel clips of the same kind, and the index
calibration for a false-flag rate on them (index build --background, index background,
index add, index info, audit)."""
from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from typer.testing import CliRunner

from audioaudit import schema, similarity
from audioaudit.audio import synth
from audioaudit.audio.io import LoadOptions, load_audio
from audioaudit.audit.calibrate import ffr_threshold
from audioaudit.audit.options import AuditOptions
from audioaudit.audit.run import run_audit
from audioaudit.audit.threshold import resolve_threshold
from audioaudit.cli import app
from audioaudit.encoders import embed
from audioaudit.errors import UserError
from audioaudit.index import background as B

CLASSES = ["impact", "bell", "siren", "engine"]
SR = 16000
TARGET = 0.1


def cli(*args):
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, (r.output, r.exception)
    return r.output


def _waves(paths):
    return [load_audio(str(p), LoadOptions(sample_rate=SR)).wave for p in paths]


def _clip_sim(enc, a_paths, b_paths):
    """Clip-level similarity computed apart from the audit: max cosine over window pairs."""
    return similarity.clip_similarity(embed.embed_clips(enc, _waves(a_paths)), embed.embed_clips(enc, _waves(b_paths)))


# --------------------------------------------------------------------------- pure parts
def test_top_k_mean_hand_values():
    sim = np.array([[0.9, 0.1, 0.5, 0.3],
                    [0.2, 0.8, 0.4, 0.6]], np.float32)
    np.testing.assert_allclose(similarity.top_k_mean(sim, 2), [(0.9 + 0.5) / 2, (0.8 + 0.6) / 2], rtol=1e-6)
    np.testing.assert_allclose(similarity.top_k_mean(sim, 1), [0.9, 0.8], rtol=1e-6)
    # leave out column 0 in row 0 (its own clip), nothing in row 1
    np.testing.assert_allclose(similarity.top_k_mean(sim, 2, np.array([0, -1])), [(0.5 + 0.3) / 2, (0.8 + 0.6) / 2], rtol=1e-6)
    np.testing.assert_allclose(similarity.top_k_mean(sim, 3, np.array([1, 1])), [(0.9 + 0.5 + 0.3) / 3, (0.2 + 0.4 + 0.6) / 3],
                               rtol=1e-6)
    # k beyond the columns: the mean of all there are (less the left-out one)
    np.testing.assert_allclose(similarity.top_k_mean(sim, 10), sim.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(similarity.top_k_mean(sim, 10, np.array([2, -1])), [(0.9 + 0.1 + 0.3) / 3, sim[1].mean()],
                               rtol=1e-6)
    assert sim[0, 0] == np.float32(0.9)  # the input is not modified


def test_ffr_threshold_allows_at_most_the_target_share():
    neg = np.array([0.1, 0.5, 0.3, 0.9, 0.7, 0.2, 0.8, 0.4, 0.6, 0.0])
    t = ffr_threshold(neg, 0.2)  # 2 of 10 may be flagged: just above the 3rd highest
    assert (neg >= t).sum() == 2 and t > 0.7 and np.nextafter(t, -np.inf) == 0.7
    t0 = ffr_threshold(neg, 0.0)
    assert t0 > neg.max() and np.nextafter(t0, -np.inf) == neg.max()
    assert (neg >= ffr_threshold(neg, 0.15)).sum() == 1  # floor(1.5)
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 40))
        neg = np.round(rng.normal(0, 0.1, n), 2)  # with ties
        target = float(rng.choice([0.0, 0.01, 0.05, 0.1, 0.25, 0.5]))
        allowed = math.floor(target * n + 1e-9)
        t = ffr_threshold(neg, target)
        assert (neg >= t).sum() <= allowed
        assert (neg >= np.nextafter(t, -np.inf)).sum() > allowed  # the lowest such threshold
    with pytest.raises(ValueError):
        ffr_threshold(np.array([]), 0.1)


def test_threshold_normalisation_passes_over_other_calibrations(tmp_path):
    idx, ft = tmp_path / "idx", tmp_path / "ft"
    idx.mkdir(), ft.mkdir()
    (ft / "calibration.json").write_text(json.dumps({"threshold": 0.3, "score": "score", "precision": 0.99}))
    spec = f"finetuned:{ft}"
    # an encoder calibration without a normalisation was made with the 2nd-11th training sources
    t = resolve_threshold(None, "score", idx, spec, normalisation="background")
    assert t.value is None and len(t.passed_over) == 1 and str(ft / "calibration.json") in t.passed_over[0]
    assert t.as_dict()["passed_over"] == t.passed_over and "note" in t.as_dict()
    t = resolve_threshold(None, "score", idx, spec)
    assert (t.value, t.source, t.passed_over) == (0.3, "encoder calibration", [])
    assert "passed_over" not in t.as_dict()
    # a raw-similarity calibration does not depend on the normalisation
    (ft / "calibration.json").write_text(json.dumps({"threshold": 0.8, "score": "similarity"}))
    assert resolve_threshold(None, "score", idx, spec, normalisation="background").value == 0.8
    # an index calibrated on its background set, audited without one: passed over, the encoder's used
    (idx / "calibration.json").write_text(json.dumps({"threshold": 0.05, "score": "score",
                                                      "normalisation": "background", "false_flag_rate": 0.0,
                                                      "target_false_flag_rate": 0.01}))
    t = resolve_threshold(None, "score", idx, spec)
    assert (t.value, t.source) == (0.8, "encoder calibration") and "background normalisation" in t.passed_over[0]
    t = resolve_threshold(None, "score", idx, spec, normalisation="background")
    assert (t.value, t.source, t.target_false_flag_rate) == (0.05, "index calibration", 0.01)
    assert t.as_dict()["false_flag_rate"] == 0.0
    assert resolve_threshold(0.2, "score", idx, spec, normalisation="references").source == "explicit"


# --------------------------------------------------------------------------- a built index with a background set
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("bg")
    info = synth.make_corpus(base / "c", classes=CLASSES, per_class=4, seconds=(1.0, 2.0), heldout_per_class=1,
                             background_per_class=3, verbose=False)
    bg = base / "bgset"
    shutil.copytree(info.background_dir, bg)
    shutil.copyfile(base / "c" / info.train[5], bg / "copy.wav")  # byte-identical training clip
    x, sr = sf.read(base / "c" / info.train[9], dtype="int16")
    sf.write(bg / "copy.flac", x, sr, subtype="PCM_16")  # the same audio in another container
    (bg / "broken.wav").write_bytes(b"RIFF, but not audio")
    gen = base / "gen"
    gen.mkdir()
    shutil.copyfile(base / "c" / info.train[2], gen / "copy.wav")
    for rel in info.heldout:
        shutil.copyfile(base / "c" / rel, gen / Path(rel).name)
    out = cli("index", "build", base / "c" / "train", "--encoder", "mel", "--name", "bg", "--root", base / "ix",
              "--workers", "0", "--no-progress", "--background", bg, "--target-ffr", TARGET)
    return {"base": base, "info": info, "bg": bg, "gen": gen, "ix": base / "ix" / "bg", "build_output": out}


@pytest.fixture(scope="module")
def mel():
    from audioaudit.encoders import load_encoder

    return load_encoder("mel")


def _bg_clip_paths(w):
    clips = pd.read_parquet(w["ix"] / B.DIR / B.CLIPS)
    return [w["bg"] / p for p in clips["path"]]


def test_build_background_leaves_out_training_audio_and_lists_unreadable(world):
    assert "background set: 12 clips" in world["build_output"]
    assert "2 clips left out: the training set holds the same audio" in world["build_output"]
    assert "1 unreadable" in world["build_output"]
    meta = json.loads((world["ix"] / B.DIR / B.META).read_text())
    assert sorted(meta["in_training_set"]) == ["copy.flac", "copy.wav"]
    assert [s["path"] for s in meta["skipped"]] == ["broken.wav"] and meta["skipped"][0]["reason"]
    assert meta["k"] == 3 and meta["clips"] == 12
    assert meta["encoder"] == json.loads((world["ix"] / schema.ENCODER_FILE).read_text())["identity"]
    bg = B.load_background(world["ix"], meta["encoder"])
    assert bg.n_clips == 12 and len(bg.vectors) == meta["windows"] == len(bg.owner)
    assert not {"copy.wav", "copy.flac", "broken.wav"} & set(bg.clips["path"])
    assert sorted(bg.clips["path"]) == sorted(Path(p).relative_to("background").as_posix()
                                              for p in world["info"].background)
    np.testing.assert_allclose(np.linalg.norm(bg.vectors, axis=1), 1, atol=1e-5)
    assert (np.diff(bg.owner) >= 0).all() and bg.owner[-1] == bg.n_clips - 1


def test_load_background_refuses_another_encoder_and_absent_is_none(world, tmp_path):
    with pytest.raises(UserError, match="another encoder"):
        B.load_background(world["ix"], {"backend": "mel", "version": 999})
    assert B.load_background(tmp_path) is None


def test_too_few_background_clips_is_a_clear_error(world, mel, tmp_path):
    few = tmp_path / "few"
    few.mkdir()
    for p in _bg_clip_paths(world)[:2]:
        shutil.copyfile(p, few / p.name)
    shutil.copyfile(world["bg"] / "copy.wav", few / "copy.wav")  # in the training set: does not count
    d = tmp_path / "ix"
    shutil.copytree(world["ix"], d)
    with pytest.raises(UserError, match=f"{re.escape(str(few))}.*at least 4 clips.*found 2; 1 equal training clips"):
        B.build_background(d, few, mel, k=3)
    with pytest.raises(UserError, match="k must be >= 1"):
        B.build_background(d, world["bg"], mel, k=0)
    assert B.load_background(d).n_clips == 12  # the old set is untouched


def test_audit_scores_against_the_background_set(world, mel, tmp_path):
    out = tmp_path / "run"
    cli("audit", world["gen"], "--index", world["ix"], "--out", out, "--workers", "0", "--no-progress")
    q = pd.read_parquet(out / schema.QUERIES_FILE).set_index("query_id").sort_index()
    sim = _clip_sim(mel, [world["gen"] / i for i in q.index], _bg_clip_paths(world))
    want = np.sort(sim, axis=1)[:, ::-1][:, :3].mean(axis=1)
    np.testing.assert_allclose(q["background"].to_numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(q["top1_score"], q["top1_similarity"] - q["background"], atol=1e-6)
    m = pd.read_parquet(out / schema.MATCHES_FILE)
    np.testing.assert_allclose(m["score"], m["similarity"] - m["query_id"].map(q["background"]), atol=1e-6)
    s = json.loads((out / schema.SUMMARY_FILE).read_text())
    assert "background-set" in s["score_normalisation"] and "3 best of 12" in s["score_normalisation"]
    cal = json.loads((world["ix"] / schema.CALIBRATION_FILE).read_text())
    t = s["threshold"]
    assert (t["source"], t["on"], t["value"]) == ("index calibration", "score", pytest.approx(cal["threshold"]))
    assert t["target_false_flag_rate"] == TARGET and t["false_flag_rate"] == cal["false_flag_rate"]
    assert "passed_over" not in t
    assert q.loc["copy.wav", "flag"] and q.loc["copy.wav", "top1_item_id"] == world["info"].train[2][len("train/"):]


def test_calibration_sets_the_false_flag_rate_on_the_background(world, mel):
    cal = json.loads((world["ix"] / schema.CALIBRATION_FILE).read_text())
    assert (cal["normalisation"], cal["score"], cal["target_false_flag_rate"]) == ("background", "score", TARGET)
    assert cal["n_negative"] == 12 and cal["n_positive"] > 0 and 0 <= cal["recall"] <= 1
    assert cal["encoder"]["backend"] == "mel" and cal["precision"] is None
    # the negatives, recomputed apart: each background clip's best training clip minus the
    # mean of its 3 best *other* background clips
    train = sorted((world["base"] / "c" / "train").rglob("*.wav"))
    bgp = _bg_clip_paths(world)
    top1 = _clip_sim(mel, bgp, train).max(axis=1)
    own = _clip_sim(mel, bgp, bgp)
    np.fill_diagonal(own, -np.inf)
    neg = top1 - np.sort(own, axis=1)[:, ::-1][:, :3].mean(axis=1)
    assert cal["threshold"] == pytest.approx(ffr_threshold(neg, TARGET), abs=1e-5)
    # (the threshold sits one ulp above a negative: compare with a float32 tolerance)
    flagged = int((neg >= cal["threshold"] + 1e-5).sum())
    assert flagged <= math.floor(TARGET * 12) and cal["false_flag_rate"] == pytest.approx(flagged / 12)
    assert cal["false_flag_rate"] <= TARGET
    lo, hi = cal["false_flag_rate_ci"]
    assert lo <= cal["false_flag_rate"] <= hi
    # near-exact copies are flagged on raw similarity above every negative's
    # the floor is one ulp above the highest negative similarity as FAISS computed it; this
    # recomputation is a float32 matrix product apart from FAISS: compare with a float32 tolerance
    assert top1.max() - 1e-6 < cal["similarity_floor"] <= top1.max() + 1e-5


def test_similarity_floor_flags_near_exact_copies_the_score_misses():
    from audioaudit.audit.threshold import Threshold, flag_mask

    sim, score = np.array([0.999, 0.999, 0.80, np.nan]), np.array([0.10, 0.50, 0.10, np.nan])
    thr = Threshold(0.3, "score", "index calibration")
    assert flag_mask(sim, score, thr).tolist() == [False, True, False, False]
    thr.similarity_floor = 0.99
    assert flag_mask(sim, score, thr).tolist() == [True, True, False, False]
    assert thr.as_dict()["similarity_floor"] == 0.99


def test_reference_calibration_is_passed_over_with_a_background_and_used_without(world, tmp_path):
    d = tmp_path / "ix"
    shutil.copytree(world["ix"], d)
    (d / schema.CALIBRATION_FILE).write_text(json.dumps({"threshold": 0.4, "score": "score", "precision": 0.9}))
    opts = AuditOptions(progress=False, workers=0)
    s = run_audit(world["gen"], d, tmp_path / "r1", opts=opts).summary
    assert s["threshold"]["source"] == "none" and s["threshold"]["value"] is None
    assert str(d / schema.CALIBRATION_FILE) in s["threshold"]["passed_over"][0]
    B.remove_background(d)
    assert B.load_background(d) is None
    s = run_audit(world["gen"], d, tmp_path / "r2", opts=opts).summary
    assert (s["threshold"]["source"], s["threshold"]["value"]) == ("index calibration", 0.4)
    assert "2nd-11th training sources" in s["score_normalisation"]


def test_background_command_info_and_add_recalibrates(world, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(world["base"] / "c" / "train", corpus)
    root = tmp_path / "ix"
    cli("index", "build", corpus, "--encoder", "mel", "--name", "p", "--root", root, "--workers", "0", "--no-progress")
    out = cli("index", "info", "p", "--root", root)
    assert "background  none" in out and "threshold" not in out
    out = cli("index", "background", "p", world["bg"], "--root", root, "--k", "2", "--target-ffr", "0.25",
              "--no-progress")
    assert "background set: 12 clips" in out and "k=2" in out and "calibrated threshold" in out
    cal = json.loads((root / "p" / schema.CALIBRATION_FILE).read_text())
    assert cal["target_false_flag_rate"] == 0.25 and cal["settings"]["background_k"] == 2
    out = cli("index", "info", "p", "--root", root)
    assert f"background  12 clips, k=2 ({world['bg'].resolve()})" in out
    assert f"threshold   {cal['threshold']:.4f} on the score (false flags {cal['false_flag_rate']:.3f}" in out
    # new training clips: the calibration is redone for the same target. The one added is a
    # background clip: from now on it is left out of the set (it would cancel its own copies)
    bg_clip = world["bg"] / "bell" / "bell_0001.wav"
    (corpus / "bell" / "extra.wav").write_bytes(bg_clip.read_bytes())
    out = cli("index", "add", "p", corpus / "bell" / "extra.wav", "--root", root, "--workers", "0", "--no-progress")
    assert "recalibrated on the background set" in out
    new = json.loads((root / "p" / schema.CALIBRATION_FILE).read_text())
    assert new["target_false_flag_rate"] == 0.25 and new["n_negative"] == 11
    assert "background  11 clips, k=2" in cli("index", "info", "p", "--root", root)
    items = pd.read_parquet(root / "p" / schema.ITEMS_FILE)
    left = B.load_background(root / "p", None, items["pcm_hash"])
    assert left.n_clips == 11 and "bell/bell_0001.wav" in left.meta["in_training_set"]
    assert "bell/bell_0001.wav" not in set(left.clips["path"]) and len(np.unique(left.owner)) == 11
    gen = tmp_path / "gen"
    gen.mkdir()
    shutil.copyfile(bg_clip, gen / "copy.wav")
    q = run_audit(gen, root / "p", tmp_path / "run", opts=AuditOptions(progress=False, workers=0)).queries
    from audioaudit.encoders import load_encoder

    sim = _clip_sim(load_encoder("mel"), [gen / "copy.wav"], [world["bg"] / p for p in left.clips["path"]])
    assert q["top1_similarity"][0] == pytest.approx(1, abs=1e-5) and q["top1_item_id"][0] == "bell/extra.wav"
    assert q["background"][0] == pytest.approx(np.sort(sim[0])[::-1][:2].mean(), abs=1e-5)
    out = cli("index", "add", "p", corpus / "bell" / "extra.wav", "--root", root, "--workers", "0", "--no-progress")
    assert "up to date" in out and "recalibrated" not in out
    # --no-calibrate keeps the calibration that is there
    out = cli("index", "background", "p", world["bg"], "--root", root, "--no-calibrate", "--no-progress")
    assert "calibrated" not in out and json.loads((root / "p" / schema.CALIBRATION_FILE).read_text()) == new
    assert B.load_background(root / "p").k == 3


def test_multi_window_clips_use_the_best_window_pair(world, tmp_path):
    """With 1 s windows every clip has 1-3 windows: the stored set round-trips its clip of
    every window, and the level is the max over window pairs, as clipsim computes it."""
    from helpers_index import TinyEncoder

    from audioaudit.index.build import build_index
    from audioaudit.index.options import BuildOptions

    enc = TinyEncoder()
    d = tmp_path / "ix"
    build_index(world["base"] / "c" / "train", enc, d, opts=BuildOptions(workers=0, progress=False))
    built = B.build_background(d, world["bg"], enc, k=2, workers=0)
    bg = B.load_background(d, enc.identity())
    assert len(bg.vectors) > bg.n_clips == 12 and bg.k == 2
    np.testing.assert_array_equal(bg.owner, built.owner)
    np.testing.assert_array_equal(bg.vectors, built.vectors)
    assert (bg.clips["n_segments"].to_numpy() == np.bincount(bg.owner)).all()
    res = run_audit(world["gen"], d, tmp_path / "run", encoder=enc, opts=AuditOptions(progress=False, workers=0))
    q = res.queries.set_index("query_id").sort_index()
    sim = _clip_sim(enc, [world["gen"] / i for i in q.index], [world["bg"] / p for p in bg.clips["path"]])
    np.testing.assert_allclose(q["background"], np.sort(sim, axis=1)[:, ::-1][:, :2].mean(axis=1), rtol=1e-5, atol=1e-6)
    assert "2 best of 12" in res.summary["score_normalisation"]
    assert res.summary["threshold"]["source"] == "none"  # not calibrated: build_background alone does not


def test_calibration_on_a_folder_of_novel_clips(world, mel, tmp_path):
    """--negatives: the threshold is set on novel clips scored as the audit scores them
    (top-1 training similarity minus the mean of the 3 best background clips, none left out)."""
    d = tmp_path / "ix"
    shutil.copytree(world["ix"], d)
    novel = sorted((world["base"] / "c" / "heldout").rglob("*.wav"))
    out = cli("index", "background", d, world["bg"], "--root", tmp_path, "--negatives", world["base"] / "c" / "heldout",
              "--target-ffr", "0.25", "--no-progress")
    assert "on 4 novel clips" in out
    cal = json.loads((d / schema.CALIBRATION_FILE).read_text())
    assert cal["n_negative"] == len(novel) == 4
    assert cal["settings"]["negatives_folder"] == str((world["base"] / "c" / "heldout").resolve())
    train = sorted((world["base"] / "c" / "train").rglob("*.wav"))
    bg = _clip_sim(mel, novel, _bg_clip_paths(world))
    neg = _clip_sim(mel, novel, train).max(axis=1) - np.sort(bg, axis=1)[:, ::-1][:, :3].mean(axis=1)
    assert cal["threshold"] == pytest.approx(ffr_threshold(neg, 0.25), abs=1e-5)
    assert cal["false_flag_rate"] <= 0.25


def test_rate_bound_says_when_the_set_is_too_small():
    from audioaudit.audit.calibrate import rate_bound

    hi, resolves, note = rate_bound(0, 58, 0.01)  # issue 16: 58 background clips, a 1 % target
    assert not resolves and hi == pytest.approx(3.8415 / (58 + 3.8415), rel=1e-3)
    assert "58 calibration clips cannot calibrate a false-flag rate of 0.01 (that needs at least 100)" in note
    assert f"<= {hi:.3f} (95 %)" in note
    hi, resolves, note = rate_bound(4, 220, 0.02)
    assert resolves and note is None and 4 / 220 < hi < 0.05


def test_a_small_background_is_reported_at_build_and_audit(world, tmp_path):
    root = tmp_path / "ix"
    out = cli("index", "build", world["base"] / "c" / "train", "--encoder", "mel", "--name", "small", "--root", root,
              "--background", world["bg"], "--target-ffr", "0.01", "--no-progress")
    cal = json.loads((root / "small" / schema.CALIBRATION_FILE).read_text())
    n = cal["n_negative"]
    assert n * 0.01 < 1 and cal["resolves_target"] is False and cal["false_flag_rate_bound"] > 0.1
    assert f"note: {n} calibration clips cannot calibrate a false-flag rate of 0.01" in out
    run = cli("audit", world["gen"], "--index", "small", "--root", root, "--out", tmp_path / "run", "--no-progress")
    s = json.loads((tmp_path / "run" / schema.SUMMARY_FILE).read_text())
    assert s["threshold"]["note"] == cal["note"] and s["threshold"]["false_flag_rate_bound"] == cal["false_flag_rate_bound"]
    assert "cannot calibrate a false-flag rate of 0.01" in run
