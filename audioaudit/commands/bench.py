"""`audioaudit synth`, `audioaudit bench`, `audioaudit calibrate`: the evidence side.

Heavy imports (numpy/scipy/torch/encoders) happen inside the commands so
``audioaudit --help`` stays fast.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def synth_cmd(
    out: Path = typer.Argument(..., help="Folder to write the corpus into (train/<class>/*.wav, heldout/<class>/*.wav)."),
    per_class: int = typer.Option(20, "--per-class", help="Training clips per class."),
    heldout_per_class: int = typer.Option(0, "--heldout-per-class", help="Held-out clips per class."),
    background_per_class: int = typer.Option(0, "--background-per-class", help="Background-set clips per class "
                                             "(background/: for `audioaudit index background`)."),
    classes: Optional[List[str]] = typer.Option(None, "--class", help="Only these classes (repeat); default all."),
    min_seconds: float = typer.Option(2.0, "--min-seconds"),
    max_seconds: float = typer.Option(4.0, "--max-seconds"),
    sample_rate: int = typer.Option(16000, "--sample-rate"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Synthesise a small sound-effect corpus (impacts, footsteps, engines, rain, bells,
    chirps, typing, barks, sirens, wind, speech via espeak-ng when installed)."""
    from rich.console import Console
    from rich.progress import Progress

    from audioaudit.audio import sounds, synth
    from audioaudit.errors import UserError

    try:
        usable, _ = sounds.available_classes(classes or None)
    except ValueError as e:
        raise UserError(str(e)) from None
    if min_seconds <= 0 or max_seconds < min_seconds:
        raise UserError(f"--min-seconds/--max-seconds must satisfy 0 < min <= max (got {min_seconds}, {max_seconds})")
    total = len(usable) * (per_class + heldout_per_class + background_per_class)
    with Progress(transient=True) as bar:
        task = bar.add_task("synthesising", total=total)
        info = synth.make_corpus(out, classes=classes or None, per_class=per_class, seconds=(min_seconds, max_seconds),
                                 sample_rate=sample_rate, seed=seed, heldout_per_class=heldout_per_class,
                                 background_per_class=background_per_class,
                                 progress=lambda: bar.advance(task))
    Console().print(f"wrote {len(info.train)} train + {len(info.heldout)} held-out clips "
                    f"({len(info.classes)} classes: {', '.join(info.classes)}) to {out}")


def _fmt(x: float) -> str:
    return "–" if x != x else f"{x:.3f}"


def bench_table(rows, summary: dict):
    """One rich table: metrics as rows, encoder × scoring side by side as columns."""
    from rich.markup import escape
    from rich.table import Table

    caption = (f"{summary['references']} references, {summary['copy_queries']} copy queries, "
               f"{summary['distractors']} distractors, {summary['duplicate_groups']} duplicate groups, "
               f"{len(summary['dropped'])} files dropped · per family: µAP / R@1 (family copies + all distractors)")
    t = Table(title=f"copy detection on {summary['corpus']}", caption=caption)
    t.add_column("metric")
    for r in rows:
        kind = {"similarity": "raw cosine", "score": "normalised", "verified": "verified"}[r.scoring]
        t.add_column(f"{escape(r.encoder)}\n{kind}", justify="right", overflow="fold")
    t.add_row("µAP", *[_fmt(r.report.overall.micro_ap) for r in rows])
    t.add_row("R@P90", *[_fmt(r.report.overall.recall_at_p90) for r in rows])
    t.add_row("R@1", *[_fmt(r.report.overall.recall_at_1) for r in rows], end_section=True)
    for g in sorted({g for r in rows for g in r.groups}, key=lambda g: (g != "train", g)):
        for label, attr in (("µAP", "micro_ap"), ("R@P90", "recall_at_p90")):
            t.add_row(f"{label} ({g} families)", *[_fmt(getattr(r.groups[g], attr)) if g in r.groups else "–"
                                                  for r in rows], end_section=label == "R@P90")
    for k in sorted({k for r in rows for k in r.kinds}):
        t.add_row(f"µAP / R@P90 ({k} copies + {k} distractors)",
                  *[f"{_fmt(r.kinds[k].micro_ap)} / {_fmt(r.kinds[k].recall_at_p90)}" if k in r.kinds else "–"
                    for r in rows], end_section=k == max(k for r in rows for k in r.kinds))
    families = sorted({f for r in rows for f in r.report.per_family})
    for f in families:
        cells = []
        for r in rows:
            m = r.report.per_family.get(f)
            cells.append("–" if m is None else f"{_fmt(m.micro_ap)} / {_fmt(m.recall_at_1)}")
        t.add_row(f, *cells)
    return t


