"""`audioaudit finetune` end to end on a tiny procedural corpus: head on a frozen encoder,
from-scratch encoders, unfrozen top blocks, resume after SIGKILL, and `finetuned:DIR`."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_finetune import SR, make_clip, write_corpus
from typer.testing import CliRunner

from audioaudit.audio.fingerprint import file_sha256
from audioaudit.cli import app
from audioaudit.detector.finetune.pipeline import Job, run_finetune
from audioaudit.detector.finetune.recipes import get_recipe
from audioaudit.encoders import load_encoder

TINY_CONV = {"arch": "conv", "channels": [4, 8], "dim": 16, "window_seconds": 1.0, "hop_seconds": 0.5}
TINY_HTSAT = {"arch": "htsat", "n_mels": 32, "spec_size": 64, "embed_dim": 8, "depths": [1, 1], "num_heads": [1, 2],
              "swin_window": 4, "joint_dim": 16, "dim": 16, "window_seconds": 1.0, "hop_seconds": 0.5}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ft_corpus")
    write_corpus(root, per_kind=2, seconds=1.0)
    (root / "amfm" / "broken.wav").write_bytes(b"RIFF....not audio")
    return root


def _job(corpus, out, **kw) -> Job:
    recipe = get_recipe(kw.pop("recipe", "infonce"), epochs=kw.pop("epochs", 2), batch_size=4, lr=3e-3,
                        unfreeze_top=kw.pop("unfreeze_top", 0))
    return Job(corpus=str(corpus), out_dir=out, recipe=recipe, n_views=2, quiet=True, **kw)


def _probe():
    return [make_clip("chirp", 99, 0.8), make_clip("clicks", 98, 1.0)]


def test_cli_head_on_mel_round_trips_and_resumes(corpus, tmp_path):
    out = tmp_path / "det"
    common = ["finetune", str(corpus), "--base", "mel", "--out", str(out), "--views", "2", "--batch-size", "4",
              "--quiet", "--no-calibrate"]
    args = [*common, "--epochs", "2"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "broken.wav" in r.output  # the bad file is named, not dropped silently
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["kind"] == "head" and cfg["base"] == "mel"
    enc = load_encoder(f"finetuned:{out}")
    mel = load_encoder("mel")
    assert enc.identity()["head_sha256"] == file_sha256(out / "head.safetensors")
    assert enc.identity()["base"] == mel.identity() and enc.dim == 128
    # the encoder is exactly head(L2(mel)) with the saved weights
    from safetensors.torch import load_file

    from audioaudit.encoders.heads import HeadConfig, ProjectionHead

    head = ProjectionHead(HeadConfig(**cfg["head"]))
    head.load_state_dict(load_file(str(out / "head.safetensors")))
    with torch.no_grad():
        want = head(torch.from_numpy(mel.embed(_probe()))).numpy()
    np.testing.assert_allclose(enc.embed(_probe()), want, atol=1e-6)
    # the loader itself takes its base loader as an argument (it never imports the registry)
    from audioaudit.encoders.finetuned import load_finetuned
    from audioaudit.encoders.registry import load_encoder as registry_load

    seen = []
    direct = load_finetuned(str(out), load_base=lambda spec, **kw: seen.append(spec) or registry_load(spec, **kw))
    assert seen == ["mel"] and direct.identity() == enc.identity()
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and all("pos_sim" in h for h in history)
    # default view settings are not written down: caches and runs made before the options stay valid
    assert "max_strength" not in json.loads((out / "cache" / "embeddings" / "manifest.json").read_text())
    assert "views" not in json.loads((out / "run.json").read_text())
    # a rerun finds the finished run: nothing retrained, same weights
    before = file_sha256(out / "head.safetensors")
    r2 = CliRunner().invoke(app, args)
    assert r2.exit_code == 0 and "resumed after epoch 2" in r2.output
    assert file_sha256(out / "head.safetensors") == before
    r3 = CliRunner().invoke(app, [*common, "--epochs", "3"])
    assert r3.exit_code != 0 and "other settings" in str(r3.output) + str(r3.exception)


def test_cli_refuses_bad_arguments(corpus, tmp_path):
    r = CliRunner().invoke(app, ["finetune", str(corpus), "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "--base" in str(r.exception)
    r = CliRunner().invoke(app, ["finetune", str(corpus), "--out", str(tmp_path / "x"), "--base", "mel", "--recipe", "nope"])
    assert r.exit_code != 0 and "unknown recipe" in str(r.exception)


def test_cli_view_families_and_max_strength_reach_the_views_cache(corpus, tmp_path):
    from audioaudit.detector.augment import STANDARD_FAMILIES

    out = tmp_path / "det"
    common = ["finetune", str(corpus), "--base", "mel", "--out", str(out), "--views", "2", "--batch-size", "4",
              "--epochs", "1", "--quiet", "--no-calibrate"]
    r = CliRunner().invoke(app, [*common, "--families", "standard", "--max-strength", "0.5"])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "cache" / "embeddings" / "manifest.json").read_text())
    assert m["max_strength"] == 0.5 and m["families"] == list(STANDARD_FAMILIES)
    assert json.loads((out / "run.json").read_text())["views"] == {"families": list(STANDARD_FAMILIES),
                                                                   "max_strength": 0.5}
    # the same folder with the default views is another run: refused, naming what differs
    r = CliRunner().invoke(app, common)
    assert r.exit_code != 0 and "(views differ)" in str(r.exception)
    r = CliRunner().invoke(app, [*common[:5], str(tmp_path / "x"), *common[6:], "--families", "gain, mp3"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "x" / "run.json").read_text())["views"] == {"families": ["gain", "mp3"],
                                                                             "max_strength": 1.0}
    r = CliRunner().invoke(app, [*common[:5], str(tmp_path / "y"), *common[6:], "--families", "gain,bogus"])
    assert r.exit_code != 0 and "--families: unknown bogus" in str(r.exception) and "mp3" in str(r.exception)
    assert not (tmp_path / "y").exists()
    r = CliRunner().invoke(app, [*common[:5], str(tmp_path / "z"), *common[6:], "--max-strength", "1.5"])
    assert r.exit_code == 2 and not (tmp_path / "z").exists()


@pytest.mark.parametrize("arch", [TINY_CONV, TINY_HTSAT], ids=["conv", "htsat"])
def test_scratch_encoder_trains_saves_and_loads(corpus, tmp_path, arch):
    out = tmp_path / "scratch"
    res = run_finetune(_job(corpus, out, scratch=arch, recipe="triplet" if arch is TINY_HTSAT else "infonce"),
                       log=lambda s: None)
    assert res.n_clips == 10 and list(res.skipped) == ["amfm/broken.wav"]
    enc = load_encoder(f"finetuned:{out}")
    assert enc.sample_rate == SR and enc.dim == 16 and enc.window_seconds == 1.0
    assert enc.identity()["model_sha256"] == file_sha256(out / "model.safetensors")
    a, b = _probe()
    both = enc.embed([a, b])
    np.testing.assert_allclose(np.linalg.norm(both, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(enc.embed([a])[0], both[0], atol=1e-5)  # no dependence on the batch
    np.testing.assert_allclose(load_encoder(f"finetuned:{out}").embed([b]), both[1:], atol=1e-6)


def test_unfrozen_top_blocks_train_and_round_trip(corpus, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "unfrozen"
    run_finetune(_job(corpus, out, base="tiny-laion:3", unfreeze_top=1, epochs=1), log=lambda s: None)
    trained = load_file(str(out / "backbone.safetensors"))
    base = load_encoder("tiny-laion:3").model.state_dict()
    assert trained and all(k in base for k in trained)
    assert any(".blocks." in k for k in trained)
    assert not any(k.startswith("audio_branch.patch_embed") for k in trained)  # the bottom stays frozen
    assert any(not torch.equal(v, base[k]) for k, v in trained.items())  # the top did train
    enc = load_encoder(f"finetuned:{out}")
    ident = enc.identity()
    assert ident["unfreeze_top"] == 1 and ident["backbone_sha256"] == file_sha256(out / "backbone.safetensors")
    x = [np.repeat(c, 3) for c in _probe()]  # 48 kHz-ish lengths for the tiny LAION tower
    np.testing.assert_allclose(enc.embed(x), load_encoder(f"finetuned:{out}").embed(x), atol=1e-6)


@pytest.mark.slow
def test_sigkill_mid_training_then_rerun_continues(corpus, tmp_path):
    cfg = tmp_path / "arch.json"
    cfg.write_text(json.dumps(TINY_CONV))
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "audioaudit.cli", "finetune", str(corpus), "--from-scratch", str(cfg), "--out",
           str(out), "--epochs", "40", "--views", "2", "--batch-size", "4", "--quiet", "--no-calibrate"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = out / "checkpoints" / "last.json"
    deadline = time.time() + 120
    while time.time() < deadline and not last.exists():
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads(last.read_text())["epoch"]
    assert 0 <= done < 39 and not (out / "config.json").exists()  # killed mid-training
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"resumed after epoch {done + 1}" in r.stdout.replace("\n", " ")
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, 41))
