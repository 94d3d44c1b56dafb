"""Report figures (matplotlib, Agg canvas, no pyplot state).

The similarity histogram is the figure of EDMSound's memorisation analysis (Zhu et al.
2023, "EDMSound", §5 / Fig. 4): the distribution of each generated clip's top-1
similarity to the training set, drawn over the training set's own nearest-neighbour
(train-vs-train, non-self) distribution, with the flagging threshold marked.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from audioaudit.util.atomic import atomic_path


def plain(text: object) -> str:
    """Text safe for matplotlib labels: '$' would start mathtext, so escape it."""
    return str(text).replace("$", r"\$")


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})


def _bins(*arrays: np.ndarray, n: int = 40) -> np.ndarray:
    vals = np.concatenate([a for a in arrays if a.size] or [np.zeros(1)])
    lo, hi = float(np.min(vals)), float(np.max(vals))
    pad = max(0.02 * (hi - lo), 0.05 if hi - lo < 1e-6 else 0.0)
    lo, hi = lo - pad, hi + pad
    return np.linspace(lo, hi, n + 1)


def _hist(ax, data: np.ndarray, bins, label: str, color: str, filled: bool) -> None:
    if not data.size:
        return
    kw = dict(bins=bins, density=True, label=f"{label} (n={data.size})", color=color)
    if filled:
        ax.hist(data, alpha=0.45, **kw)
    else:
        ax.hist(data, histtype="step", linewidth=1.8, **kw)


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left")


def similarity_histogram(
    path: Path,
    gen_sim: np.ndarray,
    ref_sim: np.ndarray,
    gen_score: np.ndarray,
    threshold: float | None,
    threshold_on: str = "score",
    title: str = "",
) -> Path:
    """EDMSound's figure: generated-vs-train top-1 similarity over train-vs-train.

    The threshold applies to ``threshold_on``: on "similarity" it is marked on the
    similarity panel; on the normalised "score" a second panel shows the generated
    clips' top-1 scores with the threshold.
    """
    two = threshold_on != "similarity" and gen_score.size > 0
    fig = _figure(9.0 if two else 5.6, 3.4)
    axes = fig.subplots(1, 2) if two else [fig.subplots(1, 1)]
    ax = axes[0]
    marked = np.array([threshold]) if threshold is not None and not two else np.zeros(0)
    bins = _bins(gen_sim, ref_sim, marked)
    _hist(ax, ref_sim, bins, "train vs train (nearest other clip)", "#7f7f7f", True)
    _hist(ax, gen_sim, bins, "generated vs train (top-1)", "#d62728", False)
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("density")
    ax.set_title("top-1 similarity", fontsize=10)
    if not gen_sim.size and not ref_sim.size:
        ax.text(0.5, 0.5, "no similarities recorded", ha="center", transform=ax.transAxes)
    if threshold is not None and not two:
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    _legend(ax)
    if two:
        ax2 = axes[1]
        marked = np.array([threshold]) if threshold is not None else np.zeros(0)
        _hist(ax2, gen_score, _bins(gen_score, marked), "generated (top-1 score)", "#d62728", True)
        if threshold is not None:
            ax2.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
        ax2.set_xlabel("normalised score (what the threshold applies to)")
        ax2.set_title("top-1 normalised score", fontsize=10)
        _legend(ax2)
    if title:
        fig.suptitle(plain(title), fontsize=11)
    _save(fig, path)
    return path


def comparison_plot(path: Path, runs: list[dict]) -> Path:
    """Flagged rate (95 % CI) and similarity percentiles per run.

    ``runs``: dicts with ``name``, ``rate``, ``ci`` (lo, hi) or None, ``gen`` and
    ``ref`` ({"50": v, "90": v, ...} percentiles, values may be None).
    """
    fig = _figure(9.0, 3.4)
    ax1, ax2 = fig.subplots(1, 2)
    x = np.arange(len(runs))
    names = [plain(r["name"]) for r in runs]
    rates = np.array([np.nan if r["rate"] is None else 100 * r["rate"] for r in runs])
    err = np.array([
        [max(0.0, 100 * (r["rate"] - r["ci"][0])), max(0.0, 100 * (r["ci"][1] - r["rate"]))]
        if r["ci"] and r["rate"] is not None else [0.0, 0.0]
        for r in runs
    ]).T
    ax1.bar(x, np.nan_to_num(rates), yerr=err, capsize=4, color="#d62728", alpha=0.75)
    ax1.set_ylabel("flagged (%)")
    ax1.set_title("flagged rate, 95 % CI", fontsize=10)
    for pct, style in (("50", "o-"), ("90", "s-"), ("95", "^-"), ("99", "v-")):
        ys = [r["gen"].get(pct) for r in runs]
        ys = [np.nan if v is None else v for v in ys]
        line = ax2.plot(x, ys, style, label=f"gen p{pct}")
        refs = [r["ref"].get(pct) for r in runs if r["ref"].get(pct) is not None]
        if refs:
            ax2.axhline(float(np.mean(refs)), color=line[0].get_color(), linestyle=":", linewidth=1)
    ax2.set_ylabel("top-1 similarity")
    ax2.set_title("generated-vs-train percentiles (dotted: train-vs-train)", fontsize=10)
    ax2.legend(fontsize=7)
    crowded = len(runs) > 3
    for ax in (ax1, ax2):
        ax.set_xticks(x, names, rotation=20 if crowded else 0, ha="right" if crowded else "center", fontsize=8)
    _save(fig, path)
    return path
