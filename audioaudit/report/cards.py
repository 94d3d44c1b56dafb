"""One card per generated clip: the clip and its top training matches, ready for the page.

Cards are plain JSON-able dicts; the page's script turns them into DOM nodes with
``textContent`` only, so user-supplied names can never become markup.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from audioaudit.report import fmt
from audioaudit.report.media import MediaJob, MediaResult
from audioaudit.report.model import MatchRow, QueryRow, RunData, Span
from audioaudit.report.paths import PathPolicy, inside


@dataclass(frozen=True)
class PlannedCard:
    run_index: int
    query: QueryRow
    query_job: MediaJob | None
    match_jobs: tuple[tuple[MatchRow, MediaJob | None], ...]


def _rank_key(q: QueryRow) -> tuple:
    score = q.top1_score if q.top1_score is not None else q.top1_similarity
    return (not q.flag, -(score if score is not None else float("-inf")), q.path)


def select_queries(run: RunData, max_cards: int | None) -> list[QueryRow]:
    """Queries ranked (flagged first, then by score), cut to ``max_cards``."""
    ranked = sorted(run.queries, key=_rank_key)
    return ranked if max_cards is None else ranked[: max(0, max_cards)]


def _job(root, rel: str, span: Span | None) -> MediaJob | None:
    p = inside(root, rel)
    return None if p is None else MediaJob(str(p), span)


def plan_cards(runs: list[RunData], max_cards: int | None, top_k: int) -> list[PlannedCard]:
    planned = []
    for i, run in enumerate(runs):
        for q in select_queries(run, max_cards):
            top = q.matches[0] if q.matches else None
            qjob = _job(run.generated_root, q.path, top.query_span if top else None)
            mjobs = tuple((m, _job(run.corpus_root, m.train_path, m.train_span)) for m in q.matches[: max(0, top_k)])
            planned.append(PlannedCard(i, q, qjob, mjobs))
    return planned


def all_jobs(planned: list[PlannedCard]) -> list[MediaJob]:
    jobs = []
    for c in planned:
        jobs += [j for j in [c.query_job, *(j for _, j in c.match_jobs)] if j is not None]
    return jobs


def _span_list(span: Span | None) -> list[float] | None:
    return None if span is None else [round(span.start, 3), round(span.end, 3)]


def clip_view(role: str, name: str, result: MediaResult | None, root_known: bool, policy: PathPolicy,
              span: Span | None, info: list[list[str]]) -> dict:
    """A clip as the page shows it: player + spectrogram, or the reason there is none."""
    clip = {"role": role, "name": name, "info": info, "span": _span_list(span)}
    if result is None:
        clip["err"] = "path outside its root" if root_known else "audio folder unknown (no root in summary.json)"
    elif result.error:
        clip["err"] = policy.scrub(result.error)
    else:
        clip.update(audio=result.audio, img=result.image, win=_span_list(result.window),
                    total=round(result.total or 0, 3), hl=result.highlight)
    return clip


def _match_info(m: MatchRow, run: RunData, policy: PathPolicy) -> list[list[str]]:
    info = [["similarity", fmt.num(m.similarity, 3)], ["score", fmt.num(m.score, 3)]]
    if m.train_label is not None:
        info.append(["class", m.train_label])
    if m.query_span is not None:
        info.append(["generated span", f"{m.query_span.start:.2f}–{m.query_span.end:.2f} s"])
    if m.train_span is not None:
        info.append(["training span", f"{m.train_span.start:.2f}–{m.train_span.end:.2f} s"])
    if m.flag:
        info.append(["flag", "above the threshold"])
    if m.dup_group is not None:
        members = m.dup_members or tuple(run.duplicate_members.get(m.dup_group, []))
        others = [p for p in members if p not in (m.train_path, m.item_id)]
        more = f" … (+{len(others) - 8})" if len(others) > 8 else ""
        shown = ", ".join(policy.show(p) or "?" for p in others[:8]) + more
        text = f"also in the corpus as: {shown}" if others else "(no other member listed)"
        info.append([f"duplicate group {m.dup_group}", text])
    return info


# audit bookkeeping columns of queries.parquet: hidden, or shown under a plainer name
HIDDEN_META = {"pcm_hash", "background", "n_segments", "top1_dup_group", "sha256"}
META_LABELS = {"exact_copy_of": "exact copy of"}


def _query_meta(q: QueryRow, policy: PathPolicy) -> list[list[str]]:
    meta = []
    if q.label is not None:
        meta.append(["class", q.label])
    for k, v in sorted(q.meta.items(), key=lambda kv: str(kv[0])):
        if k not in HIDDEN_META:
            meta.append([META_LABELS.get(str(k), str(k)), policy.scrub(fmt.text(v))])
    meta += [["duration", f"{fmt.num(q.duration, 2)} s"], ["sample rate", fmt.count(q.sample_rate)]]
    return meta


def display_name(policy: PathPolicy, root: Path | None, rel: str) -> str:
    """A clip's path as the page shows it: relative to its root, or absolute when asked."""
    if policy.absolute and root is not None:
        return policy.show(str(root / rel)) or "?"
    return policy.show(rel) or "?"


def card_view(c: PlannedCard, run: RunData, results: dict, policy: PathPolicy) -> dict:
    q = c.query
    top = q.matches[0] if q.matches else None
    qname = display_name(policy, run.generated_root, q.path)
    clips = [clip_view("generated", qname, results.get(c.query_job), run.generated_root is not None,
                       policy, top.query_span if top else None, [])]
    for m, job in c.match_jobs:
        clips.append(clip_view(f"match {m.rank}", display_name(policy, run.corpus_root, m.train_path),
                               results.get(job), run.corpus_root is not None, policy, m.train_span,
                               _match_info(m, run, policy)))
    return {
        "run": c.run_index,
        "title": qname,
        "cls": q.label or "",
        "flag": bool(q.flag),
        "score": q.top1_score,
        "sim": q.top1_similarity,
        "ratio": q.nn_ratio,
        "badges": ["EXACT COPY"] if q.meta.get("exact_copy_of") else [],
        "meta": _query_meta(q, policy),
        "clips": clips,
    }
