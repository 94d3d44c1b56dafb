"""`audioaudit audit GENERATED --index NAME --out runs/NAME`: find copies of training clips."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.1f} %"


def _num(v) -> str:
    return "—" if v is None else f"{v:.4f}"


def print_summary(s: dict, queries) -> None:
    """The audit's headline figures, as text."""
    t = s["threshold"]
    typer.echo(f"audited {s['n_queries']} clips ({s['n_skipped']} skipped, see skipped.csv) "
               f"against {s['index_name']} [{s['encoder'].get('spec') or s['encoder'].get('name')}]")
    if t["value"] is None:
        typer.echo("threshold   none (pass --threshold or calibrate an encoder): nothing flagged")
    else:
        prec = "" if t.get("precision") is None else f", precision {_pct(t['precision'])}"
        ffr = ""
        if t.get("target_false_flag_rate") is not None:
            ffr = f", false flags {_pct(t['false_flag_rate'])} for a {_pct(t['target_false_flag_rate'])} target"
            if t.get("false_flag_rate_bound") is not None:
                ffr += f", <= {_pct(t['false_flag_rate_bound'])} at 95 %"
        typer.echo(f"threshold   {t['value']:.4f} on the {t['on']} ({t['source']}{prec}{ffr})")
        if t.get("note"):
            typer.echo(f"note        {t['note']}")
        f = s["flagged"]
        lo, hi = f["ci95"]
        typer.echo(f"flagged     {f['count']} of {f['n']} = {_pct(f['rate'])} (95 % CI {_pct(lo)}–{_pct(hi)}); "
                   f"{s['flagged_sources']} distinct training sources")
    g, r = s["percentiles"]["gen_vs_train"], s["percentiles"]["train_vs_train"]
    typer.echo("top-1 sim   " + "  ".join(f"p{k} {_num(g[k])}/{_num(r[k])}" for k in ("50", "90", "95", "99"))
               + "   (generated/train-vs-train)")
    rt = s["ratio_test"]
    typer.echo(f"p95 gap     {_num(s['p95_gap'])} (EDMSound)   ratio test <1/3: {rt['count']} of {rt['n']} (Gu et al.)"
               + ("" if s["fraction_above"] is None else f"   above threshold {_pct(s['fraction_above'])}"))
    if s.get("exact_copies"):
        typer.echo(f"exact       {s['exact_copies']} generated clips are bit-identical (PCM) to a training clip")
    flagged = queries[queries["flag"]].sort_values("top1_score", ascending=False).head(10)
    if s.get("verification"):
        v = s["verification"]
        typer.echo(f"verified    {v['pairs']} matches re-read and aligned ({v['ms_per_query']:.1f} ms per clip"
                   + (f"; {v['unreadable']} could not be read back" if v["unreadable"] else "") + ")")
    for r_ in flagged.itertuples():
        corr = getattr(r_, "top1_verify_corr", None)
        typer.echo(f"  FLAG {r_.query_id} -> {r_.top1_item_id}  score {r_.top1_score:.3f}  sim {r_.top1_similarity:.3f}"
                   + ("" if corr is None or corr != corr else f"  aligned corr {corr:.3f}"))


def register(app: typer.Typer) -> None:
    @app.command("audit")
    def audit(
        generated: Path = typer.Argument(..., help="Folder of generated audio (may hold a metadata CSV: path,seed,prompt,class)."),
        index: str = typer.Option(..., "--index", help="Index name (under --root) or directory."),
        out: Path = typer.Option(..., "--out", help="Run directory to write, e.g. runs/NAME."),
        root: Path = typer.Option(Path("index"), "--root", help="Where indexes live."),
        top_k: int = typer.Option(10, "--top-k", min=1, help="Training sources kept per generated clip."),
        threshold: Optional[float] = typer.Option(None, "--threshold", help="Flag at this value (default: calibration)."),
        threshold_on: str = typer.Option("score", "--threshold-on", help="score (normalised) | similarity"),
        same_class: bool = typer.Option(False, "--same-class", help="Match only training clips of the query's class."),
        nprobe: Optional[int] = typer.Option(None, "--nprobe", min=1, help="IVF cells visited (overrides the index's)."),
        ef_search: Optional[int] = typer.Option(None, "--ef-search", min=1, help="HNSW efSearch (overrides)."),
        metadata: Optional[Path] = typer.Option(None, "--metadata", help="Metadata CSV (default: a CSV with a path column in GENERATED)."),
        workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Decoding processes."),
        batch_size: int = typer.Option(32, "--batch-size", min=1),
        verify: bool = typer.Option(False, "--verify/--no-verify", help="Re-read every match and add the aligned "
                                    "log-mel correlation of the two recordings (verify_corr; flags unchanged)."),
        report: bool = typer.Option(False, "--report", help="Also write the listening report into OUT/report."),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        """Rank the nearest training sources of every generated clip, compare with the training
        set's own nearest-neighbour distribution, flag copies, localise the copied spans."""
        from audioaudit.audit.options import AuditOptions
        from audioaudit.audit.run import run_audit
        from audioaudit.index import store

        opts = AuditOptions(top_k=top_k, threshold=threshold, threshold_on=threshold_on, same_class=same_class,
                            nprobe=nprobe, ef_search=ef_search, batch_size=batch_size, workers=workers,
                            progress=progress, metadata=str(metadata) if metadata else None, verify=verify)
        res = run_audit(generated, store.resolve_index_dir(index, root), out, opts=opts)
        print_summary(res.summary, res.queries)
        typer.echo(f"written: {out}/ (matches.parquet, matches.csv, queries.parquet, summary.json, skipped.csv)")
        if report:
            from audioaudit.report import render_report

            typer.echo(f"report: {render_report([Path(out)], Path(out) / 'report', progress=progress)}")
