"""Deterministic ODE samplers for an EDM denoiser, one short function each.

Shared signature (the k-diffusion convention): ``sample_x(denoiser, x, sigmas, *, ...)``
where ``denoiser(x, sigma) -> D(x; sigma)`` takes a Python float ``sigma``, ``x`` starts
at ``sigmas[0]`` (usually ``sigma_max * randn``) and ``sigmas`` is a decreasing 1-D
tensor, normally ending with 0 (see the ``get_sigmas_*`` schedules). The samplers only
add and scale ``x``, so they work on torch tensors and NumPy arrays alike.

Options are keyword-only and explicit: :func:`call_sampler` (what every caller uses)
refuses an option the sampler does not take, naming both and listing what it accepts
(:func:`sampler_options`). Settings that belong together travel as one small record
(Heun's :class:`Churn`); callers may still name its fields as flat options (``churn=1.0,
s_noise=1.003``) and :func:`call_sampler` builds the record. Every sampler takes ``callback(i, sigma, x, denoised)``,
called once per step ``i = 0 .. len(sigmas) - 2`` right after the step's first denoiser
evaluation, with ``denoised = D(x; sigma)`` (``sigma = sigmas[i]``, or Heun's churned
``sigma_hat`` with its churned ``x``): the denoised trajectory, for inspection only.

All of them integrate the probability-flow ODE of Karras et al. 2022 (Eq. 4 with
s(t) = 1, sigma(t) = t):   dx/dsigma = eps(x; sigma) = (x - D(x; sigma)) / sigma.

NFE (denoiser evaluations) for n = len(sigmas) - 1 steps: Euler n; Heun 2n - 1 when the
last sigma is 0 (the last step is an Euler step), else 2n; DEIS / DPM-Solver++ n.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from generators.base import GeneratorError

Denoiser = Callable[[object, float], object]
Callback = Optional[Callable[[int, float, object, object], None]]  # (i, sigma, x, denoised)
Noise = Optional[Callable[[object], object]]  # noise(like) -> standard normal shaped like ``like``


# --------------------------------------------------------------------------- schedules
def get_sigmas_karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022, Eq. 5: sigma_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho, then 0."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return torch.cat([(hi + ramp * (lo - hi)) ** rho, torch.zeros(1, dtype=torch.float64)])


def get_sigmas_loglinear(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """Uniform in log-SNR, lambda = -log sigma (Lu et al. 2022, DPM-Solver Sec. 3.3), then 0."""
    sig = torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float64).exp()
    return torch.cat([sig, torch.zeros(1, dtype=torch.float64)])


SCHEDULES = {"karras": get_sigmas_karras, "loglinear": get_sigmas_loglinear}


def nfe(sampler: str, sigmas) -> int:
    """Honest count of denoiser evaluations of ``SAMPLERS[sampler]`` on ``sigmas``."""
    n = len(sigmas) - 1
    if sampler == "heun":
        return 2 * n - (1 if float(sigmas[-1]) == 0 else 0)
    return n


def steps_for_nfe(sampler: str, budget: int) -> int:
    """Most steps whose NFE (with a final sigma of 0) fits ``budget``."""
    return (budget + 1) // 2 if sampler == "heun" else budget


# --------------------------------------------------------------------------- samplers
def to_d(x, sigma: float, denoised):
    """dx/dsigma = (x - D(x; sigma)) / sigma, Karras et al. 2022 Eq. 4 (k-diffusion's ``to_d``)."""
    return (x - denoised) / sigma


def sample_euler(denoiser: Denoiser, x, sigmas, *, callback: Callback = None):
    """Euler on dx/dsigma = (x - D)/sigma (Karras et al. 2022, Eq. 4; Song et al. 2021)."""
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoiser(x, s)
        if callback is not None:
            callback(i, s, x, denoised)
        x = x + (s_next - s) * to_d(x, s, denoised)
    return x


@dataclass(frozen=True)
class Churn:
    """Stochastic churn of Heun's sampler, Karras et al. 2022 Algorithm 2 (S_churn, S_tmin, S_tmax, S_noise).

    At steps with ``s_tmin <= sigma <= s_tmax`` the noise level is raised by the factor
    ``1 + min(churn / n, sqrt(2) - 1)`` with fresh noise scaled by ``s_noise``; ``churn=0``
    is the deterministic sampler.
    """

    churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0


def as_churn(churn: Churn | float = 0.0, **settings) -> Churn:
    """A :class:`Churn` from a record or a bare S_churn, ``settings`` (s_tmin, s_tmax, s_noise) overriding."""
    record = churn if isinstance(churn, Churn) else Churn(churn=churn)
    return dataclasses.replace(record, **settings) if settings else record


def sample_heun(denoiser: Denoiser, x, sigmas, *, churn: Churn | float = 0.0, noise: Noise = None,
                callback: Callback = None):
    """Heun's 2nd-order method with optional churn (Karras et al. 2022, Algorithm 2).

    ``churn``: a :class:`Churn` record, or a bare S_churn (the other settings at their
    defaults). ``noise(x)`` draws a standard normal like ``x`` (default ``torch.randn_like``);
    only used when the churn is active. The callback gets the churned ``x`` and ``sigma_hat``.
    """
    c = as_churn(churn)
    n = len(sigmas) - 1
    for i in range(n):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        gamma = min(c.churn / n, math.sqrt(2) - 1) if c.s_tmin <= s <= c.s_tmax else 0.0
        s_hat = s * (1 + gamma)
        if gamma > 0:  # Alg. 2 lines 4-6: raise the noise level to s_hat
            x = x + math.sqrt(s_hat**2 - s**2) * c.s_noise * (noise or torch.randn_like)(x)
        denoised = denoiser(x, s_hat)
        if callback is not None:
            callback(i, s_hat, x, denoised)
        d = to_d(x, s_hat, denoised)
        x_next = x + (s_next - s_hat) * d
        if s_next != 0:  # Alg. 2 lines 9-11: second-order correction
            d2 = to_d(x_next, s_next, denoiser(x_next, s_next))
            x_next = x + (s_next - s_hat) * (d + d2) / 2
        x = x_next
    return x


def _lagrange(nodes: np.ndarray, j: int) -> np.polynomial.Polynomial:
    poly = np.polynomial.Polynomial([1.0])
    for m, tm in enumerate(nodes):
        if m != j:
            poly = poly * np.polynomial.Polynomial([-tm, 1.0]) / (nodes[j] - tm)
    return poly


def lagrange_integrals(nodes, a: float, b: float) -> list[float]:
    """int_a^b l_j(t) dt for the Lagrange basis l_j on ``nodes`` (exact; shifted by a for conditioning)."""
    nodes = np.asarray(nodes, dtype=np.float64) - a
    return [float(_lagrange(nodes, j).integ()(b - a)) for j in range(len(nodes))]


def exp_lagrange_integrals(nodes, a: float, b: float) -> list[float]:
    """int_a^b e^u l_j(u) du, exact: an antiderivative of e^u p(u) is e^u (p - p' + p'' - ...).

    ``b = -inf`` is allowed (sigma = e^b = 0). Shifted by a: the result is e^a int_0^(b-a) e^v q(v) dv.
    """
    nodes = np.asarray(nodes, dtype=np.float64) - a
    out = []
    for j in range(len(nodes)):
        p, anti = _lagrange(nodes, j), np.polynomial.Polynomial([0.0])
        for k in range(len(nodes)):
            anti = anti + (-1) ** k * p.deriv(k)
        upper = 0.0 if b == -math.inf else math.exp(b - a) * float(anti(b - a))
        out.append(math.exp(a) * (upper - float(anti(0.0))))
    return out


def sample_deis(denoiser: Denoiser, x, sigmas, *, order: int = 3, time: str = "log", lower_order_final: bool = True,
                callback: Callback = None):
    """DEIS tAB-r, Zhang & Chen 2023 (ICLR), Eq. 14-15: exponential integrator + Adams-Bashforth on eps.

    With s(t) = 1 (EDM) the linear part of the ODE vanishes and the exponential integrator
    is x_{i+1} = x_i + int sigma'(t) eps dt over [t_i, t_{i+1}]; eps is extrapolated by the
    Lagrange polynomial in t through its last ``order`` values and the weights integrated
    exactly. ``time="log"``: t = log sigma (sigma(t) = e^t, weights int e^t l_j(t) dt);
    ``time="sigma"``: t = sigma (EDM's sigma(t) = t, weights int l_j(t) dt). Lower orders
    warm up the first steps; with ``lower_order_final`` the step to sigma = 0 is first order
    (x = D, as DPM-Solver's lower_order_final): extrapolating eps across a late mode switch
    would overshoot, and the first-order step costs O(sigma_min^2).
    """
    eps_hist: list = []
    t_hist: list[float] = []
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoiser(x, s)
        if callback is not None:
            callback(i, s, x, denoised)
        eps_hist = [to_d(x, s, denoised)] + eps_hist[: order - 1]
        if s_next == 0 and lower_order_final:
            eps_hist = eps_hist[:1]
        if time == "log":
            t_hist = [math.log(s)] + t_hist[: order - 1]
            t_next = math.log(s_next) if s_next > 0 else -math.inf
            coeffs = exp_lagrange_integrals(t_hist[: len(eps_hist)], t_hist[0], t_next)
        else:
            t_hist = [s] + t_hist[: order - 1]
            coeffs = lagrange_integrals(t_hist[: len(eps_hist)], s, s_next)
        x = x + sum(c * e for c, e in zip(coeffs, eps_hist))
    return x


def sample_dpmpp_2m(denoiser: Denoiser, x, sigmas, *, callback: Callback = None):
    """DPM-Solver++(2M), Lu et al. 2022 (arXiv:2211.01095), Algorithm 2, with lambda = -log sigma.

    x_{i+1} = (sigma_{i+1}/sigma_i) x_i - (e^{-h} - 1) D', D' = (1 + 1/2r) D_i - (1/2r) D_{i-1};
    the step to sigma = 0 is first order (x = D).
    """
    d_old, h_old = None, None
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        d = denoiser(x, s)
        if callback is not None:
            callback(i, s, x, d)
        if s_next == 0:
            x = d
            continue
        h = math.log(s / s_next)
        if d_old is None:
            d_prime = d
        else:
            r = h_old / h
            d_prime = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * d_old
        x = (s_next / s) * x - math.expm1(-h) * d_prime
        d_old, h_old = d, h
    return x


def sample_dpmpp_3m(denoiser: Denoiser, x, sigmas, *, callback: Callback = None):
    """DPM-Solver++(3M), Lu et al. 2022 (arXiv:2211.01095, Eq. 9 + Taylor terms to 2nd order).

    x_{i+1} = e^{-h} x_i - phi_1 D_i + phi_2 d1 - phi_3 d2 with lambda = -log sigma,
    phi_1 = e^{-h} - 1, phi_2 = phi_1/h + 1, phi_3 = phi_2/h - 1/2 and divided differences
    d1 ~ h D', d2 ~ h^2 D'' over the last three steps. (The multistep update in the public
    DPM-Solver / k-diffusion code multiplies its d2 ~ h^2 D''/2 by phi_3, half the Taylor
    coefficient: that variant converges at order 2; this one at order 3, see
    tests/test_samplers.py.) Lower orders warm up; the step to sigma = 0 is x = D.
    """
    ds: list = []
    hs: list[float] = []
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        d = denoiser(x, s)
        if callback is not None:
            callback(i, s, x, d)
        if s_next == 0:
            x = d
            continue
        h = math.log(s / s_next)
        phi_1 = math.expm1(-h)
        phi_2 = phi_1 / h + 1
        x = (s_next / s) * x - phi_1 * d
        if ds:
            d1_0 = (d - ds[0]) * (h / hs[0])
        if len(ds) == 1:
            x = x + phi_2 * d1_0
        elif len(ds) == 2:
            r0, r1 = hs[0] / h, hs[1] / h
            d1_1 = (ds[0] - ds[1]) / r1
            d1 = d1_0 + (d1_0 - d1_1) * (r0 / (r0 + r1))
            d2 = (d1_0 - d1_1) * (2 / (r0 + r1))
            x = x + phi_2 * d1 - (phi_2 / h - 0.5) * d2
        ds, hs = [d] + ds[:1], [h] + hs[:1]
    return x


SAMPLERS: dict[str, Callable] = {
    "euler": sample_euler,
    "heun": sample_heun,
    "deis": sample_deis,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_3m": sample_dpmpp_3m,
}


CHURN_FIELDS = tuple(f.name for f in dataclasses.fields(Churn))  # churn, s_tmin, s_tmax, s_noise


def sampler_options(name: str) -> tuple[str, ...]:
    """The keyword options ``SAMPLERS[name]`` accepts: its keyword-only parameters, with a
    ``churn`` record parameter spelled out as the fields of :class:`Churn`."""
    params = inspect.signature(SAMPLERS[name]).parameters.values()
    names = [p.name for p in params if p.kind is p.KEYWORD_ONLY]
    return tuple(f for n in names for f in (CHURN_FIELDS if n == "churn" else (n,)))


def check_options(name: str, opts) -> None:
    """A :class:`GeneratorError` for an unknown sampler or an option it does not take."""
    if name not in SAMPLERS:
        raise GeneratorError(f"unknown sampler '{name}'; use one of: {', '.join(SAMPLERS)}")
    known = sampler_options(name)
    unknown = [k for k in opts if k not in known]
    if unknown:
        raise GeneratorError(f"sampler '{name}' does not take option(s) {', '.join(map(repr, unknown))}; "
                             f"it accepts: {', '.join(known)}")


def _fold_churn(opts: dict) -> dict:
    """Checked ``opts`` with flat churn settings (``churn=1.0, s_tmin=0.05``) gathered into one
    ``churn=Churn(1.0, s_tmin=0.05)``: the one place the record is built from options."""
    out = {k: v for k, v in opts.items() if k not in CHURN_FIELDS}
    given = {k: v for k, v in opts.items() if k in CHURN_FIELDS}
    if given:
        out["churn"] = as_churn(given.pop("churn", 0.0), **given)
    return out


def call_sampler(name: str, denoiser: Denoiser, x, sigmas, *, noise: Noise = None, **opts):
    """``SAMPLERS[name](denoiser, x, sigmas, **opts)`` after :func:`check_options`.

    ``noise`` is the caller's (seeded) noise source: it goes to the samplers that draw
    noise (those with a ``noise`` option, i.e. Heun's churn); the others are deterministic.
    """
    check_options(name, opts)
    opts = _fold_churn(opts)  # only Heun takes churn settings (checked above)
    if noise is not None and "noise" in sampler_options(name):
        opts["noise"] = noise
    return SAMPLERS[name](denoiser, x, sigmas, **opts)
