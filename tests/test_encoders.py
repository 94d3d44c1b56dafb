"""Encoder registry, the shared contract, and the `mel` yardstick."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from helpers_encoders import sine_noise

from audioaudit.audio.windows import WindowSpec, cut
from audioaudit.encoders import Encoder, EncoderError, load_encoder, same_identity
from audioaudit.encoders.embed import embed_waves
from audioaudit.encoders.registry import list_backends, parse_spec
from audioaudit.encoders.torch_base import repeat_pad, resolve_device
from audioaudit.errors import UserError


@pytest.fixture(scope="module")
def mel():
    return load_encoder("mel")


# ------------------------------------------------------------------ registry
def test_backends_listed():
    assert [b.name for b in list_backends()] == ["mel", "laion", "hf", "tiny-laion", "tiny-hf", "finetuned"]


@pytest.mark.parametrize("spec, words", [
    ("clap", "unknown encoder 'clap'"),
    ("", "unknown encoder"),
    ("laion", "needs an argument: pass laion:PATH.pt"),
    ("hf:", "needs an argument: pass hf:DIR_OR_ID"),
    ("mel:64", "takes no argument"),
    ("tiny-laion:abc", "seed must be an integer"),
])
def test_bad_specs_are_one_line_user_errors(spec, words):
    with pytest.raises(EncoderError) as info:
        load_encoder(spec)
    msg = str(info.value)
    assert words in msg and "\n" not in msg and isinstance(info.value, UserError)


def test_spec_arguments_keep_colons_and_hashes():
    backend, arg = parse_spec("laion:/data/c:ckpts/630k.pt#HTSAT-base")
    assert backend.name == "laion" and arg == "/data/c:ckpts/630k.pt#HTSAT-base"


def test_finetuned_dispatches_lazily(monkeypatch, tmp_path):
    seen = {}

    def load_finetuned(directory):  # the signature the finetune area exposes
        seen["dir"] = directory
        return load_encoder("mel")

    fake = types.ModuleType("audioaudit.encoders.finetuned")
    fake.load_finetuned = load_finetuned
    monkeypatch.setitem(sys.modules, "audioaudit.encoders.finetuned", fake)
    enc = load_encoder(f"finetuned:{tmp_path}", batch_size=4)
    assert seen == {"dir": str(tmp_path)} and isinstance(enc, Encoder)


def test_finetuned_without_the_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "audioaudit.encoders.finetuned", None)  # `import` now fails
    with pytest.raises(EncoderError, match="this build lacks audioaudit.encoders.finetuned"):
        load_encoder("finetuned:/x")


def test_devices():
    import torch

    assert resolve_device("auto") in ("cpu", "cuda")
    if torch.cuda.is_available():
        assert resolve_device("cuda") == "cuda"
    else:
        with pytest.raises(EncoderError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(EncoderError, match="unknown device"):
        resolve_device("tpu")


def test_repeat_pad_matches_laion():
    w = np.arange(1, 4, dtype=np.float32)
    np.testing.assert_array_equal(repeat_pad(w, 8), [1, 2, 3, 1, 2, 3, 0, 0])
    np.testing.assert_array_equal(repeat_pad(w, 3), w)
    np.testing.assert_array_equal(repeat_pad(w, 4), [1, 2, 3, 0])
    with pytest.raises(ValueError):
        repeat_pad(w, 2)


# ------------------------------------------------------------------ mel
def test_mel_contract(mel):
    assert isinstance(mel, Encoder)
    assert (mel.name, mel.sample_rate, mel.dim, mel.window_seconds, mel.hop_seconds) == ("mel", 16000, 128, 10.0, 5.0)
    waves = [sine_noise(s, 16000, seed=i, freq=220 * (i + 1)) for i, s in enumerate([3.0, 10.0, 0.01, 1.5])]
    y = mel.embed(waves)
    assert y.shape == (4, 128) and y.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(y, mel.embed(waves))  # deterministic
    # a clip's vector does not depend on its batch
    np.testing.assert_allclose(mel.embed(waves[1:2])[0], y[1], atol=1e-6)
    assert mel.embed([]).shape == (0, 128)


def test_mel_is_gain_invariant_and_discriminative(mel):
    a = sine_noise(4.0, 16000, seed=1, freq=440)
    b = sine_noise(4.0, 16000, seed=2, freq=3000)
    ya, ya_quiet, yb = mel.embed([a, 0.1 * a, b])
    assert float(ya @ ya_quiet) > 0.999
    assert float(ya @ yb) < 0.9


def test_embed_rejects_what_it_cannot_take(mel):
    with pytest.raises(ValueError, match="cut it with"):
        mel.embed([np.zeros(16000 * 11, np.float32)])
    with pytest.raises(ValueError, match="mono"):
        mel.embed([np.zeros((2, 100), np.float32)])
    bad = sine_noise(1.0, 16000)
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        mel.embed([bad])


def test_segments_and_batches(mel):
    wave = sine_noise(23.0, 16000)
    segs = cut(wave, WindowSpec.of(mel))
    assert [(s.start, s.end) for s in segs] == [(0.0, 10.0), (5.0, 15.0), (10.0, 20.0), (13.0, 23.0)]
    y = embed_waves(mel, [s.wave for s in segs], batch_size=3)
    np.testing.assert_allclose(y, mel.embed([s.wave for s in segs]), atol=1e-6)


def test_identity_pins_settings(mel):
    ident = mel.identity()
    assert ident["backend"] == "mel" and ident["sample_rate"] == 16000 and ident["settings"]["n_mels"] == 64
    assert same_identity(ident, load_encoder("mel", batch_size=3).identity())  # batching changes nothing
    other = load_encoder("mel", hop_seconds=2.5)
    assert other.hop_seconds == 2.5 and not same_identity(ident, other.identity())
    with pytest.raises(EncoderError, match="hop"):
        load_encoder("mel", hop_seconds=0)
