"""Sampler accuracy: error vs the exact ODE solution for an analytic Gaussian-mixture denoiser.

Every sampler of ``generators.edmsound.samplers`` integrates the probability-flow ODE of
the ideal denoiser of a Gaussian mixture (8 components in 8-D, stds 0.1-0.3, EDM's
Karras schedule sigma 80 -> 0.002 -> 0, rho 7) from the same starting noise. The "exact"
end point is a DOP853 solve at rtol 1e-11 in t = log sigma (the mixture's ODE has no
closed form). Error = mean over trajectories of the L2 distance to it. NFE is honest:
Heun gets (NFE + 1) // 2 steps = NFE - 1 evaluations when NFE is even.

Goal (DESIGN.md): at NFE 10 the exponential-integrator multistep (DEIS) is at most half
DPM-Solver++(2M)'s error and a tenth of Heun's.

    python benchmarks/samplers.py [--n 512] [--seed 1] [--nfe 5 10 20 50]
"""
from __future__ import annotations

import argparse
import time

import torch

from generators.edmsound.analytic import benchmark_mixture, gmm_denoiser, reference_solve
from generators.edmsound.samplers import call_sampler, get_sigmas_karras, nfe, steps_for_nfe

VARIANTS = {  # label -> (sampler, options)
    "euler": ("euler", {}),
    "heun": ("heun", {}),
    "dpmpp_2m": ("dpmpp_2m", {}),
    "dpmpp_3m": ("dpmpp_3m", {}),
    "deis (tAB3, t=log sigma)": ("deis", {}),
    "deis (tAB2, t=log sigma)": ("deis", {"order": 2}),
    "deis (tAB3, t=sigma)": ("deis", {"time": "sigma"}),
}


def errors(n: int, seed: int, budgets: list[int]) -> dict[str, dict[int, tuple[float, int]]]:
    gmm = benchmark_mixture()
    den = gmm_denoiser(gmm)
    x0 = torch.randn(n, gmm.means.shape[1], generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 80.0
    t0 = time.time()
    ref = reference_solve(den, x0, 80.0)
    print(f"reference solve (DOP853, rtol 1e-11): {time.time() - t0:.1f} s for {n} trajectories")
    out: dict[str, dict[int, tuple[float, int]]] = {}
    for label, (name, opts) in VARIANTS.items():
        out[label] = {}
        for budget in budgets:
            sig = get_sigmas_karras(steps_for_nfe(name, budget), 0.002, 80.0, rho=7.0)
            x = call_sampler(name, den, x0, sig, **opts)
            out[label][budget] = (float((x - ref).norm(dim=1).mean()), nfe(name, sig))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512, help="trajectories")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--nfe", type=int, nargs="+", default=[5, 10, 20, 50])
    args = ap.parse_args()
    torch.set_num_threads(1)
    table = errors(args.n, args.seed, args.nfe)
    print(f"\n{'sampler':28s}" + "".join(f"{'NFE ' + str(b):>16s}" for b in args.nfe))
    for label, row in table.items():
        print(f"{label:28s}" + "".join(f"{e:>11.2e} ({k:2d})" for e, k in row.values()))
    print("(mean L2 error to the exact end point; actual NFE in brackets)")
    if 10 in args.nfe:
        deis, dpm2, heun = (table[k][10][0] for k in ("deis (tAB3, t=log sigma)", "dpmpp_2m", "heun"))
        ok = deis <= 0.5 * dpm2 and deis <= 0.1 * heun
        print(f"\nNFE 10: deis / dpmpp_2m = {deis / dpm2:.2f} (goal <= 0.5), deis / heun = {deis / heun:.3f} "
              f"(goal <= 0.1): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
