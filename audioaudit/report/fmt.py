"""Tolerant formatting of numbers and nested summary values ("—" for anything missing)."""
from __future__ import annotations

import json
import math

DASH = "—"


def get(d, *keys):
    """``d[k1][k2]…`` or None when any level is missing or not a mapping."""
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def number(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def num(v, digits: int = 3) -> str:
    f = number(v)
    if f is None:
        return DASH
    if f.is_integer() and abs(f) >= 1 and digits <= 3:
        return f"{int(f):d}"
    return f"{f:.{digits}f}"


def count(v) -> str:
    f = number(v)
    return DASH if f is None else f"{int(round(f)):,}"


def pct(v, digits: int = 1) -> str:
    f = number(v)
    return DASH if f is None else f"{100 * f:.{digits}f} %"


def ci(v, digits: int = 1) -> str:
    """A [lo, hi] rate interval as "lo–hi %"."""
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        return DASH
    lo, hi = number(v[0]), number(v[1])
    if lo is None or hi is None:
        return DASH
    return f"{100 * lo:.{digits}f}–{100 * hi:.{digits}f} %"


def text(v) -> str:
    """Any JSON value as one line of text (dicts/lists compact JSON)."""
    if v is None:
        return DASH
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, ensure_ascii=False, sort_keys=True, default=str)
    if isinstance(v, float):
        return num(v, 4)
    return str(v)


def precision(v) -> str:
    """A precision target/estimate: fractions as %, anything else as text."""
    f = number(v)
    if f is not None and 0 <= f <= 1:
        return pct(f, 1)
    return text(v)
