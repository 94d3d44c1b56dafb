"""`audioaudit report RUN [RUN ...] --out reports/NAME`: the listening report."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        runs: Optional[List[Path]] = typer.Argument(
            None, metavar="RUN...", help="Audit run directories (several: a comparison page)."
        ),
        out: Path = typer.Option(..., "--out", "-o", help="Report folder to write, e.g. reports/NAME."),
        absolute_paths: bool = typer.Option(False, "--absolute-paths", help="Show absolute machine paths."),
        max_cards: Optional[int] = typer.Option(
            None, "--max-cards", min=0, help="Cards per run (top by score); default all."
        ),
        top_k: int = typer.Option(3, "--top-k", min=0, help="Training matches shown per generated clip."),
        audio_format: str = typer.Option("mp3", "--audio-format", help="mp3 (plays everywhere), ogg, opus or wav."),
        workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Processes for audio/spectrograms."),
        duplicates: Optional[Path] = typer.Option(
            None, "--duplicates", help="Instead of runs: an index directory whose duplicate groups to list."
        ),
    ) -> None:
        """Write a static listening page (open OUT/index.html in a browser, no server needed)."""
        from audioaudit.errors import UserError
        from audioaudit.report import PageOptions, ReportOptions, render_duplicates, render_report
        from audioaudit.report.media import AUDIO_FORMATS

        if audio_format not in AUDIO_FORMATS:
            raise UserError(f"--audio-format must be one of {', '.join(sorted(AUDIO_FORMATS))}, not {audio_format!r}")
        if duplicates is not None and runs:
            raise UserError("report: pass audit run directories or --duplicates INDEX, not both")
        if duplicates is None and not runs:
            raise UserError("report: pass at least one audit run directory (or --duplicates INDEX)")
        if duplicates is not None:
            page = PageOptions(absolute_paths=absolute_paths, audio_format=audio_format, workers=workers)
            index = render_duplicates(duplicates, out, page)
        else:
            opts = ReportOptions(absolute_paths=absolute_paths, audio_format=audio_format, workers=workers,
                                 max_cards=max_cards, top_k=top_k)
            index = render_report(list(runs), out, opts)
        typer.echo(f"report written: {index}")
