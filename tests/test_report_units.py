"""Report building blocks: paths, excerpts, spectrogram scale, transcoding, loading, plots."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from helpers_report import HOSTILE_FILE, make_run

from audioaudit import schema
from audioaudit.errors import UserError
from audioaudit.report import fmt
from audioaudit.report.load import load_run
from audioaudit.report.media import (
    MediaJob,
    MediaSettings,
    excerpt_window,
    highlight_fractions,
    make_media,
    spectrogram_db,
    spectrogram_indices,
    write_audio,
)
from audioaudit.report.model import Span
from audioaudit.report.paths import PathPolicy, inside, resolve_root
from audioaudit.report.plots import comparison_plot, similarity_histogram
from audioaudit.report.summary_view import summary_view

S = MediaSettings()


# ------------------------------------------------------------------ paths
def test_path_policy_hides_machine_paths(tmp_path):
    root = (tmp_path / "corpus").resolve()
    pol = PathPolicy(roots=[root])
    assert pol.show("dog/a.wav") == "dog/a.wav"
    assert pol.show(str(root / "dog" / "a.wav")) == "dog/a.wav"
    assert pol.show(str(root)) == "…/corpus"
    assert pol.show("/elsewhere/secret/b.wav") == "b.wav"
    assert pol.show_root(str(root)) == "…/corpus"
    assert pol.scrub(f"laion:{tmp_path}/ckpt/clap.pt#HTSAT-tiny") == "laion:clap.pt#HTSAT-tiny"
    assert pol.scrub(r"C:\Users\me\model.pt") == "model.pt"
    # markup and prose with slashes are not paths
    assert pol.scrub("bark </script> and/or rock/pop") == "bark </script> and/or rock/pop"
    assert pol.scrub_tree({"a": [f"{tmp_path}/x/y.pt", 3]}) == {"a": ["y.pt", 3]}
    full = PathPolicy(absolute=True, roots=[root])
    assert full.show(str(root / "a.wav")) == str(root / "a.wav")
    assert full.scrub(f"{tmp_path}/x/y.pt") == f"{tmp_path}/x/y.pt"


def test_resolve_root_and_inside(tmp_path, monkeypatch):
    (tmp_path / "gen" / "dog").mkdir(parents=True)
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "runs")  # relative root written from another directory
    assert resolve_root("gen", run) == (tmp_path / "gen").resolve()
    assert resolve_root(str(tmp_path / "gen"), run) == tmp_path / "gen"
    assert resolve_root(None, run) is None
    root = (tmp_path / "gen").resolve()
    assert inside(root, "dog/a.wav") == root / "dog" / "a.wav"
    assert inside(root, "../../etc/passwd") is None


# ------------------------------------------------------------------ media
def test_excerpt_window():
    assert excerpt_window(8.0, Span(1, 2), S) == Span(0.0, 8.0)  # short: whole clip
    assert excerpt_window(100.0, Span(50, 54), S) == Span(48.0, 56.0)  # span ± context
    assert excerpt_window(100.0, Span(99, 100), S) == Span(97.0, 100.0)  # clamped at the end
    w = excerpt_window(100.0, Span(10, 60), S)  # long match: its beginning, capped
    assert w.start == 8.0 and w.end - w.start == pytest.approx(S.max_seconds)
    assert excerpt_window(100.0, None, S) == Span(0.0, S.max_seconds)


def _sine(freq, amp, seconds=2.0, sr=22050):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_spectrograms_share_one_db_scale():
    """A −12 dBFS tone has the same colour whether or not a louder tone shares the clip."""
    quiet = _sine(1000, 0.25)
    mixed = quiet + _sine(5000, 0.9)
    a, b = spectrogram_db(quiet, 22050, S), spectrogram_db(mixed, 22050, S)
    assert a.shape == b.shape == (S.spec_height, S.spec_width)
    band = int(np.argmax(a[:, 200]))
    assert a[band, 200] == pytest.approx(b[band, 200], abs=1.0)
    assert -16 < a[band, 200] < -8  # ≈ −12 dBFS (absolute scale, not per-image max)
    ia, ib = spectrogram_indices(a, S), spectrogram_indices(b, S)
    row = S.spec_height - 1 - band
    assert abs(int(ia[row, 200]) - int(ib[row, 200])) <= 2
    assert ib.max() > ia.max()  # the louder tone is brighter


def test_highlight_fractions():
    assert highlight_fractions(Span(30, 33), Span(28, 35)) == (round(2 / 7, 4), round(5 / 7, 4))
    assert highlight_fractions(Span(0, 50), Span(10, 30)) == (0.0, 1.0)  # clipped to the excerpt
    assert highlight_fractions(Span(40, 50), Span(10, 30)) is None  # outside it
    assert highlight_fractions(None, Span(0, 3)) is None


@pytest.mark.parametrize("fmt_name,sr", [("mp3", 22050), ("mp3", 20000), ("ogg", 20000), ("opus", 44100), ("wav", 16000)])
def test_transcoded_audio_keeps_duration(tmp_path, fmt_name, sr):
    wave = _sine(440, 0.3, 2.5, sr)
    p = tmp_path / f"x.{fmt_name}"
    write_audio(p, wave, sr, MediaSettings(audio_format=fmt_name))
    info = sf.info(str(p))
    assert info.frames / info.samplerate == pytest.approx(2.5, abs=0.03)
    if fmt_name == "mp3":
        assert info.samplerate in (22050, 24000)  # 20 kHz is not an MP3 rate: resampled up
    assert not list(tmp_path.glob(".*tmp*"))  # atomic: no temp file left


def test_make_media_trims_reuses_and_reports_missing(tmp_path):
    sr = 16000
    src = tmp_path / "long.wav"
    sf.write(str(src), np.tile(_sine(300, 0.3, 1.0, sr), 45), sr)  # 45 s
    out = tmp_path / "out"
    (out / "media").mkdir(parents=True)
    (out / "img").mkdir()
    r = make_media(MediaJob(str(src), Span(30.0, 33.0)), str(out), S)
    assert r.error is None and r.total == pytest.approx(45.0)
    assert r.window == Span(28.0, 35.0)
    info = sf.info(str(out / r.audio))
    assert info.frames / info.samplerate == pytest.approx(7.0, abs=0.03)
    mtime = os.stat(out / r.audio).st_mtime_ns
    assert r.highlight == highlight_fractions(Span(30.0, 33.0), r.window)
    r2 = make_media(MediaJob(str(src), Span(30.0, 33.0)), str(out), S)
    assert r2.audio == r.audio and os.stat(out / r.audio).st_mtime_ns == mtime  # reused
    short = tmp_path / "short.wav"
    sf.write(str(short), _sine(300, 0.3, 5.0, sr), sr)
    s1, s2 = (make_media(MediaJob(str(short), Span(a, a + 1)), str(out), S) for a in (1.0, 3.0))
    assert (s1.audio, s1.image) == (s2.audio, s2.image)  # one excerpt: media shared across spans
    assert s1.highlight == (0.2, 0.4) and s2.highlight == (0.6, 0.8)
    gone = make_media(MediaJob(str(tmp_path / "nope.wav"), None), str(out), S)
    assert gone.audio is None and "not found" in gone.error
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    broken = make_media(MediaJob(str(bad), None), str(out), S)
    assert broken.audio is None and broken.error


# ------------------------------------------------------------------ loading
@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("units"), "unit-run", n_queries=5)


def test_load_run_reads_the_documented_tables(fake):
    run = load_run(fake.run_dir)
    assert run.name == "unit-run" and len(run.queries) == 5
    assert run.generated_root == fake.generated_root.resolve()
    assert run.corpus_root == fake.corpus_root.resolve()
    q = next(q for q in run.queries if HOSTILE_FILE in q.path)
    assert q.meta["seed"] == 1001 and "sampler" in q.meta and len(q.matches) == 3
    assert [m.rank for m in q.matches] == [1, 2, 3]
    assert run.reference.size == 6 and len(run.skipped) == 1
    assert run.duplicate_members[0] == ["dog/train_0000.wav", "dog/twin.wav"]
    none_meta = next(x for x in run.queries if x.query_id.endswith("gen_00000.wav"))
    assert "sampler" not in none_meta.meta  # null metadata is dropped, not shown as "None"


def test_load_run_tolerates_missing_parts(fake, tmp_path):
    import shutil

    d = tmp_path / "partial"
    shutil.copytree(fake.run_dir, d)
    for f in (schema.MATCHES_FILE, schema.REFERENCE_FILE, schema.SKIPPED_FILE):
        (d / f).unlink()
    (d / schema.SUMMARY_FILE).write_text(json.dumps({"n_queries": 5, "flagged": {"count": 1}}))
    q = pd.read_parquet(d / schema.QUERIES_FILE).drop(columns=["nn_ratio", "top1_score"])
    q.loc[0, "top1_similarity"] = np.nan
    q.to_parquet(d / schema.QUERIES_FILE)
    run = load_run(d)
    assert run.queries[0].top1_similarity is None and run.queries[1].nn_ratio is None
    assert all(not q.matches for q in run.queries)
    assert len(run.notes) == 2 and run.reference.size == 0 and run.generated_root is None
    view = summary_view(run, PathPolicy())
    rows = dict(view.rows)
    assert rows["Generator"] == fmt.DASH and rows["Threshold"] == fmt.DASH
    assert rows["Flagged as copies"].startswith("1 of 5") and fmt.DASH in rows["Flagged as copies"]


def test_load_run_rejects_what_is_not_a_run(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_run(tmp_path / "nope")
    with pytest.raises(UserError, match="queries.parquet"):
        load_run(tmp_path)
    (tmp_path / schema.QUERIES_FILE).write_text("garbage")
    with pytest.raises(UserError, match="cannot read parquet"):
        load_run(tmp_path)


def test_summary_view_shows_threshold_precision_and_classes(fake):
    run = load_run(fake.run_dir)
    view = summary_view(run, PathPolicy(roots=[run.generated_root, run.corpus_root]))
    rows = dict(view.rows)
    assert rows["Threshold"].startswith("0.2000") and rows["Precision it stands for"] == "99.0 %"
    assert "95 % CI" in rows["Flagged as copies"]
    assert rows["Encoder"] == "laion:clap.pt#HTSAT-tiny" and "/" not in rows["Training corpus"].replace("…/", "")
    assert {r[0] for r in view.per_class} == set(fake.summary["per_class"])
    assert view.percentiles[0][1][0] == f"{fake.summary['percentiles']['gen_vs_train']['50']:.4f}"


# ------------------------------------------------------------------ plots
def test_plots_write_pngs(tmp_path):
    rng = np.random.default_rng(0)
    p = similarity_histogram(tmp_path / "h.png", rng.normal(0.6, 0.1, 50), rng.normal(0.7, 0.05, 80),
                             rng.normal(0.1, 0.05, 50), 0.3, "score", title="$weird$ <run>")
    p2 = similarity_histogram(tmp_path / "h2.png", np.zeros(0), np.zeros(0), np.zeros(0), None, "similarity")
    rows = [{"name": "a$b", "rate": 0.1, "ci": (0.05, 0.2), "gen": {"50": 0.5, "99": 0.9}, "ref": {"50": 0.6}},
            {"name": "b", "rate": None, "ci": None, "gen": {}, "ref": {}}]
    p3 = comparison_plot(tmp_path / "c.png", rows)
    for f in (p, p2, p3):
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 5000


def test_json_island_cannot_be_closed_by_user_strings():
    from audioaudit.report.render import json_island

    value = {"title": f"</script><script>alert(1)</script>{HOSTILE_FILE} & 'quoted'", "n": [1, None, 2.5]}
    text = str(json_island(value))
    assert not set("<>&'") & set(text)
    assert json.loads(text) == value
