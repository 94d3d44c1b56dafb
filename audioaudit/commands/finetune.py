"""`audioaudit finetune CORPUS --base SPEC --out DIR`: train a copy detector.

Heavy imports (torch, encoders) happen inside the command so ``audioaudit --help`` is fast.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

SCRATCH_HELP = ("Train a small encoder from scratch instead of a head on --base: 'conv' (default pick, a CNN "
                "on log-mel), 'htsat' (a tiny LAION-CLAP HTSAT), or a JSON file of architecture settings.")


def finetune_cmd(
    corpus: Path = typer.Argument(..., help="Training corpus folder (class = first sub-folder)."),
    out: Path = typer.Option(..., "--out", help="Folder for the detector (use it as finetuned:DIR)."),
    base: Optional[str] = typer.Option(None, "--base", help="Frozen encoder to put the head on (an encoder spec)."),
    recipe: str = typer.Option("infonce", "--recipe", help="triplet (EDMSound) or infonce (SSCD: InfoNCE + KoLeo)."),
    unfreeze_top: int = typer.Option(0, "--unfreeze-top", help="Also train the top N encoder blocks (slow on CPU)."),
    views: Optional[int] = typer.Option(None, "--views", help="Augmented views cached per clip (default 8; 24 from scratch)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Default: 200 head, 150 scratch, 5 unfrozen."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Clips per batch (default 64; 16 unfrozen)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="AdamW peak LR, cosine decay (default 1e-3; 2e-3 scratch, 1e-4 unfrozen)."),
    tau: Optional[float] = typer.Option(None, "--tau", help="InfoNCE temperature (default 0.05; 0.07 scratch)."),
    koleo: Optional[float] = typer.Option(None, "--koleo", help="KoLeo weight λ, infonce (default 30 as SSCD; 5 scratch)."),
    margin: Optional[float] = typer.Option(None, "--margin", help="Triplet margin (default 0.2)."),
    class_batches: int = typer.Option(0, "--class-batches", min=0, help="Batches drawn from about this many "
                                      "classes (same-kind hard negatives; 0: random batches). Needs class folders."),
    seed: int = typer.Option(0, "--seed"),
    from_scratch: Optional[str] = typer.Option(None, "--from-scratch", help=SCRATCH_HELP),
    families: Optional[str] = typer.Option(None, "--families", help="Comma-separated transformation families of the "
                                           "training views ('standard' = the 15 standard ones; default: all 17)."),
    max_strength: float = typer.Option(1.0, "--max-strength", min=0.0, max=1.0, help="Views' strengths from "
                                       "U(0, this): the transformation range the detector should see through."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
    no_calibrate: bool = typer.Option(False, "--no-calibrate", help="Skip threshold calibration after training."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Fine-tune an encoder into a copy detector on augmented views of CORPUS."""
    from rich.console import Console
    from rich.markup import escape

    from audioaudit.detector.finetune.pipeline import Job, run_finetune
    from audioaudit.detector.finetune.recipes import DEFAULT_VIEWS, get_recipe, mode_defaults
    from audioaudit.detector.finetune.status import record_step
    from audioaudit.errors import UserError

    console = Console()
    if (base is None) == (from_scratch is None):
        raise UserError("pass exactly one of --base SPEC (train a head on an encoder) or --from-scratch CONFIG")
    if not corpus.exists():
        raise UserError(f"{corpus}: corpus folder not found")
    scratch = _scratch_config(from_scratch) if from_scratch else None
    mode = "scratch" if scratch else ("unfrozen" if unfreeze_top else "head")
    views = DEFAULT_VIEWS[mode] if views is None else views
    if views < 1:
        raise UserError(f"--views must be >= 1 (got {views})")
    try:
        given = dict(epochs=epochs, batch_size=batch_size, lr=lr, tau=tau, koleo_weight=koleo, margin=margin,
                     unfreeze_top=unfreeze_top, seed=seed, class_batches=class_batches or None)
        rec = get_recipe(recipe, **{**mode_defaults(mode), **{k: v for k, v in given.items() if v is not None}})
    except (ValueError, TypeError) as e:
        raise UserError(str(e)) from None
    job = Job(corpus=str(corpus), out_dir=out, recipe=rec, base=base, scratch=scratch, n_views=views,
              quiet=quiet, device=device, families=_families(families), max_strength=max_strength)
    res = run_finetune(job, log=console.print)  # the weights are on disk when it returns
    ok = _after_training("summary", res, corpus, console, lambda: _summary(res, console))
    if no_calibrate:
        record_step(res.out_dir, "calibration", "skipped", reason="--no-calibrate")
    else:
        ok = _after_training("calibration", res, corpus, console, lambda: _calibrate(res, corpus, console)) and ok
    console.print(f"encoder spec: [bold]{escape(res.spec)}[/]", soft_wrap=True)
    if not ok:
        raise typer.Exit(1)


