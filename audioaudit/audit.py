"""``audit``: generated clips → nearest training sources → statistics and flags.

1. open and validate the index (nothing is written before everything has been read);
2. embed the generated clips with the index's own encoder (reloaded from its spec in
   ``encoder.json``; a different identity is an error naming both). A clip shorter than
   one window is one (padded) window, never dropped; unusable files go to skipped.csv;
3. search every window, aggregate to training *sources* (a duplicate group counts once)
   by the max over window pairs, keeping which query span matched which training span;
4. normalise scores (SSCD: minus the mean similarity of the 2nd–11th sources,
   :mod:`audioaudit.scoring`), flag at the threshold, summarise (:mod:`audioaudit.stats`).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audioaudit import schema, scoring, store
from audioaudit import faiss_index as fx
from audioaudit.audio import LoadOptions, Skipped
from audioaudit.errors import UserError

BACKGROUND_DEPTH = 11  # ranks 2..11 make the background (SSCD)
LABEL_KEYS = ("class", "label", "condition", "prompt")


@dataclass
class AuditOptions:
    top_k: int = 10
    threshold: float | None = None
    threshold_on: str = "score"  # score | similarity (explicit thresholds only)
    same_class: bool = False
    nprobe: int | None = None
    ef_search: int | None = None
    batch_size: int = 32
    workers: int | None = 0
    progress: bool = True
    metadata: str | None = None  # CSV with path + seed/prompt/class; default: found in the folder
    run_name: str | None = None


@dataclass
class Threshold:
    value: float | None
    on: str = "score"
    source: str = "none"  # explicit | index calibration | encoder calibration | none
    precision: float | None = None
    target_precision: float | None = None
    path: str | None = None
    false_flag_rate: float | None = None  # on the calibration's novel clips (index calibration)
    target_false_flag_rate: float | None = None
    passed_over: list[str] = field(default_factory=list)
    similarity_floor: float | None = None  # also flag at raw similarity >= this (index calibration)

    def as_dict(self) -> dict:
        d = {"value": self.value, "on": self.on, "source": self.source, "precision": self.precision,
             "target_precision": self.target_precision, "path": self.path}
        if self.target_false_flag_rate is not None:
            d |= {"false_flag_rate": self.false_flag_rate, "target_false_flag_rate": self.target_false_flag_rate}
        if self.passed_over:
            d["passed_over"] = self.passed_over
        if self.similarity_floor is not None:
            d["similarity_floor"] = self.similarity_floor
        if self.value is None:
            d["note"] = ("no threshold: pass --threshold, or calibrate the encoder; nothing is flagged, "
                         "only statistics are reported")
        return d


def resolve_threshold(explicit: float | None, on: str, index_dir: Path, encoder_spec: str | None,
                      normalisation: str = "references") -> Threshold:
    """explicit > index calibration.json > fine-tuned encoder's calibration.json > none.
    A calibration made for another score normalisation (``references`` | ``background``)
    is passed over: its threshold means something else."""
    if on not in ("score", "similarity"):
        raise UserError(f"--threshold-on must be 'score' or 'similarity' (got {on!r})")
    if explicit is not None:
        return Threshold(float(explicit), on, "explicit")
    candidates = [("index calibration", index_dir / schema.CALIBRATION_FILE)]
    passed_over: list[str] = []
    if encoder_spec and encoder_spec.startswith("finetuned:"):
        candidates.append(("encoder calibration", Path(encoder_spec.split(":", 1)[1]) / schema.CALIBRATION_FILE))
    for source, path in candidates:
        cal = store.read_calibration(path)
        if cal is not None and cal.get("score", "score") == "score" and cal.get("normalisation", "references") != normalisation:
            passed_over.append(f"{path} (calibrated for {cal.get('normalisation', 'references')} normalisation)")
            continue
        if cal is not None:
            return Threshold(float(cal["threshold"]), cal.get("score", "score"), source, cal.get("precision"),
                             cal.get("target_precision"), str(path), cal.get("false_flag_rate"),
                             cal.get("target_false_flag_rate"), passed_over,
                             cal.get("similarity_floor") if cal.get("score", "score") == "score" else None)
    return Threshold(None, passed_over=passed_over)


# --------------------------------------------------------------------------- queries
@dataclass
class QuerySet:
    """Generated clips that were embedded, their windows and the files skipped."""

    table: "object"  # DataFrame: query_id, path, label, duration, sample_rate, n_segments, pcm_hash, metadata...
    vectors: np.ndarray  # (S, dim)
    q_clip: np.ndarray  # (S,) clip index of each window
    start: np.ndarray
    end: np.ndarray
    skipped: list[dict] = field(default_factory=list)
    root: str = ""


def find_metadata(folder: Path, explicit: str | None):
    """The generated folder's metadata CSV (a ``path`` column), or None."""
    import pandas as pd

    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise UserError(f"{p}: metadata CSV not found")
        cands = [p]
    else:
        cands = sorted(folder.glob("*.csv"), key=lambda p: (p.name != "metadata.csv", p.name)) if folder.is_dir() else []
    for p in cands:
        try:
            df = pd.read_csv(p)
        except Exception as e:  # noqa: BLE001
            if explicit:
                raise UserError(f"{p}: cannot read metadata CSV ({e})") from None
            continue
        if "path" in df.columns:
            df["path"] = [Path(str(v)).as_posix() for v in df["path"]]
            return df.drop_duplicates("path").set_index("path")
        if explicit:
            raise UserError(f"{p}: metadata CSV needs a 'path' column (found {list(df.columns)})")
    return None


