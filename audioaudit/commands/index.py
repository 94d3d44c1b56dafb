"""`audioaudit index build|add|info|dedup`: FAISS indexes of training corpora."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer

if TYPE_CHECKING:
    from audioaudit.audit.calibrate import FfrSettings


def _interrupted(index_dir: Path) -> None:
    from audioaudit import schema

    n = len(list((index_dir / schema.SHARDS_DIR).glob("*.parquet")))
    typer.echo(f"\ninterrupted: {n} finished shards are kept in {index_dir / schema.SHARDS_DIR}; "
               "rerun the same command to resume", err=True)
    raise typer.Exit(130)


def _print_result(res, verb: str) -> None:
    if res.up_to_date:
        typer.echo(f"{res.index_dir}: up to date ({res.clips} clips, {res.segments} segments); nothing to do")
        return
    d = res.duplicates
    typer.echo(f"{verb} {res.index_dir}: {res.clips} clips, {res.segments} segments, {res.params.describe()}")
    typer.echo(f"  this run: {res.embedded} files decoded, {res.reused} reused from finished shards; "
               f"{res.shards_written} shards written, {res.shards_reused} reused; {res.seconds:.1f} s")
    typer.echo(f"  skipped: {len(res.skipped)}" + ("  (see `audioaudit index info`)" if res.skipped else ""))
    typer.echo(f"  duplicate groups: {d.groups} ({d.exact_groups} exact, {d.near_groups} near), "
               f"{d.items_in_groups} files in groups")


def build_cmd(
    corpus: Path = typer.Argument(..., help="Training corpus folder (class = first sub-folder)."),
    encoder: str = typer.Option(..., "--encoder", help="Encoder spec: mel, laion:PATH.pt, hf:DIR, finetuned:DIR, ..."),
    name: str = typer.Option(..., "--name", help="Index name (folder under --root)."),
    root: Path = typer.Option(Path("index"), "--root", help="Where indexes live."),
    index_type: str = typer.Option("auto", "--index-type", help="auto | flat | ivf | hnsw | ivfpq (auto: flat up to "
                                   "100k vectors, ivfpq once the raw vectors pass 4 GiB, ivf between)."),
    nprobe: Optional[int] = typer.Option(None, "--nprobe", min=1, help="IVF cells visited per query."),
    nlist: Optional[int] = typer.Option(None, "--nlist", min=1, help="IVF cells (default ≈ 4·sqrt(n))."),
    ef_search: Optional[int] = typer.Option(None, "--ef-search", min=1, help="HNSW efSearch."),
    shard_size: int = typer.Option(256, "--shard-size", min=1, help="Files per shard (the resumable unit)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Decoding processes (default min(4, cores-1)); "
                                          "with --engine ray: embedding actors (default 1)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Windows per model call."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="CSV/parquet with path[,label] to restrict/label files."),
    labels: str = typer.Option("folders", "--labels", help="folders | none"),
    near_threshold: float = typer.Option(0.97, "--near-threshold", help="Window coverage that makes a near-duplicate candidate (confirmed on the audio)."),
    no_near_dups: bool = typer.Option(False, "--no-near-dups", help="Only exact duplicates (skip the index search)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an index built with another encoder."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    engine: str = typer.Option("local", "--engine", help="local | ray (decode + embed on a Ray cluster; "
                               "needs audioaudit[distributed])."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: start a local one)."),
    gpus_per_worker: float = typer.Option(0.0, "--gpus-per-worker", min=0, help="GPUs per Ray embedding actor."),
    background: Optional[Path] = typer.Option(None, "--background", help="Folder of clips of the same kind that are "
                                              "NOT in the corpus: score normalisation + threshold calibration "
                                              "(see `audioaudit index background`)."),
    target_ffr: float = typer.Option(0.01, "--target-ffr", help="With --background: false-flag rate on novel clips "
                                     "the calibrated threshold allows."),
) -> None:
    """Embed every clip and window of CORPUS into index/NAME (resumable; reruns do only new work)."""
    from audioaudit.encoders import load_encoder
    from audioaudit.errors import UserError, require
    from audioaudit.index import store
    from audioaudit.index.build import build_index
    from audioaudit.index.options import BuildOptions

    if not 0 <= target_ffr < 1:
        raise UserError(f"--target-ffr must be in [0, 1) (got {target_ffr})")
    if background is not None and not background.is_dir():
        raise UserError(f"{background}: background folder not found")
    if engine not in ("local", "ray"):
        raise UserError(f"--engine must be local or ray (got {engine!r})")
    if engine == "ray":
        require("ray", "distributed")
    index_dir = store.resolve_index_dir(name, root)
    enc = load_encoder(encoder)
    opts = BuildOptions(index_type=index_type, nlist=nlist, nprobe=nprobe, ef_search=ef_search, shard_size=shard_size,
                        batch_size=batch_size, workers=workers, near_dups=not no_near_dups,
                        near_threshold=near_threshold, progress=progress, labels=labels,
                        corpus_manifest=None if manifest is None else str(manifest), overwrite=overwrite)
    try:
        if engine == "ray":
            from audioaudit.index.ray import RayPlan, build_with_ray

            plan = RayPlan(encoder, address=address, actors=workers or 1, gpus_per_worker=gpus_per_worker)
            res = build_with_ray(corpus, index_dir, plan, opts=opts, encoder=enc)
        else:
            res = build_index(corpus, enc, index_dir, spec=encoder, opts=opts)
    except KeyboardInterrupt:
        _interrupted(index_dir)
    _print_result(res, "built")
    if background is not None:
        from audioaudit.audit.calibrate import FfrSettings

        _add_background(index_dir, background, enc, 3, FfrSettings(target_false_flag_rate=target_ffr, progress=progress))


def _add_background(index_dir: Path, folder: Path, enc, k: int, calibration: FfrSettings | None) -> None:
    """Embed the background set; calibrate the threshold on it unless ``calibration`` is None.
    The set and its calibration are committed together (an audit sees both or neither)."""
    from audioaudit.index import store
    from audioaudit.index.background import build_background, save_background

    progress = calibration.progress if calibration is not None else False
    ix = store.open_index(index_dir)  # once, for the background set and its calibration
    bg = build_background(ix, folder, enc, k=k, progress=progress, workers=None, save=False)
    left = len(bg.meta["in_training_set"])
    typer.echo(f"background set: {bg.n_clips} clips ({len(bg.vectors)} windows), k={bg.k}"
               + (f"; {left} clips left out: the training set holds the same audio" if left else "")
               + (f"; {len(bg.meta['skipped'])} unreadable" if bg.meta["skipped"] else ""))
    if calibration is None:
        save_background(index_dir, bg)
    else:
        from audioaudit.audit.calibrate import calibrate_index

        negatives = calibration.negatives
        cal = calibrate_index(ix, enc, calibration, write=False, background=bg)
        save_background(index_dir, bg, cal.to_json())
        lo, hi = cal.false_flag_rate_ci
        typer.echo(f"calibrated threshold {cal.threshold:.4f} on the score: false flags {cal.false_flag_rate:.3f} "
                   f"(95% CI {lo:.3f}-{hi:.3f}, target {cal.target_false_flag_rate:.3f}) on {cal.n_negative} "
                   f"{'novel' if negatives else 'background'} clips; recall {cal.recall:.3f} on {cal.n_positive} augmented training clips; "
                   f"also flagged: similarity >= {cal.similarity_floor:.4f}")
        if cal.note:
            typer.echo(f"note: {cal.note}")


def background_cmd(
    name: str = typer.Argument(..., help="Index name or directory."),
    folder: Path = typer.Argument(..., help="Clips of the same kind as the corpus that are not in it."),
    root: Path = typer.Option(Path("index"), "--root"),
    k: int = typer.Option(3, "--k", min=1, help="Background clips averaged per query."),
    target_ffr: float = typer.Option(0.01, "--target-ffr", help="False-flag rate on novel clips for the threshold."),
    negatives: Optional[Path] = typer.Option(None, "--negatives", help="Calibrate on this folder of novel clips "
                                             "(not in the corpus, the background or the detector's training data) "
                                             "instead of the background clips: no bias when the detector was "
                                             "fine-tuned on the background."),
    no_calibrate: bool = typer.Option(False, "--no-calibrate", help="Only embed the set; keep any calibration."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Add (or replace) the index's background set: scores become similarity minus the mean of
    the K best background clips, and the threshold is calibrated for a false-flag rate on them."""
    from audioaudit.encoders.registry import load_stored_encoder
    from audioaudit.index import store

    index_dir = store.resolve_index_dir(name, root)
    ix = store.open_index(index_dir, load_faiss=False)
    enc = load_stored_encoder(ix.encoder, ix.dir)
    from audioaudit.audit.calibrate import FfrSettings

    cal = FfrSettings(target_false_flag_rate=target_ffr, progress=progress,
                      negatives=None if negatives is None else str(negatives))
    _add_background(index_dir, folder, enc, k, None if no_calibrate else cal)


