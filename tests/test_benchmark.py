"""The DISC-style benchmark: dedup, reproducible cached query sets, scoring, the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from helpers_bench import RandomEncoder, SpectrumEncoder, plant_duplicates, tiny_corpus

from audioaudit import similarity
from audioaudit.detector.benchmark import dataset, evaluate
from audioaudit.duplicates import twins
from audioaudit.encoders import embed

SPEC = dataset.BenchSpec(families=("gain", "mp3", "noise_white", "mix", "crop"), per_family=4, distractors=6,
                           seed=3)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tiny_corpus(tmp_path_factory.mktemp("bench") / "corpus")
    planted = plant_duplicates(root)
    return root, planted


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory):
    root, _ = corpus
    return dataset.build_benchmark(root, tmp_path_factory.mktemp("cache"), SPEC)


def test_clip_similarity_is_max_over_segment_pairs():
    e = np.eye(4, dtype=np.float32)
    q = embed.ClipEmbeddings(np.stack([e[0], e[1], e[2]]), np.array([0, 0, 1]), 2)
    r = embed.ClipEmbeddings(np.stack([e[3], e[1], e[2], 0.6 * e[0] + 0.8 * e[3]]), np.array([0, 0, 1, 2]), 3)
    sim = similarity.clip_similarity(q, r)
    np.testing.assert_allclose(sim, [[1.0, 0.0, 0.6], [0.0, 1.0, 0.0]], atol=1e-6)


def test_normalised_subtracts_mean_of_2nd_to_11th_neighbours():
    sim = np.array([[0.9] + [0.5] * 10 + [0.1] * 3, [0.4] * 14], np.float32)
    score = similarity.normalised(sim)
    np.testing.assert_allclose(score[0, 0], 0.4, atol=1e-6)  # 0.9 - mean(ten 0.5s)
    np.testing.assert_allclose(score[1], 0.0, atol=1e-6)
    # excluded entries do not count in the background
    ex = np.zeros_like(sim, bool)
    ex[0, 1:6] = True
    np.testing.assert_allclose(similarity.background(sim, ex)[0], (5 * 0.5 + 3 * 0.1) / 8, atol=1e-6)


def test_twins_are_grouped_and_leaked_distractors_dropped(built, corpus):
    _, planted = corpus
    ref_ids = {r.item_id for r in built.references}
    src = {r.item_id: r.source for r in built.references}
    a, b = planted["train_twin"]
    assert a in ref_ids and b in ref_ids and src[a] == src[b]  # one source, two files
    dropped = {d["path"].split("corpus/")[-1]: d for d in built.dropped}
    assert dropped[planted["leak_exact"][1]]["kind"] == "twin_of_reference_exact"
    assert dropped[planted["leak_near"][1]]["kind"].startswith("twin_of_reference")
    leaked = {planted["leak_exact"][1], planted["leak_near"][1]}
    assert not leaked & {q.query_id for q in built.queries}
    # no distractor query is the source audio of any reference group
    for q in built.queries:
        if q.source is not None:
            assert set(q.truth) == {r.item_id for r in built.references if r.source == src[q.source]}
            if src[q.source] == src[a]:
                assert set(q.truth) == {a, b}
    assert all(q.truth == () and q.source is None for q in built.queries if q.family is None)
    assert built.n_copies == 5 * 4 and built.n_distractors == 6


def test_near_twin_pairs_finds_reencoded_copy_only():
    from audioaudit.audio import sounds

    rng = np.random.default_rng(0)
    waves = [sounds.synthesize(c, np.random.default_rng(i), 1.0) for i, c in enumerate(["bell", "bell", "rain", "siren"])]
    import io

    buf = io.BytesIO()
    sf.write(buf, np.r_[np.zeros(300, np.float32), 0.5 * waves[0]], 16000, format="MP3")
    buf.seek(0)
    reenc, _ = sf.read(buf, dtype="float32")
    pairs = twins.near_twin_pairs(waves + [reenc + 1e-4 * rng.standard_normal(len(reenc)).astype(np.float32)], 16000)
    assert [(a, b) for a, b, _ in pairs] == [(0, 4)]
    # twin groups: the re-encoded copy (near) and a bit-identical copy (exact) join clip 0's group
    clips = waves + [reenc, waves[2].copy()]
    groups = twins.twin_groups([f"c{i}" for i in range(len(clips))], clips, 16000)
    assert groups[0] == groups[4] == {0, 4} and groups[2] == groups[5] == {2, 5}
    assert groups[1] == {1} and groups[3] == {3}


def test_build_is_cached_and_reproducible(built, corpus, tmp_path):
    root, _ = corpus
    again = dataset.build_benchmark(root, tmp_path / "other-cache", SPEC)
    assert again.key == built.key and again.root != built.root
    assert [q.query_id for q in again.queries] == [q.query_id for q in built.queries]
    for q in built.queries:
        a, _ = sf.read(f"{built.root}/{q.path}", dtype="int16")
        b, _ = sf.read(f"{again.root}/{q.path}", dtype="int16")
        assert np.array_equal(a, b), q.query_id
    # the cached set is returned as is (no rewrite)
    before = (again.root + "/bench.json", __import__("os").stat(again.root + "/bench.json").st_mtime_ns)
    third = dataset.build_benchmark(root, tmp_path / "other-cache", SPEC)
    assert third.root == again.root and __import__("os").stat(before[0]).st_mtime_ns == before[1]
    # another seed: another set
    other = dataset.build_benchmark(root, tmp_path / "other-cache", dataset.BenchSpec(**{**SPEC.__dict__, "seed": 4}))
    assert other.key != built.key


def test_evaluate_matrix_perfect_scores_and_twin_credit(built):
    ref_index = {r.item_id: n for n, r in enumerate(built.references)}
    m = np.full((len(built.queries), len(built.references)), 0.2, np.float32)
    for qi, q in enumerate(built.queries):
        if q.family is not None:
            m[qi, ref_index[q.truth[-1]]] = 0.9  # the last twin, not necessarily the source
        else:
            m[qi, qi % len(built.references)] = 0.5
    rep = evaluate.evaluate_matrix(built, m)
    assert rep.overall.micro_ap == pytest.approx(1.0) and rep.overall.recall_at_1 == 1.0
    assert set(rep.per_family) == {"gain", "mp3", "noise_white", "mix", "crop"}
    # a distractor outscoring every copy costs precision
    m2 = m.copy()
    m2[[q.family is None for q in built.queries], 0] = 0.95
    assert evaluate.evaluate_matrix(built, m2).overall.micro_ap < 0.8


def test_per_kind_rows_pool_a_kinds_copies_with_its_own_distractors(built):
    ref_index = {r.item_id: n for n, r in enumerate(built.references)}
    kinds = sorted({q.label for q in built.queries if q.label})
    assert len(kinds) >= 2
    m = np.full((len(built.queries), len(built.references)), 0.2, np.float32)
    for qi, q in enumerate(built.queries):
        if q.family is not None:
            m[qi, ref_index[q.truth[0]]] = 0.9
        elif q.label == kinds[0]:
            m[qi, 0] = 0.95  # novel clips of the first kind outscore every copy
    per = evaluate.evaluate_kinds(built, m)
    assert set(per) == set(kinds)
    assert per[kinds[1]].micro_ap == pytest.approx(1.0)  # its own distractors stay low
    assert per[kinds[0]].micro_ap < 0.9
    n0 = sum(q.label == kinds[0] for q in built.queries)
    assert per[kinds[0]].n_queries == n0
    rows = evaluate.run_benchmark(built, SpectrumEncoder(), evaluate.RunSettings(spec="spectrum"))
    assert set(rows[0].to_json()["per_kind"]) == set(kinds)


def test_run_benchmark_real_encoder_beats_random(built):
    good = evaluate.run_benchmark(built, SpectrumEncoder(), evaluate.RunSettings(spec="spectrum"))
    bad = evaluate.run_benchmark(built, RandomEncoder(), evaluate.RunSettings(spec="random", normalise=False))
    assert [r.scoring for r in good] == ["similarity", "score"] and len(bad) == 1
    g = good[0].report
    assert g.per_family["gain"].recall_at_1 == 1.0  # a gain-invariant descriptor finds gain copies
    assert g.overall.micro_ap > bad[0].report.overall.micro_ap + 0.3
    assert bad[0].report.overall.micro_ap < 0.3
    js = good[1].to_json()
    assert js["scoring"] == "score" and 0 <= js["overall"]["micro_ap"] <= 1 and "gain" in js["per_family"]


def test_bench_cli_table_and_json(corpus, tmp_path):
    from typer.testing import CliRunner

    from audioaudit.cli import app

    root, _ = corpus
    out = tmp_path / "b.json"
    res = CliRunner().invoke(app, ["bench", str(root), "--encoder", "mel", "--families", "gain,mp3",
                                   "--per-family", "3", "--distractors", "4", "--json", str(out),
                                   "--cache", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    assert "µAP" in res.output and "R@P90" in res.output and "normalised" in res.output
    d = json.loads(out.read_text())
    # verification is on by default (it won on the real-sound benchmark)
    assert [(r["encoder"], r["scoring"]) for r in d["rows"]] == [("mel", "similarity"), ("mel", "score"),
                                                                 ("mel", "verified")]
    assert d["rows"][2]["cost"]["candidates_per_query"] >= 1
    assert d["benchmark"]["copy_queries"] == 6 and d["benchmark"]["distractors"] == 4
    assert set(d["rows"][0]["per_family"]) == {"gain", "mp3"}
    bad = CliRunner().invoke(app, ["bench", str(root), "--encoder", "mel", "--families", "nope",
                                   "--cache", str(tmp_path / "c")])
    assert bad.exit_code != 0


def test_held_out_family_protocol_reports_both_groups(corpus, tmp_path):
    from typer.testing import CliRunner

    from audioaudit.cli import app

    root, _ = corpus
    out = tmp_path / "p.json"
    res = CliRunner().invoke(app, ["bench", str(root), "--encoder", "mel", "--train-families", "gain,mp3",
                                   "--test-families", "opus,excerpt", "--per-family", "2", "--distractors", "4",
                                   "--json", str(out), "--cache", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    assert "µAP (train families)" in res.output and "µAP (test families)" in res.output
    row = json.loads(out.read_text())["rows"][0]
    assert set(row["per_family"]) == {"gain", "mp3", "opus", "excerpt"} and set(row["groups"]) == {"train", "test"}
    assert row["groups"]["test"]["n_positive_queries"] == 4 and row["groups"]["train"]["n_positive_queries"] == 4
    overlap = CliRunner().invoke(app, ["bench", str(root), "--encoder", "mel", "--train-families", "gain",
                                       "--test-families", "gain", "--cache", str(tmp_path / "c")])
    assert overlap.exit_code != 0 and "share gain" in str(overlap.exception)


def test_a_detector_is_refused_test_families_it_trained_on(tmp_path):
    from audioaudit.detector.benchmark.protocol import check_unseen, parse_families, trained_families
    from audioaudit.errors import UserError

    d = tmp_path / "det"
    d.mkdir()
    (d / "run.json").write_text(json.dumps({"views": {"families": ["gain", "mp3"]}}))
    assert trained_families(f"finetuned:{d}") == ("gain", "mp3") and trained_families("mel") is None
    check_unseen(f"finetuned:{d}", parse_families("unseen"))  # none of them: fine
    with pytest.raises(UserError, match="trained on mp3"):
        check_unseen(f"finetuned:{d}", ("opus", "mp3"))
    (d / "run.json").write_text(json.dumps({"views": {}}))  # default views: every training family
    with pytest.raises(UserError, match="trained on pitch"):
        check_unseen(f"finetuned:{d}", ("pitch",))
    assert parse_families("standard,opus")[-1] == "opus"


def test_verified_rows_rescore_only_the_top_candidates(built):
    from audioaudit.detector.benchmark.verified import verified_matrix
    from audioaudit.duplicates.verify import aligned_correlation, spectrogram

    sim, _, _ = evaluate.similarity_matrix(SpectrumEncoder(), built)
    v, cost = verified_matrix(built, sim, top_k=3)
    assert (np.isfinite(v).sum(axis=1) <= 3).all() and cost["candidates_per_query"] == 3
    i = int(np.flatnonzero(np.isfinite(v).any(axis=1))[0])
    j = int(np.flatnonzero(np.isfinite(v[i]))[0])
    assert v[i, j] <= sim[i, j] + 1 + 1e-6  # score + a correlation <= 1
    x = np.sin(np.arange(16000) / 7).astype(np.float32) * 0.3
    same = aligned_correlation(spectrogram(x), [spectrogram(np.r_[np.zeros(800, np.float32), 0.5 * x]), None])
    assert same[0] > 0.98 and np.isnan(same[1])
    rows = evaluate.run_benchmark(built, SpectrumEncoder(), evaluate.RunSettings("s", verify=True))
    assert [r.scoring for r in rows] == ["similarity", "score", "verified"] and rows[2].cost["ms_per_query"] >= 0


def test_copy_verification_survives_a_static_filter():
    """A high-passed copy keeps its frames' time pattern in the bands that survive: the
    band-mean-removed correlation finds it where the plain one, dominated by the removed
    low bands, does not; a different recording stays well below."""
    from scipy import signal

    from audioaudit.duplicates.verify import compare, compare_copy, spectrogram

    def clip(seed, f0):
        rng = np.random.default_rng(seed)
        t = np.arange(32000) / 16000
        env = np.repeat(rng.random(40) > 0.5, 800).astype(np.float32)  # 50 ms bursts on/off
        hiss = signal.sosfilt(signal.butter(4, 3000, "high", fs=16000, output="sos"), rng.standard_normal(32000))
        return (0.6 * np.sin(2 * np.pi * f0 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t + seed))
                + 0.05 * env * hiss).astype(np.float32)

    x = clip(1, 150)
    hp = signal.sosfilt(signal.butter(4, 2000, "high", fs=16000, output="sos"), x).astype(np.float32)
    sx, shp, sother = spectrogram(x), spectrogram(hp), spectrogram(clip(2, 400))
    assert compare_copy(shp, sx).corr > 0.9
    assert compare_copy(shp, sx).corr > compare(shp, sx).corr + 0.1
    assert compare_copy(sother, sx).corr < compare_copy(shp, sx).corr - 0.2
