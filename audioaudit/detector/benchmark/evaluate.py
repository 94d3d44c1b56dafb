"""Score a built benchmark (:mod:`audioaudit.detector.benchmark.dataset`) with one encoder.

Clips are loaded by :func:`audioaudit.audio.io.load_waves` and embedded window by window
exactly as the index and the audit embed them (:func:`audioaudit.encoders.embed.embed_clips`,
the one windowing rule). Every query is compared with every reference: clip similarity =
max cosine over segment pairs (:func:`audioaudit.similarity.clip_similarity`); each query
keeps its ``top_k`` references as predictions; predictions of all queries are pooled for
µAP (:mod:`audioaudit.detector.benchmark.metrics`). Two rows per encoder: ``similarity``
(raw cosine) and ``score`` (SSCD-normalised against the reference set as background,
:func:`audioaudit.similarity.normalised`: minus the mean of the query's 2nd–11th neighbours).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from audioaudit import similarity
from audioaudit.audio.io import load_waves
from audioaudit.detector.benchmark import metrics
from audioaudit.detector.benchmark.dataset import BenchSet
from audioaudit.encoders import embed


@dataclass
class BenchRow:
    encoder: str  # the spec the user gave
    scoring: str  # "similarity" | "score"
    report: metrics.Report
    identity: dict = field(default_factory=dict)
    embed_seconds: float = 0.0
    skipped: list[dict] = field(default_factory=list)
    groups: dict[str, metrics.Metrics] = field(default_factory=dict)  # e.g. "train" / "test" families
    cost: dict = field(default_factory=dict)  # the verification stage's seconds (verified rows)
    kinds: dict[str, metrics.Metrics] = field(default_factory=dict)  # per class folder of the queries

    def to_json(self) -> dict:
        return {"encoder": self.encoder, "scoring": self.scoring, "identity": self.identity,
                "embed_seconds": round(self.embed_seconds, 3), "overall": asdict(self.report.overall),
                "groups": {k: asdict(v) for k, v in self.groups.items()}, "cost": self.cost,
                "per_kind": {k: asdict(v) for k, v in self.kinds.items()},
                "per_family": {k: asdict(v) for k, v in self.report.per_family.items()}, "skipped": self.skipped}


def _predictions(bench: BenchSet, matrix: np.ndarray, top_k: int):
    """(query, ref, score, truth, family) of the ``top_k`` predictions per query."""
    ref_index = {r.item_id: n for n, r in enumerate(bench.references)}
    truth = {qi: {ref_index[t] for t in q.truth if t in ref_index} for qi, q in enumerate(bench.queries)}
    family = {qi: q.family for qi, q in enumerate(bench.queries)}
    m = np.where(np.isfinite(matrix), matrix, -np.inf)
    q, r, s = similarity.top_k(m, top_k)
    ok = np.isfinite(s)
    return q[ok], r[ok], s[ok], truth, family


def evaluate_matrix(bench: BenchSet, matrix: np.ndarray, top_k: int = 10) -> metrics.Report:
    """Pure: metrics of a (n_queries, n_references) score matrix for ``bench``.
    A row of NaN (a query that could not be scored) yields no predictions — a miss."""
    return metrics.evaluate_by_family(*_predictions(bench, matrix, top_k))


def evaluate_groups(bench: BenchSet, matrix: np.ndarray, groups: dict[str, tuple[str, ...]],
                    top_k: int = 10) -> dict[str, metrics.Metrics]:
    """Pure: one row per group of families (e.g. the families a detector trained on and the
    ones it never saw), each pooling the group's copy queries with *all* distractors."""
    q, r, s, truth, family = _predictions(bench, matrix, top_k)
    distractors = [i for i, f in family.items() if f is None]
    return {name: metrics.evaluate(q, r, s, truth, [i for i, f in family.items() if f in fams] + distractors)
            for name, fams in groups.items() if fams}


def evaluate_kinds(bench: BenchSet, matrix: np.ndarray, top_k: int = 10) -> dict[str, metrics.Metrics]:
    """Pure: one row per kind (the class folder: speech, music, effects, ...), each pooling the
    copies of that kind's references with the distractors *of the same kind* — does the
    detector find speech copies without flagging novel speech? Unlabelled corpora: no rows."""
    q, r, s, truth, _ = _predictions(bench, matrix, top_k)
    labels = [qq.label for qq in bench.queries]
    return {k: metrics.evaluate(q, r, s, truth, [i for i, lab in enumerate(labels) if lab == k])
            for k in sorted({lab for lab in labels if lab})}


def similarity_matrix(encoder, bench: BenchSet, progress: Callable[[int], None] | None = None):
    """(queries × references) clip similarity, seconds spent embedding, skipped files."""
    ref_waves, skipped = load_waves([r.path for r in bench.references], encoder.sample_rate)
    q_waves, q_skipped = load_waves([str(Path(bench.root) / q.path) for q in bench.queries], encoder.sample_rate)
    skipped += q_skipped
    silent = np.zeros(1, np.float32)
    t0 = time.perf_counter()
    refs = embed.embed_clips(encoder, [w if w is not None else silent for w in ref_waves], progress=progress)
    qs = embed.embed_clips(encoder, [w if w is not None else silent for w in q_waves], progress=progress)
    seconds = time.perf_counter() - t0
    sim = similarity.clip_similarity(qs, refs)
    sim[[w is None for w in q_waves], :] = np.nan
    sim[:, [w is None for w in ref_waves]] = np.nan
    return sim, seconds, skipped


@dataclass(frozen=True)
class RunSettings:
    """How one encoder is scored: its spec, normalisation, predictions kept, family groups."""

    spec: str | None = None
    normalise: bool = True
    top_k: int = 10
    groups: dict = field(default_factory=dict)  # name -> families (reported besides overall)
    verify: bool = False  # also the two-stage row: top_k candidates re-scored by audio verification


def run_benchmark(bench: BenchSet, encoder, settings: RunSettings = RunSettings(), *,
                  progress: Callable[[int], None] | None = None) -> list[BenchRow]:
    """Rows for one encoder: raw similarity, and (``normalise``) the normalised score."""
    sim, seconds, skipped = similarity_matrix(encoder, bench, progress)
    name = settings.spec or encoder.name
    ident = encoder.identity()
    matrices, cost = {"similarity": sim}, {}
    if settings.normalise:
        matrices["score"] = similarity.normalised(sim, ~np.isfinite(sim))  # unscored pairs: no background, stay NaN
    if settings.verify:  # candidates and first-stage score: the normalised one when there is one (as the audit)
        from audioaudit.detector.benchmark.verified import verified_matrix

        matrices["verified"], cost = verified_matrix(bench, matrices.get("score", sim), settings.top_k)
    return [BenchRow(name, kind, evaluate_matrix(bench, m, settings.top_k), ident, seconds, skipped,
                     evaluate_groups(bench, m, settings.groups, settings.top_k), cost if kind == "verified" else {},
                     evaluate_kinds(bench, m, settings.top_k))
            for kind, m in matrices.items()]


def bench_summary(bench: BenchSet) -> dict:
    """What the set holds (for the JSON and the table caption)."""
    return {"root": bench.root, "corpus": bench.corpus, "key": bench.key, "sample_rate": bench.sample_rate,
            "spec": asdict(bench.spec), "references": len(bench.references), "copy_queries": bench.n_copies,
            "distractors": bench.n_distractors, "duplicate_groups": len({g["group"] for g in bench.groups}),
            "dropped": bench.dropped, "notes": bench.notes}