def _query_label(meta_row: dict, folder_label: str | None) -> str | None:
    for k in LABEL_KEYS[:3]:
        v = meta_row.get(k)
        if v is not None and not (isinstance(v, float) and math.isnan(v)) and str(v) != "":
            return str(v)
    return folder_label


def load_queries(generated, encoder, opts: AuditOptions) -> QuerySet:
    """Decode + window + embed every generated clip (short clips: one padded window)."""
    import pandas as pd

    from audioaudit.embedding import SegmentSpec, decoded_stream, embed_waves
    from audioaudit.build import corpus_work
    from audioaudit.progress import progress_bar

    folder = Path(generated)
    root, work, skipped = corpus_work(folder, "folders")
    if not work:
        raise UserError(f"{generated}: no audio files found to audit (.wav .flac .ogg .mp3 .aiff)")
    meta = find_metadata(folder, opts.metadata)
    spec = SegmentSpec.of(encoder)
    lo = LoadOptions(sample_rate=spec.sample_rate)
    rows, waves, q_clip, starts, ends = [], [], [], [], []
    workers = opts.workers if opts.workers is not None else max(1, min(4, (os.cpu_count() or 2) - 1))
    with progress_bar(len(work), "decoding generated clips", enabled=opts.progress) as adv:
        for it, d in zip(work, decoded_stream(work, spec, lo, workers)):
            adv(1)
            if isinstance(d, Skipped):
                skipped.append({"path": it.rel_path, "kind": d.kind, "reason": d.reason})
                continue
            m = dict(meta.loc[it.rel_path]) if meta is not None and it.rel_path in meta.index else {}
            rows.append({**{k: v for k, v in m.items() if k not in schema.QUERY_COLUMNS}, "query_id": it.rel_path,
                         "path": it.rel_path, "label": _query_label(m, it.label), "duration": d.duration,
                         "sample_rate": _native_rate(it.path), "n_segments": len(d.bounds), "pcm_hash": d.pcm_hash})
            for (s, e), w in zip(d.bounds, d.waves):
                q_clip.append(len(rows) - 1)
                starts.append(s)
                ends.append(e)
                waves.append(w)
    if not rows:
        reasons = "; ".join(f"{Path(s['path']).name}: {s['reason']}" for s in skipped[:3])
        raise UserError(f"{generated}: none of the {len(skipped)} files could be audited ({reasons})")
    with progress_bar(len(waves), "embedding generated clips", enabled=opts.progress, unit="windows") as adv:
        vecs = []
        for i in range(0, len(waves), opts.batch_size):
            vecs.append(embed_waves(encoder, waves[i : i + opts.batch_size], opts.batch_size))
            adv(len(vecs[-1]))
    return QuerySet(pd.DataFrame(rows), np.concatenate(vecs), np.asarray(q_clip), np.asarray(starts),
                    np.asarray(ends), skipped, root)


def _native_rate(path: str) -> int | None:
    try:
        import soundfile as sf

        return int(sf.info(path).samplerate)
    except Exception:  # noqa: BLE001 - formats soundfile cannot probe
        return None


# --------------------------------------------------------------------------- sources
@dataclass
class Sources:
    """Training sources: a duplicate group counts once, every other clip is its own."""

    row_source: np.ndarray  # (rows,) source code of each vector
    names: np.ndarray  # source code -> "g<group>" or item id
    sizes: dict[str, int]  # source name -> number of files
    group_of: dict[str, int]  # item id -> duplicate group
    members: dict[int, list[str]]  # group -> member item ids


