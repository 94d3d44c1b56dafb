"""``audioaudit generate`` (any generator -> WAVs + metadata), ``audioaudit generator train``
(train an EDMSound model on a corpus) and ``audioaudit fad`` (Fréchet audio distance).

Typer wiring and printing only: the work is in :mod:`audioaudit.generation` (``run``,
``train``, ``fad_folders``). Heavy imports (torch, pandas, the generators) happen inside
the commands.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

GENERATE_HELP = (
    "Generate clips with any generator: one seed per clip, WAVs + metadata (resumable).\n\n"
    "An option or condition the generator would not use is an error naming it and the generator, before any "
    "work -- except where it changes nothing (--cfg on a model with nothing to guide): a warning, and it is "
    "left out of run.json. folder:DIR copies clips made elsewhere: it takes no sampler options and no "
    "--class/--prompt (each clip's prompt/class comes from its metadata.csv).\n\n"
    "The counts printed are the clips on disk and in metadata.csv. A generator that gives fewer clips than "
    "asked (a folder with fewer files than --n) is an error saying why, after the clips it gave are written "
    "and listed; a rerun resumes."
)


def register(app: typer.Typer) -> None:
    app.command("generate", help=GENERATE_HELP)(generate_cmd)
    app.command("fad")(fad_cmd)
    gen = typer.Typer(help="Train generators of our own (EDMSound).", no_args_is_help=True)
    gen.command("train")(train_cmd)
    app.add_typer(gen, name="generator")


def _threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


# =========================================================================== generate
def generate_cmd(
    generator: str = typer.Option(..., "--generator", "-g", help="edmsound:DIR, memorizer:DIR, tango:DIR, audioldm2:DIR, folder:DIR."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the WAVs, metadata.csv and metadata.parquet."),
    n: Optional[int] = typer.Option(None, "--n", min=1, help="Clips to generate (default: one per prompt/class). "
                                    "Rerunning into the same --out with a larger --n adds clips; below the "
                                    "clips already written it is an error."),
    classes: Optional[List[str]] = typer.Option(None, "--class", help="Class to generate (repeat to cycle). Only for "
                                                "class-conditional generators (edmsound with classes, memorizer over "
                                                "class folders); anywhere else an error."),
    prompts: Optional[List[str]] = typer.Option(None, "--prompt", help="Text prompt (repeat to cycle). Only for "
                                                "tango and audioldm2; anywhere else an error."),
    prompts_file: Optional[Path] = typer.Option(None, "--prompts-file", help="One prompt per line (as --prompt)."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="edmsound/memorizer: deis (default), dpmpp_2m, "
                                          "dpmpp_3m, heun, euler; tango/audioldm2: scheduler (default), ddim, ddpm "
                                          "(tango also the EDM ones). folder: an error."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Sampler steps (edmsound/memorizer default 10, "
                                        "tango 100, audioldm2 200). folder: an error."),
    cfg: Optional[float] = typer.Option(None, "--cfg", help="Guidance scale: D_u + cfg (D_c - D_u) (edmsound default 3, "
                                        "tango 3, audioldm2 3.5). Unconditional edmsound, memorizer: a warning and "
                                        "left out (nothing to guide). folder: an error."),
    seed: int = typer.Option(0, "--seed", help="Clip i uses seed SEED + i (reproducible alone). folder: clip i is "
                             "usable file SEED + i of its listing."),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over in an --out holding another run "
                                   "(removes that run's WAVs and tables)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Generate clips with any generator (help: :data:`GENERATE_HELP`)."""
    from audioaudit.generation.run import (
        META_CSV,
        META_PARQUET,
        SKIPPED,
        GenerateRun,
        plan_clips,
        prepare_run,
        read_conditions,
        run_generate,
    )

    _threads(threads)
    conds, kind = read_conditions(classes, prompts, prompts_file)
    opts = {k: v for k, v in {"sampler": sampler, "steps": steps, "cfg": cfg}.items() if v is not None}
    gen, run, warnings = prepare_run(GenerateRun(generator, plan_clips(n, conds), seed, opts, kind))
    for w in warnings:
        typer.echo(f"warning: {w}", err=True)
    res = run_generate(run, out, gen=gen, batch_size=batch_size, overwrite=overwrite, progress=progress)
    typer.echo(f"{out}: {res.written} clips written, {res.kept} kept from an earlier run ({res.seconds:.1f} s); "
               f"{res.listed} listed in {META_CSV} / {META_PARQUET}")
    if res.skipped:
        typer.echo(f"{res.skipped} source file(s) skipped by {generator}: listed in {out / SKIPPED}", err=True)


