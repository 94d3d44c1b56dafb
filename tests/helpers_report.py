"""Build realistic audit run directories and index duplicate tables for the report tests.

Everything the audit writes is here with the documented columns (audioaudit.schema):
generated WAVs under a generated root, training WAVs under a corpus root, queries.parquet
(+ generator metadata columns), matches.parquet, reference.parquet, summary.json with
absolute roots, skipped.csv — plus hostile names (markup in file, class and prompt names),
a long clip that must be trimmed, odd sample rates and a match whose file is missing.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from audioaudit import schema

HOSTILE_FILE = "<img src=x onerror=alert(1)>.wav"
HOSTILE_CLASS = "<script>alert(2)</script>$x$"
HOSTILE_PROMPT = "a dog barking </script><script>alert(3)</script>"
HOSTILE_TRAIN = "<svg onload=alert(4)>.wav"


@dataclass
class FakeRun:
    run_dir: Path
    generated_root: Path
    corpus_root: Path
    queries: pd.DataFrame
    matches: pd.DataFrame
    summary: dict
    durations: dict[str, float] = field(default_factory=dict)  # query path -> seconds
    missing_train: str | None = None


def tone(seconds: float, sr: int, rng: np.random.Generator, amp: float = 0.3) -> np.ndarray:
    """A few enveloped partials over light noise: spectrograms with visible structure."""
    n = max(1, int(round(seconds * sr)))
    t = np.arange(n) / sr
    x = 0.01 * rng.standard_normal(n)
    for _ in range(3):
        f = rng.uniform(150, min(6000, sr / 2.5))
        env = 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(0.2, 2.0) * t + rng.uniform(0, 6)))
        x += amp / 3 * env * np.sin(2 * np.pi * f * t)
    return x.astype(np.float32)


def write(path: Path, wave: np.ndarray, sr: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave, sr, subtype="PCM_16")


def make_corpus(root: Path, n: int, rng: np.random.Generator, seconds: float = 3.0,
                classes=("dog", "rain", "engine")) -> list[tuple[str, str, np.ndarray, int]]:
    items = []
    for i in range(n):
        label = classes[i % len(classes)]
        name = HOSTILE_TRAIN if i == 1 else f"train_{i:04d}.wav"
        rel = f"{label}/{name}"
        sr = 22050
        wave = tone(seconds, sr, rng)
        write(root / rel, wave, sr)
        items.append((rel, label, wave, sr))
    return items


def _query_audio(i: int, n: int, train, rng, seconds: float) -> tuple[np.ndarray, int, float | None]:
    """Generated clip i: some copy a training clip (span known), one is long, rates vary."""
    rates = (16000, 22050, 44100, 20000)
    sr = rates[i % len(rates)]
    dur = 40.0 if i == n - 1 and n > 2 else seconds * (0.6 + 0.8 * rng.random())
    wave = tone(dur, sr, rng)
    copy_start = None
    if i % 2 == 0:  # a copy: paste 1.5 s of a training clip
        _, _, tw, tsr = train[i % len(train)]
        seg = tw[: int(1.5 * tsr)]
        import librosa

        seg = librosa.resample(seg, orig_sr=tsr, target_sr=sr)
        copy_start = min(dur - 1.6, 0.5 if dur < 30 else 25.0)
        a = int(copy_start * sr)
        wave[a : a + len(seg)] = seg[: len(wave) - a]
    return wave, sr, copy_start


def make_run(
    base: Path, name: str = "run-a", *, n_queries: int = 8, n_train: int = 6, top_k: int = 3,
    seed: int = 0, seconds: float = 3.0, hostile: bool = True, missing_train: bool = True,
    corpus: tuple[Path, list] | None = None, threshold: float = 0.2, jitter_spans: bool = False,
) -> FakeRun:
    """Write a generated folder, a corpus (unless given) and an audit run directory."""
    rng = np.random.default_rng(seed)
    base = Path(base)
    corpus_root, train = corpus if corpus else (base / "corpus", None)
    if train is None:
        train = make_corpus(corpus_root, n_train, rng, seconds)
    gen_root = base / f"generated-{name}"
    classes = ["dog", HOSTILE_CLASS if hostile else "rain", "engine"]
    qrows, mrows, durations = [], [], {}
    for i in range(n_queries):
        wave, sr, copy_start = _query_audio(i, n_queries, train, rng, seconds)
        rel = f"{classes[i % 3] if '/' not in classes[i % 3] else 'x'}/{HOSTILE_FILE if hostile and i == 1 else f'gen_{i:05d}.wav'}"
        write(gen_root / rel, wave, sr)
        durations[rel] = len(wave) / sr
        sims = np.sort(rng.uniform(0.4, 0.7, size=min(top_k + 5, len(train))))[::-1]
        if copy_start is not None:
            sims[0] = rng.uniform(0.9, 0.99)
        score = sims - sims[1:].mean()
        picks = rng.permutation(len(train))[: len(sims)]
        if copy_start is not None:
            picks = np.concatenate([[i % len(train)], [p for p in picks if p != i % len(train)]])[: len(sims)]
        flag = bool(score[0] >= threshold)
        for r in range(min(top_k, len(sims))):
            trel, tlabel = train[picks[r]][0], train[picks[r]][1]
            if missing_train and i == 3 and r == 0:
                trel = f"{tlabel}/moved_away.wav"
            qs = (copy_start, copy_start + 1.5) if (copy_start is not None and r == 0) else (0.0, min(1.0, durations[rel]))
            t0 = round(float(rng.uniform(0.0, max(0.0, seconds - 1.5))), 2) if jitter_spans else 0.0
            mrows.append({
                "query_id": rel, "rank": r + 1, "item_id": trel, "train_path": trel, "train_label": tlabel,
                "similarity": float(sims[r]), "score": float(score[r]), "query_start": qs[0], "query_end": qs[1],
                "train_start": t0, "train_end": t0 + 1.5, "flag": bool(score[r] >= threshold),
                "dup_group": 0 if picks[r] == 0 else None,
                "dup_size": 2 if picks[r] == 0 else 1,
                "dup_members": f"{train[0][0]};dog/twin.wav" if picks[r] == 0 else "",
            })
        qrows.append({
            "query_id": rel, "path": rel, "label": classes[i % 3], "duration": durations[rel], "sample_rate": sr,
            "top1_similarity": float(sims[0]), "top1_score": float(score[0]), "top1_item_id": mrows[-min(top_k, len(sims))]["item_id"],
            "nn_ratio": float(rng.uniform(0.3, 1.0)), "flag": flag,
            "seed": 1000 + i, "prompt": HOSTILE_PROMPT if hostile and i == 2 else f"a {classes[i % 3]} sound",
            "sampler": "dpmpp_2m" if i % 2 else None,
            # audit bookkeeping columns (the real audit writes them; the page hides them)
            "n_segments": 1, "pcm_hash": f"{i:032x}", "background": float(sims[1:].mean()),
            "top1_dup_group": 0 if picks[0] == 0 else None,
            "exact_copy_of": train[0][0] if i == 0 else None,
        })
    q, m = pd.DataFrame(qrows), pd.DataFrame(mrows)
    m["dup_group"] = m["dup_group"].astype("Int64")
    q["top1_dup_group"] = q["top1_dup_group"].astype("Int64")
    run_dir = base / "runs" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    q.to_parquet(run_dir / schema.QUERIES_FILE)
    m.to_parquet(run_dir / schema.MATCHES_FILE)
    m.to_csv(run_dir / schema.MATCHES_CSV, index=False)
    ref = pd.DataFrame({"item_id": [t[0] for t in train], "nn_item_id": [t[0] for t in train[1:] + train[:1]],
                        "similarity": rng.uniform(0.5, 0.85, size=len(train))})
    ref.to_parquet(run_dir / schema.REFERENCE_FILE)
    with open(run_dir / schema.SKIPPED_FILE, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "kind", "reason"])
        w.writerow([str(gen_root / "broken.wav"), "unreadable", f"cannot decode audio (Error opening '{gen_root / 'broken.wav'}')"])
    summary = _summary(name, base, gen_root, corpus_root, q, threshold)
    (run_dir / schema.SUMMARY_FILE).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    pd.DataFrame({"group": [0, 0], "item_id": [train[0][0], "dog/twin.wav"], "path": [train[0][0], "dog/twin.wav"],
                  "kind": ["exact", "exact"]}).to_parquet(run_dir / schema.DUPLICATES_FILE)
    return FakeRun(run_dir, gen_root, corpus_root, q, m, summary, durations,
                   "moved_away.wav" if missing_train and n_queries > 3 else None)


def _rate_ci(k: int, n: int) -> list[float]:
    from scipy.stats import beta

    lo = 0.0 if k == 0 else float(beta.ppf(0.025, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(0.975, k + 1, n - k))
    return [lo, hi]


def _summary(name, base, gen_root, corpus_root, q: pd.DataFrame, threshold: float) -> dict:
    n, k = len(q), int(q["flag"].sum())
    per_class = {}
    for cls, g in q.groupby("label"):
        per_class[cls] = {"n": len(g), "flagged": int(g["flag"].sum()), "rate": float(g["flag"].mean()),
                          "ci95": _rate_ci(int(g["flag"].sum()), len(g))}
    pct = lambda v: {p: float(np.percentile(v, int(p))) for p in ("50", "90", "95", "99")}  # noqa: E731
    return {
        "run": name, "index": str((base / "index" / "corpus").resolve()), "generator": f"folder:{gen_root.resolve()}",
        "corpus_root": str(corpus_root.resolve()), "generated_root": str(gen_root.resolve()),
        "encoder": {"spec": f"laion:{(base / 'ckpt' / 'clap.pt').resolve()}#HTSAT-tiny",
                    "identity": {"backend": "laion", "checkpoint": str((base / "ckpt" / "clap.pt").resolve()), "sha256": "ab12"}},
        "n_queries": n, "n_skipped": 1,
        "threshold": {"value": threshold, "source": "calibrated on planted copies", "precision": 0.99},
        "flagged": {"count": k, "rate": k / n, "ci95": _rate_ci(k, n)},
        "per_class": per_class,
        "percentiles": {"gen_vs_train": pct(q["top1_similarity"]), "train_vs_train": pct(np.linspace(0.5, 0.85, 20))},
        "p95_gap": 0.05, "fraction_above": k / n, "ratio_test": {"count": 2, "n": n, "rate": 2 / n, "tau": 1 / 3},
        "index_name": "corpus", "flagged_sources": k, "exact_copies": 1,
        "duplicates": {"groups": 1, "items_in_groups": 2},
        "memorisation": {"levels": [
            {"size": "1", "sources": 5, "copied": {"count": 1, "n": 5, "rate": 0.2, "ci95": [0.04, 0.62]},
             "copies": 1, "copies_per_source": 0.2},
            {"size": "2", "sources": 1, "copied": {"count": 1, "n": 1, "rate": 1.0, "ci95": [0.21, 1.0]},
             "copies": 2, "copies_per_source": 2.0}],
            "copies_per_source_ratio": 10.0},
        "score_normalisation": "similarity minus the mean similarity of the 2nd-11th training sources (SSCD)",
    }


def make_duplicates_index(base: Path, rng_seed: int = 0) -> tuple[Path, Path]:
    """A corpus with an exact group (3 identical files) and a near group (re-encoded, gain, padded)."""
    rng = np.random.default_rng(rng_seed)
    corpus = base / "dupcorpus"
    sr = 22050
    a, b = tone(2.0, sr, rng), tone(2.5, sr, rng)
    for rel in ("pack1/kick.wav", "pack2/kick.wav", f"pack3/{HOSTILE_FILE}"):
        write(corpus / rel, a, sr)
    write(corpus / "sfx/door.wav", b, sr)
    write(corpus / "sfx/door_quiet.wav", 0.5 * b, sr)
    sf.write(str(corpus / "sfx/door_16k.flac"), b[::2][: int(2.5 * sr) // 2], sr // 2)  # resampled copy
    write(corpus / "sfx/door_padded.wav", np.concatenate([np.zeros(sr // 2, np.float32), b]), sr)
    index = base / "index" / "dup"
    index.mkdir(parents=True)
    # as index build writes it: kind per member (exact: same PCM as the group's first member, near: found by
    # the index); a group with any near member is a near group
    rows = [(0, "pack1/kick.wav", "exact"), (0, "pack2/kick.wav", "exact"), (0, f"pack3/{HOSTILE_FILE}", "exact"),
            (1, "sfx/door.wav", "exact"), (1, "sfx/door_quiet.wav", "near"), (1, "sfx/door_16k.flac", "near"),
            (1, "sfx/door_padded.wav", "near")]
    pd.DataFrame([{"group": g, "item_id": p, "path": p, "kind": k, "size": 4 if g else 3}
                  for g, p, k in rows]).to_parquet(index / schema.DUPLICATES_FILE)
    (index / schema.MANIFEST_FILE).write_text(json.dumps({"corpus_root": str(corpus.resolve()), "n_items": 7}), encoding="utf-8")
    return index, corpus
