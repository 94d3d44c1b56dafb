"""Denoisers known in closed form, and reference ODE solutions, for tests and controls.

* The ideal denoiser of a finite training set {y_i} (the minimiser of the EDM loss on that
  set, Karras et al. 2022, App. B.3, Eq. 57): D(x; sigma) = sum_i softmax_i(-|x - y_i|^2 /
  2 sigma^2) y_i. Sampling with it reproduces training points: the memorizer control.
* The ideal denoiser of an isotropic Gaussian mixture: posterior-weighted per-component
  Wiener estimates. Its probability-flow ODE has no closed form in general, so
  :func:`reference_solve` integrates it very finely (DOP853, rtol 1e-11) in t = log sigma.
* A single Gaussian N(mu, s^2 I) has the closed-form trajectory
  x(sigma) = mu + (x_T - mu) sqrt((s^2 + sigma^2) / (s^2 + sigma_T^2)).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def ideal_denoiser(points: torch.Tensor, log_weights: torch.Tensor | None = None, chunk: int = 64):
    """D(x, sigma) for the empirical distribution of ``points`` (N, ...) (Karras 2022, Eq. 57).

    Distances are computed in float64 so the softmax stays exact at small sigma.
    """
    y = _flat(points).double()
    y_sq = (y * y).sum(1)
    logw = torch.zeros(len(y), dtype=torch.float64) if log_weights is None else log_weights.double()

    def denoise(x, sigma):
        xt = torch.as_tensor(x)
        out = []
        for xs in _flat(xt).double().split(chunk):
            d2 = (xs * xs).sum(1, keepdim=True) - 2 * xs @ y.T + y_sq[None, :]
            w = torch.softmax(-d2.clamp_min(0) / (2 * float(sigma) ** 2) + logw[None, :], dim=1)
            out.append(w @ y)
        return torch.cat(out).reshape(xt.shape).to(xt.dtype)

    return denoise


@dataclass(frozen=True)
class GaussianMixture:
    means: torch.Tensor  # (K, d)
    stds: torch.Tensor  # (K,) isotropic standard deviation per component
    weights: torch.Tensor  # (K,) summing to 1

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.means.shape[1], generator=generator, dtype=self.means.dtype)
        return self.means[k] + self.stds[k, None] * z


def benchmark_mixture(dim: int = 8, components: int = 8, seed: int = 0) -> GaussianMixture:
    """The sampler benchmark's mixture: means ~ N(0, 0.5^2 I), stds ~ U(0.1, 0.3), equal weights."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(components, dim, generator=g, dtype=torch.float64) * 0.5
    stds = torch.rand(components, generator=g, dtype=torch.float64) * 0.2 + 0.1
    return GaussianMixture(means, stds, torch.full((components,), 1 / components, dtype=torch.float64))


def gmm_denoiser(gmm: GaussianMixture):
    """E[y | x; sigma] for y ~ sum_k pi_k N(mu_k, s_k^2 I), x = y + sigma n.

    Component posteriors pi_k N(x; mu_k, (s_k^2 + sigma^2) I), each with the Wiener
    estimate mu_k + s_k^2 / (s_k^2 + sigma^2) (x - mu_k).
    """
    mu, s2, logpi = gmm.means.double(), gmm.stds.double() ** 2, gmm.weights.double().log()
    dim = mu.shape[1]

    def denoise(x, sigma):
        xt = torch.as_tensor(x)
        xf = _flat(xt).double()
        var = s2 + float(sigma) ** 2  # (K,)
        d2 = ((xf[:, None, :] - mu[None]) ** 2).sum(-1)  # (B, K)
        logp = logpi[None] - 0.5 * dim * var.log()[None] - d2 / (2 * var[None])
        w = torch.softmax(logp, dim=1)
        gain = (s2 / var)[None, :, None]
        est = mu[None] + gain * (xf[:, None, :] - mu[None])
        return (w[:, :, None] * est).sum(1).reshape(xt.shape).to(xt.dtype)

    return denoise


def gaussian_denoiser(mean: float, std: float):
    """D for y ~ N(mean, std^2 I): the Wiener estimate."""
    return lambda x, sigma: mean + std**2 / (std**2 + float(sigma) ** 2) * (x - mean)


def gaussian_ode_solution(x_start, sigma_start: float, sigma: float, mean: float, std: float):
    """Exact probability-flow ODE trajectory of N(mean, std^2 I) (dx/dsigma = (x - D)/sigma)."""
    return mean + (x_start - mean) * math.sqrt((std**2 + sigma**2) / (std**2 + sigma_start**2))


def reference_solve(denoiser, x_start: torch.Tensor, sigma_start: float, sigma_end: float = 0.0,
                    rtol: float = 1e-11, atol: float = 1e-11) -> torch.Tensor:
    """Very fine DOP853 solve of dx/dt = x - D(x; e^t), t = log sigma (the EDM ODE, Eq. 4).

    ``sigma_end = 0`` integrates to sigma = 1e-9, where the remaining change is O(sigma^2).
    """
    from scipy.integrate import solve_ivp

    shape = x_start.shape
    end = sigma_end if sigma_end > 0 else 1e-9

    def rhs(t, y):
        x = torch.from_numpy(y.reshape(shape))
        return (x - denoiser(x, math.exp(t))).numpy().ravel()

    y0 = x_start.double().numpy().ravel()
    sol = solve_ivp(rhs, (math.log(sigma_start), math.log(end)), y0, method="DOP853", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"reference solve failed: {sol.message}")
    return torch.from_numpy(np.ascontiguousarray(sol.y[:, -1]).reshape(shape))
