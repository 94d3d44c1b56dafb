"""tango:DIR — tiny random TANGO-style parts saved in both layouts, loaded through the registry."""
from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import pytest

pytest.importorskip("diffusers")  # the optional extra; installed in the dev/CI environment

import helpers_adapters as H  # noqa: E402

from generators.base import Generator, GeneratorError  # noqa: E402
from generators.registry import load_generator  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
PROMPTS = ["a dog barks", "rain falls on a tin roof"]
N_SAMPLES = round(H.DURATION * 16000)
FAST = dict(steps=3, duration=H.DURATION)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    parts = H.tiny_tango_parts(seed=0)
    root = tmp_path_factory.mktemp("tango")
    return {"diffusers": H.save_tango_diffusers(root / "diffusers", parts),
            "declare-lab": H.save_tango_declare_lab(root / "declare_lab", parts)}


@pytest.fixture(scope="module")
def gens(dirs):
    return {k: load_generator(f"tango:{d}", device="cpu") for k, d in dirs.items()}


def test_diffusers_layout_generates_two_clips(gens):
    g = gens["diffusers"]
    assert isinstance(g, Generator) and g.layout == "diffusers" and g.sample_rate == 16000
    batch = g.generate(2, conditions=PROMPTS, seed=7, **FAST)
    assert batch.sample_rate == 16000 and batch.generator.startswith("tango:")
    assert [c.seed for c in batch.clips] == [7, 8]
    assert [c.condition for c in batch.clips] == PROMPTS
    for c in batch.clips:
        assert c.wave.dtype == np.float32 and c.wave.shape == (N_SAMPLES,)
        assert np.isfinite(c.wave).all() and np.abs(c.wave).max() > 1e-3
        assert c.meta["sampler"] == "scheduler" and c.meta["nfe"] == 3 and c.meta["guidance"] == 3.0
    assert np.abs(batch.clips[0].wave - batch.clips[1].wave).max() > 1e-3


def test_declare_lab_layout_matches_diffusers_layout(gens):
    """Same weights, two layouts: the ldm-VAE conversion, the HiFi-GAN renaming, T5 weights from
    pytorch_model_main.bin and the SD-2.1 v-prediction scheduler must reproduce the audio exactly."""
    g = gens["declare-lab"]
    assert g.layout == "declare-lab"
    assert g.pipe.scheduler.config.prediction_type == "v_prediction"
    assert "pytorch_model_main.bin" in g.sources["text_encoder"]
    a = g.generate(2, conditions=PROMPTS, seed=3, **FAST)
    b = gens["diffusers"].generate(2, conditions=PROMPTS, seed=3, **FAST)
    for x, y in zip(a.clips, b.clips):
        np.testing.assert_allclose(x.wave, y.wave, atol=1e-6)


def test_sample_reproduced_alone_from_its_seed(gens):
    g = gens["diffusers"]
    pair = g.generate(2, conditions=PROMPTS, seed=11, **FAST)
    alone = g.generate(1, conditions=[PROMPTS[1]], seed=12, **FAST)
    np.testing.assert_allclose(alone.clips[0].wave, pair.clips[1].wave, atol=1e-5)
    again = g.generate(2, conditions=PROMPTS, seed=11, batch_size=1, **FAST)
    np.testing.assert_allclose(again.clips[0].wave, pair.clips[0].wave, atol=1e-5)


def test_guidance_and_prompt_change_the_audio(gens):
    g = gens["diffusers"]
    base = g.generate(1, conditions=PROMPTS[:1], seed=0, **FAST).clips[0].wave
    no_cfg = g.generate(1, conditions=PROMPTS[:1], seed=0, cfg=1.0, **FAST).clips[0].wave
    other = g.generate(1, conditions=PROMPTS[1:], seed=0, **FAST).clips[0].wave
    assert np.abs(base - no_cfg).max() > 1e-4 and np.abs(base - other).max() > 1e-4


