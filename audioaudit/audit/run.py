"""``audit``: generated clips → nearest training sources → statistics and flags.

1. open and validate the index, and read what else the run needs from its folder (background
   set, calibration, train-vs-train reference) under one :func:`audioaudit.index.store.reading`:
   an ``index add`` committing meanwhile waits, so all of it is of one index (nothing is
   written before everything has been read);
2. embed the generated clips with the index's own encoder (reloaded from its spec in
   ``encoder.json``; a different identity is an error naming both). A clip shorter than
   one window is one (padded) window, never dropped; unusable files go to skipped.csv;
3. search every window, aggregate to training *sources* (a duplicate group counts once)
   by the max over window pairs, keeping which query span matched which training span;
4. normalise scores (SSCD: minus the mean similarity of the 2nd–11th sources,
   :mod:`audioaudit.similarity`), flag at the threshold, summarise (:mod:`audioaudit.audit.statistics`);
5. with ``verify``, re-read every match's two recordings and add their aligned log-mel
   correlation as evidence (:mod:`audioaudit.audit.verify`; flags unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from audioaudit import schema
from audioaudit.audit.options import AuditOptions
from audioaudit.audit.queries import load_queries
from audioaudit.audit.score import BACKGROUND_DEPTH, IndexView, score_queries
from audioaudit.audit.summary import RunTables, reference_for, summarise
from audioaudit.audit.tables import match_table, query_table
from audioaudit.audit.threshold import resolve_threshold
from audioaudit.errors import UserError
from audioaudit.index import store
from audioaudit.index.faiss import facade as fx
from audioaudit.index.items import distinct
from audioaudit.util import atomic


# --------------------------------------------------------------------------- run
@dataclass
class AuditResult:
    out: Path
    queries: "object"
    matches: "object"
    summary: dict
    skipped: list[dict]


def run_audit(generated, index_dir, out, *, encoder=None, opts: AuditOptions | None = None) -> AuditResult:
    """Audit the folder ``generated`` against the index at ``index_dir``; write ``out``."""
    import pandas as pd

    from audioaudit.encoders.registry import load_stored_encoder
    from audioaudit.index.background import load_background

    opts = opts or AuditOptions()
    if opts.top_k < 1:
        raise UserError("--top-k must be at least 1")
    with store.reading(index_dir):  # one committed state of the folder for every read below
        ix = store.open_index(index_dir)
        if encoder is not None:
            store.check_encoder(ix.encoder, encoder, ix.dir)
        bg = load_background(ix.dir, ix.encoder.get("identity"), distinct(ix.items, "pcm_hash"))
        thr = resolve_threshold(opts.threshold, opts.threshold_on, ix.dir, ix.encoder.get("spec"),
                                normalisation="background" if bg is not None else "references")
        view = IndexView.of(ix, fx.with_overrides(ix.params, opts.nprobe, opts.ef_search), bg)
        ref = reference_for(ix, view.params, view.src)  # a missing cache is filled from this same index
    if encoder is None:
        encoder = load_stored_encoder(ix.encoder, ix.dir)
        store.check_encoder(ix.encoder, encoder, ix.dir)
    qs = load_queries(generated, encoder, opts)
    depth = max(opts.top_k, BACKGROUND_DEPTH)
    hits, fallback, sims, background = score_queries(view, qs, depth, opts.same_class)
    matches = match_table(ix, qs, hits, view.src, background, opts.top_k, thr)
    verified = None
    if opts.verify:
        from audioaudit.audit.verify import verify_matches

        files = {q: str(Path(qs.root) / p) for q, p in zip(qs.table["query_id"], qs.table["path"])}
        matches, verified = verify_matches(matches, files, ix.manifest.get("corpus_root"))
    queries = query_table(ix, qs, hits, view.src, matches, sims, background)
    out = Path(out)
    summary = summarise(view, qs, RunTables(queries, matches, ref, fallback), thr, opts, out)
    if verified is not None:
        summary["verification"] = verified.to_json(len(queries))
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_parquet(queries, out / schema.QUERIES_FILE)
    atomic.write_parquet(matches, out / schema.MATCHES_FILE)
    atomic.write_csv(matches, out / schema.MATCHES_CSV)
    atomic.write_parquet(ref, out / schema.REFERENCE_FILE)
    atomic.write_csv(pd.DataFrame(qs.skipped, columns=["path", "kind", "reason"]), out / schema.SKIPPED_FILE)
    atomic.write_json(out / schema.SUMMARY_FILE, summary)
    return AuditResult(out, queries, matches, summary, qs.skipped)
