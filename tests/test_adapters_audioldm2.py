"""audioldm2:DIR — a tiny random AudioLDM2Pipeline saved with save_pretrained, loaded through the registry."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("diffusers")  # the optional extra; installed in the dev/CI environment

import helpers_adapters as H  # noqa: E402

from generators.base import Generator, GeneratorError  # noqa: E402
from generators.registry import load_generator  # noqa: E402

PROMPTS = ["a door slams", "wind howls"]
FAST = dict(steps=3, duration=H.DURATION)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("audioldm2") / "pipe"
    H.tiny_audioldm2_pipeline(seed=0).save_pretrained(str(d))
    return d


@pytest.fixture(scope="module")
def gen(saved):
    return load_generator(f"audioldm2:{saved}", device="cpu")


def test_generates_two_clips_with_per_sample_seeds(gen):
    assert isinstance(gen, Generator) and gen.sample_rate == 16000
    batch = gen.generate(2, conditions=PROMPTS, seed=4, **FAST)
    assert batch.sample_rate == 16000 and [c.seed for c in batch.clips] == [4, 5]
    assert [c.condition for c in batch.clips] == PROMPTS
    for c in batch.clips:
        assert c.wave.dtype == np.float32 and c.wave.shape == (round(H.DURATION * 16000),)
        assert np.isfinite(c.wave).all() and np.abs(c.wave).max() > 1e-3
    assert np.abs(batch.clips[0].wave - batch.clips[1].wave).max() > 1e-3
    alone = gen.generate(1, conditions=PROMPTS[1:], seed=5, **FAST)
    np.testing.assert_allclose(alone.clips[0].wave, batch.clips[1].wave, atol=1e-5)


def test_sampler_choice_and_bad_requests(gen, tmp_path):
    ddpm = gen.generate(1, conditions=PROMPTS[:1], seed=0, sampler="ddpm", **FAST)
    ddim = gen.generate(1, conditions=PROMPTS[:1], seed=0, **FAST)
    assert ddpm.meta["scheduler"] == "DDPMScheduler" and ddim.meta["scheduler"] == "DDIMScheduler"
    assert np.abs(ddpm.clips[0].wave - ddim.clips[0].wave).max() > 1e-5
    with pytest.raises(GeneratorError, match="unknown sampler"):
        gen.generate(1, conditions=PROMPTS, sampler="dpmpp_2m", **FAST)
    empty = tmp_path / "p.txt"
    empty.write_text("")
    with pytest.raises(GeneratorError, match="empty"):
        gen.generate(1, prompts_file=str(empty), **FAST)


@pytest.mark.parametrize("part", ["unet/config.json", "vocoder/config.json", "model_index.json"])
def test_missing_part_names_the_file(saved, tmp_path, part):
    d = tmp_path / "pipe"
    shutil.copytree(saved, d)
    (d / part).unlink()
    with pytest.raises(GeneratorError, match=part.replace(".", r"\.")):
        load_generator(f"audioldm2:{d}", device="cpu")


def test_other_pipeline_is_refused(saved, tmp_path):
    d = tmp_path / "pipe"
    shutil.copytree(saved, d)
    spec = json.loads((d / "model_index.json").read_text())
    spec["_class_name"] = "StableDiffusionPipeline"
    (d / "model_index.json").write_text(json.dumps(spec))
    with pytest.raises(GeneratorError, match="not an AudioLDM2Pipeline"):
        load_generator(f"audioldm2:{d}", device="cpu")