def bench_cmd(
    corpus: Path = typer.Argument(..., help="Corpus folder (train/ + heldout/ split, or any folder of audio)."),
    encoders: List[str] = typer.Option(..., "--encoder", "-e", help="Encoder spec (repeat to compare side by side)."),
    families: Optional[List[str]] = typer.Option(None, "--family", "--families", help="Transformation families "
                                                 "(repeat or comma-separate); default: the standard set."),
    train_families: Optional[str] = typer.Option(None, "--train-families", help="Held-out-family protocol: the "
                                                 "families the detector trained on (comma-separated or 'standard'); "
                                                 "reported as one group."),
    test_families: Optional[str] = typer.Option(None, "--test-families", help="Families the detector never "
                                                "saw (comma-separated, or 'unseen' for the test-only set); reported as "
                                                "another group. A family a fine-tuned detector trained on is refused."),
    per_family: int = typer.Option(20, "--per-family", help="Copy queries per family."),
    distractors: int = typer.Option(100, "--distractors", help="Distractor queries (clips not in the references)."),
    seed: int = typer.Option(0, "--seed"),
    normalise: bool = typer.Option(True, "--normalise/--no-normalise", help="Also report SSCD-normalised scores."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Also report two-stage scores: each query's "
                                "top-k candidates re-scored by aligned log-mel correlation (audio verification)."),
    top_k: int = typer.Option(10, "--top-k", help="Predictions kept per query."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write all figures to this JSON file."),
    cache: Path = typer.Option(Path("runs/bench-cache"), "--cache", help="Where built benchmark sets are cached."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Rebuild the query set even if cached."),
    dedupe: bool = typer.Option(True, "--dedupe/--no-dedupe", help="Group exact/near twins (default); "
                                "--no-dedupe only to see what ignoring duplicates does to the figures."),
) -> None:
    """DISC-style copy-detection benchmark: µAP, recall at 90 % precision, recall@1, per family."""
    from rich.console import Console
    from rich.progress import Progress

    from audioaudit.detector.benchmark import dataset, evaluate
    from audioaudit.detector.benchmark.protocol import check_unseen, family_groups
    from audioaudit.encoders import load_encoder

    fams = tuple(f.strip() for item in (families or []) for f in item.split(",") if f.strip())
    groups = family_groups(train_families, test_families)
    if groups:
        fams = tuple(dict.fromkeys(fams + groups.get("train", ()) + groups.get("test", ())))
        for s in encoders:
            check_unseen(s, groups.get("test", ()))
    spec = dataset.BenchSpec(families=fams, per_family=per_family, distractors=distractors, seed=seed,
                               dedupe=dedupe)
    console = Console()
    loaded = [(s, load_encoder(s)) for s in encoders]  # a bad spec fails before any work
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("building benchmark", total=None)
        bench = dataset.build_benchmark(corpus, cache, spec, rebuild=rebuild,
                                          progress=lambda stage, n: bar.update(task, advance=n, description=stage))
        rows = []
        for s, enc in loaded:
            t = bar.add_task(f"embedding with {s}", total=len(bench.references) + len(bench.queries))
            rows += evaluate.run_benchmark(bench, enc, evaluate.RunSettings(s, normalise, top_k, groups, verify),
                                           progress=lambda n, t=t: bar.advance(t, n))
    summary = evaluate.bench_summary(bench)
    console.print(bench_table(rows, summary))
    for note in bench.notes:
        console.print(f"note: {note}")
    if json_out is not None:
        _write_json(json_out, {"benchmark": summary, "rows": [r.to_json() for r in rows]})
        console.print(f"wrote {json_out}")


def calibrate_cmd(
    corpus: Path = typer.Argument(..., help="Training corpus (its train/ folder when it has a train/heldout split)."),
    encoder: str = typer.Option(..., "--encoder", "-e", help="Encoder spec."),
    out: Path = typer.Option(..., "--out", help="Folder to write calibration.json into (e.g. the fine-tuned DIR)."),
    target_precision: float = typer.Option(0.95, "--target-precision"),
    normalise: bool = typer.Option(True, "--normalise/--no-normalise", help="Calibrate the normalised score "
                                   "(default) or the raw similarity."),
    max_clips: int = typer.Option(200, "--max-clips", help="Training clips used (each gives positive and negative views)."),
    views: int = typer.Option(2, "--views", help="Augmented views per clip and side."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Pick the flagging threshold that reaches a target precision on augmented copies vs distinct clips."""
    from rich.console import Console
    from rich.progress import Progress

    from audioaudit.detector.calibrate import CalibrateOptions, calibrate_encoder
    from audioaudit.encoders import load_encoder

    enc = load_encoder(encoder)
    opts = CalibrateOptions(target_precision=target_precision, normalise=normalise, max_clips=max_clips,
                            views_per_clip=views, seed=seed)
    with Progress(transient=True) as bar:
        task = bar.add_task("calibrating", total=None)
        cal = calibrate_encoder(enc, corpus, out, opts, progress=lambda n: bar.advance(task, n))
    c = Console()
    state = "" if cal.reached else " (target NOT reached: threshold set above every negative)"
    c.print(f"threshold {cal.threshold:.4f} on the {cal.score}: precision {cal.precision:.3f} "
            f"(target {cal.target_precision:.2f}){state}, recall {cal.recall:.3f} "
            f"on {cal.n_positive} copies / {cal.n_negative} distinct clips")
    c.print(f"wrote {out / 'calibration.json'}")


def _write_json(path: Path, obj) -> None:
    import json

    from audioaudit.util.atomic import write_text

    write_text(path, json.dumps(obj, indent=1, default=float))  # numpy scalars as numbers


def register(app: typer.Typer) -> None:
    app.command("synth")(synth_cmd)
    app.command("bench")(bench_cmd)
    app.command("calibrate")(calibrate_cmd)
