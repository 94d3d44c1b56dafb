"""The summary tables of a run, built from summary.json (missing keys show "—")."""
from __future__ import annotations

from dataclasses import dataclass, field

from audioaudit.report import fmt
from audioaudit.report.model import RunData
from audioaudit.report.paths import PathPolicy

PERCENTILES = ("50", "90", "95", "99")
KNOWN_KEYS = {
    "run", "index", "generator", "corpus_root", "generated_root", "encoder", "n_queries", "n_skipped",
    "threshold", "flagged", "per_class", "percentiles", "p95_gap", "fraction_above", "ratio_test",
    "index_name", "flagged_sources", "exact_copies", "duplicates", "memorisation",
}


@dataclass
class SummaryView:
    rows: list[tuple[str, str]]  # (label, value) of the main table
    percentiles: list[tuple[str, list[str]]]  # (which, values at PERCENTILES)
    per_class: list[list[str]]  # class, n, flagged, rate, CI
    extra: list[tuple[str, str]] = field(default_factory=list)  # keys we do not know, as JSON
    encoder_identity: str = fmt.DASH
    memorisation: list[list[str]] = field(default_factory=list)  # per duplication level
    memorisation_note: str = ""


def _encoder(s: dict, policy: PathPolicy) -> tuple[str, str]:
    enc = s.get("encoder")
    if isinstance(enc, dict):
        return fmt.text(policy.scrub_tree(enc.get("spec"))), fmt.text(policy.scrub_tree(enc.get("identity")))
    return fmt.text(policy.scrub_tree(enc)), fmt.DASH


def _threshold(s: dict) -> list[tuple[str, str]]:
    t = s.get("threshold")
    if not isinstance(t, dict):
        return [("Threshold", fmt.num(t, 4))]
    on = t.get("on") or t.get("metric") or "score"
    rows = [
        ("Threshold", f"{fmt.num(t.get('value'), 4)} (on the {fmt.text(on)})" if fmt.number(t.get("value")) is not None
         else fmt.DASH),
        ("Threshold chosen by", fmt.text(t.get("source"))),
        ("Precision it stands for", fmt.precision(t.get("precision"))),
    ]
    if t.get("target_precision") is not None:
        rows.append(("Target precision", fmt.precision(t.get("target_precision"))))
    if t.get("note"):
        rows.append(("Note", fmt.text(t.get("note"))))
    return rows


def _optional_rows(s: dict) -> list[tuple[str, str]]:
    """Rows shown only when the audit wrote them."""
    rows = []
    if "flagged_sources" in s:
        rows.append(("Distinct training sources copied", fmt.count(s.get("flagged_sources"))))
    if "exact_copies" in s:
        rows.append(("Bit-identical copies (PCM hash)", fmt.count(s.get("exact_copies"))))
    d = s.get("duplicates")
    if isinstance(d, dict):
        rows.append(("Duplicate groups in the corpus",
                     f"{fmt.count(d.get('groups'))} groups holding {fmt.count(d.get('items_in_groups'))} files"))
    return rows


def _ratio(s: dict) -> str:
    r = s.get("ratio_test") if isinstance(s.get("ratio_test"), dict) else {}
    of = f" of {fmt.count(r.get('n'))}" if r.get("n") is not None else ""
    tau = f" below τ = {fmt.num(r.get('tau'), 3)}" if r.get("tau") is not None else ""
    return f"{fmt.count(r.get('count'))}{of}{tau} ({fmt.pct(r.get('rate'))})"


def _memorisation(s: dict) -> tuple[list[list[str]], str]:
    """Per duplication level: how often sources with n copies in the corpus are copied."""
    m = s.get("memorisation")
    if not isinstance(m, dict):
        return [], ""
    rows = []
    for lvl in m.get("levels") or []:
        if isinstance(lvl, dict):
            c = lvl.get("copied") if isinstance(lvl.get("copied"), dict) else {}
            rows.append([fmt.text(lvl.get("size")), fmt.count(lvl.get("sources")), fmt.count(c.get("count")),
                         fmt.pct(c.get("rate")), fmt.ci(c.get("ci95")), fmt.count(lvl.get("copies")),
                         fmt.num(lvl.get("copies_per_source"), 3)])
    ratio = fmt.number(m.get("copies_per_source_ratio"))
    note = "" if ratio is None else f"duplicated sources are copied {ratio:.2f}× as often per source as singletons"
    return rows, note


