"""Typed records the report reads from an audit run directory or an index directory."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Span:
    """A time span in seconds within one clip."""

    start: float
    end: float


@dataclass(frozen=True)
class MatchRow:
    """One training match of a generated clip (a row of matches.parquet)."""

    rank: int
    item_id: str
    train_path: str
    train_label: str | None
    similarity: float | None
    score: float | None
    query_span: Span | None
    train_span: Span | None
    flag: bool
    dup_group: int | None
    dup_members: tuple[str, ...] = ()  # every member of the duplicate group (as the audit listed them)


@dataclass(frozen=True)
class QueryRow:
    """One audited generated clip (a row of queries.parquet) with its matches."""

    query_id: str
    path: str
    label: str | None
    duration: float | None
    sample_rate: int | None
    top1_similarity: float | None
    top1_score: float | None
    top1_item_id: str | None
    nn_ratio: float | None
    flag: bool
    meta: dict = field(default_factory=dict)  # generator metadata: seed, prompt, sampler …
    matches: tuple[MatchRow, ...] = ()


@dataclass(frozen=True)
class SkippedRow:
    path: str
    kind: str
    reason: str


@dataclass
class RunData:
    """Everything the report needs from one audit run directory."""

    name: str
    run_dir: Path
    summary: dict
    queries: list[QueryRow]
    reference: np.ndarray  # train-vs-train nearest non-self similarities (may be empty)
    skipped: list[SkippedRow]
    generated_root: Path | None
    corpus_root: Path | None
    duplicate_members: dict[int, list[str]] = field(default_factory=dict)  # group -> paths
    notes: list[str] = field(default_factory=list)  # what was missing while loading

    @property
    def top1_similarities(self) -> np.ndarray:
        v = [q.top1_similarity for q in self.queries if q.top1_similarity is not None]
        return np.asarray(v, dtype=np.float64)

    @property
    def top1_scores(self) -> np.ndarray:
        v = [q.top1_score for q in self.queries if q.top1_score is not None]
        return np.asarray(v, dtype=np.float64)


@dataclass(frozen=True)
class DuplicateMember:
    item_id: str
    path: str
    kind: str = "exact"  # how this member joined its group: exact (same PCM) | near


@dataclass(frozen=True)
class DuplicateGroup:
    group: int
    kind: str  # exact (every member the same PCM) | near (at least one near member)
    members: tuple[DuplicateMember, ...]


@dataclass
class DuplicateData:
    """duplicates.parquet of an index, grouped, with the corpus root its paths hang from."""

    name: str
    index_dir: Path
    corpus_root: Path | None
    groups: list[DuplicateGroup]
    manifest: dict
