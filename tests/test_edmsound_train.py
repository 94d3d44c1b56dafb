"""EDMSound training: the loss drops when overfitting 8 clips; checkpoints resume exactly."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers_edmsound import eight_clips, micro_config, one_thread

from generators.base import GeneratorError
from generators.edmsound import checkpoint as ckpt
from generators.edmsound.edm import precond_coeffs
from generators.edmsound.trainer import Trainer, waves_to_specs

pytestmark = pytest.mark.usefixtures("one_thread")
assert one_thread


def _data(cfg):
    waves, labels = eight_clips()
    return waves_to_specs(waves, cfg), torch.tensor(labels)


@torch.no_grad()
def _fixed_loss(model, specs, labels) -> float:
    """The EDM loss at fixed noise levels and fixed noise: comparable before/after training."""
    g, total = torch.Generator().manual_seed(123), 0.0
    model.eval()
    for sigma in (0.05, 0.2, 0.8):
        noisy = specs + torch.randn(specs.shape, generator=g) * sigma
        d = model(noisy, sigma, labels)
        total += float(((d - specs) ** 2).mean()) / precond_coeffs(sigma, 0.2)[1] ** 2
    return total / 3


def test_tiny_model_loss_drops_overfitting_eight_clips(tmp_path):
    cfg = micro_config()
    specs, labels = _data(cfg)
    trainer = Trainer(cfg, specs, labels, tmp_path)
    before = _fixed_loss(trainer.model, specs, labels)
    res = trainer.run(40, progress=False)
    after = _fixed_loss(trainer.model, specs, labels)
    assert res.step == 40 and after < 0.6 * before, (before, after)
    assert np.mean(res.losses[-10:]) < np.mean(res.losses[:10])


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_checkpoint_save_load_resume_is_exact(tmp_path):
    cfg = micro_config(checkpoint_every=3)
    specs, labels = _data(cfg)
    straight = Trainer(cfg, specs, labels, tmp_path / "a")
    straight.run(6, progress=False)

    first = Trainer(cfg, specs, labels, tmp_path / "b")
    first.run(3, progress=False)
    del first
    resumed = Trainer(cfg, specs, labels, tmp_path / "b", resume=True)
    assert resumed.step == 3
    resumed.run(6, progress=False)

    assert resumed.losses == straight.losses
    for a, b in ((straight.model, resumed.model), (straight.ema, resumed.ema)):
        wa, wb = _weights(a), _weights(b)
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    st_a, st_b = straight.opt.state_dict()["state"], resumed.opt.state_dict()["state"]
    assert sorted(st_a) == sorted(st_b)
    assert all(torch.equal(st_a[i]["exp_avg_sq"], st_b[i]["exp_avg_sq"]) for i in st_a)

    # what the generator loads is the EMA, and every file agrees on the step
    model = ckpt.build_model(ckpt.read_config(tmp_path / "b"))
    assert ckpt.load_weights(model, tmp_path / "b") == 6
    assert all(torch.equal(v, _weights(straight.ema)[k]) for k, v in model.state_dict().items())
    assert json.loads((tmp_path / "b" / ckpt.STATE_JSON).read_text())["step"] == 6


def test_existing_run_needs_resume_and_resume_needs_a_run(tmp_path):
    cfg = micro_config()
    specs, labels = _data(cfg)
    Trainer(cfg, specs, labels, tmp_path / "run").run(1, progress=False)
    with pytest.raises(GeneratorError, match="--resume"):
        Trainer(cfg, specs, labels, tmp_path / "run")
    with pytest.raises(GeneratorError, match="nothing to resume"):
        Trainer(cfg, specs, labels, tmp_path / "empty", resume=True)


def test_sample_dumps_are_written(tmp_path):
    cfg = micro_config(sample_every=2, sample_count=2, sample_steps=3)
    specs, labels = _data(cfg)
    Trainer(cfg, specs, labels, tmp_path).run(2, progress=False)
    wavs = sorted((tmp_path / "samples" / "step_0000002").glob("*.wav"))
    assert [w.name for w in wavs] == ["seed0_bark.wav", "seed1_ring.wav"]
