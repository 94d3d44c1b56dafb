"""Sampler options are explicit: a wrong one is a clear error everywhere; callback and to_d."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers_edmsound import eight_clips, micro_config, one_thread, write_corpus

from generators.base import GeneratorError
from generators.edmsound.analytic import gaussian_denoiser
from generators.edmsound.samplers import (
    SAMPLERS,
    Churn,
    call_sampler,
    check_options,
    get_sigmas_karras,
    sample_heun,
    sampler_options,
    to_d,
)

assert one_thread
DEN = gaussian_denoiser(0.3, 0.5)
X0 = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 80.0
SIG = get_sigmas_karras(6, 0.002, 80.0)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_an_unknown_option_is_a_clear_error_naming_sampler_option_and_choices(name):
    foreign = "churn" if name != "heun" else "order"  # an option of another sampler
    for bad in ({"bogus": 1}, {foreign: 2}):
        with pytest.raises(GeneratorError) as e:
            call_sampler(name, DEN, X0, SIG, **bad)
        msg = str(e.value)
        assert f"sampler '{name}'" in msg and repr(next(iter(bad))) in msg
        assert msg.endswith(", ".join(sampler_options(name)))
    with pytest.raises(TypeError):  # no **kwargs swallowing, even when called directly
        SAMPLERS[name](DEN, X0, SIG, bogus=1)


def test_options_are_keyword_only_and_every_sampler_takes_a_callback():
    for name in SAMPLERS:
        assert "callback" in sampler_options(name)
    assert sampler_options("deis") == ("order", "time", "lower_order_final", "callback")
    assert "noise" in sampler_options("heun") and "noise" not in sampler_options("deis")
    with pytest.raises(GeneratorError, match="unknown sampler 'rk45'; use one of: euler"):
        check_options("rk45", {})
    check_options("deis", {"order": 2, "time": "sigma"})


def test_noise_goes_only_to_samplers_that_draw_noise():
    draws = []
    noise = lambda x: (draws.append(1), torch.ones_like(x))[1]  # noqa: E731
    call_sampler("deis", DEN, X0, SIG, noise=noise)  # deterministic: takes no noise, draws none
    assert not draws
    call_sampler("heun", DEN, X0, SIG, noise=noise, churn=2.0)
    assert draws


def test_to_d_is_karras_eq4():
    x, d = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)
    assert torch.equal(to_d(x, 0.7, d), (x - d) / 0.7)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_callback_once_per_step_with_the_denoised_estimate(name):
    seen = []

    def callback(i, sigma, x, denoised):
        assert torch.equal(denoised, DEN(x, sigma))  # denoised = D(x; sigma)
        seen.append((i, sigma, x.shape, denoised.shape))

    out = call_sampler(name, DEN, X0, SIG, callback=callback)
    assert [s[0] for s in seen] == list(range(len(SIG) - 1))
    assert [s[1] for s in seen] == [float(s) for s in SIG[:-1]]  # decreasing, the step's sigma
    assert all(xs == ds == X0.shape for _, _, xs, ds in seen)
    assert torch.equal(out, call_sampler(name, DEN, X0, SIG))  # the callback changes nothing


def test_heun_callback_sees_the_churned_sigma_hat():
    got = []
    sample_heun(DEN, X0, SIG, churn=2.0, noise=torch.zeros_like, callback=lambda i, s, x, d: got.append(s))
    sig = [float(s) for s in SIG[:-1]]
    assert len(got) == len(sig) and all(g > s for g, s in zip(got, sig))


def test_flat_churn_settings_build_one_churn_record():
    seeded = lambda: (lambda g: lambda x: torch.randn(x.shape, generator=g, dtype=x.dtype))(  # noqa: E731
        torch.Generator().manual_seed(1))
    flat = call_sampler("heun", DEN, X0, SIG, noise=seeded(), churn=3.0, s_tmin=0.05, s_tmax=10.0, s_noise=1.003)
    record = sample_heun(DEN, X0, SIG, churn=Churn(3.0, s_tmin=0.05, s_tmax=10.0, s_noise=1.003), noise=seeded())
    assert torch.equal(flat, record)
    assert not torch.equal(flat, sample_heun(DEN, X0, SIG, churn=3.0, noise=seeded()))  # the settings matter
    outside = call_sampler("heun", DEN, X0, SIG, noise=torch.ones_like, churn=3.0, s_tmax=1e-3)  # no step in range
    assert torch.equal(outside, sample_heun(DEN, X0, SIG))
    assert sampler_options("heun")[:4] == ("churn", "s_tmin", "s_tmax", "s_noise")


def test_edmsound_generator_refuses_a_wrong_sampler_option(tmp_path):
    from generators.edmsound.trainer import Trainer, waves_to_specs
    from generators.registry import load_generator

    torch.set_num_threads(1)
    cfg = micro_config()
    waves, labels = eight_clips()
    Trainer(cfg, waves_to_specs(waves, cfg), torch.tensor(labels), tmp_path).run(1, progress=False)
    gen = load_generator(f"edmsound:{tmp_path}")
    with pytest.raises(GeneratorError, match=r"sampler 'deis' does not take option\(s\) 'churn'; it accepts: order"):
        gen.generate(1, sampler="deis", steps=2, churn=1.0)
    steps = []
    gen.generate(1, sampler="dpmpp_2m", steps=2, callback=lambda i, s, x, d: steps.append(i))
    assert steps == [0, 1]


def test_memorizer_refuses_a_wrong_sampler_option(tmp_path):
    from generators.registry import load_generator

    gen = load_generator(f"memorizer:{write_corpus(tmp_path / 'corpus', seconds=0.5)}", clip_seconds=0.5)
    with pytest.raises(GeneratorError, match=r"sampler 'dpmpp_2m' does not take option\(s\) 'order'"):
        gen.generate(1, sampler="dpmpp_2m", steps=4, order=2)
    a = gen.generate(1, seed=3, sampler="heun", steps=4, churn=1.0, cfg=2.0)  # churn noise is seeded
    b = gen.generate(1, seed=3, sampler="heun", steps=4, churn=1.0)
    assert np.array_equal(a.clips[0].wave, b.clips[0].wave) and a.clips[0].meta["churn"] == 1.0


def test_tango_refuses_wrong_or_orphan_sampler_opts(tmp_path):
    pytest.importorskip("diffusers")
    import helpers_adapters as H

    from generators.registry import load_generator

    torch.set_num_threads(1)
    g = load_generator(f"tango:{H.save_tango_diffusers(tmp_path / 'tango', H.tiny_tango_parts(seed=0))}",
                       device="cpu")
    fast = dict(conditions=["a dog barks"], steps=2, duration=H.DURATION)
    with pytest.raises(GeneratorError, match=r"sampler 'deis' does not take option\(s\) 'churn'"):
        g.generate(1, sampler="deis", sampler_opts={"churn": 1.0}, **fast)
    with pytest.raises(GeneratorError, match="apply to the EDM samplers only"):
        g.generate(1, sampler="ddim", sampler_opts={"order": 2}, **fast)
    a = g.generate(1, seed=4, sampler="heun", sampler_opts={"churn": 1.0}, **fast)
    b = g.generate(1, seed=4, sampler="heun", sampler_opts={"churn": 1.0}, **fast)
    np.testing.assert_array_equal(a.clips[0].wave, b.clips[0].wave)  # churn noise from the per-sample seeds