def add_cmd(
    name: str = typer.Argument(..., help="Index name or directory."),
    paths: List[Path] = typer.Argument(..., help="Files or folders to add."),
    root: Path = typer.Option(Path("index"), "--root"),
    workers: Optional[int] = typer.Option(None, "--workers", min=0),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Embed only the files of PATHS that the index does not hold yet (with its own encoder)."""
    from audioaudit.audit import threshold
    from audioaudit.index import store
    from audioaudit.index.build import add_to_index

    index_dir = store.resolve_index_dir(name, root)
    try:
        from audioaudit.index.options import options_from_manifest

        opts = options_from_manifest(store.open_index(index_dir, load_faiss=False).manifest)
        opts.workers, opts.progress = workers, progress
        res = add_to_index(index_dir, [str(p) for p in paths], opts=opts)
    except KeyboardInterrupt:
        _interrupted(index_dir)
    _print_result(res, "updated")
    cal = threshold.read_calibration(index_dir / "calibration.json")
    if cal is not None and cal.get("normalisation") == "background" and not res.up_to_date:
        from audioaudit.audit.calibrate import FfrSettings, calibrate_index
        from audioaudit.encoders.registry import load_stored_encoder

        ix = store.open_index(index_dir, load_faiss=False)
        new = calibrate_index(index_dir, load_stored_encoder(ix.encoder, ix.dir), FfrSettings(
            target_false_flag_rate=cal["target_false_flag_rate"],
            negatives=(cal.get("settings") or {}).get("negatives_folder")), write=False)
        store.replace_json(index_dir, "calibration.json", new.to_json())  # a commit, like every index write
        typer.echo(f"recalibrated on the background set: threshold {cal['threshold']:.4f} -> {new.threshold:.4f}")


def info_cmd(
    name: str = typer.Argument(..., help="Index name or directory."),
    root: Path = typer.Option(Path("index"), "--root"),
    max_list: int = typer.Option(20, "--max-list", min=0, help="Skipped files / groups listed."),
) -> None:
    """Counts, index type, encoder identity, skipped files and duplicate groups of an index."""
    from audioaudit.audit import threshold
    from audioaudit.commands.dedup import print_groups
    from audioaudit.encoders.base import identity_key
    from audioaudit.index import store
    from audioaudit.index.background import load_background
    from audioaudit.index.items import distinct

    index_dir = store.resolve_index_dir(name, root)
    with store.reading(index_dir):  # index, background set and calibration of one commit
        ix = store.open_index(index_dir)
        bg = load_background(ix.dir, None, distinct(ix.items, "pcm_hash"))
        cal = threshold.read_calibration(ix.dir / "calibration.json")
    m, c = ix.manifest, ix.manifest.get("counts", {})
    typer.echo(f"index       {ix.dir}")
    typer.echo(f"corpus      {m.get('corpus_root')}")
    typer.echo(f"clips       {c.get('clips')}   segments (vectors) {c.get('segments')}   shards {c.get('shards')}")
    typer.echo(f"type        {ix.params.describe()}   ntotal {ix.index.ntotal}")
    b = m.get("index_build")
    if b:  # ivfpq: what the streamed build cost
        ext = b.get("extended")
        typer.echo(f"ivfpq       {b['factory']} trained on {b['plan']['train_size']} of {b['plan']['n']} vectors"
                   + (f", extended to {ext['to']}" if ext else "")
                   + f"; build peak RSS {b['peak_rss'] / 2**30:.2f} GiB; index.faiss "
                   f"{b['index_file_bytes'] / 2**20:.1f} MiB, rerank.npy {b['rerank_file_bytes'] / 2**20:.1f} MiB")
    typer.echo(f"encoder     {ix.encoder.get('spec') or ix.encoder.get('name')}")
    typer.echo(f"identity    {identity_key(ix.encoder['identity'])}")
    typer.echo(f"updated     {m.get('updated')}   (created {m.get('created')})")
    skipped = m.get("skipped", [])
    typer.echo(f"skipped     {len(skipped)}")
    for s in skipped[:max_list]:
        typer.echo(f"  {s.get('path')}: [{s.get('kind')}] {s.get('reason')}")
    if len(skipped) > max_list:
        typer.echo(f"  ... and {len(skipped) - max_list} more (manifest.json lists all)")
    typer.echo("background  " + (f"{bg.n_clips} clips, k={bg.k} ({bg.meta.get('folder')})" if bg else
                                 "none (scores normalised by the 2nd-11th training sources)"))
    if cal:
        typer.echo(f"threshold   {cal['threshold']:.4f} on the {cal.get('score', 'score')}"
                   + (f" (false flags {cal['false_flag_rate']:.3f} on background clips, target "
                      f"{cal['target_false_flag_rate']:.3f})" if "false_flag_rate" in cal else ""))
    print_groups(ix.duplicates, total_files=c.get("clips"), limit=max_list)


def register(app: typer.Typer) -> None:
    ix = typer.Typer(help="Build and inspect FAISS indexes of training corpora.", no_args_is_help=True)
    ix.command("build")(build_cmd)
    ix.command("add")(add_cmd)
    ix.command("info")(info_cmd)
    ix.command("background")(background_cmd)

    @ix.command("dedup")
    def index_dedup(name: str = typer.Argument(...), root: Path = typer.Option(Path("index"), "--root"),
                    limit: int = typer.Option(20, "--limit", min=0),
                    html: Optional[Path] = typer.Option(None, "--html", help="Also write a listening page here.")) -> None:
        """Duplicate groups of a built index (same as `audioaudit dedup NAME`)."""
        from audioaudit.commands.dedup import dedup_index

        dedup_index(name, root, limit, html, None)

    app.add_typer(ix, name="index")
