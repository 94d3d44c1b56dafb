"""`audioaudit dedup CORPUS_OR_INDEX`: duplicate groups of a training corpus.

An index (name or directory) prints the groups found at build time (exact PCM hash +
near duplicates through the index). A corpus folder is hashed here: exact duplicates
only, unless ``--encoder`` is given, in which case a temporary index finds the near ones.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

import typer


def hash_file(path: str):
    """(pcm hash | None, Skipped | None) of one file decoded at the fixed dedup rate (worker)."""
    from audioaudit.audio.fingerprint import DUP_RATE, pcm_hash
    from audioaudit.audio.io import LoadOptions, Skipped, try_load

    got = try_load(path, LoadOptions(sample_rate=DUP_RATE, silence_dbfs=None))
    if isinstance(got, Skipped):
        return None, got
    return pcm_hash(got.wave, got.sample_rate), None


def print_groups(dups, total_files=None, limit: int = 20) -> None:
    """The duplicate table: a one-line summary, then one row per group (largest first)."""
    from rich.console import Console
    from rich.table import Table

    from audioaudit.duplicates.groups import groups_from_rows, summarise

    groups = groups_from_rows(dups.to_dict("records")) if dups is not None else []
    s = summarise(groups)
    of = f" of {total_files} files" if total_files is not None else ""
    typer.echo(f"duplicates  {s.groups} groups ({s.exact_groups} exact, {s.near_groups} near); "
               f"{s.items_in_groups} files in groups{of}, {s.redundant_items} redundant; largest {s.largest}")
    if not groups or limit <= 0:
        return
    paths = dict(zip(dups["item_id"], dups["path"]))
    table = Table("group", "kind", "files", "members", show_lines=False)
    for g in sorted(groups, key=lambda g: (-g.size, g.group))[:limit]:
        shown = [f"{paths.get(m, m)}{'' if k == 'exact' else ' (near)'}" for m, k in zip(g.members, g.kinds)]
        more = f" ... +{g.size - 6}" if g.size > 6 else ""
        table.add_row(str(g.group), g.kind, str(g.size), "\n".join(shown[:6]) + more)
    Console(width=160).print(table)
    if len(groups) > limit:
        typer.echo(f"... and {len(groups) - limit} more groups (duplicates.parquet lists all)")


def dedup_index(name: str, root: Path, limit: int, html: Optional[Path], out: Optional[Path],
                title: Optional[str] = None) -> None:
    from audioaudit.index import store

    ix = store.open_index(store.resolve_index_dir(name, root), load_faiss=False)
    if ix.duplicates is None:
        from audioaudit.errors import UserError

        raise UserError(f"{ix.dir}: no duplicates.parquet; rebuild the index with `audioaudit index build`")
    typer.echo(title or f"index {ix.dir} ({ix.manifest.get('corpus_root')})")
    print_groups(ix.duplicates, ix.manifest.get("counts", {}).get("clips"), limit)
    _write_out(ix.duplicates, out)
    if html is not None:
        from audioaudit.report import render_duplicates

        typer.echo(f"listening page: {render_duplicates(ix.dir, html)}")


def _write_out(df, out: Optional[Path]) -> None:
    if out is None:
        return
    from audioaudit.util import atomic

    (atomic.write_csv if out.suffix == ".csv" else atomic.write_parquet)(df, out)
    typer.echo(f"written: {out}")


def dedup_corpus(corpus: Path, workers: int, limit: int, out: Optional[Path]) -> None:
    """Exact duplicates of a folder by PCM hash (no encoder needed)."""
    import pandas as pd

    from audioaudit.audio.corpus import corpus_work
    from audioaudit.duplicates.groups import group_duplicates, groups_to_rows
    from audioaudit.util.workers import ordered_map

    root, work, skipped = corpus_work(corpus)
    ids, hashes = [], []
    for it, (h, skip) in zip(work, ordered_map(hash_file, [w.path for w in work], workers)):
        ids.append(it.item_id)
        hashes.append(h)
        if skip is not None:
            skipped.append({"path": it.rel_path, "kind": skip.kind, "reason": skip.reason})
    groups = group_duplicates(ids, hashes)
    df = pd.DataFrame(groups_to_rows(groups), columns=["group", "item_id", "path", "kind", "size"])
    typer.echo(f"corpus {root}: {len(work)} files, {len(skipped)} unreadable (exact duplicates by PCM hash; "
               "pass --encoder for near duplicates)")
    for s in skipped[:limit]:
        typer.echo(f"  skipped {s['path']}: [{s['kind']}] {s['reason']}")
    print_groups(df, len(work) - len(skipped), limit)
    _write_out(df, out)


def register(app: typer.Typer) -> None:
    @app.command("dedup")
    def dedup(
        target: str = typer.Argument(..., metavar="CORPUS_OR_INDEX", help="A corpus folder, or an index name/directory."),
        root: Path = typer.Option(Path("index"), "--root", help="Where indexes live."),
        encoder: Optional[str] = typer.Option(None, "--encoder", help="For a corpus: also find near duplicates with this encoder."),
        near_threshold: float = typer.Option(0.97, "--near-threshold", help="Window coverage that makes a near-duplicate candidate."),
        workers: int = typer.Option(1, "--workers", min=0),
        limit: int = typer.Option(20, "--limit", min=0, help="Groups listed."),
        out: Optional[Path] = typer.Option(None, "--out", help="Write the groups table (.csv or .parquet)."),
        html: Optional[Path] = typer.Option(None, "--html", help="Write a listening page of the groups here."),
    ) -> None:
        """Find recordings present more than once in a training corpus."""
        from audioaudit import schema
        from audioaudit.index import store

        d = store.resolve_index_dir(target, root)
        if (d / schema.MANIFEST_FILE).exists():
            return dedup_index(target, root, limit, html, out)
        corpus = Path(target)
        if not corpus.is_dir():
            from audioaudit.errors import UserError

            raise UserError(f"{target}: neither a corpus folder nor an index under {root}")
        if encoder is None and html is None:
            return dedup_corpus(corpus, workers, limit, out)
        from audioaudit.encoders import load_encoder
        from audioaudit.index.build import build_index
        from audioaudit.index.options import BuildOptions

        with tempfile.TemporaryDirectory(prefix="audioaudit-dedup-") as tmp:
            opts = BuildOptions(workers=workers, near_threshold=near_threshold, near_dups=encoder is not None)
            build_index(corpus, load_encoder(encoder or "mel"), Path(tmp) / "dedup", spec=encoder or "mel", opts=opts)
            dedup_index(str(Path(tmp) / "dedup"), root, limit, html, out,
                        title=f"corpus {corpus.resolve()} (exact: PCM hash; near: {encoder or 'mel'} + audio check)")
