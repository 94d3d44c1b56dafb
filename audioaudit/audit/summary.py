"""summary.json of an audit run: threshold, flagged rate with its interval, percentiles vs the train-vs-train baseline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from audioaudit.audit.options import AuditOptions
from audioaudit.audit.queries import QuerySet
from audioaudit.audit.score import IndexView
from audioaudit.audit.sources import Sources
from audioaudit.audit.threshold import Threshold
from audioaudit.duplicates.groups import source_name
from audioaudit.index import store
from audioaudit.index.faiss import facade as fx


# --------------------------------------------------------------------------- summary
def reference_for(ix: store.OpenIndex, params: fx.IndexParams, src: Sources):
    """The index's train-vs-train reference (:func:`audioaudit.index.reference.cached_reference`)."""
    from audioaudit.index.reference import cached_reference

    return cached_reference(ix, params, {i: source_name(i, g) for i, g in src.group_of.items()})


@dataclass
class RunTables:
    """What an audit run computed, before it is written."""

    queries: object  # DataFrame, one row per query
    matches: object  # DataFrame, one row per (query, rank)
    reference: object  # DataFrame, train-vs-train nearest neighbours
    same_class_unrestricted: int = 0  # queries of an unknown class searched without restriction


def summarise(view: IndexView, qs: QuerySet, tables: RunTables, thr: Threshold, opts: AuditOptions, out: Path) -> dict:
    """summary.json of a run (keys are part of the on-disk contract)."""
    from audioaudit.audit import statistics as stats

    ix, src, queries, ref = view.ix, view.src, tables.queries, tables.reference
    sim1 = queries["top1_similarity"].to_numpy(dtype=float)
    score1 = queries["top1_score"].to_numpy(dtype=float)
    ref_sims = ref["similarity"].to_numpy(dtype=float)
    flags = queries["flag"].to_numpy(dtype=bool)
    flagged = stats.wilson(int(flags.sum()), len(flags)) if thr.value is not None else None
    above = stats.fraction_above(score1 if thr.on == "score" else sim1, thr.value) if thr.value is not None else None
    top_src = [source_name(i, None if _isna(g) else g) for g, i in zip(queries["top1_dup_group"], queries["top1_item_id"])]
    copies: dict[str, int] = {}
    for s, f in zip(top_src, flags):
        if f:
            copies[s] = copies.get(s, 0) + 1
    per_class = {k: dict(v.as_dict(), flagged=v.count) for k, v in stats.per_class(queries["label"], flags).items()}
    return stats.to_jsonable({
        "run": opts.run_name or out.name, "index": str(ix.dir.resolve()), "index_name": ix.name,
        "corpus_root": ix.manifest.get("corpus_root"), "generated_root": str(Path(qs.root).resolve()),
        "generator": _generator(queries),
        "encoder": {"spec": ix.encoder.get("spec"), "name": ix.encoder.get("name"), "identity": ix.encoder["identity"]},
        "n_queries": len(queries), "n_skipped": len(qs.skipped), "n_windows": len(qs.q_clip),
        "top_k": opts.top_k, "same_class": opts.same_class, "same_class_unrestricted": tables.same_class_unrestricted,
        "index_search": fx.with_overrides(ix.params, opts.nprobe, opts.ef_search).as_dict(),
        "threshold": thr.as_dict(), "flagged": flagged.as_dict() if flagged else None,
        "flagged_sources": len(copies), "per_class": per_class if thr.value is not None else {},
        "percentiles": {"gen_vs_train": stats.percentiles(sim1), "train_vs_train": stats.percentiles(ref_sims),
                        "gen_vs_train_score": stats.percentiles(score1)},
        "p95_gap": stats.p95_gap(sim1, ref_sims),
        "fraction_above": above.rate if above else None, "fraction_above_detail": above,
        "ratio_test": dict(stats.ratio_test(queries["nn_ratio"]).as_dict(), tau=stats.RATIO_TAU),
        "exact_copies": int(queries["exact_copy_of"].notna().sum()),
        "duplicates": {"groups": len(src.members), "items_in_groups": sum(len(m) for m in src.members.values())},
        "memorisation": stats.memorisation(src.sizes, copies) if thr.value is not None else None,
        "score_normalisation": normalisation_note(view.bg),
    })


def normalisation_note(bg) -> str:
    if bg is None:
        return "similarity minus the mean similarity of the 2nd-11th training sources (SSCD)"
    return (f"similarity minus the mean similarity of the {bg.k} best of {bg.n_clips} background-set clips "
            "(SSCD, Pizzi et al. 2022)")


def _isna(v) -> bool:
    try:
        import pandas as pd

        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return v is None


def _generator(queries) -> str | None:
    for col in ("generator", "model"):
        if col in queries.columns:
            vals = sorted({str(v) for v in queries[col].dropna()})
            return ", ".join(vals[:3]) if vals else None
    return None
