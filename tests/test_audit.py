"""audit: embedding with the index's encoder, clip-level matches with spans, scores,
thresholds, same-class search, metadata, bad input; and the pure statistics."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from helpers_index import SR, TinyEncoder, make_corpus, synth_clip, write

from audioaudit import schema
from audioaudit.audit import statistics as stats
from audioaudit.audit.options import AuditOptions
from audioaudit.audit.run import run_audit
from audioaudit.audit.threshold import resolve_threshold
from audioaudit.errors import UserError
from audioaudit.index.build import build_index
from audioaudit.index.options import BuildOptions


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("audit")
    waves = make_corpus(base / "corpus", per_class=4, seconds=(2.5, 3.0))
    build_index(base / "corpus", TinyEncoder(), base / "index", opts=BuildOptions(shard_size=4, workers=0, progress=False))
    gen = base / "gen"
    src = waves["chirp/chirp_2.wav"]
    write(gen / "excerpt.wav", src[SR : 2 * SR] * 0.8)  # 1.0-2.0 s of a training clip, quieter
    write(gen / "short.wav", waves["tone/tone_1.wav"][: SR // 5])  # 0.2 s: shorter than a window
    for i, cls in enumerate(["tone", "noise", "chirp"]):
        write(gen / f"novel_{i}.wav", synth_clip(cls, 5000 + i, 2.0))
    pd.DataFrame({"path": ["excerpt.wav", "novel_0.wav"], "seed": [11, 12], "prompt": ["a chirp", "a tone"],
                  "class": ["chirp", "tone"]}).to_csv(gen / "metadata.csv", index=False)
    return base, waves


def audit(setup, name, **kw):
    base, _ = setup
    return run_audit(base / "gen", base / "index", base / "runs" / name, encoder=TinyEncoder(),
                     opts=AuditOptions(progress=False, workers=0, **kw))


def test_audit_finds_the_copied_clip_and_the_copied_span(setup):
    res = audit(setup, "plain", threshold=0.999, threshold_on="similarity", top_k=12)
    out = res.out
    for name in (schema.QUERIES_FILE, schema.MATCHES_FILE, schema.MATCHES_CSV, schema.REFERENCE_FILE,
                 schema.SUMMARY_FILE, schema.SKIPPED_FILE):
        assert (out / name).is_file(), name
    m = pd.read_parquet(out / schema.MATCHES_FILE)
    assert list(m.columns[: len(schema.MATCH_COLUMNS)]) == schema.MATCH_COLUMNS
    top = m[(m.query_id == "excerpt.wav") & (m["rank"] == 1)].iloc[0]
    assert top.item_id == "chirp/chirp_2.wav" and top.similarity > 0.99 and top.flag
    # the query window (the whole 1 s excerpt) matched the training window around 1.0-2.0 s
    assert top.query_start == 0.0 and abs(top.train_start - 1.0) <= 0.25
    # distinct training sources per query, ranks 1..k, scores = similarity - background
    for qid, g in m.groupby("query_id"):
        assert g["item_id"].is_unique and g["rank"].tolist() == list(range(1, len(g) + 1))
        assert (np.diff(g["similarity"].to_numpy()) <= 1e-6).all()
    q = pd.read_parquet(out / schema.QUERIES_FILE).set_index("query_id")
    sims = m[m.query_id == "excerpt.wav"]["similarity"].to_numpy()
    assert math.isclose(q.loc["excerpt.wav", "top1_score"], sims[0] - sims[1:11].mean(), rel_tol=1e-5)
    assert math.isclose(q.loc["excerpt.wav", "nn_ratio"], math.sqrt(2 - 2 * sims[0]) / math.sqrt(2 - 2 * sims[1]),
                        rel_tol=1e-4, abs_tol=1e-6)
    novel = ["novel_0.wav", "novel_1.wav", "novel_2.wav"]
    assert q.loc["excerpt.wav", "flag"] and not q.loc[novel, "flag"].any()
    assert q.loc["excerpt.wav", "nn_ratio"] < 1 / 3 and (q.loc[novel, "nn_ratio"] > 1 / 3).all()  # Gu et al.
    csv = pd.read_csv(out / schema.MATCHES_CSV)
    assert len(csv) == len(m)


def test_verify_adds_aligned_correlation_evidence_and_keeps_flags(setup):
    plain = audit(setup, "noverify", threshold=0.999, threshold_on="similarity", top_k=3)
    res = audit(setup, "verify", threshold=0.999, threshold_on="similarity", top_k=3, verify=True)
    m = pd.read_parquet(res.out / schema.MATCHES_FILE)
    assert {"verify_corr", "verify_overlap"} <= set(m.columns)
    assert m["flag"].tolist() == plain.matches["flag"].tolist()  # evidence only
    top = m[m["rank"] == 1].set_index("query_id")
    # the excerpt holds its source's frames in order; a novel clip does not hold its top match's
    assert top.loc["excerpt.wav", "verify_corr"] > 0.95 and top.loc["excerpt.wav", "verify_overlap"] > 0.9
    assert top.loc["novel_2.wav", "verify_corr"] < top.loc["excerpt.wav", "verify_corr"] - 0.05
    q = pd.read_parquet(res.out / schema.QUERIES_FILE).set_index("query_id")
    assert q.loc["excerpt.wav", "top1_verify_corr"] == pytest.approx(top.loc["excerpt.wav", "verify_corr"])
    v = json.loads((res.out / schema.SUMMARY_FILE).read_text())["verification"]
    assert v["pairs"] == len(m) and v["unreadable"] == 0


def test_short_query_is_padded_and_matched_not_dropped(setup):
    q = audit(setup, "short").queries.set_index("query_id")
    assert "short.wav" in q.index and q.loc["short.wav", "n_segments"] == 1
    assert q.loc["short.wav", "top1_item_id"] == "tone/tone_1.wav"


def test_metadata_csv_goes_into_queries(setup):
    q = audit(setup, "meta").queries.set_index("query_id")
    assert q.loc["excerpt.wav", "seed"] == 11 and q.loc["novel_0.wav", "prompt"] == "a tone"
    assert q.loc["excerpt.wav", "label"] == "chirp"


def test_summary_statistics_and_threshold_recorded(setup):
    s = json.loads((audit(setup, "sum", threshold=0.999, threshold_on="similarity").out / schema.SUMMARY_FILE).read_text())
    assert s["threshold"]["value"] == 0.999 and s["threshold"]["source"] == "explicit"
    assert s["threshold"]["on"] == "similarity" and s["fraction_above"] == pytest.approx(1 / 5)
    assert s["n_queries"] == 5 and s["flagged"]["count"] >= 1 and len(s["flagged"]["ci95"]) == 2
    ref = pd.read_parquet(setup[0] / "index" / schema.REFERENCE_FILE)
    assert len(ref) == 12 and (ref["item_id"] != ref["nn_item_id"]).all()
    assert math.isclose(s["percentiles"]["train_vs_train"]["95"], float(np.percentile(ref["similarity"], 95)))
    assert math.isclose(s["p95_gap"], s["percentiles"]["gen_vs_train"]["95"] - s["percentiles"]["train_vs_train"]["95"])
    assert s["ratio_test"]["tau"] == pytest.approx(1 / 3)
    assert set(s["per_class"]) >= {"chirp", "tone"}


def test_no_threshold_means_no_flags_and_says_so(setup):
    res = audit(setup, "none")
    assert not res.matches["flag"].any() and res.summary["flagged"] is None
    assert res.summary["threshold"]["source"] == "none" and "no threshold" in res.summary["threshold"]["note"]


def test_threshold_precedence(tmp_path):
    idx, ft = tmp_path / "idx", tmp_path / "ft"
    idx.mkdir(), ft.mkdir()
    (ft / "calibration.json").write_text(json.dumps({"threshold": 0.3, "score": "similarity", "precision": 0.99,
                                                     "target_precision": 0.99}))
    t = resolve_threshold(None, "score", idx, f"finetuned:{ft}")
    assert (t.value, t.on, t.source, t.precision) == (0.3, "similarity", "encoder calibration", 0.99)
    (idx / "calibration.json").write_text(json.dumps({"threshold": 0.4, "score": "score", "precision": 0.95}))
    assert resolve_threshold(None, "score", idx, f"finetuned:{ft}").source == "index calibration"
    assert resolve_threshold(0.5, "score", idx, f"finetuned:{ft}").value == 0.5
    assert resolve_threshold(None, "score", tmp_path, "mel").value is None


def test_same_class_restricts_matches(setup):
    res = audit(setup, "same", same_class=True)
    m = res.matches.merge(res.queries[["query_id", "label"]], on="query_id")
    labelled = m[m["label"].notna()]
    assert len(labelled) and (labelled["train_label"] == labelled["label"]).all()


def test_bad_generated_folders_are_clear_errors_and_write_nothing(setup, tmp_path):
    base, _ = setup
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no audio files"):
        run_audit(empty, base / "index", tmp_path / "out1", encoder=TinyEncoder(), opts=AuditOptions(progress=False))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.wav").write_bytes(b"junk")
    write(bad / "silent.wav", np.zeros(SR, np.float32))
    with pytest.raises(UserError, match="none of the 2 files"):
        run_audit(bad, base / "index", tmp_path / "out2", encoder=TinyEncoder(), opts=AuditOptions(progress=False))
    assert not (tmp_path / "out1").exists() and not (tmp_path / "out2").exists()


def test_wrong_encoder_and_corrupt_index_are_refused_before_writing(setup, tmp_path):
    import shutil

    base, _ = setup
    with pytest.raises(UserError, match="identity differs"):
        run_audit(base / "gen", base / "index", tmp_path / "o", encoder=TinyEncoder(seed=3), opts=AuditOptions(progress=False))
    bad = tmp_path / "badindex"
    shutil.copytree(base / "index", bad)
    (bad / schema.INDEX_FILE).write_bytes(b"not faiss")
    out = tmp_path / "existing_run"
    out.mkdir()
    (out / schema.SUMMARY_FILE).write_text("{\"old\": true}")
    with pytest.raises(UserError, match="corrupt"):
        run_audit(base / "gen", bad, out, encoder=TinyEncoder(), opts=AuditOptions(progress=False))
    assert json.loads((out / schema.SUMMARY_FILE).read_text()) == {"old": True}
    assert not (out / schema.MATCHES_FILE).exists()


# --------------------------------------------------------------------------- pure statistics
def test_wilson_interval_known_values():
    p = stats.wilson(0, 10)
    assert p.rate == 0 and p.lo == 0 and p.hi == pytest.approx(0.2775, abs=1e-3)
    p = stats.wilson(5, 10)
    assert (p.lo, p.hi) == (pytest.approx(0.2366, abs=1e-3), pytest.approx(0.7634, abs=1e-3))
    assert stats.wilson(0, 0).rate is None


def test_ratio_test_and_percentiles():
    r = stats.nn_ratio([1.0, 0.9, 0.5], [0.5, 0.9, np.nan])
    assert r[0] == 0 and r[1] == pytest.approx(1.0) and np.isnan(r[2])
    assert stats.nn_ratio([0.995], [0.5])[0] == pytest.approx(math.sqrt(0.01) / 1.0)
    assert stats.ratio_test([0.1, 0.5, np.nan]).as_dict()["count"] == 1
    p = stats.percentiles(np.arange(101))
    assert (p.p50, p.p90, p.p99) == (50, 90, 99)
    assert stats.p95_gap([1.0] * 10, [0.5] * 10) == pytest.approx(0.5)
    assert stats.fraction_above([0.1, 0.6, 0.7], 0.5).rate == pytest.approx(2 / 3)


def test_memorisation_by_duplication_level():
    sizes = {"a": 1, "b": 1, "c": 1, "d": 1, "g0": 3, "g1": 2}
    m = stats.memorisation(sizes, {"g0": 4, "a": 1})
    lv = {x.size: x for x in m.levels}
    assert lv["1"].sources == 4 and lv["1"].copies == 1 and lv["3"].copies == 4
    assert m.duplicated.rate == 0.5 and m.singletons.rate == 0.25
    assert m.copies_per_source_ratio == pytest.approx((4 / 2) / (1 / 4))


def test_cli_build_info_audit_and_errors(tmp_path):
    import subprocess
    import sys

    from typer.testing import CliRunner

    from audioaudit.cli import app

    waves = make_corpus(tmp_path / "corpus", per_class=2)
    gen = tmp_path / "gen"
    write(gen / "copy.wav", waves["noise/noise_1.wav"])
    write(gen / "new.wav", synth_clip("tone", 4242, 1.0))
    run = CliRunner().invoke
    r = run(app, ["index", "build", str(tmp_path / "corpus"), "--encoder", "mel", "--name", "cli",
                  "--root", str(tmp_path / "ix"), "--workers", "0", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "6 clips" in r.output and "6 files decoded" in r.output
    r = run(app, ["index", "build", str(tmp_path / "corpus"), "--encoder", "mel", "--name", "cli",
                  "--root", str(tmp_path / "ix"), "--workers", "0", "--no-progress"])
    assert "up to date" in r.output
    r = run(app, ["audit", str(gen), "--index", "cli", "--root", str(tmp_path / "ix"), "--out", str(tmp_path / "run"),
                  "--threshold", "0.9999", "--threshold-on", "similarity", "--workers", "0", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "flagged     1 of 2" in r.output and "FLAG copy.wav -> noise/noise_1.wav" in r.output
    assert (tmp_path / "run" / schema.MATCHES_CSV).is_file()
    r = run(app, ["audit", str(gen), "--index", "cli", "--root", str(tmp_path / "ix"), "--out", str(tmp_path / "runv"),
                  "--threshold", "0.9999", "--threshold-on", "similarity", "--workers", "0", "--no-progress",
                  "--verify", "--top-k", "2"])
    assert r.exit_code == 0, r.output
    assert "verified    4 matches re-read and aligned" in r.output and "aligned corr 1.000" in r.output
    p = subprocess.run([sys.executable, "-m", "audioaudit.cli", "audit", str(gen), "--index", "nope",
                        "--root", str(tmp_path / "ix"), "--out", str(tmp_path / "run2")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.startswith("error:") and "no such index" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
