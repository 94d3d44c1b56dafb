"""Memorisation statistics of an audit (pure functions returning small dataclasses).

* percentiles of generated-vs-train top-1 similarity, beside the training set's own
  nearest non-self neighbour similarities (the *reference* distribution);
* EDMSound's statistic (Zhu et al. 2023, §5 "memorization"): the gap between the 95th
  percentile of generated-vs-train and train-vs-train top-1 similarity;
* the fraction of generations above a similarity threshold (Somepalli et al. 2023,
  "Diffusion art or digital forgery?", §4: fraction with SSCD similarity > 0.5);
* the nearest-neighbour ratio test of Gu et al. 2023 ("On memorization in diffusion
  models", Eq. 3): a generation memorises when ||x − NN1|| / ||x − NN2|| < 1/3. On unit
  vectors ||a − b|| = sqrt(2 − 2 cos(a, b));
* binomial proportions with the Wilson score interval (Wilson 1927), overall, per class,
  and per duplication level of the training source (Carlini et al. 2023, §4.2: duplicated
  training examples are extracted far more often).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

RATIO_TAU = 1.0 / 3.0


@dataclass(frozen=True)
class Percentiles:
    n: int
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None

    def as_dict(self) -> dict:
        """JSON form used in summary.json: n and the percentiles keyed "50", "90", "95", "99"."""
        return {"n": self.n, "50": self.p50, "90": self.p90, "95": self.p95, "99": self.p99}


def percentiles(x: Sequence[float]) -> Percentiles:
    a = np.asarray(x, dtype=np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return Percentiles(0, None, None, None, None)
    p = np.percentile(a, [50, 90, 95, 99])
    return Percentiles(int(a.size), *(float(v) for v in p))


@dataclass(frozen=True)
class Proportion:
    count: int
    n: int
    rate: float | None
    lo: float | None  # Wilson 95 % interval
    hi: float | None

    def as_dict(self) -> dict:
        """JSON form used in summary.json: count, n, rate, ci95 = [lo, hi]."""
        return {"count": self.count, "n": self.n, "rate": self.rate, "ci95": [self.lo, self.hi]}


def wilson(k: int, n: int, z: float = 1.959964) -> Proportion:
    """Binomial proportion k/n with the Wilson score interval (z = 1.96 → 95 %)."""
    k, n = int(k), int(n)
    if n <= 0:
        return Proportion(k, n, None, None, None)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return Proportion(k, n, p, max(0.0, centre - half), min(1.0, centre + half))


def p95_gap(generated_top1: Sequence[float], reference_top1: Sequence[float]) -> float | None:
    """EDMSound: 95th percentile of gen-vs-train minus that of train-vs-train top-1."""
    g, r = percentiles(generated_top1).p95, percentiles(reference_top1).p95
    return None if g is None or r is None else g - r


def fraction_above(values: Sequence[float], threshold: float) -> Proportion:
    """Somepalli et al.: share of generations whose top-1 value exceeds ``threshold``."""
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    return wilson(int(np.sum(a > threshold)), int(a.size))


def nn_ratio(sim1: Sequence[float], sim2: Sequence[float]) -> np.ndarray:
    """||x − NN1|| / ||x − NN2|| from cosine similarities of unit vectors (Gu et al. 2023).

    NaN where there is no second neighbour; 0 when NN1 is the query itself (cos = 1).
    """
    s1 = np.clip(np.asarray(sim1, dtype=np.float64), -1.0, 1.0)
    s2 = np.clip(np.asarray(sim2, dtype=np.float64), -1.0, 1.0)
    d1 = np.sqrt(np.maximum(2.0 - 2.0 * s1, 0.0))
    d2 = np.sqrt(np.maximum(2.0 - 2.0 * s2, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(d2 > 0, d1 / d2, np.where(d1 > 0, np.inf, 1.0))
    return np.where(np.isfinite(s2), r, np.nan)


def ratio_test(ratios: Sequence[float], tau: float = RATIO_TAU) -> Proportion:
    """Share of generations with NN ratio below ``tau`` (NaN ratios are not counted)."""
    r = np.asarray(ratios, dtype=np.float64)
    r = r[~np.isnan(r)]
    return wilson(int(np.sum(r < tau)), int(r.size))


def per_class(labels: Sequence[str | None], flags: Sequence[bool]) -> dict[str, Proportion]:
    """Flagged rate per class (``None`` labels are reported under ``"(none)"``)."""
    out: dict[str, list[int]] = {}
    for lab, f in zip(labels, flags):
        key = "(none)" if lab is None or (isinstance(lab, float) and math.isnan(lab)) else str(lab)
        c = out.setdefault(key, [0, 0])
        c[0] += int(bool(f))
        c[1] += 1
    return {k: wilson(*v) for k, v in sorted(out.items())}


@dataclass(frozen=True)
class DuplicationLevel:
    size: str  # "1" (singletons), "2", "3", "4+"
    sources: int
    copied: Proportion  # sources copied by at least one flagged generation
    copies: int  # flagged generations whose top-1 source is at this level
    copies_per_source: float | None


@dataclass(frozen=True)
class Memorisation:
    """How often duplicated training sources are copied vs singletons."""

    levels: list[DuplicationLevel] = field(default_factory=list)
    duplicated: Proportion | None = None  # sources of size >= 2 copied at least once
    singletons: Proportion | None = None
    copies_per_source_ratio: float | None = None  # duplicated / singletons


def _level(size: int) -> str:
    return str(size) if size < 4 else "4+"


def memorisation(source_sizes: Mapping[str, int], copies: Mapping[str, int]) -> Memorisation:
    """``source_sizes``: every training source → number of files (1 = singleton);
    ``copies``: source → number of flagged generations whose top-1 source it is."""
    acc: dict[str, list[int]] = {}
    for src, size in source_sizes.items():
        a = acc.setdefault(_level(int(size)), [0, 0, 0])  # sources, copied, copies
        c = int(copies.get(src, 0))
        a[0] += 1
        a[1] += int(c > 0)
        a[2] += c
    levels = [
        DuplicationLevel(lvl, a[0], wilson(a[1], a[0]), a[2], a[2] / a[0] if a[0] else None)
        for lvl, a in sorted(acc.items(), key=lambda kv: (len(kv[0]), kv[0]))
    ]
    dup = [a for lvl, a in acc.items() if lvl != "1"]
    single = acc.get("1", [0, 0, 0])
    d_src, d_cop, d_copies = (sum(a[i] for a in dup) for i in range(3))
    cps_d = d_copies / d_src if d_src else None
    cps_s = single[2] / single[0] if single[0] else None
    ratio = cps_d / cps_s if cps_d is not None and cps_s else None
    return Memorisation(levels, wilson(d_cop, d_src), wilson(single[1], single[0]), ratio)


def to_jsonable(obj):
    """Dataclasses → dicts, numpy scalars → Python, NaN/inf → None (valid JSON)."""
    if hasattr(obj, "as_dict"):
        return to_jsonable(obj.as_dict())
    if hasattr(obj, "__dataclass_fields__"):
        return to_jsonable({f: getattr(obj, f) for f in obj.__dataclass_fields__})
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj
