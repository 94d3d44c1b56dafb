"""``audioaudit generate`` (any generator -> WAVs + metadata), ``audioaudit generator train``
(train an EDMSound model on a corpus) and ``audioaudit fad`` (Fréchet audio distance).

Heavy imports (torch, pandas, the generators) happen inside the commands.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import List, Optional

import typer

RUN_FILE = "run.json"
JOURNAL = ".metadata.jsonl"
META_CSV, META_PARQUET = "metadata.csv", "metadata.parquet"


def register(app: typer.Typer) -> None:
    app.command("generate")(generate_cmd)
    app.command("fad")(fad_cmd)
    gen = typer.Typer(help="Train generators of our own (EDMSound).", no_args_is_help=True)
    gen.command("train")(train_cmd)
    app.add_typer(gen, name="generator")


# =========================================================================== generate
def _conditions(classes: list[str] | None, prompts: list[str] | None, prompts_file: Path | None) -> tuple[list, str]:
    from audioaudit.errors import UserError

    prompts = list(prompts or [])
    if prompts_file is not None:
        if not prompts_file.is_file():
            raise UserError(f"{prompts_file}: prompts file not found")
        lines = [ln.strip() for ln in prompts_file.read_text(encoding="utf-8").splitlines()]
        prompts += [ln for ln in lines if ln and not ln.startswith("#")]
        if not prompts:
            raise UserError(f"{prompts_file}: no prompts in the file (one per line)")
    if classes and prompts:
        raise UserError("pass --class or --prompt/--prompts-file, not both")
    if prompts:
        return prompts, "prompt"
    return list(classes or []), "class"


def _plan(n: int | None, conds: list) -> list:
    from audioaudit.errors import UserError

    if n is None:
        if not conds:
            raise UserError("pass --n (how many clips), or prompts/classes to generate one clip each")
        n = len(conds)
    return [conds[i % len(conds)] if conds else None for i in range(n)]


def _check_run(out: Path, run: dict, overwrite: bool) -> set[int]:
    """Indices already written by an identical earlier run (resume); refuses a different run."""
    from audioaudit.errors import UserError

    prev = out / RUN_FILE
    if prev.is_file() and not overwrite:
        if json.loads(prev.read_text()) != run:
            raise UserError(f"{out} holds clips of a different generate run ({RUN_FILE} differs); "
                            "pass --overwrite or another --out")
        done = set()
        if (out / JOURNAL).is_file():
            for line in (out / JOURNAL).read_text().splitlines():
                row = json.loads(line)
                if (out / row["path"]).is_file():
                    done.add(int(row["index"]))
        return done
    if overwrite and (out / JOURNAL).exists():
        (out / JOURNAL).unlink()
    out.mkdir(parents=True, exist_ok=True)
    _atomic_text(out / RUN_FILE, json.dumps(run, indent=2, sort_keys=True))
    return set()


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _row(index: int, clip, batch, kind: str, path: str) -> dict:
    row = {"path": path, "index": index, "seed": clip.seed, "condition": clip.condition,
           kind: clip.condition, "sample_rate": batch.sample_rate, "generator": batch.generator}
    for k, v in {**batch.meta, **clip.meta}.items():
        if k in row or k == "skipped":
            continue
        row[k] = v if v is None or isinstance(v, (str, int, float, bool)) else json.dumps(v)
    return row


def _write_tables(out: Path) -> int:
    import pandas as pd

    rows = {}
    for line in (out / JOURNAL).read_text().splitlines():
        r = json.loads(line)
        rows[int(r["index"])] = r
    df = pd.DataFrame([rows[i] for i in sorted(rows)])
    tmp = out / f".{META_CSV}.tmp"
    df.to_csv(tmp, index=False)
    os.replace(tmp, out / META_CSV)
    tmp = out / f".{META_PARQUET}.tmp"
    df.to_parquet(tmp, index=False)
    os.replace(tmp, out / META_PARQUET)
    return len(df)


def _generate_chunks(gen, plan: list, todo: list[int], seed: int, opts: dict, out: Path, kind: str,
                     batch_size: int, progress: bool) -> None:
    from audioaudit.audio import write_wav
    from audioaudit.progress import progress_bar

    with progress_bar(len(todo), "generating", enabled=progress) as advance, open(out / JOURNAL, "a") as journal:
        for a in range(0, len(todo), batch_size):
            idx = todo[a : a + batch_size]
            # consecutive indices share one call (seed + i per sample); gaps (resume) get their own
            for run in _runs(idx):
                batch = gen.generate(len(run), conditions=[plan[i] for i in run], seed=seed + run[0], **opts)
                for i, clip in zip(run, batch.clips):
                    name = f"gen_{i:05d}_seed{clip.seed}.wav"
                    write_wav(out / name, clip.wave, batch.sample_rate)
                    journal.write(json.dumps(_row(i, clip, batch, kind, name)) + "\n")
                journal.flush()
                advance(len(run))


def _runs(idx: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for i in idx:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def generate_cmd(
    generator: str = typer.Option(..., "--generator", "-g", help="edmsound:DIR, memorizer:DIR, tango:DIR, audioldm2:DIR, folder:DIR."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the WAVs, metadata.csv and metadata.parquet."),
    n: Optional[int] = typer.Option(None, "--n", min=1, help="Clips to generate (default: one per prompt/class)."),
    classes: Optional[List[str]] = typer.Option(None, "--class", help="Class to generate (repeat to cycle)."),
    prompts: Optional[List[str]] = typer.Option(None, "--prompt", help="Text prompt (repeat to cycle)."),
    prompts_file: Optional[Path] = typer.Option(None, "--prompts-file", help="One prompt per line."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="EDMSound: deis (default), dpmpp_2m, dpmpp_3m, heun, euler."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Sampler steps (EDMSound default 10)."),
    cfg: Optional[float] = typer.Option(None, "--cfg", help="Guidance scale: D_u + cfg (D_c - D_u) (EDMSound default 3)."),
    seed: int = typer.Option(0, "--seed", help="Clip i uses seed SEED + i (reproducible alone)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over in an --out holding another run."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Generate clips with any generator: one seed per clip, WAVs + metadata (resumable)."""
    from generators.registry import load_generator

    if threads:
        import torch

        torch.set_num_threads(threads)

    conds, kind = _conditions(classes, prompts, prompts_file)
    plan = _plan(n, conds)
    opts = {k: v for k, v in {"sampler": sampler, "steps": steps, "cfg": cfg}.items() if v is not None}
    run = {"generator": generator, "n": len(plan), "seed": seed, "conditions": plan, "options": opts}
    done = _check_run(out, run, overwrite)
    todo = [i for i in range(len(plan)) if i not in done]
    t0 = time.time()
    if todo:
        gen = load_generator(generator)
        _generate_chunks(gen, plan, todo, seed, opts, out, kind, batch_size, progress)
    total = _write_tables(out)
    typer.echo(f"{out}: {len(todo)} clips generated, {len(done)} kept from an earlier run "
               f"({time.time() - t0:.1f} s); {total} listed in {META_CSV} / {META_PARQUET}")


# =========================================================================== train
def _read_corpus(corpus: Path, cfg, labels: str, workers: int):
    """Decoded 4 s clips (fit to the config's length), their classes, and skipped records."""
    from audioaudit.audio import LoadOptions, Skipped, fit_length, load_many, scan_corpus
    from audioaudit.errors import UserError

    try:
        scan = scan_corpus(corpus, labels=labels)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    skipped = [{"path": s.path, "kind": s.kind, "reason": s.reason} for s in scan.skipped]
    labelled = any(it.label for it in scan.items)
    opts = LoadOptions(sample_rate=cfg.spec.sample_rate, silence_dbfs=-60.0)
    by_path = {it.path: it for it in scan.items}
    waves, names, used = [], [], []
    for path, res in load_many([it.path for it in scan.items], opts, workers):
        if isinstance(res, Skipped):
            skipped.append({"path": res.path, "kind": res.kind, "reason": res.reason})
        elif labelled and not by_path[path].label:
            skipped.append({"path": path, "kind": "no_class", "reason": "not inside a class sub-folder"})
        else:
            waves.append(fit_length(res.wave, cfg.spec.clip_samples))
            names.append(by_path[path].label)
            used.append(by_path[path].rel_path)
    if not waves:
        raise UserError(f"{corpus}: no usable training clips ({len(skipped)} skipped)")
    return waves, names, used, skipped


def _write_listing(out: Path, used: list[str], names: list, skipped: list[dict]) -> None:
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    for name, df in (("training_clips.csv", pd.DataFrame({"path": used, "label": names})),
                     ("skipped.csv", pd.DataFrame(skipped, columns=["path", "kind", "reason"]))):
        tmp = out / f".{name}.tmp"
        df.to_csv(tmp, index=False)
        os.replace(tmp, out / name)


def _train_config(config: str, out: Path, resume: bool, steps, batch_size, clip_seconds):
    from dataclasses import replace

    from generators.edmsound.checkpoint import read_config
    from generators.edmsound.config import load_config

    cfg = read_config(out) if resume else load_config(config)
    t = cfg.train
    cfg = replace(cfg, train=replace(t, steps=steps or t.steps, batch_size=batch_size or t.batch_size))
    if clip_seconds is not None and not resume:
        cfg = replace(cfg, spec=replace(cfg.spec, clip_seconds=clip_seconds))
    return cfg


def _with_sigma_data(cfg, option: str | None, measured: float, resume: bool):
    """Apply --sigma-data (a number or 'auto'); say so when the data's std is far from it."""
    from dataclasses import replace

    from audioaudit.errors import UserError

    if option is not None and not resume:
        try:
            value = measured if option == "auto" else float(option)
        except ValueError:
            raise UserError(f"--sigma-data {option}: pass a number or 'auto'") from None
        cfg = replace(cfg, edm=replace(cfg.edm, sigma_data=value))
    sd = cfg.edm.sigma_data
    note = "" if 0.5 <= measured / sd <= 2 else "  (far apart: consider --sigma-data auto)"
    typer.echo(f"sigma_data {sd:.4g}; std of the training spectrograms {measured:.4g}{note}")
    return cfg


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
    from dataclasses import replace

    import torch

    if threads:
        torch.set_num_threads(threads)

    from audioaudit.errors import UserError
    from generators.edmsound.trainer import Trainer, waves_to_specs
    from generators.edmsound.unet import count_params

    cfg = _train_config(config, out, resume, steps, batch_size, clip_seconds)
    waves, names, used, skipped = _read_corpus(corpus, cfg, labels, workers)
    classes = tuple(sorted({c for c in names if c}))
    if resume and classes != tuple(cfg.classes):
        raise UserError(f"{corpus}: classes {list(classes)} differ from the run in {out} ({list(cfg.classes)})")
    cfg = replace(cfg, classes=classes).finalised()
    label_t = torch.tensor([classes.index(c) for c in names]) if classes else None
    _write_listing(out, used, names, skipped)
    typer.echo(f"{len(waves)} clips ({len(classes)} classes), {len(skipped)} skipped (see {out / 'skipped.csv'})")
    specs = waves_to_specs(waves, cfg)
    cfg = _with_sigma_data(cfg, sigma_data, float(specs.std()), resume)
    trainer = Trainer(cfg, specs, label_t, out, resume=resume)
    start, t0 = trainer.step, time.time()
    res = trainer.run(cfg.train.steps, progress=progress)
    done = res.step - start
    tail = res.losses[-50:]
    typer.echo(f"{out}: step {res.step} ({count_params(trainer.model) / 1e6:.2f} M params); "
               f"{done} steps in {time.time() - t0:.1f} s; mean loss of the last {len(tail)} steps "
               f"{(sum(tail) / max(1, len(tail))):.4f}")


# =========================================================================== fad
def _embed_dir(folder: Path, encoder, progress: bool, label_from_meta: bool):
    """Every window of every clip in ``folder`` embedded, with its class (folder or metadata)."""
    import numpy as np

    from audioaudit.audio import LoadOptions, Skipped, load_many, scan_corpus
    from audioaudit.audit import LABEL_KEYS, find_metadata
    from audioaudit.encoders.base import embed_in_batches, segments
    from audioaudit.errors import UserError
    from audioaudit.progress import progress_bar

    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder of audio")
    scan = scan_corpus(folder)
    meta = find_metadata(folder, None) if label_from_meta else None
    waves, labels, skipped = [], [], [s for s in scan.skipped]
    items = {it.path: it for it in scan.items}
    with progress_bar(len(items), f"embedding {folder.name}", enabled=progress) as advance:
        for path, res in load_many(list(items), LoadOptions(sample_rate=encoder.sample_rate)):
            advance(1)
            if isinstance(res, Skipped):
                skipped.append(res)
                continue
            it, label = items[path], items[path].label
            if meta is not None and it.rel_path in meta.index:
                row = meta.loc[it.rel_path]
                label = next((str(row[k]) for k in LABEL_KEYS[:3] if k in row and isinstance(row[k], str)), label)
            for seg in segments(res.wave, encoder):
                waves.append(seg.wave)
                labels.append(label)
    if not waves:
        raise UserError(f"{folder}: no audio could be embedded ({len(skipped)} files skipped)")
    return embed_in_batches(encoder, waves), np.asarray(labels, dtype=object), skipped


def fad_cmd(
    generated: Path = typer.Argument(..., help="Folder of generated clips (metadata.csv gives classes)."),
    reference: Path = typer.Argument(..., help="Reference folder (class = first sub-folder)."),
    encoder: str = typer.Option("mel", "--encoder", "-e", help="Encoder spec (mel, laion:PATH.pt, hf:DIR, ...)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the figures as JSON here."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Fréchet audio distance between GENERATED and REFERENCE on an encoder's window embeddings."""
    from audioaudit.encoders import load_encoder
    from audioaudit.fad import fad, fad_per_class

    enc = load_encoder(encoder)
    ga, la, sa = _embed_dir(generated, enc, progress, True)
    gb, lb, sb = _embed_dir(reference, enc, progress, False)
    overall = fad(ga, gb)
    per = fad_per_class(ga, la, gb, lb)
    typer.echo(f"FAD ({encoder}): {overall.fad:.4f}  ({overall.n_a} vs {overall.n_b} windows, dim {overall.dim})")
    for c, r in per.items():
        typer.echo(f"  {c}: {r.fad:.4f}  ({r.n_a} vs {r.n_b})")
    for s in sa + sb:
        typer.echo(f"  skipped {s.path}: {s.reason}", err=True)
    if out is not None:
        doc = {"encoder": encoder, "generated": str(generated), "reference": str(reference),
               "overall": vars(overall), "per_class": {c: vars(r) for c, r in per.items()},
               "skipped": [{"path": s.path, "kind": s.kind, "reason": s.reason} for s in sa + sb]}
        _atomic_text(out, json.dumps(doc, indent=2))
