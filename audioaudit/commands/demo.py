"""`audioaudit demo`: synthesise a corpus, train a detector, index, audit four sources, report."""
from __future__ import annotations

from pathlib import Path

import typer


def demo_cmd(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Folder for every step's output."),
    quick: bool = typer.Option(False, "--quick", help="Reduced demo (fewer clips and steps), as CI runs it."),
    seed: int = typer.Option(0, "--seed"),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """The whole story with no downloads: find memorised clips, leave novel ones alone."""
    import time

    from rich.console import Console
    from rich.table import Table

    from audioaudit.demo import DemoConfig, run_demo

    console = Console()
    cfg = DemoConfig.quick(out) if quick else DemoConfig(out=out)
    cfg.seed, cfg.progress = seed, not quiet
    t0 = time.time()
    res = run_demo(cfg, log=lambda m: console.print(m, highlight=False, markup=False))
    table = Table(title="audit of four sources at the calibrated threshold")
    for col in ("source", "what it is", "audited", "flagged", "flagged rate"):
        table.add_column(col, justify="right" if col in ("audited", "flagged", "flagged rate") else "left")
    for f in res.sources:
        table.add_row(f.source, f.kind, str(f.audited), str(f.flagged), f"{f.rate:.3f}")
    console.print(table)
    thr = "none" if res.threshold is None else f"{res.threshold:.3f} on {res.threshold_on}"
    prec = ("" if res.calibrated_false_flag_rate is None
            else f" (false flags {res.calibrated_false_flag_rate:.3f} on the {res.n_calibration} novel clips it was "
                 f"calibrated on" + ("" if res.false_flag_rate_bound is None else
                                     f"; they bound the rate on novel clips at <= {res.false_flag_rate_bound:.3f}, 95 %")
                 + ")")
    console.print(f"threshold: {thr}{prec}")
    console.print(f"recall on planted copies: {res.planted_recall:.3f} (goal ≥ 0.90)")
    console.print(f"false flags on held-out clips: {res.heldout_false_flag_rate:.3f} (goal ≤ 0.05)")
    console.print(f"memorizer clips flagged: {res.memorizer_flag_rate:.3f} (goal ≥ 0.90)")
    console.print(f"steps (s): {res.seconds}; total {time.time() - t0:.0f} s")
    console.print(f"[bold]report:[/] {res.report}")
    if not res.passed():
        console.print("[yellow]the controls did not all reach their goals on this run[/]")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