# =========================================================================== train
def train_cmd(
    corpus: Path = typer.Argument(..., help="Training corpus (class = first sub-folder, e.g. DCASE2023 Task 7)."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint folder (config.json + safetensors)."),
    config: str = typer.Option("tiny", "--config", help="tiny | small | paper | FILE.json"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Train until this step (default from config)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1),
    clip_seconds: Optional[float] = typer.Option(None, "--clip-seconds", help="Clip length (default 4 s)."),
    sigma_data: Optional[str] = typer.Option(None, "--sigma-data",
                                             help="EDM sigma_data: a number, or 'auto' = the std of the training "
                                                  "spectrograms (default from config: 0.2, EDMSound's value)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly where it stopped."),
    labels: str = typer.Option("folders", "--labels", help="folders | none (unconditional)"),
    workers: int = typer.Option(0, "--workers", min=0, help="Decoding processes."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads (1 is fastest on a busy machine)."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Train an EDMSound model on CORPUS (EMA, grad clipping, resumable safetensors checkpoints)."""
    from audioaudit.generation.train import SKIPPED, TrainRequest, prepare_training, run_training, sigma_note

    _threads(threads)
    req = TrainRequest(corpus, out, config, steps, batch_size, clip_seconds, sigma_data, resume, labels, workers)
    prep = prepare_training(req)
    typer.echo(f"{prep.n_clips} clips ({len(prep.classes)} classes), {prep.n_skipped} skipped "
               f"(see {out / SKIPPED})")
    typer.echo(sigma_note(prep.cfg.edm.sigma_data, prep.measured_std))
    res = run_training(req, prep, progress=progress)
    typer.echo(f"{out}: step {res.step} ({res.params / 1e6:.2f} M params); "
               f"{res.steps_done} steps in {res.seconds:.1f} s; mean loss of the last {res.tail} steps "
               f"{res.mean_loss:.4f}")


# =========================================================================== fad
def fad_cmd(
    generated: Path = typer.Argument(..., help="Folder of generated clips (metadata.csv gives classes)."),
    reference: Path = typer.Argument(..., help="Reference folder (class = first sub-folder)."),
    encoder: str = typer.Option("mel", "--encoder", "-e", help="Encoder spec (mel, laion:PATH.pt, hf:DIR, ...)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the figures as JSON here."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Fréchet audio distance between GENERATED and REFERENCE on an encoder's window embeddings."""
    from audioaudit.encoders import load_encoder
    from audioaudit.generation.fad_folders import folder_fad
    from audioaudit.util.atomic import write_json

    res = folder_fad(generated, reference, load_encoder(encoder), progress=progress)
    overall = res.overall
    typer.echo(f"FAD ({encoder}): {overall.fad:.4f}  ({overall.n_a} vs {overall.n_b} windows, dim {overall.dim})")
    for c, r in res.per_class.items():
        typer.echo(f"  {c}: {r.fad:.4f}  ({r.n_a} vs {r.n_b})")
    for s in res.skipped:
        typer.echo(f"  skipped {s.path}: {s.reason}", err=True)
    if out is not None:
        write_json(out, res.to_json(encoder, generated, reference), indent=2, newline=False)
