"""`laion` backend: tiny random LAION-CLAP towers saved as real-layout `.pt` checkpoints
and loaded back through the public loader."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers_encoders import (
    laion_reference,
    sine_noise,
    write_laion_checkpoint,
    write_laion_config,
    write_pickle_with_object,
)

from audioaudit.audio.fingerprint import file_sha256
from audioaudit.encoders import EncoderError, load_encoder, same_identity, tiny
from audioaudit.encoders import laion as L

SR = 48000


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(in-memory model, checkpoint path, config path) for a tiny random tower, seed 7."""
    d = tmp_path_factory.mktemp("laion")
    model = tiny.tiny_laion_model(7)
    ckpt = write_laion_checkpoint(model, d / "tiny-630k-best.pt")
    cfg = write_laion_config(tiny.TINY_LAION, d / "tiny.json")
    return model, ckpt, cfg


@pytest.fixture(scope="module")
def enc(saved):
    _, ckpt, cfg = saved
    return load_encoder(f"laion:{ckpt}#{cfg}", batch_size=3)


@pytest.fixture(scope="module")
def waves():
    # full window, shorter (repeat-padded), very short, different content
    return [sine_noise(4.0, SR, 0), sine_noise(1.5, SR, 1, 880), sine_noise(0.2, SR, 2, 300), sine_noise(4.0, SR, 3, 2000)]


def test_checkpoint_roundtrip_equals_in_memory_model(saved, enc, waves):
    model, _, _ = saved
    assert (enc.sample_rate, enc.dim, enc.window_seconds, enc.hop_seconds) == (48000, 32, 4.0, 2.0)
    y = enc.embed(waves)
    assert y.dtype == np.float32 and y.shape == (4, 32)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(y, laion_reference(model, waves, 4 * SR), atol=1e-5)
    # the same seed in memory gives the same vectors; different seeds differ
    np.testing.assert_allclose(load_encoder("tiny-laion:7").embed(waves), y, atol=1e-5)
    assert np.abs(load_encoder("tiny-laion:8").embed(waves[:1]) - y[:1]).max() > 1e-3


def test_deterministic_batch_independent_eval_mode(enc, waves):
    assert not enc.model.training and not enc.model.audio_branch.training
    y = enc.embed(waves)
    np.testing.assert_array_equal(y, enc.embed(waves))
    np.testing.assert_allclose(enc.embed(waves[2:3])[0], y[2], atol=1e-5)


def test_short_clips_are_repeat_padded(enc):
    short = sine_noise(1.5, SR, 5)
    by_hand = np.concatenate([short, short, np.zeros(4 * SR - 2 * len(short), np.float32)])
    np.testing.assert_allclose(enc.embed([short]), enc.embed([by_hand]), atol=1e-6)


def test_identity_pins_checkpoint_and_config(saved, enc, tmp_path):
    _, ckpt, cfg = saved
    ident = enc.identity()
    assert ident["backend"] == "laion" and ident["checkpoint_sha256"] == file_sha256(ckpt)
    assert ident["config"]["audio_cfg"]["sample_rate"] == 48000 and ident["padding"] == "repeatpad"
    assert (ident["window_seconds"], ident["hop_seconds"]) == (4.0, 2.0)
    # a moved copy is the same encoder; changed weights are not
    copy = tmp_path / "renamed.pt"
    copy.write_bytes(ckpt.read_bytes())
    assert same_identity(ident, load_encoder(f"laion:{copy}#{cfg}").identity())
    changed = tiny.tiny_laion_model(7)
    with torch.no_grad():
        changed.audio_projection[2].bias.add_(0.1)
    other = write_laion_checkpoint(changed, tmp_path / "changed.pt")
    assert not same_identity(ident, load_encoder(f"laion:{other}#{cfg}").identity())


