"""`render_duplicates`: a listening page for the duplicate groups of a training corpus.

Same machinery as the audit report: one card per group, every member of a near-duplicate
group playable side by side (re-encodes, gain changes, padding are heard and seen);
exact groups are identical audio, so one member plays and the rest are listed.
"""
from __future__ import annotations

from pathlib import Path

from audioaudit.report import fmt, render
from audioaudit.report.cards import clip_view, display_name
from audioaudit.report.load import load_duplicates
from audioaudit.report.media import MediaJob, MediaSettings, run_media_jobs, write_colorbar
from audioaudit.report.model import DuplicateData, DuplicateGroup
from audioaudit.report.options import PageOptions
from audioaudit.report.paths import PathPolicy, inside

SORTS = [("size-desc", "group size, largest first"), ("name", "first member")]
MAX_PLAYERS = 8


def _players(g: DuplicateGroup) -> int:
    return 1 if g.kind == "exact" else min(len(g.members), MAX_PLAYERS)


def _jobs(data: DuplicateData, groups: list[DuplicateGroup]) -> dict[tuple[int, int], MediaJob]:
    jobs = {}
    for g in groups:
        for j, m in enumerate(g.members[: _players(g)]):
            p = inside(data.corpus_root, m.path)
            if p is not None:
                jobs[(g.group, j)] = MediaJob(str(p), None)
    return jobs


def _card(data: DuplicateData, g: DuplicateGroup, jobs: dict, results: dict, policy: PathPolicy) -> dict:
    n = _players(g)
    clips = []
    for j, m in enumerate(g.members[:n]):
        name = display_name(policy, data.corpus_root, m.path)
        res = results.get(jobs.get((g.group, j)))
        clips.append(clip_view(f"member {j + 1} ({m.kind})", name, res, data.corpus_root is not None, policy, None, []))
    rest = [policy.show(m.path) or "?" for m in g.members[n:]]
    meta = [["kind", g.kind], ["members", str(len(g.members))]]
    if rest:
        meta.append(["identical copies" if g.kind == "exact" else "not played", ", ".join(rest)])
    first = policy.show(g.members[0].path) if g.members else "?"
    return {"run": 0, "title": first or "?", "cls": g.kind, "flag": False, "score": None, "sim": None,
            "ratio": None, "size": len(g.members), "scoreText": f"group {g.group} · {len(g.members)} files",
            "meta": meta, "clips": clips}


def _kind_rows(groups: list[DuplicateGroup]) -> list[list[str]]:
    rows = []
    for kind in sorted({g.kind for g in groups}):
        gs = [g for g in groups if g.kind == kind]
        files = sum(len(g.members) for g in gs)
        rows.append([kind, fmt.count(len(gs)), fmt.count(files), fmt.count(files - len(gs)),
                     fmt.count(max(len(g.members) for g in gs))])
    return rows


def render_duplicates(index_dir: Path, out: Path, options: PageOptions | None = None, *,
                      corpus_root: Path | None = None, progress: bool = True) -> Path:
    """Write a listening page for ``index_dir/duplicates.parquet`` into ``out``; returns index.html.

    ``corpus_root`` overrides the corpus root named in the index manifest.
    """
    o = options or PageOptions()
    data = load_duplicates(index_dir, corpus_root)
    settings = MediaSettings(audio_format=o.audio_format)
    out = render.prepare_out(Path(out))
    roots = [data.corpus_root.resolve()] if data.corpus_root else []
    policy = PathPolicy(absolute=o.absolute_paths, roots=roots)
    jobs = _jobs(data, data.groups)
    results = run_media_jobs(list(jobs.values()), out, settings,
                             workers=render.default_workers() if o.workers is None else o.workers, progress=progress)
    cards = [_card(data, g, jobs, results, policy) for g in data.groups]
    write_colorbar(out / "fig/colorbar.png")
    notes = [] if data.corpus_root else ["manifest.json names no corpus root: members cannot be played"]
    rows = [("Index", policy.show_root(str(data.index_dir.resolve())) or "—"),
            ("Training corpus", fmt.text(policy.show_root(str(data.corpus_root)) if data.corpus_root else None)),
            ("Groups", fmt.count(len(data.groups)))]
    index = render.page("duplicates.html.j2", {
        "title": f"audioaudit duplicate groups: {policy.scrub(data.name)}",
        "subtitle": "recordings present more than once in the training corpus",
        "listen_heading": f"Listen: {len(cards)} duplicate groups",
        "rows": rows, "kinds": _kind_rows(data.groups), "notes": notes,
        "classes": sorted({g.kind for g in data.groups}),
        "sorts": SORTS, **render.scale_context(settings), "highlight": False,
        "data": {"cards": cards, "specWidth": settings.spec_width, "specHeight": settings.spec_height,
                 "runs": [data.name], "pageSize": o.page_size, "defaultSort": "size-desc",
                 "flagWord": "", "unit": "groups"},
    }, out)
    render.prune(out, render.referenced(cards) | {"fig/colorbar.png"})
    return index
