"""EDMSound representation, U-Net, EDM preconditioning, loss and guidance."""
from __future__ import annotations

import math

import pytest
import torch
from helpers_edmsound import micro_config, tone

from generators.edmsound.config import PRESETS, load_config
from generators.edmsound.edm import EDMLoss, EDMPrecond, guided_denoiser, precond_coeffs
from generators.edmsound.spectrogram import SpecConfig, compress, decompress, to_spec, to_wave
from generators.edmsound.unet import UNet, UNetConfig, count_params


@pytest.mark.parametrize("hop", [128, 256])
def test_spectrogram_round_trip_is_exact(hop):
    cfg = SpecConfig(clip_seconds=1.0, hop=hop)
    g = torch.Generator().manual_seed(0)
    waves = torch.stack([0.1 * torch.randn(cfg.clip_samples, generator=g), torch.from_numpy(tone(440, 1.0))])
    spec = to_spec(waves, cfg)
    assert spec.shape == (2, 2, 256, cfg.frames) and cfg.frames % cfg.frame_multiple == 0
    back = to_wave(spec, cfg)
    assert back.shape == waves.shape
    assert float((back - waves).abs().max()) < 1e-5
    one = to_wave(to_spec(waves[1], cfg), cfg)  # unbatched in, unbatched out
    assert one.shape == waves[1].shape


def test_amplitude_compression_formula():
    z = torch.complex(torch.tensor([3.0, 0.0, -0.5]), torch.tensor([4.0, 0.0, 0.2]))
    c = compress(z, 0.5, 0.3)
    assert torch.allclose(c.abs(), 0.3 * z.abs() ** 0.5)
    assert torch.allclose(torch.angle(c[[0, 2]]), torch.angle(z[[0, 2]]))
    assert c[1] == 0
    assert torch.allclose(decompress(c, 0.5, 0.3), z, atol=1e-6)


def test_preconditioning_matches_table_1():
    sd = 0.2
    for s in (0.002, 0.2, 3.0, 80.0):
        c_skip, c_out, c_in, c_noise = precond_coeffs(s, sd)
        assert c_skip == pytest.approx(sd**2 / (s**2 + sd**2))
        assert c_out == pytest.approx(s * sd / math.sqrt(s**2 + sd**2))
        assert c_in == pytest.approx(1 / math.sqrt(s**2 + sd**2))
        assert c_noise == pytest.approx(math.log(s) / 4)

    class Probe(torch.nn.Module):
        def forward(self, x, c_noise, labels):
            self.seen = (x.clone(), c_noise.clone(), labels)
            return torch.full_like(x, 2.0)

    probe = Probe()
    model = EDMPrecond(probe, sigma_data=sd)
    x = torch.randn(3, 2, 4, 4)
    sigma = torch.tensor([0.1, 1.0, 10.0])
    out = model(x, sigma, torch.tensor([0, 1, 0]))
    c_skip, c_out, c_in, c_noise = precond_coeffs(sigma, sd)
    v = (-1, 1, 1, 1)
    assert torch.allclose(probe.seen[0], c_in.reshape(v) * x)
    assert torch.allclose(probe.seen[1], c_noise)
    assert torch.allclose(out, c_skip.reshape(v) * x + c_out.reshape(v) * 2.0)
    assert model(x, 0.5).shape == x.shape  # a Python float sigma, as the samplers pass it


def test_loss_is_lambda_weighted_with_lambda_one_over_c_out_squared():
    class Zero(torch.nn.Module):
        def forward(self, x, sigma, labels):
            return torch.zeros_like(x)

    y = torch.randn(4, 2, 3, 3)
    loss = EDMLoss(P_mean=-1.2, P_std=1.2, sigma_data=0.2)
    got = loss(Zero(), y, None, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    sigma = (torch.randn(4, generator=g) * 1.2 - 1.2).exp()
    lam = 1 / precond_coeffs(sigma, 0.2)[1] ** 2
    assert torch.allclose(got, (lam.reshape(-1, 1, 1, 1) * y**2).mean())


def test_class_dropout_rate_and_null_token():
    loss = EDMLoss(num_classes=3, cond_drop=0.1)
    labels = torch.zeros(20000, dtype=torch.long)
    out = loss.drop_labels(labels, len(labels), "cpu", torch.Generator().manual_seed(0))
    frac = float((out == 3).float().mean())
    assert 0.09 < frac < 0.11 and set(out.unique().tolist()) == {0, 3}
    assert torch.all(EDMLoss(num_classes=0).drop_labels(None, 5, "cpu", None) == 0)


def test_cfg_shapes_and_limits():
    cfg = micro_config()
    torch.manual_seed(0)
    net = UNet(cfg.unet)
    torch.nn.init.normal_(net.out.weight, std=0.1)  # make F depend on the class
    torch.nn.init.normal_(net.class_emb.weight)
    model = EDMPrecond(net, 0.2).eval()
    x = torch.randn(3, *cfg.spec.shape)
    labels = torch.tensor([0, 1, 0])
    with torch.no_grad():
        cond = guided_denoiser(model, labels, 1.0, 2)(x, 1.0)
        uncond = guided_denoiser(model, None, 3.0, 2)(x, 1.0)
        g3 = guided_denoiser(model, labels, 3.0, 2)(x, 1.0)
        g0 = guided_denoiser(model, labels, 0.0, 2)(x, 1.0)
    assert cond.shape == uncond.shape == g3.shape == x.shape
    assert not torch.allclose(cond, uncond)
    assert torch.allclose(g0, uncond, atol=1e-5)
    assert torch.allclose(g3, uncond + 3 * (cond - uncond), atol=1e-5)


def test_unet_starts_at_zero_and_keeps_shape():
    cfg = micro_config()
    net = UNet(cfg.unet)
    x = torch.randn(2, *cfg.spec.shape)
    f = net(x, torch.zeros(2), torch.tensor([0, 2]))
    assert f.shape == x.shape and torch.count_nonzero(f) == 0  # zero-initialised output conv


def test_presets_sizes():
    counts = {k: count_params(UNet(v.finalised().unet)) for k, v in PRESETS.items() if k != "paper"}
    assert counts["tiny"] < counts["small"] < 10e6
    paper = PRESETS["paper"].finalised()
    assert 37e6 <= count_params(UNet(paper.unet)) <= 45e6
    assert paper.spec.frames % paper.unet.downsample_factor == 0
    assert load_config("tiny") is PRESETS["tiny"]


def test_config_file_and_bad_config(tmp_path):
    from generators.base import GeneratorError

    p = tmp_path / "c.json"
    p.write_text('{"preset": "small", "edm": {"sigma_data": 0.5}, "unet": {"channels": 8}}')
    cfg = load_config(str(p))
    assert cfg.edm.sigma_data == 0.5 and cfg.unet.channels == 8 and cfg.unet.channel_mult == (1, 2, 3, 4)
    with pytest.raises(GeneratorError, match="not a preset"):
        load_config(str(tmp_path / "missing.json"))
    UNetConfig.from_dict(cfg.unet.to_dict())
