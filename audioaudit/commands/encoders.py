"""``audioaudit encoders`` (list the backends) and ``audioaudit embed`` (embed files for
inspection). Heavy imports (torch, transformers, pandas) happen inside the commands."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

import typer

from audioaudit.util.atomic import atomic_path

EMBED_COLUMNS = ["path", "segment", "start", "end", "duration", "sha256", "embedding"]
IDENTITY_KEY = b"audioaudit.encoder"


def register(app: typer.Typer) -> None:
    app.command("encoders")(encoders)
    app.command("embed")(embed)


def encoders(as_json: bool = typer.Option(False, "--json", help="Print the list as JSON.")) -> None:
    """List the encoder backends and how to name them (--encoder SPEC)."""
    from audioaudit.encoders.registry import list_backends

    rows = [{"name": b.name, "spec": b.spec, "summary": b.summary} for b in list_backends()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="encoder backends (pass one as --encoder SPEC)")
    table.add_column("spec", style="bold", no_wrap=True)
    table.add_column("what it is")
    for r in rows:
        table.add_row(r["spec"], r["summary"])
    Console().print(table)


def embed(
    files: List[Path] = typer.Argument(..., help="Audio files or folders (folders are scanned recursively)."),
    encoder: str = typer.Option("mel", "--encoder", "-e", help="Encoder spec, e.g. mel, laion:PATH.pt, hf:DIR, tiny-laion."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write one row per segment to this .parquet."),
    batch_size: int = typer.Option(16, "--batch-size", "-b", min=1, help="Windows per forward pass."),
    hop: Optional[float] = typer.Option(None, "--hop", help="Seconds between windows (default: half a window)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
) -> None:
    """Embed audio files with an encoder: one L2-normalised vector per window."""
    from audioaudit.encoders import load_encoder
    from audioaudit.errors import UserError

    if out is not None and out.suffix != ".parquet":
        raise UserError(f"--out {out}: pass a path ending in .parquet")
    paths, skipped = _expand(files)
    enc = load_encoder(encoder, device=device, batch_size=batch_size, hop_seconds=hop)
    rows, bad = embed_files(enc, paths, batch_size)
    skipped += bad
    if not rows and len(skipped) <= 1:
        first = f": {skipped[0].path}: {skipped[0].reason}" if skipped else ""
        raise UserError(f"nothing to embed{first}")
    for s in skipped:
        typer.echo(f"skipped {s.path}: {s.reason} [{s.kind}]", err=True)
    if not rows:
        raise UserError(f"none of the {len(skipped)} inputs could be embedded (reasons above)")
    if out is None:
        _print_rows(rows, enc)
        return
    write_embeddings(rows, enc.identity(), enc.dim, out)
    msg = f"wrote {len(rows)} segment vectors of {len({r['path'] for r in rows})} files ({enc.name}, dim {enc.dim}) to {out}"
    if skipped:
        side = out.with_suffix(".skipped.csv")
        _write_skipped(skipped, side)
        msg += f"; {len(skipped)} skipped, listed in {side}"
    typer.echo(msg)


def _expand(inputs: List[Path]):
    """Files as given; folders through the corpus scanner (its skips are kept)."""
    from audioaudit.audio.corpus import scan_corpus
    from audioaudit.audio.io import Skipped

    paths: list[str] = []
    skipped: list = []
    for p in inputs:
        if p.is_dir():
            res = scan_corpus(p, labels="none")
            paths += [i.path for i in res.items]
            skipped += res.skipped
        elif p.exists():
            paths.append(str(p))
        else:
            skipped.append(Skipped(str(p), "missing", "file not found"))
    return paths, skipped


def embed_files(enc, paths: list[str], batch_size: int):
    """(rows, skipped): rows hold one segment each, in file order then time order."""
    from rich.progress import Progress

    from audioaudit.audio.fingerprint import file_sha256
    from audioaudit.audio.io import Clip, LoadOptions, try_load
    from audioaudit.audio.windows import WindowSpec, cut
    from audioaudit.encoders.embed import embed_waves

    opts = LoadOptions(sample_rate=enc.sample_rate)
    rows: list[dict] = []
    skipped = []
    with Progress(transient=True, disable=not os.isatty(2)) as bar:
        task = bar.add_task("embedding", total=len(paths))
        for path in paths:
            clip = try_load(path, opts)
            bar.advance(task)
            if not isinstance(clip, Clip):
                skipped.append(clip)
                continue
            segs = cut(clip.wave, WindowSpec.of(enc))
            vecs = embed_waves(enc, [s.wave for s in segs], batch_size)
            digest = file_sha256(path)
            for i, (s, v) in enumerate(zip(segs, vecs)):
                rows.append({"path": path, "segment": i, "start": s.start, "end": s.end,
                             "duration": clip.seconds, "sha256": digest, "embedding": v})
    return rows, skipped


def write_embeddings(rows: list[dict], identity: dict, dim: int, out: Path) -> None:
    """Atomic parquet write; the encoder identity rides in the schema metadata."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {c: [r[c] for r in rows] for c in EMBED_COLUMNS if c != "embedding"}
    flat = pa.array(np.stack([r["embedding"] for r in rows]).astype(np.float32).ravel())
    table = pa.table({**cols, "embedding": pa.FixedSizeListArray.from_arrays(flat, dim)})
    table = table.replace_schema_metadata({IDENTITY_KEY: json.dumps(identity, sort_keys=True).encode()})
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)


def _write_skipped(skipped, path: Path) -> None:
    import csv

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "kind", "reason"])
        w.writerows([s.path, s.kind, s.reason] for s in skipped)


def _print_rows(rows: list[dict], enc) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{enc.name}: {len(rows)} segment vectors, dim {enc.dim}")
    for c in ("file", "segment", "start s", "end s", "first values"):
        table.add_column(c)
    for r in rows:
        head = " ".join(f"{x:+.3f}" for x in r["embedding"][:4])
        table.add_row(Path(r["path"]).name, str(r["segment"]), f"{r['start']:.2f}", f"{r['end']:.2f}", head + " …")
    Console().print(table)
