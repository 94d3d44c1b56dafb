"""How a listening page is written: the options `audioaudit report` exposes, as values."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageOptions:
    """Options every listening page takes (audit report and duplicate groups)."""

    absolute_paths: bool = False  # show absolute machine paths (default: relative to the corpus roots)
    audio_format: str = "mp3"  # mp3 (plays everywhere), ogg, opus or wav
    workers: int | None = None  # processes for audio/spectrograms (None: a few, 0/1: in this process)
    page_size: int = 20  # cards per page in the browser


@dataclass(frozen=True)
class ReportOptions(PageOptions):
    """The audit report's options: which cards, and how many training matches each."""

    max_cards: int | None = None  # cards per run (top by score); None: all
    top_k: int = 3  # training matches shown per generated clip