def _flagged(s: dict) -> str:
    f = s.get("flagged") if isinstance(s.get("flagged"), dict) else {}
    if not f:
        return f"{fmt.DASH} (nothing flagged without a threshold)" if "flagged" in s else fmt.DASH
    n = s.get("n_queries", f.get("n"))
    of = f" of {fmt.count(n)}" if fmt.number(n) is not None else ""
    return f"{fmt.count(f.get('count'))}{of} — {fmt.pct(f.get('rate'))} (95 % CI {fmt.ci(f.get('ci95'))})"


def summary_view(run: RunData, policy: PathPolicy) -> SummaryView:
    s = run.summary
    spec, identity = _encoder(s, policy)
    rows = [
        ("Run", run.name),
        ("Generator", fmt.text(policy.scrub_tree(s.get("generator")))),
        ("Training corpus", fmt.text(policy.show_root(s.get("corpus_root")))),
        ("Generated clips", fmt.text(policy.show_root(s.get("generated_root")))),
        ("Index", _index(s, policy)),
        ("Encoder", spec),
        ("Clips audited", fmt.count(s.get("n_queries", len(run.queries)))),
        ("Clips skipped", fmt.count(s.get("n_skipped", len(run.skipped)))),
        *_threshold(s),
        ("Flagged as copies", _flagged(s)),
        ("Fraction above threshold", fmt.pct(s.get("fraction_above"))),
        ("p95 gap (gen − train)", fmt.num(s.get("p95_gap"), 4)),
        ("Ratio test (Gu et al. 2023)", _ratio(s)),
        *_optional_rows(s),
    ]
    pcts = []
    for key, label in (("gen_vs_train", "generated vs train"), ("train_vs_train", "train vs train")):
        p = fmt.get(s, "percentiles", key) or {}
        pcts.append((label, [fmt.num(p.get(k) if isinstance(p, dict) else None, 4) for k in PERCENTILES]))
    score = fmt.get(s, "percentiles", "gen_vs_train_score")
    if isinstance(score, dict):
        pcts.append(("generated top-1 score", [fmt.num(score.get(k), 4) for k in PERCENTILES]))
    per_class = []
    classes = s.get("per_class") if isinstance(s.get("per_class"), dict) else {}
    for cls, c in sorted(classes.items(), key=lambda kv: str(kv[0])):
        c = c if isinstance(c, dict) else {}
        flagged = c.get("flagged", c.get("count"))
        per_class.append([str(cls), fmt.count(c.get("n")), fmt.count(flagged), fmt.pct(c.get("rate")),
                          fmt.ci(c.get("ci95"))])
    extra = [(str(k), fmt.text(policy.scrub_tree(v))) for k, v in sorted(s.items()) if k not in KNOWN_KEYS]
    memo, memo_note = _memorisation(s)
    return SummaryView(rows, pcts, per_class, extra, identity, memo, memo_note)


def _index(s: dict, policy: PathPolicy) -> str:
    if s.get("index_name"):
        return fmt.text(s.get("index_name"))
    idx = s.get("index")
    return fmt.text(policy.show_root(idx) if isinstance(idx, str) else policy.scrub_tree(idx))


def comparison_row(run: RunData) -> dict:
    """One run's figures for the comparison table and plot (None where missing)."""
    s = run.summary
    f = s.get("flagged") if isinstance(s.get("flagged"), dict) else {}
    ci = f.get("ci95")
    ok = isinstance(ci, (list, tuple)) and len(ci) == 2 and all(fmt.number(v) is not None for v in ci)
    ci = tuple(ci) if ok else None
    gen = fmt.get(s, "percentiles", "gen_vs_train") or {}
    ref = fmt.get(s, "percentiles", "train_vs_train") or {}
    return {
        "name": run.name,
        "n": s.get("n_queries", len(run.queries)),
        "count": f.get("count"),
        "rate": fmt.number(f.get("rate")),
        "ci": ci,
        "gen": {k: fmt.number(gen.get(k)) for k in PERCENTILES} if isinstance(gen, dict) else {},
        "ref": {k: fmt.number(ref.get(k)) for k in PERCENTILES} if isinstance(ref, dict) else {},
        "p95_gap": fmt.number(s.get("p95_gap")),
    }


def comparison_table(rows: list[dict]) -> list[list[str]]:
    return [
        [r["name"], fmt.count(r["n"]), fmt.count(r["count"]), fmt.pct(r["rate"]), fmt.ci(r["ci"]),
         *[fmt.num(r["gen"].get(k), 3) for k in PERCENTILES], fmt.num(r["p95_gap"], 3)]
        for r in rows
    ]
