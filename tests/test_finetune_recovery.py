"""A failure after training never costs the training.

The reported crash: a 150-epoch ``finetune`` on 387 short game sounds (0.6 s and up,
22.05 kHz) wrote its weights, then died in the encoder calibration (augment's shift of a
short view, inside audiomentations). Reproduced here on 0.6 s clips at 22.05 kHz; and the
recovery path: a calibration that fails is one line naming the step and the reason, the
detector stays loadable, run.json records it, the exit code is 1, and
``audioaudit calibrate --encoder finetuned:DIR --out DIR`` redoes it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_finetune import make_clip, write_corpus
from typer.testing import CliRunner

from audioaudit.audio.fingerprint import file_sha256
from audioaudit.cli import app
from audioaudit.encoders import load_encoder

SHORT_SR = 22050
CRASH = "operands could not be broadcast together with shapes (5751,) (0,) (5751,)"


@pytest.fixture(scope="module")
def short_corpus(tmp_path_factory) -> Path:
    """15 clips of 0.6 s at 22.05 kHz in 5 kinds (the length of the shortest real clips)."""
    root = tmp_path_factory.mktemp("short_corpus")
    write_corpus(root, per_kind=3, seconds=0.6, sr=SHORT_SR)
    return root


TINY_CONV = {"arch": "conv", "channels": [4, 8], "dim": 16, "window_seconds": 1.0, "hop_seconds": 0.5}


def _finetune_args(corpus: Path, out: Path, *extra: str, source=("--base", "mel"), views: int = 2) -> list[str]:
    return ["finetune", str(corpus), *source, "--out", str(out), "--views", str(views), "--batch-size", "4",
            "--epochs", "1", "--quiet", *extra]


def _status(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())["status"]


def test_calibration_on_short_clips_regression(short_corpus, tmp_path):
    """The reported traceback (augment._shift -> audiomentations Shift -> "operands could
    not be broadcast") came from exactly this call; it now calibrates."""
    from audioaudit.detector.calibrate import CALIBRATION_FILE, calibrate_encoder

    cal = calibrate_encoder(load_encoder("mel"), short_corpus, tmp_path)
    assert cal.n_positive == cal.n_negative == 2 * 15
    assert np.isfinite(cal.threshold) and 0 <= cal.recall <= 1
    assert json.loads((tmp_path / CALIBRATION_FILE).read_text())["threshold"] == cal.threshold
    assert not (tmp_path / "run.json").exists()  # not a fine-tuning folder: nothing else written


@pytest.mark.parametrize("mode", ["head", "scratch"])
def test_finetune_on_short_clips_trains_and_calibrates(short_corpus, tmp_path, mode):
    """The reported run, in small: short clips at 22.05 kHz, training views and calibration
    views both made by augment (the from-scratch views are cut from clips shorter than the
    1 s window)."""
    out = tmp_path / "det"
    args = _finetune_args(short_corpus, out)
    if mode == "scratch":
        (tmp_path / "arch.json").write_text(json.dumps(TINY_CONV))
        args = _finetune_args(short_corpus, out, source=("--from-scratch", str(tmp_path / "arch.json")), views=4)
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "calibration: threshold" in r.output and "failed after training" not in r.output
    assert (out / "calibration.json").exists()
    status = _status(out)
    assert status["training"]["state"] == "done" and status["training"]["epochs"] == 1
    assert status["calibration"]["state"] == "done"
    assert status["calibration"]["threshold"] == json.loads((out / "calibration.json").read_text())["threshold"]


def test_failed_calibration_keeps_the_detector_and_can_be_redone(short_corpus, tmp_path, monkeypatch):
    from audioaudit.detector import calibrate as C
    from audioaudit.encoders.checkpoint import load_tensors

    def boom(*args, **kwargs):
        raise ValueError(CRASH)

    monkeypatch.setattr(C, "calibrate_encoder", boom)
    out = tmp_path / "det"
    r = CliRunner().invoke(app, _finetune_args(short_corpus, out))
    # exit 1, and one line says which step failed, why, that the detector is there, how to redo it
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.output.splitlines() if "failed after training" in ln]
    assert len(lines) == 1, r.output
    line = lines[0]
    assert line.startswith("error: calibration failed after training (ValueError: " + CRASH)
    assert f"usable as finetuned:{out}" in line
    assert f"audioaudit calibrate {short_corpus} --encoder finetuned:{out} --out {out}" in line
    assert f"encoder spec: finetuned:{out}" in r.output
    # the failure is on disk, with its traceback; the training before it too
    status = _status(out)
    assert status["training"]["state"] == "done"
    cal = status["calibration"]
    assert cal["state"] == "failed" and cal["error"] == f"ValueError: {CRASH}"
    assert "Traceback" in cal["traceback"] and "boom" in cal["traceback"]
    assert cal["redo"].startswith("audioaudit calibrate ")
    assert not (out / "calibration.json").exists()
    # the weights were written before the calibration ran: the last checkpoint's, loadable
    last = json.loads((out / "checkpoints" / "last.json").read_text())["stem"]
    saved = load_tensors(out / "head.safetensors")
    ckpt = load_tensors(out / "checkpoints" / f"{last}.model.safetensors")
    assert saved.keys() == ckpt.keys() and all(torch.equal(saved[k], ckpt[k]) for k in saved)
    weights = file_sha256(out / "head.safetensors")
    enc = load_encoder(f"finetuned:{out}")
    probe = [make_clip("chirp", 99, 0.6, 16000), make_clip("clicks", 98, 0.3, 16000)]
    emb = enc.embed(probe)
    assert emb.shape == (2, enc.dim) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)

    # later, the calibration alone, from the command line
    monkeypatch.undo()
    r = CliRunner().invoke(app, ["calibrate", str(short_corpus), "--encoder", f"finetuned:{out}", "--out", str(out)])
    assert r.exit_code == 0, r.output
    cal_json = json.loads((out / "calibration.json").read_text())
    assert cal_json["encoder"] == enc.identity()  # calibrated for exactly this detector
    status = _status(out)
    assert status["calibration"]["state"] == "done" and status["calibration"]["threshold"] == cal_json["threshold"]
    assert status["training"]["state"] == "done"
    assert file_sha256(out / "head.safetensors") == weights
    np.testing.assert_allclose(load_encoder(f"finetuned:{out}").embed(probe), emb, atol=1e-6)


