"""render_report / render_duplicates / `audioaudit report`: the static folder they write."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
from helpers_report import HOSTILE_CLASS, HOSTILE_FILE, HOSTILE_PROMPT, HOSTILE_TRAIN, make_duplicates_index, make_run

from audioaudit.errors import UserError
from audioaudit.report import PageOptions, ReportOptions, render_duplicates, render_report


def page_data(index: Path) -> dict:
    html = index.read_text(encoding="utf-8")
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


def text_files(folder: Path):
    for p in folder.rglob("*"):
        if p.is_file() and p.suffix in (".html", ".json", ".csv", ".txt", ".js", ".css", ""):
            yield p


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("render")
    a = make_run(base, "run-a", n_queries=8)
    b = make_run(base, "run-b", n_queries=6, seed=1, hostile=False,
                 corpus=(a.corpus_root, None), missing_train=False)
    out = base / "reports" / "ab"
    index = render_report([a.run_dir, b.run_dir], out, ReportOptions(workers=0), progress=False)
    return base, a, b, out, index


def test_folder_is_self_contained(two_runs):
    base, a, b, out, index = two_runs
    assert index == out / "index.html"
    html = index.read_text(encoding="utf-8")
    data = page_data(index)
    assert len(data["cards"]) == 14 and data["runs"] == ["run-a", "run-b"]
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    refs += [c[k] for card in data["cards"] for c in card["clips"] for k in ("audio", "img") if c.get(k)]
    assert refs
    for r in refs:
        assert "://" not in r and not r.startswith("/"), r  # no CDN, no absolute link
        assert (out / r).is_file(), r
    import html as htmllib

    assert "Content-Security-Policy" in html and "default-src 'none'" in htmllib.unescape(html)
    assert not list(out.rglob(".*.tmp*"))


def test_no_absolute_machine_paths(two_runs):
    base, a, b, out, index = two_runs
    machine = [str(base.resolve()), str(base), os.path.expanduser("~")]
    for p in text_files(out):
        text = p.read_text(encoding="utf-8", errors="replace")
        for m in machine:
            assert m not in text, f"{m} leaked into {p.name}"
    # but the paths relative to their roots are there
    data = page_data(index)
    titles = {c["title"] for c in data["cards"]}
    assert set(a.durations) <= titles
    names = {clip["name"] for c in data["cards"] for clip in c["clips"][1:]}
    assert f"rain/{HOSTILE_TRAIN}" in names or f"dog/{HOSTILE_TRAIN}" in names or any(HOSTILE_TRAIN in n for n in names)


def test_user_strings_are_escaped(two_runs):
    *_, index = two_runs
    html = index.read_text(encoding="utf-8")
    for raw in ("<img src=x", "<svg onload", "<script>alert", "</script><script>"):
        assert raw not in html, raw
    assert "&lt;script&gt;alert(2)&lt;/script&gt;$x$" in html  # class table / filter, as text
    data = page_data(index)  # the JSON island round-trips the exact strings
    assert any(c["title"].endswith(HOSTILE_FILE) for c in data["cards"])
    assert any(v == HOSTILE_PROMPT for c in data["cards"] for k, v in c["meta"] if k == "prompt")
    assert HOSTILE_CLASS in {c["cls"] for c in data["cards"]}


def test_summary_comparison_and_cards(two_runs):
    base, a, b, out, index = two_runs
    html = index.read_text(encoding="utf-8")
    assert "Comparison of 2 runs" in html and (out / "fig" / "comparison.png").is_file()
    assert (out / "fig" / "similarity-0.png").is_file() and (out / "fig" / "similarity-1.png").is_file()
    assert "Precision it stands for" in html and "99.0 %" in html
    k = a.summary["flagged"]["count"]
    assert f"{k} of 8" in html
    data = page_data(index)
    assert sum(c["flag"] for c in data["cards"]) == int(a.queries["flag"].sum() + b.queries["flag"].sum())
    by_title = {(c["run"], c["title"]): c for c in data["cards"]}
    for rel, dur in a.durations.items():
        clip = by_title[(0, rel)]["clips"][0]
        win = clip["win"][1] - clip["win"][0]
        if dur <= 20:
            assert win == pytest.approx(dur, abs=1e-3)
        else:  # the 40 s clip is trimmed to its matched span + context
            assert win < 20 and clip["total"] == pytest.approx(dur, abs=1e-3)
        info = sf.info(str(out / clip["audio"]))
        assert info.frames / info.samplerate == pytest.approx(win, abs=0.05)
        span = clip["span"]
        hl = clip["hl"]  # where the page shades the matched span, as fractions of the excerpt
        assert hl[0] == pytest.approx((max(span[0], clip["win"][0]) - clip["win"][0]) / win, abs=1e-3)
        assert hl[1] == pytest.approx((min(span[1], clip["win"][1]) - clip["win"][0]) / win, abs=1e-3)
    missing = [clip for c in data["cards"] for clip in c["clips"] if clip.get("err")]
    assert len(missing) == 1 and "not found" in missing[0]["err"] and missing[0]["name"].endswith("moved_away.wav")
    dup = [v for c in data["cards"] for clip in c["clips"] for k, v in clip["info"] if k.startswith("duplicate group")]
    assert dup and all("dog/twin.wav" in v for v in dup)
    assert "1 generated file(s) not audited" in html and "broken.wav" in html
    assert "copied 10.00× as often per source as singletons" in html  # memorisation vs duplication
    first = by_title[(0, "dog/gen_00000.wav")]
    assert first["badges"] == ["EXACT COPY"] and ["exact copy of", "dog/train_0000.wav"] in first["meta"]
    keys = {k for c in data["cards"] for k, _ in c["meta"]}
    assert not keys & {"pcm_hash", "background", "n_segments", "top1_dup_group"}  # bookkeeping hidden
    assert "SSCD" in html  # a summary key the page does not know is still shown


def test_absolute_paths_on_request(two_runs, tmp_path):
    base, a, *_ = two_runs
    opts = ReportOptions(absolute_paths=True, max_cards=2, workers=0)
    index = render_report([a.run_dir], tmp_path / "abs", opts, progress=False)
    data = page_data(index)
    assert len(data["cards"]) == 2 and all(c["flag"] for c in data["cards"])  # flagged first
    assert all(c["title"].startswith(str(a.generated_root.resolve())) for c in data["cards"])
    assert str(a.corpus_root.resolve()) in index.read_text(encoding="utf-8")


def test_rerender_reuses_and_prunes_media(two_runs, tmp_path):
    base, a, *_ = two_runs
    out = tmp_path / "again"
    render_report([a.run_dir], out, ReportOptions(workers=0), progress=False)
    media = {p: p.stat().st_mtime_ns for p in (out / "media").iterdir()}
    render_report([a.run_dir], out, ReportOptions(workers=0), progress=False)
    assert {p: p.stat().st_mtime_ns for p in (out / "media").iterdir()} == media  # nothing re-encoded
    render_report([a.run_dir], out, ReportOptions(max_cards=1, top_k=1, workers=0), progress=False)
    assert len(list((out / "media").iterdir())) == 2  # stale media removed: 1 clip + 1 match


def test_parallel_workers_give_the_same_page(two_runs, tmp_path):
    base, a, *_ = two_runs
    serial = page_data(render_report([a.run_dir], tmp_path / "s", ReportOptions(max_cards=3, workers=0),
                                     progress=False))
    parallel = page_data(render_report([a.run_dir], tmp_path / "p", ReportOptions(max_cards=3, workers=2),
                                       progress=False))
    assert serial["cards"] == parallel["cards"]


def test_refuses_foreign_output_folder(two_runs, tmp_path):
    base, a, *_ = two_runs
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(UserError, match="not written by"):
        render_report([a.run_dir], tmp_path / "mine", ReportOptions(workers=0), progress=False)
    with pytest.raises(UserError, match="at least one"):
        render_report([], tmp_path / "x")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_duplicates_page(tmp_path):
    index_dir, corpus = make_duplicates_index(tmp_path)
    index = render_duplicates(index_dir, tmp_path / "dups", PageOptions(workers=0), progress=False)
    html = index.read_text(encoding="utf-8")
    data = page_data(index)
    assert [c["cls"] for c in data["cards"]] == ["exact", "near"]
    exact, near = data["cards"]
    assert len(exact["clips"]) == 1 and exact["size"] == 3  # identical audio: one player
    assert any(HOSTILE_FILE in v for k, v in exact["meta"])
    assert len(near["clips"]) == 4 and all(c.get("audio") for c in near["clips"])
    assert [c["role"] for c in near["clips"]] == ["member 1 (exact)", "member 2 (near)", "member 3 (near)",
                                                  "member 4 (near)"]
    assert "<img src=x" not in html and str(tmp_path) not in html
    assert "redundant copies" in html


def test_cli_report(two_runs, tmp_path):
    from typer.testing import CliRunner

    from audioaudit.cli import app

    base, a, *_ = two_runs
    res = CliRunner().invoke(app, ["report", str(a.run_dir), "--out", str(tmp_path / "cli"), "--max-cards", "3",
                                   "--workers", "0", "--audio-format", "ogg"])
    assert res.exit_code == 0, res.output
    data = page_data(tmp_path / "cli" / "index.html")
    assert len(data["cards"]) == 3 and data["cards"][0]["clips"][0]["audio"].endswith(".ogg")
    bad = subprocess.run([sys.executable, "-m", "audioaudit.cli", "report", str(tmp_path / "nope"), "--out",
                          str(tmp_path / "o")], capture_output=True, text=True)
    assert bad.returncode == 2 and "audit run directory not found" in bad.stderr