def test_edm_sampler_drives_the_unet(gens):
    from generators.edmsound.samplers import SAMPLERS

    g = gens["declare-lab"]
    ddpm = g.generate(2, conditions=PROMPTS, seed=5, **FAST)
    for name in ("dpmpp_2m", "heun"):
        assert name in SAMPLERS
        out = g.generate(2, conditions=PROMPTS, seed=5, sampler=name, **FAST)
        assert out.meta["sampler"] == name and out.clips[0].meta["nfe"] == (3 if name == "dpmpp_2m" else 5)
        assert all(np.isfinite(c.wave).all() and c.wave.shape == (N_SAMPLES,) for c in out.clips)
        assert np.abs(out.clips[0].wave - ddpm.clips[0].wave).max() > 1e-4
        alone = g.generate(1, conditions=[PROMPTS[1]], seed=6, sampler=name, **FAST)
        np.testing.assert_allclose(alone.clips[0].wave, out.clips[1].wave, atol=1e-5)


def test_prompts_file_and_cycling(gens, tmp_path):
    f = tmp_path / "prompts.txt"
    f.write_text("\n".join(PROMPTS) + "\n\n")
    batch = gens["diffusers"].generate(3, prompts_file=str(f), seed=0, steps=1, duration=H.DURATION)
    assert [c.condition for c in batch.clips] == [PROMPTS[0], PROMPTS[1], PROMPTS[0]]


def test_declare_lab_converts_to_diffusers_layout(gens, tmp_path):
    out = gens["declare-lab"].save_diffusers(tmp_path / "converted")
    assert json.loads((out / "model_index.json").read_text())["_class_name"] == "TangoStylePipeline"
    g = load_generator(f"tango:{out}", device="cpu")
    a = g.generate(1, conditions=PROMPTS[:1], seed=2, **FAST).clips[0].wave
    b = gens["declare-lab"].generate(1, conditions=PROMPTS[:1], seed=2, **FAST).clips[0].wave
    np.testing.assert_allclose(a, b, atol=1e-6)


# --------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("missing", ["pytorch_model_vae.bin", "main_config.json", "diffusion_model_config.json"])
def test_declare_lab_missing_part_names_the_file(dirs, tmp_path, missing):
    d = tmp_path / "ckpt"
    shutil.copytree(dirs["declare-lab"], d)
    (d / missing).unlink()
    with pytest.raises(GeneratorError, match=missing.replace(".", r"\.")):
        load_generator(f"tango:{d}", device="cpu")


def test_declare_lab_text_encoder_offline_error(dirs, tmp_path):
    d = tmp_path / "ckpt"
    shutil.copytree(dirs["declare-lab"], d)
    shutil.rmtree(d / "text_encoder")
    with pytest.raises(GeneratorError, match=r"google/flan-t5-large.*text_encoder"):
        load_generator(f"tango:{d}", device="cpu")


@pytest.mark.parametrize("part", ["vocoder/config.json", "scheduler/scheduler_config.json", "unet/config.json"])
def test_diffusers_missing_part_names_the_file(dirs, tmp_path, part):
    d = tmp_path / "ckpt"
    shutil.copytree(dirs["diffusers"], d)
    (d / part).unlink()
    with pytest.raises(GeneratorError, match=part.replace(".", r"\.")):
        load_generator(f"tango:{d}", device="cpu")


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(GeneratorError, match="not a TANGO checkpoint"):
        load_generator(f"tango:{tmp_path}", device="cpu")
    with pytest.raises(GeneratorError, match="not found"):
        load_generator(f"tango:{tmp_path / 'nope'}", device="cpu")


def test_bad_generation_requests(gens, tmp_path):
    g = gens["diffusers"]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(GeneratorError, match="empty"):
        g.generate(2, prompts_file=str(empty), **FAST)
    with pytest.raises(GeneratorError, match="needs prompts"):
        g.generate(2, **FAST)
    with pytest.raises(GeneratorError, match="unknown sampler 'nope'.*dpmpp_2m"):
        g.generate(1, conditions=PROMPTS, sampler="nope", **FAST)
    with pytest.raises(GeneratorError, match="unknown option"):
        g.generate(1, conditions=PROMPTS, stpes=3)
    with pytest.raises(GeneratorError, match="disagree"):
        g.generate(1, conditions=PROMPTS, guidance=2.0, cfg=3.0, **FAST)


def test_missing_diffusers_names_the_extra(monkeypatch, dirs):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # makes `import diffusers` raise ImportError
    for spec in (f"tango:{dirs['diffusers']}", f"audioldm2:{dirs['diffusers']}"):
        with pytest.raises(GeneratorError, match=r"pip install 'audioaudit\[diffusers\]'"):
            load_generator(spec, device="cpu")