def test_status_is_not_a_setting_and_a_rerun_resumes(short_corpus, tmp_path, monkeypatch):
    """A run whose calibration failed is rerun with the same settings: nothing retrained,
    the calibration done this time; no-calibrate is recorded as skipped."""
    from audioaudit.detector import calibrate as C

    out = tmp_path / "det"
    monkeypatch.setattr(C, "calibrate_encoder", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk full")))
    r = CliRunner().invoke(app, _finetune_args(short_corpus, out))
    assert r.exit_code == 1 and "calibration failed after training (RuntimeError: disk full)" in r.output
    weights = file_sha256(out / "head.safetensors")
    monkeypatch.undo()
    r = CliRunner().invoke(app, _finetune_args(short_corpus, out))
    assert r.exit_code == 0, r.output
    assert "resumed after epoch 1" in r.output and file_sha256(out / "head.safetensors") == weights
    assert _status(out)["calibration"]["state"] == "done"
    r = CliRunner().invoke(app, _finetune_args(short_corpus, out, "--no-calibrate"))
    assert r.exit_code == 0, r.output
    assert _status(out)["calibration"] == {**_status(out)["calibration"], "state": "skipped"}


def test_calibration_never_touches_a_generation_runs_record(tmp_path):
    from audioaudit.detector.finetune.status import record_step

    (tmp_path / "run.json").write_text(json.dumps({"generator": "memorizer", "n": 4}))
    assert record_step(tmp_path, "calibration") is False
    assert json.loads((tmp_path / "run.json").read_text()) == {"generator": "memorizer", "n": 4}
    assert record_step(tmp_path / "nowhere", "calibration") is False
