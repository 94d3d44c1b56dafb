"""Samplers and schedules against denoisers known in closed form."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from generators.edmsound.analytic import (
    benchmark_mixture,
    gaussian_denoiser,
    gaussian_ode_solution,
    gmm_denoiser,
    ideal_denoiser,
    reference_solve,
)
from generators.edmsound.samplers import (
    SAMPLERS,
    call_sampler,
    exp_lagrange_integrals,
    get_sigmas_karras,
    get_sigmas_loglinear,
    lagrange_integrals,
    nfe,
    sample_heun,
    steps_for_nfe,
)


def test_karras_schedule_matches_eq5():
    s = get_sigmas_karras(10, 0.002, 80.0, rho=7.0)
    assert len(s) == 11 and s[-1] == 0
    assert s[0] == pytest.approx(80.0) and s[-2] == pytest.approx(0.002)
    i = 4
    expect = (80 ** (1 / 7) + i / 9 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert float(s[i]) == pytest.approx(expect, rel=1e-12)
    assert torch.all(s[:-1][1:] < s[:-1][:-1])


def test_loglinear_schedule_is_uniform_in_log_snr():
    s = get_sigmas_loglinear(8, 0.01, 10.0)
    d = torch.diff(torch.log(s[:-1]))
    assert torch.allclose(d, d[0].expand_as(d)) and s[-1] == 0


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("schedule", ["karras", "loglinear"])
def test_every_sampler_is_exact_on_a_single_data_point(name, schedule):
    """D = y for all x, sigma: the ODE solution y + (x_T - y) sigma / sigma_T is reached exactly."""
    g = torch.Generator().manual_seed(1)
    y = torch.randn(1, 3, 4, generator=g, dtype=torch.float64)
    den = ideal_denoiser(y)
    sig = (get_sigmas_karras if schedule == "karras" else get_sigmas_loglinear)(7, 0.002, 80.0)
    x0 = torch.randn(5, 3, 4, generator=g, dtype=torch.float64) * 80.0
    out = call_sampler(name, den, x0, sig)
    assert torch.allclose(out, y.expand_as(out), atol=1e-9, rtol=0)
    mid = call_sampler(name, den, x0, sig[:4])  # stopping at sigma_3 > 0 gives the exact interpolant
    exact = y + (x0 - y) * float(sig[3]) / 80.0
    assert torch.allclose(mid, exact, atol=1e-9, rtol=0)


ORDERS = [("euler", {}, 1), ("heun", {}, 2), ("dpmpp_2m", {}, 2), ("dpmpp_3m", {}, 3),
          ("deis", {"order": 1}, 1), ("deis", {"order": 2}, 2), ("deis", {"order": 3}, 3),
          ("deis", {"order": 3, "time": "sigma"}, 3)]


@pytest.mark.parametrize("name,opts,order", ORDERS)
def test_convergence_order_on_a_gaussian(name, opts, order):
    """Halving the step (log-SNR grid, 32 -> 64 -> 128 levels) divides the error by ~2^order."""
    mean, std, smax, smin = 0.3, 0.5, 80.0, 0.05
    den = gaussian_denoiser(mean, std)
    x0 = torch.randn(16, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * smax
    exact = gaussian_ode_solution(x0, smax, smin, mean, std)
    errs = [float((call_sampler(name, den, x0, get_sigmas_loglinear(n, smin, smax)[:-1], **opts) - exact).abs().max())
            for n in (32, 64, 128)]
    observed = math.log2(errs[1] / errs[2])
    assert order - 0.35 < observed < order + 1.6, (errs, observed)
    assert errs[2] < errs[1] < errs[0]


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_nfe_accounting_is_honest(name):
    calls = []

    def den(x, sigma):
        calls.append(sigma)
        return torch.zeros_like(x)

    for sig in (get_sigmas_karras(6, 0.002, 80.0), get_sigmas_karras(6, 0.002, 80.0)[:-1]):
        calls.clear()
        call_sampler(name, den, torch.ones(2, 3, dtype=torch.float64), sig)
        assert len(calls) == nfe(name, sig)
    assert nfe("heun", get_sigmas_karras(steps_for_nfe("heun", 10), 0.002, 80.0)) == 9


def test_heun_churn_uses_the_noise_function_and_plain_heun_is_deterministic():
    den = gaussian_denoiser(0.0, 0.5)
    sig = get_sigmas_karras(8, 0.002, 80.0)
    x0 = torch.full((2, 3), 40.0, dtype=torch.float64)
    a, b = sample_heun(den, x0, sig), sample_heun(den, x0, sig)
    assert torch.equal(a, b)
    draws = []
    noise = lambda x: (draws.append(1), torch.ones_like(x))[1]  # noqa: E731
    c = sample_heun(den, x0, sig, churn=4.0, noise=noise)
    assert draws and not torch.allclose(a, c)


def test_lagrange_weights_integrate_polynomials_exactly():
    nodes = [3.0, 2.0, 0.5]
    p = np.polynomial.Polynomial([0.3, -1.2, 0.7])  # degree 2 < 3 nodes: interpolation is exact
    w = lagrange_integrals(nodes, 3.0, 0.1)
    assert sum(wi * p(t) for wi, t in zip(w, nodes)) == pytest.approx(p.integ()(0.1) - p.integ()(3.0), rel=1e-12)
    # int e^u q(u) du, by fine quadrature, including an upper limit of -inf (sigma = 0)
    u_nodes, a = [0.2, 0.9, 1.7], 0.2
    q = np.polynomial.Polynomial([1.0, 0.5, -0.25])
    for b in (-0.6, -math.inf):
        w = exp_lagrange_integrals(u_nodes, a, b)
        lo = -40.0 if b == -math.inf else b
        grid = np.linspace(lo, a, 400001)
        ref = -np.trapz(np.exp(grid) * q(grid), grid)
        assert sum(wi * q(t) for wi, t in zip(w, u_nodes)) == pytest.approx(ref, rel=1e-7)


def test_analytic_denoisers():
    gmm = benchmark_mixture(dim=3, components=1, seed=0)
    mu, s = gmm.means[0], float(gmm.stds[0])
    x = torch.randn(4, 3, dtype=torch.float64)
    assert torch.allclose(gmm_denoiser(gmm)(x, 0.7), mu + s**2 / (s**2 + 0.49) * (x - mu))
    pts = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    den = ideal_denoiser(pts)
    q = torch.tensor([[0.9, 1.2]], dtype=torch.float64)
    assert torch.allclose(den(q, 1e-3), pts[1:])  # small sigma: the nearest point
    assert torch.allclose(den(q, 1e4), pts.mean(0, keepdim=True), atol=1e-6)  # large sigma: the mean
    x0 = torch.randn(3, 2, dtype=torch.float64) * 80
    ref = reference_solve(gaussian_denoiser(0.2, 0.4), x0, 80.0, 0.01)
    assert torch.allclose(ref, gaussian_ode_solution(x0, 80.0, 0.01, 0.2, 0.4), atol=1e-8)


def test_deis_beats_dpmpp_2m_and_heun_at_nfe_10_on_the_mixture_benchmark():
    """The goal figure of benchmarks/samplers.py, on a smaller draw of the same mixture."""
    gmm = benchmark_mixture()
    den = gmm_denoiser(gmm)
    x0 = torch.randn(128, gmm.means.shape[1], generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 80
    ref = reference_solve(den, x0, 80.0)

    def err(name, **opts):
        sig = get_sigmas_karras(steps_for_nfe(name, 10), 0.002, 80.0)
        return float((call_sampler(name, den, x0, sig, **opts) - ref).norm(dim=1).mean())

    deis = err("deis")
    assert deis <= 0.5 * err("dpmpp_2m")
    assert deis <= 0.1 * err("heun")