def training_sources(ix: store.OpenIndex) -> Sources:
    import pandas as pd

    group_of: dict[str, int] = {}
    members: dict[int, list[str]] = {}
    if ix.duplicates is not None and len(ix.duplicates):
        for g, i in zip(ix.duplicates["group"], ix.duplicates["item_id"]):
            group_of[str(i)] = int(g)
            members.setdefault(int(g), []).append(str(i))
    ids = ix.items["item_id"].astype(str).to_numpy()
    src = np.asarray([f"g{group_of[i]}" if i in group_of else i for i in ids], dtype=object)
    codes, names = pd.factorize(src)
    sizes = {n: 1 for n in names}
    sizes.update({f"g{g}": len(m) for g, m in members.items()})
    return Sources(codes.astype(np.int64), np.asarray(names, dtype=object), sizes, group_of, members)


def search_queries(ix: store.OpenIndex, qs: QuerySet, params: fx.IndexParams, src: Sources, depth: int,
                   same_class: bool):
    """Clip-level hits for every query; with ``same_class``, only training rows of the
    query's class are searched (queries without a known class search everything)."""
    from audioaudit.neighbours import _concat, search_clips

    if not same_class:
        return search_clips(ix.index, params, qs.vectors, qs.q_clip, src.row_source, depth), 0
    labels = ix.items["label"].astype("string").fillna("").to_numpy()
    q_labels = qs.table["label"].astype("string").fillna("").to_numpy()
    known = set(labels) - {""}
    parts, fallback = [], 0
    for lab in sorted(set(q_labels)):
        clips = np.flatnonzero(q_labels == lab)
        seg = np.flatnonzero(np.isin(qs.q_clip, clips))
        rows = np.flatnonzero(labels == lab) if lab in known else None
        fallback += 0 if rows is not None else len(clips)
        parts.append(search_clips(ix.index, params, qs.vectors[seg], qs.q_clip[seg], src.row_source, depth,
                                  rows_allowed=rows))
    return _concat(parts), fallback


def score_queries(ix: store.OpenIndex, qs: QuerySet, params: fx.IndexParams, src: Sources, depth: int,
                  same_class: bool, bg=None, exclude_bg: np.ndarray | None = None):
    """(hits, same-class fallbacks, (Q, depth) sorted clip similarities, per-query background
    level). The level is the mean of the ``k`` best background-set clips when the index has a
    background set (:mod:`audioaudit.background`), else the 2nd–11th training sources (SSCD)."""
    from audioaudit.neighbours import top_matrix

    hits, fallback = search_queries(ix, qs, params, src, depth, same_class)
    sims = top_matrix(hits, len(qs.table), depth)
    if bg is not None:
        background = bg.level(qs.vectors, qs.q_clip, len(qs.table), exclude=exclude_bg)
    else:
        background = scoring.background_level(sims).astype(np.float64)
    return hits, fallback, sims, background


# --------------------------------------------------------------------------- tables
def _flags(sim: np.ndarray, score: np.ndarray, thr: Threshold) -> np.ndarray:
    if thr.value is None:
        return np.zeros(len(sim), dtype=bool)
    flag = np.nan_to_num(score if thr.on == "score" else sim, nan=-np.inf) >= thr.value
    if thr.similarity_floor is not None:  # a near-exact copy is one however crowded its neighbourhood
        flag |= np.nan_to_num(sim, nan=-np.inf) >= thr.similarity_floor
    return flag


def match_table(ix, qs: QuerySet, hits, src: Sources, background: np.ndarray, top_k: int, thr: Threshold):
    import pandas as pd

    keep = hits.rank < top_k
    qc, rows, qseg = hits.qclip[keep], hits.row[keep], hits.qseg[keep]
    sim = hits.sim[keep].astype(np.float64)
    score = sim - background[qc]
    it = ix.items
    item_ids = it["item_id"].astype(str).to_numpy()[rows]
    groups = [src.group_of.get(i) for i in item_ids]
    return pd.DataFrame({
        "query_id": qs.table["query_id"].to_numpy()[qc], "rank": hits.rank[keep] + 1, "item_id": item_ids,
        "train_path": it["path"].to_numpy()[rows], "train_label": it["label"].to_numpy()[rows],
        "similarity": sim, "score": score,
        "query_start": qs.start[qseg], "query_end": qs.end[qseg],
        "train_start": it["start"].to_numpy()[rows], "train_end": it["end"].to_numpy()[rows],
        "flag": _flags(sim, score, thr),
        "dup_group": pd.array(groups, dtype="Int64"),
        "dup_size": [1 if g is None else len(src.members[g]) for g in groups],
        "dup_members": ["" if g is None else ";".join(src.members[g]) for g in groups],
    })


