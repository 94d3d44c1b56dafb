"""``audioaudit encoders`` (list the backends) and ``audioaudit embed`` (embed files for
inspection). Heavy imports (torch, transformers, pandas) happen inside the commands."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer


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
    from audioaudit.encoders.embed_files import embed_files, expand_inputs, write_embeddings, write_skipped
    from audioaudit.errors import UserError

    if out is not None and out.suffix != ".parquet":
        raise UserError(f"--out {out}: pass a path ending in .parquet")
    paths, skipped = expand_inputs(files)
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
        write_skipped(skipped, side)
        msg += f"; {len(skipped)} skipped, listed in {side}"
    typer.echo(msg)


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
