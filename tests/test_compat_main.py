"""Folders written by the code before the layout refactor keep working with the new code.

The fixture ``tests/fixtures/main_2026_12_05`` (see its README.md: commands and commit)
holds a tiny synthetic corpus, an index built from it with the ``mel`` encoder and a
background set (``index/fix``: flat FAISS index, items, shards, reference, duplicates,
background/, calibration.json) and an audit run (``run/``) of four generated-like clips:
two held-out clips and two training clips with a gain change.

The old files record absolute paths under :data:`OLD_ROOT`, where the fixture was built.
Each test copies the fixture into ``tmp_path`` (the fixture itself is never written) and
points those paths at the copy where a step needs the audio. What needs the corpus files:

* ``open_index``, ``audit`` (``run_audit``) and ``index info``: no — the vectors, items
  and the background set live in the index folder (tested with ``corpus_root`` naming a
  folder that does not exist);
* ``report`` of a run: only to *play* the clips — it reads the run's ``corpus_root`` and
  ``generated_root`` from summary.json; without them the page is written and every clip
  says "audio file not found";
* ``index background`` (re-calibration): yes — it reads training clips back from the
  manifest's ``corpus_root`` to measure recall on augmented copies.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from audioaudit.audit.options import AuditOptions
from audioaudit.audit.run import run_audit
from audioaudit.cli import app
from audioaudit.index.store import open_index

FIXTURE = Path(__file__).parent / "fixtures" / "main_2026_12_05"
OLD_ROOT = "/tmp/audioaudit_fixture_main_2026_12_05"  # where the fixture was built (recorded in its files)
TOL = 1e-5


def copy_fixture(dst: Path, *, corpus_root: Path | None = None) -> Path:
    """The fixture under ``dst`` with its recorded paths rewritten to the copy.

    ``corpus_root``: what the index manifest (and the run's summary.json) should name as the
    corpus instead of the copied ``corpus/train`` — e.g. a folder that does not exist."""
    shutil.copytree(FIXTURE, dst, ignore=shutil.ignore_patterns("README.md", "*.sh"))

    def relocate(path: Path, keys: tuple[str, ...]) -> None:
        rec = json.loads(path.read_text())
        for k in keys:
            assert str(rec[k]).startswith(OLD_ROOT), (path, k, rec[k])  # the fixture is what we think it is
            rec[k] = str(rec[k]).replace(OLD_ROOT, str(dst), 1)
        if corpus_root is not None and "corpus_root" in keys:
            rec["corpus_root"] = str(corpus_root)
        path.write_text(json.dumps(rec, indent=2))

    relocate(dst / "index" / "fix" / "manifest.json", ("corpus_root",))
    relocate(dst / "index" / "fix" / "background" / "background.json", ("folder",))
    relocate(dst / "run" / "summary.json", ("index", "corpus_root", "generated_root"))
    return dst


@pytest.fixture(scope="module")
def rerun(tmp_path_factory):
    """The old index, audited again with the new code; the corpus is NOT there."""
    base = tmp_path_factory.mktemp("compat")
    fx = copy_fixture(base / "fx", corpus_root=base / "no-corpus-here")
    shutil.rmtree(fx / "corpus")
    res = run_audit(fx / "generated", fx / "index" / "fix", base / "new-run", opts=AuditOptions(progress=False, workers=0))
    return fx, res


def test_old_index_opens(tmp_path):
    fx = copy_fixture(tmp_path / "fx", corpus_root=tmp_path / "no-corpus-here")
    ix = open_index(fx / "index" / "fix")
    assert ix.params.type == "flat" and ix.params.dim == 128
    assert ix.index.ntotal == len(ix.items) == 12
    assert ix.encoder["spec"] == "mel" and ix.encoder["identity"]["backend"] == "mel"
    assert ix.duplicates is not None and len(ix.duplicates) == 0
    assert sorted(set(ix.items["label"])) == ["bell", "chirps", "impact", "siren"]


def test_audit_of_the_old_index_reproduces_the_old_run(rerun):
    fx, res = rerun
    old_q = pd.read_parquet(fx / "run" / "queries.parquet").set_index("query_id").sort_index()
    new_q = res.queries.set_index("query_id").sort_index()
    assert list(new_q.index) == list(old_q.index) == ["gen_000.wav", "gen_001.wav", "gen_002.wav", "gen_003.wav"]
    assert set(old_q.columns) <= set(new_q.columns)
    assert list(new_q["top1_item_id"]) == list(old_q["top1_item_id"])
    assert list(new_q["flag"]) == list(old_q["flag"]) == [False, False, True, True]  # the two gain-changed copies
    assert np.allclose(new_q["top1_similarity"], old_q["top1_similarity"], atol=TOL, rtol=0)
    assert np.allclose(new_q["top1_score"], old_q["top1_score"], atol=TOL, rtol=0)
    assert np.allclose(new_q["background"], old_q["background"], atol=TOL, rtol=0)

    old_m = pd.read_parquet(fx / "run" / "matches.parquet").sort_values(["query_id", "rank"]).reset_index(drop=True)
    new_m = res.matches.sort_values(["query_id", "rank"]).reset_index(drop=True)
    assert set(old_m.columns) <= set(new_m.columns)
    assert len(new_m) == len(old_m) == 4 * 10
    assert list(new_m["item_id"]) == list(old_m["item_id"])
    assert list(new_m["flag"]) == list(old_m["flag"])
    for col in ("similarity", "score", "query_start", "query_end", "train_start", "train_end"):
        assert np.allclose(new_m[col].astype(float), old_m[col].astype(float), atol=TOL, rtol=0), col
    # and what was written to the new run folder is the same table
    written = pd.read_parquet(res.out / "matches.parquet").sort_values(["query_id", "rank"]).reset_index(drop=True)
    assert list(written["item_id"]) == list(old_m["item_id"])


def _missing_keys(old, new, where: str = "summary") -> list[str]:
    """Keys of ``old`` (recursively, through dicts) that ``new`` lacks."""
    if not isinstance(old, dict):
        return []
    if not isinstance(new, dict):
        return [f"{where} (no longer a dict)"]
    out = [f"{where}.{k}" for k in old if k not in new]
    for k in old:
        if k in new:
            out += _missing_keys(old[k], new[k], f"{where}.{k}")
    return out


def test_a_new_run_writes_every_old_summary_key(rerun):
    fx, res = rerun
    old = json.loads((fx / "run" / "summary.json").read_text())
    new = json.loads((res.out / "summary.json").read_text())
    assert _missing_keys(old, new) == []
    assert new["flagged"]["count"] == old["flagged"]["count"] == 2
    assert abs(new["threshold"]["value"] - old["threshold"]["value"]) < TOL
    assert new["threshold"]["source"] == old["threshold"]["source"] == "index calibration"
    assert new["encoder"]["identity"] == old["encoder"]["identity"]
    for name in ("matches.parquet", "matches.csv", "queries.parquet", "reference.parquet", "skipped.csv", "summary.json"):
        assert (res.out / name).is_file(), name


def test_index_info_on_the_old_index(tmp_path):
    fx = copy_fixture(tmp_path / "fx", corpus_root=tmp_path / "no-corpus-here")
    r = CliRunner().invoke(app, ["index", "info", "fix", "--root", str(fx / "index")])
    assert r.exit_code == 0, r.output
    assert "ntotal 12" in r.output and "Flat" in r.output
    assert "background  8 clips, k=3" in r.output
    assert "threshold   0.1984 on the score" in r.output


def test_report_on_the_old_run(tmp_path):
    """With the corpus and the generated clips where summary.json says: every clip plays."""
    fx = copy_fixture(tmp_path / "fx")
    r = CliRunner().invoke(app, ["report", str(fx / "run"), "--out", str(tmp_path / "rep"),
                                 "--audio-format", "wav", "--workers", "0"])
    assert r.exit_code == 0, r.output
    html = (tmp_path / "rep" / "index.html").read_text(encoding="utf-8")
    assert all(f"gen_00{i}.wav" in html for i in range(4))
    assert "audio file not found" not in html
    assert len(list((tmp_path / "rep" / "media").glob("*.wav"))) >= 4


def test_report_on_the_old_run_without_the_audio(tmp_path):
    """The corpus is needed only to play the clips: without it the page is still written."""
    fx = copy_fixture(tmp_path / "fx", corpus_root=tmp_path / "no-corpus-here")
    shutil.rmtree(fx / "corpus")
    shutil.rmtree(fx / "generated")
    r = CliRunner().invoke(app, ["report", str(fx / "run"), "--out", str(tmp_path / "rep"),
                                 "--audio-format", "wav", "--workers", "0"])
    assert r.exit_code == 0, r.output
    html = (tmp_path / "rep" / "index.html").read_text(encoding="utf-8")
    assert "audio file not found" in html and "chirps/chirps_0002.wav" in html


def test_duplicates_report_on_the_old_index(tmp_path):
    fx = copy_fixture(tmp_path / "fx")
    r = CliRunner().invoke(app, ["report", "--duplicates", str(fx / "index" / "fix"), "--out", str(tmp_path / "dup"),
                                 "--workers", "0"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "dup" / "index.html").is_file()


def test_recalibrating_the_old_index_needs_the_corpus(tmp_path):
    """``index background`` reads training clips back from the manifest's corpus_root: with
    the corpus copied there it rebuilds the old background set and calibration."""
    fx = copy_fixture(tmp_path / "fx")
    old_cal = json.loads((fx / "index" / "fix" / "calibration.json").read_text())
    args = ["index", "background", "fix", str(fx / "corpus" / "background"), "--root", str(fx / "index"),
            "--no-progress"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    new_cal = json.loads((fx / "index" / "fix" / "calibration.json").read_text())
    assert set(old_cal) <= set(new_cal)
    assert abs(new_cal["threshold"] - old_cal["threshold"]) < TOL
    assert abs(new_cal["similarity_floor"] - old_cal["similarity_floor"]) < TOL

    gone = copy_fixture(tmp_path / "gone", corpus_root=tmp_path / "no-corpus-here")
    r = CliRunner().invoke(app, args[:3] + [str(gone / "corpus" / "background"), "--root", str(gone / "index"),
                                            "--no-progress"])
    assert r.exit_code != 0  # the UserError names the folder it could not read
    assert "no-corpus-here: no training clip could be read back" in str(r.exception) + r.output
