"""Read audit run directories and index duplicate tables into typed records.

Tolerant by design: a missing optional file (reference, skipped list) or a missing
column becomes an empty value plus a note shown on the page; only a directory that is
not an audit run at all is an error.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from audioaudit import schema
from audioaudit.errors import UserError
from audioaudit.report.model import (
    DuplicateData,
    DuplicateGroup,
    DuplicateMember,
    MatchRow,
    QueryRow,
    RunData,
    SkippedRow,
    Span,
)
from audioaudit.report.paths import resolve_root

_QUERY_FIELDS = set(schema.QUERY_COLUMNS)


def clean(v):
    """A parquet cell as a plain Python value: NaN/NA → None, numpy scalars → Python."""
    if v is None:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    try:
        import pandas as pd

        if v is pd.NA or v is pd.NaT:
            return None
    except ImportError:  # pragma: no cover
        pass
    if isinstance(v, (list, tuple, np.ndarray)):
        return [clean(x) for x in v]
    return v


def _f(v) -> float | None:
    v = clean(v)
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def _s(v) -> str | None:
    v = clean(v)
    return None if v is None else str(v)


def _span(a, b) -> Span | None:
    a, b = _f(a), _f(b)
    return None if a is None or b is None or b < a else Span(a, b)


def _records(path: Path) -> list[dict]:
    import pandas as pd

    try:
        return pd.read_parquet(path).to_dict("records")
    except Exception as e:  # noqa: BLE001 - a broken table is the user's to fix
        raise UserError(f"{path}: cannot read parquet ({type(e).__name__}: {e})") from None


def _match(r: dict) -> MatchRow:
    g = clean(r.get("dup_group"))
    return MatchRow(
        rank=int(clean(r.get("rank")) or 0),
        item_id=_s(r.get("item_id")) or _s(r.get("train_path")) or "?",
        train_path=_s(r.get("train_path")) or _s(r.get("item_id")) or "?",
        train_label=_s(r.get("train_label")),
        similarity=_f(r.get("similarity")),
        score=_f(r.get("score")),
        query_span=_span(r.get("query_start"), r.get("query_end")),
        train_span=_span(r.get("train_start"), r.get("train_end")),
        flag=bool(clean(r.get("flag")) or False),
        dup_group=None if g is None else int(g),
        dup_members=tuple(x for x in (_s(r.get("dup_members")) or "").split(";") if x),
    )


def _query(r: dict, matches: list[MatchRow]) -> QueryRow:
    path = _s(r.get("path")) or _s(r.get("query_id")) or "?"
    rate = clean(r.get("sample_rate"))
    meta = {k: clean(v) for k, v in r.items() if k not in _QUERY_FIELDS and clean(v) is not None}
    return QueryRow(
        query_id=_s(r.get("query_id")) or path,
        path=path,
        label=_s(r.get("label")),
        duration=_f(r.get("duration")),
        sample_rate=None if rate is None else int(rate),
        top1_similarity=_f(r.get("top1_similarity")),
        top1_score=_f(r.get("top1_score")),
        top1_item_id=_s(r.get("top1_item_id")),
        nn_ratio=_f(r.get("nn_ratio")),
        flag=bool(clean(r.get("flag")) or False),
        meta=meta,
        matches=tuple(sorted(matches, key=lambda m: m.rank)),
    )


def _read_summary(run_dir: Path, notes: list[str]) -> dict:
    p = run_dir / schema.SUMMARY_FILE
    if not p.exists():
        notes.append(f"{schema.SUMMARY_FILE} is missing: no threshold or roots known")
        return {}
    try:
        s = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(s, dict):
        raise UserError(f"{p}: expected a JSON object")
    return s


def _read_reference(run_dir: Path, notes: list[str]) -> np.ndarray:
    p = run_dir / schema.REFERENCE_FILE
    if not p.exists():
        notes.append(f"{schema.REFERENCE_FILE} is missing: no train-vs-train reference to plot")
        return np.zeros(0)
    vals = [_f(r.get("similarity")) for r in _records(p)]
    return np.asarray([v for v in vals if v is not None], dtype=np.float64)


def _read_skipped(run_dir: Path) -> list[SkippedRow]:
    p = run_dir / schema.SKIPPED_FILE
    if not p.exists():
        return []
    with open(p, newline="", encoding="utf-8", errors="replace") as f:
        return [
            SkippedRow(str(r.get("path") or ""), str(r.get("kind") or ""), str(r.get("reason") or ""))
            for r in csv.DictReader(f)
        ]


def _duplicate_members(run_dir: Path, summary: dict) -> dict[int, list[str]]:
    """group → member paths, from the run's or its index's duplicates.parquet (if any)."""
    candidates = [run_dir / schema.DUPLICATES_FILE]
    index_root = resolve_root(summary.get("index") if isinstance(summary.get("index"), str) else None, run_dir)
    if index_root is not None:
        candidates.append(index_root / schema.DUPLICATES_FILE)
    for p in candidates:
        if p.is_file():
            out: dict[int, list[str]] = {}
            for r in _records(p):
                g = clean(r.get("group"))
                if g is not None:
                    out.setdefault(int(g), []).append(_s(r.get("path")) or _s(r.get("item_id")) or "?")
            return out
    return {}


def load_run(run_dir: str | Path) -> RunData:
    """Read one audit run directory (see :mod:`audioaudit.schema`)."""
    run_dir = Path(run_dir)
    qp, mp = run_dir / schema.QUERIES_FILE, run_dir / schema.MATCHES_FILE
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: audit run directory not found")
    if not qp.exists():
        raise UserError(
            f"{run_dir}: not an audit run directory (no {schema.QUERIES_FILE}); run `audioaudit audit` first"
        )
    notes: list[str] = []
    summary = _read_summary(run_dir, notes)
    by_query: dict[str, list[MatchRow]] = {}
    if mp.exists():
        for r in _records(mp):
            by_query.setdefault(_s(r.get("query_id")) or "?", []).append(_match(r))
    else:
        notes.append(f"{schema.MATCHES_FILE} is missing: cards show no training matches")
    queries = []
    for r in _records(qp):
        qid = _s(r.get("query_id")) or _s(r.get("path")) or "?"
        queries.append(_query(r, by_query.get(qid, [])))
    return RunData(
        name=str(summary.get("run") or run_dir.resolve().name),
        run_dir=run_dir,
        summary=summary,
        queries=queries,
        reference=_read_reference(run_dir, notes),
        skipped=_read_skipped(run_dir),
        generated_root=resolve_root(summary.get("generated_root"), run_dir),
        corpus_root=resolve_root(summary.get("corpus_root"), run_dir),
        duplicate_members=_duplicate_members(run_dir, summary),
        notes=notes,
    )


def _manifest_root(manifest: dict) -> str | None:
    for key in ("corpus_root", "root", "corpus"):
        v = manifest.get(key)
        if isinstance(v, str) and v:
            return v
    return None


def load_duplicates(index_dir: str | Path, corpus_root: str | Path | None = None) -> DuplicateData:
    """Read ``duplicates.parquet`` (+ the corpus root from ``manifest.json``) of an index."""
    from audioaudit.index.store import reading

    index_dir = Path(index_dir)
    with reading(index_dir):  # never half of an index build's commit
        return _load_duplicates(index_dir, corpus_root)


def _load_duplicates(index_dir: Path, corpus_root: str | Path | None) -> DuplicateData:
    p = index_dir / schema.DUPLICATES_FILE
    if not p.exists():
        raise UserError(f"{index_dir}: no {schema.DUPLICATES_FILE}; build the index with duplicate detection first")
    manifest: dict = {}
    mp = index_dir / schema.MANIFEST_FILE
    if mp.exists():
        try:
            manifest = json.loads(mp.read_text(encoding="utf-8"))
        except ValueError as e:
            raise UserError(f"{mp}: not valid JSON ({e})") from None
    groups: dict[int, list[DuplicateMember]] = {}
    for r in _records(p):
        g = clean(r.get("group"))
        if g is None:
            continue
        path = _s(r.get("path")) or _s(r.get("item_id")) or "?"
        kind = _s(r.get("kind")) or "near"
        groups.setdefault(int(g), []).append(DuplicateMember(_s(r.get("item_id")) or path, path, kind))
    root = str(corpus_root) if corpus_root is not None else _manifest_root(manifest)
    return DuplicateData(
        name=index_dir.resolve().name,
        index_dir=index_dir,
        corpus_root=resolve_root(root, index_dir),
        groups=[DuplicateGroup(g, "near" if any(m.kind == "near" for m in ms) else "exact", tuple(ms))
                for g, ms in sorted(groups.items())],
        manifest=manifest,
    )