def test_import_never_runs_laion_clap_package():
    code = ("import sys; from audioaudit.encoders.laion import clap_modules; clap_modules();"
            "bad = [m for m in sys.modules if m == 'laion_clap' or m.startswith('laion_clap.')];"
            "print('LOADED', bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "LOADED []" in out.stdout, out.stderr[-2000:]


# ------------------------------------------------------------------ bad checkpoints
def expect_error(spec: str, *words: str) -> str:
    with pytest.raises(EncoderError) as info:
        load_encoder(spec)
    msg = str(info.value)
    assert "\n" not in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


def test_missing_and_unreadable_checkpoints(tmp_path):
    expect_error(f"laion:{tmp_path / 'nope.pt'}", "not found", "pass laion:/path/to/630k-audioset-best.pt")
    expect_error(f"laion:{tmp_path}", "is a directory", "hf:DIR")
    text = tmp_path / "notes.pt"
    text.write_text("definitely not a checkpoint")
    expect_error(f"laion:{text}", "not a readable PyTorch checkpoint")


def test_weights_only_refuses_arbitrary_objects(tmp_path):
    p = write_pickle_with_object(tmp_path / "pickled.pt")
    expect_error(f"laion:{p}", "not a readable PyTorch checkpoint", "Unsupported global", "argparse")


def test_checkpoint_without_audio_tower(tmp_path):
    p = tmp_path / "text_only.pt"
    torch.save({"state_dict": {"module.text_branch.w": torch.zeros(2)}}, p)
    expect_error(f"laion:{p}", "not a LAION-CLAP checkpoint")


def test_unknown_config_and_missing_json(saved, tmp_path):
    _, ckpt, _ = saved
    expect_error(f"laion:{ckpt}#HTSAT-huge", "unknown LAION config 'HTSAT-huge'", "HTSAT-tiny", "PANN-14")
    expect_error(f"laion:{ckpt}#{tmp_path / 'none.json'}", "config file not found")
    raw = L.config_to_json(tiny.TINY_LAION)
    raw["htsat"]["spec_size"] = 64  # 401 frames of a 4 s window do not fit a 64-wide image
    (tmp_path / "small.json").write_text(json.dumps(raw))
    expect_error(f"laion:{ckpt}#{tmp_path / 'small.json'}", "401 frames, more than spec_size allows (128)")


def test_wrong_config_names_the_right_one(saved, tmp_path):
    # a tiny tower loaded with the default (real HTSAT-tiny) config does not fit
    _, ckpt, _ = saved
    expect_error(f"laion:{ckpt}", "does not fit LAION config HTSAT-tiny", "missing", "laion:PATH.pt#CONFIG")


def test_pann_checkpoint_loaded_as_htsat(tmp_path, monkeypatch):
    """A PANN-14 checkpoint's real key names (built by laion-clap's Cnn14), tensors shrunk
    except the projection that tells its width: loading it as the default HTSAT-tiny fails
    with a message naming PANN-14."""
    for fn in ("xavier_uniform_", "kaiming_uniform_", "uniform_", "normal_", "trunc_normal_"):
        monkeypatch.setattr(torch.nn.init, fn, lambda t, *a, **k: t)  # only the key names matter here
    pann = L.build_model(L.load_config("PANN-14"))
    sd = {f"module.{k}": (v if k == "audio_projection.0.weight" else torch.zeros(1)) for k, v in pann.state_dict().items()}
    del pann
    ckpt = tmp_path / "pann14.pt"
    torch.save({"state_dict": sd}, ckpt)
    expect_error(f"laion:{ckpt}", "does not fit LAION config HTSAT-tiny", f"pass laion:{ckpt}#PANN-14")
    expect_error(f"laion:{ckpt}#PANN-14", "does not fit LAION config PANN-14", "mis-shaped")
    expect_error(f"laion:{ckpt}#PANN-6", "unknown LAION config 'PANN-6'")


def test_fusion_checkpoint_is_refused(saved, tmp_path):
    model, _, cfg = saved
    p = write_laion_checkpoint(model, tmp_path / "fusion.pt")
    obj = torch.load(p, weights_only=False)
    obj["state_dict"]["module.audio_branch.fusion_model.local_att.0.weight"] = torch.zeros(1)
    torch.save(obj, p)
    expect_error(f"laion:{p}#{cfg}", "feature-fusion checkpoint", "630k-audioset-best.pt")


@pytest.mark.slow
def test_real_size_htsat_tiny_default_config(tmp_path):
    """The real HTSAT-tiny layout: 204 audio tensors load strictly under the default config."""
    model = tiny.seeded(0, lambda: L.build_model(L.load_config("HTSAT-tiny")))
    assert len(model.state_dict()) == 204
    ckpt = write_laion_checkpoint(model, tmp_path / "630k-audioset-best.pt")
    enc = load_encoder(f"laion:{ckpt}")
    assert (enc.name, enc.dim, enc.window_seconds, enc.hop_seconds) == ("laion:630k-audioset-best.pt#HTSAT-tiny", 512, 10.0, 5.0)
    wave = [sine_noise(4.0, SR)]
    np.testing.assert_allclose(enc.embed(wave), laion_reference(model, wave, 10 * SR), atol=1e-5)