def _summary(res, console) -> None:
    for path, reason in res.skipped.items():
        console.print(f"[yellow]skipped[/] {path}: {reason}")
    last = res.history[-1] if res.history else {}
    console.print(f"trained on {res.n_clips} clips: cache {res.cache_seconds:.1f} s, training {res.train_seconds:.1f} s"
                  + (f"; final val R@1 {last['val_recall_at_1']:.3f}, pos {last['pos_sim']:.3f} / neg {last['neg_sim']:.3f}"
                     if last else ""))


def _after_training(step: str, res, corpus: Path, console, fn) -> bool:
    """Run one step that follows training. Whatever it raises, the trained detector stays
    (its weights are written first): the failure is one line naming the step and the
    reason, recorded with its traceback in OUT/run.json, and the command exits 1 at the end."""
    import traceback

    from rich.markup import escape

    from audioaudit.detector.finetune.status import record_step

    redo = f"audioaudit calibrate {corpus} --encoder {res.spec} --out {res.out_dir}"
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - any failure here must not cost the training
        reason = (str(e).strip().splitlines() or [""])[0][:300]
        reason = f"{type(e).__name__}: {reason}" if reason else type(e).__name__
        record_step(res.out_dir, step, "failed", error=reason, traceback=traceback.format_exc(),
                    **({"redo": redo} if step == "calibration" else {}))
        hint = f"; redo it with: {redo}" if step == "calibration" else ""
        console.print(f"[bold red]error:[/] {step} failed after training ({escape(reason)}); the trained detector is "
                      f"saved and usable as {escape(res.spec + hint)}", soft_wrap=True, highlight=False)
        return False
    return True  # (a calibration records itself: audioaudit calibrate --out DIR does too)


def _families(value: str | None) -> tuple[str, ...] | None:
    from audioaudit.detector.augment import FAMILIES, STANDARD_FAMILIES
    from audioaudit.errors import UserError

    if not value:
        return None
    if value.strip() == "standard":
        return tuple(STANDARD_FAMILIES)
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise UserError(f"--families: unknown {', '.join(unknown)}; known: {', '.join(FAMILIES)}")
    return names


def _scratch_config(value: str) -> dict:
    import json

    from audioaudit.errors import UserError

    if value in ("conv", "htsat"):
        return {"arch": value}
    p = Path(value)
    if not p.is_file():
        raise UserError(f"--from-scratch {value}: pass conv, htsat, or a JSON file of architecture settings")
    try:
        cfg = json.loads(p.read_text())
    except ValueError as e:
        raise UserError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(cfg, dict) or cfg.get("arch", "conv") not in ("conv", "htsat"):
        raise UserError(f"{p}: needs a JSON object with \"arch\": \"conv\" or \"htsat\"")
    return {"arch": "conv", **cfg}


def _calibrate(res, corpus: Path, console) -> None:
    """Calibrate the trained detector's threshold on its corpus (``OUT/calibration.json``),
    with the settings ``audioaudit calibrate`` uses by default."""
    from audioaudit.detector.calibrate import calibrate_encoder
    from audioaudit.encoders import load_encoder

    cal = res.calibration = calibrate_encoder(load_encoder(res.spec), str(corpus), str(res.out_dir))
    state = "" if cal.reached else " (target NOT reached: threshold set above every negative)"
    console.print(f"calibration: threshold {cal.threshold:.4f} on the {cal.score}, precision {cal.precision:.3f} "
                  f"(target {cal.target_precision:.2f}){state}, recall {cal.recall:.3f} -> "
                  f"{res.out_dir / 'calibration.json'}")


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune_cmd)