def query_table(ix, qs: QuerySet, hits, src: Sources, matches, sims: np.ndarray, background: np.ndarray):
    from audioaudit.stats import nn_ratio

    q = qs.table.copy()
    top1 = matches[matches["rank"] == 1].set_index("query_id")
    q["top1_similarity"] = q["query_id"].map(top1["similarity"]).astype(float)
    q["top1_score"] = q["query_id"].map(top1["score"]).astype(float)
    q["top1_item_id"] = q["query_id"].map(top1["item_id"])
    q["top1_dup_group"] = q["query_id"].map(top1["dup_group"]).astype("Int64")
    q["background"] = background.astype(float)
    q["nn_ratio"] = nn_ratio(sims[:, 0], sims[:, 1] if sims.shape[1] > 1 else np.full(len(q), np.nan))
    q["flag"] = q["query_id"].map(matches.groupby("query_id")["flag"].any()).fillna(False).astype(bool)
    first = ix.items.drop_duplicates("item_id")
    by_hash = dict(zip(first["pcm_hash"], first["item_id"])) if "pcm_hash" in first else {}
    q["exact_copy_of"] = [by_hash.get(h) for h in q["pcm_hash"]]
    lead = [c for c in schema.QUERY_COLUMNS if c in q.columns]
    return q[lead + [c for c in q.columns if c not in lead]]


# --------------------------------------------------------------------------- summary
def reference_for(ix: store.OpenIndex, params: fx.IndexParams, src: Sources):
    """The index's cached train-vs-train reference (computed and cached if missing)."""
    from audioaudit.reference import reference_table

    p = ix.dir / schema.REFERENCE_FILE
    if p.is_file():
        return store.read_parquet(p, "reference distribution (reference.parquet)", schema.REFERENCE_COLUMNS)
    source_of = {i: f"g{g}" for i, g in src.group_of.items()}
    ref = reference_table(ix.index, params, ix.items, source_of)
    try:
        store.write_parquet(ref, p)
    except OSError:
        pass  # a read-only index still audits; the reference is just not cached
    return ref


def summarise(ix, qs: QuerySet, queries, matches, ref, thr: Threshold, src: Sources, opts: AuditOptions,
              fallback: int, generated, out: Path, bg=None) -> dict:
    from audioaudit import stats

    sim1 = queries["top1_similarity"].to_numpy(dtype=float)
    score1 = queries["top1_score"].to_numpy(dtype=float)
    ref_sims = ref["similarity"].to_numpy(dtype=float)
    flags = queries["flag"].to_numpy(dtype=bool)
    flagged = stats.wilson(int(flags.sum()), len(flags)) if thr.value is not None else None
    above = stats.fraction_above(score1 if thr.on == "score" else sim1, thr.value) if thr.value is not None else None
    top_src = [f"g{int(g)}" if not _isna(g) else i for g, i in zip(queries["top1_dup_group"], queries["top1_item_id"])]
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
        "top_k": opts.top_k, "same_class": opts.same_class, "same_class_unrestricted": fallback,
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
        "score_normalisation": normalisation_note(bg),
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

    from audioaudit.background import load_background
    from audioaudit.build import load_stored_encoder

    opts = opts or AuditOptions()
    if opts.top_k < 1:
        raise UserError("--top-k must be at least 1")
    ix = store.open_index(index_dir)
    encoder = encoder if encoder is not None else load_stored_encoder(ix.encoder, ix.dir)
    store.check_encoder(ix.encoder, encoder, ix.dir)
    bg = load_background(ix.dir, ix.encoder.get("identity"), ix.items.get("pcm_hash"))
    thr = resolve_threshold(opts.threshold, opts.threshold_on, ix.dir, ix.encoder.get("spec"),
                            normalisation="background" if bg is not None else "references")
    params = fx.with_overrides(ix.params, opts.nprobe, opts.ef_search)
    src = training_sources(ix)
    qs = load_queries(generated, encoder, opts)
    depth = max(opts.top_k, BACKGROUND_DEPTH)
    hits, fallback, sims, background = score_queries(ix, qs, params, src, depth, opts.same_class, bg)
    matches = match_table(ix, qs, hits, src, background, opts.top_k, thr)
    queries = query_table(ix, qs, hits, src, matches, sims, background)
    ref = reference_for(ix, params, src)
    out = Path(out)
    summary = summarise(ix, qs, queries, matches, ref, thr, src, opts, fallback, generated, out, bg)
    out.mkdir(parents=True, exist_ok=True)
    store.write_parquet(queries, out / schema.QUERIES_FILE)
    store.write_parquet(matches, out / schema.MATCHES_FILE)
    store.write_csv(matches, out / schema.MATCHES_CSV)
    store.write_parquet(ref, out / schema.REFERENCE_FILE)
    store.write_csv(pd.DataFrame(qs.skipped, columns=["path", "kind", "reason"]), out / schema.SKIPPED_FILE)
    store.write_json(out / schema.SUMMARY_FILE, summary)
    return AuditResult(out, queries, matches, summary, qs.skipped)
