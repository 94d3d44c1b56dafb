"""`hf` backend: tiny random transformers CLAP models saved with save_pretrained
(safetensors + config.json + preprocessor_config.json) and loaded back through the
public loader; a fake local hub cache stands in for a downloaded hub id."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers_encoders import hf_reference, sine_noise, write_tiny_hf_dir

from audioaudit.encoders import EncoderError, load_encoder, same_identity, tiny
from audioaudit.encoders import hf as H

SR = 48000


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model, d = write_tiny_hf_dir(tmp_path_factory.mktemp("hf") / "tiny-clap", seed=5)
    return model, d


@pytest.fixture(scope="module")
def waves():
    return [sine_noise(4.0, SR, 0), sine_noise(1.5, SR, 1, 880), sine_noise(0.2, SR, 2, 300)]


def test_directory_roundtrip_equals_in_memory_model(saved, waves):
    model, d = saved
    assert (d / "model.safetensors").is_file() and (d / "preprocessor_config.json").is_file()
    enc = load_encoder(f"hf:{d}", batch_size=2)
    assert (enc.sample_rate, enc.dim, enc.window_seconds, enc.hop_seconds) == (48000, 32, 4.0, 2.0)
    y = enc.embed(waves)
    assert y.dtype == np.float32 and y.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(y, hf_reference(model, tiny.TINY_HF_FEATURES, waves), atol=1e-5)
    np.testing.assert_allclose(load_encoder("tiny-hf:5").embed(waves), y, atol=1e-5)
    np.testing.assert_allclose(enc.embed(waves[1:2])[0], y[1], atol=1e-5)  # batch independent
    assert not enc.model.training


def test_full_clap_directory_loads_audio_half(tmp_path, waves):
    model, d = write_tiny_hf_dir(tmp_path / "full", seed=5, full_clap=True)
    assert json.loads((d / "config.json").read_text())["model_type"] == "clap"
    y = load_encoder(f"hf:{d}").embed(waves)
    np.testing.assert_allclose(y, hf_reference(model, tiny.TINY_HF_FEATURES, waves), atol=1e-5)


def test_identity_pins_weights_and_features(saved, tmp_path):
    _, d = saved
    ident = load_encoder(f"hf:{d}").identity()
    assert ident["backend"] == "hf" and len(ident["weights_sha256"]) == 64
    fe = ident["feature_extractor"]
    assert (fe["frequency_min"], fe["truncation"], fe["padding"], fe["max_length_s"]) == (50, "rand_trunc", "repeatpad", 4)
    assert ident["config"]["num_mel_bins"] == 32
    copy = shutil.copytree(d, tmp_path / "elsewhere")
    assert same_identity(ident, load_encoder(f"hf:{copy}").identity())
    assert not same_identity(ident, load_encoder(f"hf:{d}", hop_seconds=1.0).identity())


def test_settings_come_from_the_saved_config_not_code_defaults(saved, tmp_path):
    _, d = saved
    d2 = shutil.copytree(d, tmp_path / "no-preproc")
    (d2 / "preprocessor_config.json").unlink()
    # without a saved extractor the hub values apply (64 mels), which this 32-mel model refuses
    with pytest.raises(EncoderError, match="64 mel bins but the model expects 32"):
        load_encoder(f"hf:{d2}")
    cfg = json.loads((d / "preprocessor_config.json").read_text())
    cfg["frequency_min"] = 0
    (d2 / "preprocessor_config.json").write_text(json.dumps(cfg))
    assert load_encoder(f"hf:{d2}").settings["frequency_min"] == 0
    cfg["max_length_s"] = 10  # 1001 frames: more than this 128-wide spectrogram image holds
    (d2 / "preprocessor_config.json").write_text(json.dumps(cfg))
    with pytest.raises(EncoderError, match="1001 frames, more than the model's 512"):
        load_encoder(f"hf:{d2}")
    assert H.feature_settings(None, type("C", (), {"num_mel_bins": 64, "spec_size": 256, "enable_fusion": True})())["truncation"] == "fusion"


def test_cached_hub_id_resolves_offline(saved, tmp_path, monkeypatch, waves):
    """A hub id found in the local cache (the layout `hf download` leaves) loads offline,
    and its identity pins the id and the revision."""
    import huggingface_hub.constants as C

    _, d = saved
    rev = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--tiny-clap"
    shutil.copytree(d, repo / "snapshots" / rev)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    monkeypatch.setattr(C, "HF_HUB_CACHE", str(tmp_path / "hub"))
    enc = load_encoder("hf:acme/tiny-clap")
    ident = enc.identity()
    assert enc.name == "hf:acme/tiny-clap" and (ident["hub_id"], ident["revision"]) == ("acme/tiny-clap", rev)
    np.testing.assert_allclose(enc.embed(waves), load_encoder(f"hf:{d}").embed(waves), atol=1e-6)


# ------------------------------------------------------------------ bad input
def expect_error(spec: str, *words: str) -> None:
    with pytest.raises(EncoderError) as info:
        load_encoder(spec)
    msg = str(info.value)
    assert "\n" not in msg, msg
    for w in words:
        assert w in msg, msg


def test_hub_id_offline_not_cached(tmp_path, monkeypatch):
    import huggingface_hub.constants as C

    monkeypatch.setattr(C, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(C, "HF_HUB_OFFLINE", True)
    expect_error("hf:laion/clap-htsat-unfused", "offline", "hf download laion/clap-htsat-unfused", "hf:/path/to")


def test_missing_and_non_directories(tmp_path):
    expect_error(f"hf:{tmp_path / 'nope'}", "not found", "hf:DIR")
    pt = tmp_path / "630k-audioset-best.pt"
    pt.write_bytes(b"x")
    expect_error(f"hf:{pt}", "is a file", "laion:PATH.pt")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "model.pt").write_bytes(b"x")
    expect_error(f"hf:{tmp_path / 'ckpt'}", "no config.json", "laion:")


def test_directory_that_is_not_clap(tmp_path):
    from transformers import BertConfig, BertModel

    d = tmp_path / "bert"
    with H.quiet_transformers():
        BertModel(BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=16)).save_pretrained(str(d))
    expect_error(f"hf:{d}", "holds a 'bert' model, not CLAP")


def test_clap_config_without_or_with_wrong_weights(saved, tmp_path):
    _, d = saved
    d2 = shutil.copytree(d, tmp_path / "noweights")
    (d2 / "model.safetensors").unlink()
    expect_error(f"hf:{d2}", "no weights")
    # weights of a different size: config says 64-wide, file holds 32-wide
    d3 = shutil.copytree(d, tmp_path / "resized")
    cfg = json.loads((d3 / "config.json").read_text())
    cfg.update(patch_embeds_hidden_size=32, hidden_size=64)
    (d3 / "config.json").write_text(json.dumps(cfg))
    expect_error(f"hf:{d3}", "weights do not fit config.json", "mis-shaped")
    d4 = shutil.copytree(d, tmp_path / "corrupt")
    (d4 / "model.safetensors").write_bytes(b"garbage")
    expect_error(f"hf:{d4}", "cannot load a CLAP audio model")
