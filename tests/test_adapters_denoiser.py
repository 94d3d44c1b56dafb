"""The EDM view D(x, σ) of a discrete DDPM network, checked against exact identities."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from generators.adapters.denoiser import Conditioning, DiscreteVPSchedule, VPDenoiser, unet_denoiser
from generators.adapters.hifigan import fold_weight_norm


def _schedule():
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2  # scaled_linear
    return DiscreteVPSchedule.from_alphas_cumprod(torch.cumprod(1 - betas, 0))


def test_sigma_timestep_round_trip():
    s = _schedule()
    t = torch.tensor([0.0, 3.3, 250.0, 500.5, 998.9, 999.0], dtype=torch.float64)
    torch.testing.assert_close(s.sigma_to_t(s.t_to_sigma(t)), t)
    expected = torch.tensor([0.0, 10.0, 999.0], dtype=torch.float64)
    torch.testing.assert_close(s.sigma_to_t(s.sigmas[[0, 10, 999]]), expected)
    assert s.sigma_to_t(torch.tensor([0.0, 1e9])).tolist() == [0.0, 999.0]  # clamped to the schedule
    assert 0.02 < s.sigma_min < 0.04 and 14 < s.sigma_max < 15  # SD/TANGO scaled-linear betas


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_ideal_network_gives_the_clean_sample(prediction_type):
    """With the exact target as network output, D(x, σ) must return x0 (EDM Table 1, VP)."""
    sched = _schedule()
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 2, 4, 4, generator=g), torch.randn(3, 2, 4, 4, generator=g)
    sigma = torch.tensor([0.05, 1.0, 9.0])
    b = sigma.view(-1, 1, 1, 1)
    a, s_vp = 1 / (1 + b**2).sqrt(), b / (1 + b**2).sqrt()  # √ᾱ, √(1−ᾱ)
    x = x0 + b * eps  # EDM state; the network sees √ᾱ x = √ᾱ x0 + √(1−ᾱ) ε
    seen = {}

    def oracle(x_vp, t):
        seen["x_vp"], seen["t"] = x_vp, t
        return {"epsilon": eps, "v_prediction": a * eps - s_vp * x0, "sample": x0}[prediction_type]

    den = VPDenoiser(oracle, sched, prediction_type)
    torch.testing.assert_close(den(x, sigma), x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(seen["x_vp"], a * x0 + s_vp * eps, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sched.t_to_sigma(seen["t"]).float(), sigma, rtol=1e-4, atol=0)
    den(x[:1], 2.0)  # a Python float σ, as the samplers pass it
    assert seen["t"].shape == (1,) and den.nfe == 2


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_euler_on_the_denoiser_equals_ddim(prediction_type):
    """DDIM (η = 0) is Euler on the PF-ODE in σ (Song et al. 2021 §4.3; Karras et al. 2022 §3):
    the EDM sampler over DDIM's timesteps must reproduce diffusers' DDIMScheduler, CFG included."""
    pytest.importorskip("diffusers")
    import helpers_adapters as H
    from diffusers import DDIMScheduler

    from generators.edmsound.samplers import sample_euler

    torch.set_num_threads(1)
    unet = H.tiny_unet(seed=1)
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=True, prediction_type=prediction_type)
    sched.set_timesteps(3)
    g = torch.Generator().manual_seed(0)
    cond, uncond = torch.randn(2, 5, H.T5_DIM, generator=g), torch.randn(2, 5, H.T5_DIM, generator=g)
    z = torch.randn(2, 8, 16, 8, generator=g)
    with torch.no_grad():
        lat = z.clone()
        for t in sched.timesteps:
            out = unet(torch.cat([lat, lat]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample
            u, c = out.chunk(2)
            lat = sched.step(u + 2.5 * (c - u), t, lat).prev_sample
        den = unet_denoiser(unet, sched.alphas_cumprod, prediction_type, Conditioning(cond, None, uncond, None, 2.5))
        sig = den.schedule.sigmas[sched.timesteps.long()]
        x = z * float((1 + sig[0] ** 2).sqrt())  # x_T / √ᾱ_T
        edm = sample_euler(den, x, torch.cat([sig, torch.zeros(1, dtype=sig.dtype)]))
    assert den.nfe == 3
    torch.testing.assert_close(edm, lat, atol=1e-4 * float(lat.abs().max()), rtol=0)


def test_edm_samplers_run_on_the_unet_denoiser():
    pytest.importorskip("diffusers")
    import helpers_adapters as H

    from generators.edmsound.samplers import call_sampler, get_sigmas_karras

    torch.set_num_threads(1)
    unet = H.tiny_unet(seed=2)
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    g = torch.Generator().manual_seed(0)
    cond = torch.randn(1, 4, H.T5_DIM, generator=g)
    x = torch.randn(1, 8, 16, 8, generator=g)
    outs = {}
    with torch.no_grad():
        for name in ("euler", "deis", "dpmpp_2m", "dpmpp_3m"):
            den = unet_denoiser(unet, torch.cumprod(1 - betas, 0), "v_prediction", Conditioning(cond))
            sig = get_sigmas_karras(3, den.sigma_min, den.sigma_max).float()
            outs[name] = call_sampler(name, den, x * sig[0], sig)
            assert den.nfe == 3 and torch.isfinite(outs[name]).all()
    assert float((outs["euler"] - outs["dpmpp_2m"]).abs().max()) > 1e-4  # different methods, different paths


@pytest.mark.parametrize("module", ["conv", "convtranspose"])
def test_fold_weight_norm_matches_torch(module):
    torch.manual_seed(0)
    m = torch.nn.Conv1d(4, 6, 3) if module == "conv" else torch.nn.ConvTranspose1d(4, 6, 5, stride=2)
    wn = torch.nn.utils.weight_norm(m)
    with torch.no_grad():
        wn.weight_g.mul_(torch.rand_like(wn.weight_g) + 0.5)
        wn(torch.randn(1, 4, 8))  # the legacy hook recomputes .weight on forward
    sd = {f"layer.{k}": v.detach() for k, v in wn.state_dict().items()}
    assert "layer.weight_g" in sd
    folded = fold_weight_norm(sd)
    assert set(folded) == {"layer.weight", "layer.bias"}
    m2 = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(4, 6, 3) if module == "conv"
                                                      else torch.nn.ConvTranspose1d(4, 6, 5, stride=2))
    sd2 = {k: v.detach() for k, v in m2.state_dict().items()}
    np.testing.assert_allclose(folded["layer.weight"].numpy(), wn.weight.detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(fold_weight_norm(sd2)["weight"].numpy(), m2.weight.detach().numpy(),
                               rtol=1e-6, atol=1e-7)
