"""`render_report`: the listening report of one or several audit runs."""
from __future__ import annotations

from pathlib import Path

from audioaudit.errors import UserError
from audioaudit.report import cards as cardlib
from audioaudit.report import render
from audioaudit.report.load import load_run
from audioaudit.report.media import MediaSettings, run_media_jobs, write_colorbar
from audioaudit.report.model import RunData
from audioaudit.report.options import ReportOptions
from audioaudit.report.paths import PathPolicy
from audioaudit.report.plots import comparison_plot, similarity_histogram
from audioaudit.report.summary_view import PERCENTILES, comparison_row, comparison_table, summary_view

SORTS = [("score-desc", "score, highest first"), ("score-asc", "score, lowest first"),
         ("sim-desc", "similarity, highest first"), ("ratio-asc", "NN ratio, lowest first"), ("name", "name")]
MAX_SKIPPED_SHOWN = 200


def _policy(runs: list[RunData], absolute: bool) -> PathPolicy:
    roots = [r for run in runs for r in (run.generated_root, run.corpus_root) if r is not None]
    return PathPolicy(absolute=absolute, roots=[Path(r).resolve() for r in roots])


def _unique_names(runs: list[RunData], policy: PathPolicy) -> list[str]:
    names, seen = [], {}
    for run in runs:
        name = policy.scrub(run.name) or "run"
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return names


def _threshold(run: RunData) -> tuple[float | None, str]:
    from audioaudit.report import fmt

    t = run.summary.get("threshold")
    if isinstance(t, dict):
        return fmt.number(t.get("value")), str(t.get("on") or t.get("metric") or "score")
    return fmt.number(t), "score"


def _run_section(i: int, run: RunData, name: str, policy: PathPolicy, out: Path, shown: int) -> dict:
    value, on = _threshold(run)
    fig = f"fig/similarity-{i}.png"
    similarity_histogram(out / fig, run.top1_similarities, run.reference, run.top1_scores, value, on, title=name)
    skipped = [(policy.show(s.path) or "", s.kind, policy.scrub(s.reason) or "")
               for s in run.skipped[:MAX_SKIPPED_SHOWN]]
    return {
        "name": name, "view": summary_view(run, policy), "figure": fig, "skipped": skipped,
        "skipped_total": len(run.skipped), "shown": shown, "total": len(run.queries),
        "notes": [policy.scrub(n) for n in run.notes],
    }


def _comparison(runs: list[RunData], names: list[str], out: Path) -> dict | None:
    if len(runs) < 2:
        return None
    rows = [dict(comparison_row(r), name=n) for r, n in zip(runs, names)]
    comparison_plot(out / "fig/comparison.png", rows)
    return {"rows": comparison_table(rows), "figure": "fig/comparison.png"}


def render_report(run_dirs: list[Path], out: Path, options: ReportOptions | None = None, *,
                  progress: bool = True) -> Path:
    """Write the listening report of ``run_dirs`` into the folder ``out``; returns index.html.

    One card per generated clip (the top ``options.max_cards`` per run by score when
    given), each with its ``options.top_k`` training matches. Media already in ``out`` from
    an earlier render is reused, so an interrupted report resumes.
    """
    o = options or ReportOptions()
    if not run_dirs:
        raise UserError("report: pass at least one audit run directory")
    runs = [load_run(d) for d in run_dirs]
    settings = MediaSettings(audio_format=o.audio_format)
    out = render.prepare_out(Path(out))
    policy = _policy(runs, o.absolute_paths)
    names = _unique_names(runs, policy)
    planned = cardlib.plan_cards(runs, o.max_cards, o.top_k)
    results = run_media_jobs(cardlib.all_jobs(planned), out, settings,
                             workers=render.default_workers() if o.workers is None else o.workers, progress=progress)
    cards = [cardlib.card_view(c, runs[c.run_index], results, policy) for c in planned]
    shown = [sum(1 for c in planned if c.run_index == i) for i in range(len(runs))]
    sections = [_run_section(i, r, names[i], policy, out, shown[i]) for i, r in enumerate(runs)]
    write_colorbar(out / "fig/colorbar.png")
    keep = render.referenced(cards)
    keep |= {s["figure"] for s in sections} | {"fig/colorbar.png", "fig/comparison.png"}
    comparison = _comparison(runs, names, out)
    classes = sorted({c["cls"] for c in cards if c["cls"]})
    missing = sum(1 for c in cards for clip in c["clips"] if clip.get("err"))
    notes = [f"{missing} clip(s) have no playable audio (see the cards)"] if missing else []
    index = render.page("report.html.j2", {
        "title": "audioaudit listening report" + (f": {names[0]}" if len(names) == 1 else f" ({len(names)} runs)"),
        "subtitle": "generated clips beside their nearest training clips, ranked by copy score",
        "listen_heading": f"Listen: {len(cards)} generated clips and their top {o.top_k} training matches",
        "runs": sections, "comparison": comparison, "percentile_keys": PERCENTILES, "notes": notes,
        "classes": classes, "sorts": SORTS, **render.scale_context(settings), "highlight": True,
        "data": {"cards": cards, "specWidth": settings.spec_width, "specHeight": settings.spec_height,
                 "runs": names, "pageSize": o.page_size, "defaultSort": "score-desc",
                 "flagWord": "FLAGGED", "unit": "clips"},
    }, out)
    render.prune(out, keep)
    return index
