"""The product flow on a real-sound corpus: index, background, calibrated threshold, audit.

    .venv/bin/python benchmarks/real_audit.py CORPUS --encoder SPEC [--out DIR] [--target-ffr 0.01]
        [--families unseen,pitch,stretch] [--per-family 20]

CORPUS is what ``benchmarks/real_corpus.py`` writes (``train/``, ``background/``,
``heldout/``, each with kind folders: effects, speech, music, ambience). As a user would:

1. ``index build`` of ``train/`` with the encoder, ``background/`` as its background set;
2. the held-out split cut per kind by a seeded draw into calibration negatives and a
   control half that nothing has seen; the threshold calibrated for ``--target-ffr`` on the
   calibration half (``index build --calibrate-on``);
3. planted copies: train clips through the given families (by default the ones the
   detector never trains on) at strengths spread mild -> severe;
4. ``audit`` of the planted copies and of the control half.

Prints and writes (OUT/real_audit.json): recall of planted copies at the calibrated
threshold (flagged *and* the flagged match is the true source), per family and per kind;
the false-flag rate on the control half, per kind, with its 95 % upper bound.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np


def split_heldout(heldout: Path, out: Path, seed: int) -> tuple[Path, Path]:
    """(control, calibration) halves of every kind folder of ``heldout`` (hard links)."""
    from audioaudit.demo import link_file

    rng = np.random.default_rng([seed, 11])
    parts = (out / "control", out / "calibration")
    for kind in sorted(p for p in heldout.iterdir() if p.is_dir()):
        files = sorted(f for f in kind.rglob("*") if f.is_file())
        for k, i in enumerate(rng.permutation(len(files))):
            rel = files[i].relative_to(kind)
            link_file(files[i], parts[k % 2] / kind.name / rel)
    return parts


def plant(train: Path, out: Path, families: list[str], per_family: int, sr: int, seed: int) -> Path:
    """``per_family`` train clips through each family, strength evenly mild -> severe."""
    import pandas as pd

    from audioaudit.audio.corpus import corpus_waves
    from audioaudit.audio.io import write_wav
    from audioaudit.detector.augment import transform
    from audioaudit.util import atomic

    rels, labels, waves = corpus_waves(train, sr)
    rng = np.random.default_rng([seed, 7])
    rows = []
    out.mkdir(parents=True, exist_ok=True)
    for fam in families:
        pick = rng.choice(len(waves), size=min(per_family, len(waves)), replace=False)
        for k, i in enumerate(pick):
            strength = k / max(1, per_family - 1)
            others = [waves[j] for j in rng.choice(len(waves), size=3) if j != i]
            y = transform(waves[i], sr, fam, strength, rng, others=others)
            name = f"{fam}_{k:03d}.wav"
            write_wav(out / name, y, sr)
            rows.append({"path": name, "source": rels[i], "kind": labels[i], "family": fam,
                         "strength": round(strength, 3)})
    atomic.write_csv(pd.DataFrame(rows), out / "metadata.csv")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--encoder", required=True, help="encoder spec, e.g. finetuned:DIR or mel")
    ap.add_argument("--out", type=Path, default=Path("runs/real-audit"))
    ap.add_argument("--target-ffr", type=float, default=0.01)
    ap.add_argument("--families", default="unseen,pitch,stretch")
    ap.add_argument("--per-family", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    import pandas as pd

    from audioaudit.audit.calibrate import FfrSettings, calibrate_index, rate_bound
    from audioaudit.audit.options import AuditOptions
    from audioaudit.audit.run import run_audit
    from audioaudit.detector.benchmark.protocol import parse_families
    from audioaudit.encoders import load_encoder
    from audioaudit.index.background import build_background
    from audioaudit.index.build import build_index
    from audioaudit.index.options import BuildOptions

    out = a.out
    families = list(parse_families(a.families))
    enc = load_encoder(a.encoder)
    t0 = time.perf_counter()
    index_dir = out / "index"
    res = build_index(a.corpus / "train", enc, index_dir, spec=a.encoder, opts=BuildOptions(workers=0))
    bg = build_background(index_dir, a.corpus / "background", enc, workers=0)
    control, calibration = split_heldout(a.corpus / "heldout", out / "novel", a.seed)
    cal = calibrate_index(index_dir, enc, FfrSettings(target_false_flag_rate=a.target_ffr, seed=a.seed,
                                                      negatives=str(calibration)))
    t_index = time.perf_counter() - t0
    planted = plant(a.corpus / "train", out / "planted", families, a.per_family, int(enc.sample_rate), a.seed)
    t1 = time.perf_counter()
    runs = {name: run_audit(folder, index_dir, out / "runs" / name,
                            opts=AuditOptions(workers=0, run_name=name, top_k=5))
            for name, folder in (("planted", planted), ("control", control))}
    t_audit = time.perf_counter() - t1

    meta = pd.read_csv(planted / "metadata.csv")
    m = runs["planted"].matches
    hit = m[m["flag"]].groupby("query_id")["train_path"].apply(set)
    meta["found"] = [src in hit.get(p, set()) for p, src in zip(meta["path"], meta["source"])]
    q = runs["control"].queries
    q["kind"] = q["path"].astype(str).str.split("/").str[0]
    n_audited = len(runs["planted"].queries) + len(q)
    fig = {
        "encoder": a.encoder, "corpus": str(a.corpus), "target_ffr": a.target_ffr,
        "threshold": cal.threshold, "calibration_ffr": cal.false_flag_rate, "calibration_negatives": cal.n_negative,
        "calibration_bound": cal.false_flag_rate_bound, "calibration_note": cal.note,
        "index_clips": res.clips, "background_clips": bg.n_clips,
        "planted": len(meta), "planted_skipped": len(runs["planted"].skipped),
        "recall": float(meta["found"].mean()),
        "recall_per_family": meta.groupby("family")["found"].mean().round(3).to_dict(),
        "recall_per_kind": meta.groupby("kind")["found"].mean().round(3).to_dict(),
        "control": len(q), "control_skipped": len(runs["control"].skipped),
        "false_flags": int(q["flag"].sum()), "ffr": float(q["flag"].mean()),
        "ffr_bound_95": rate_bound(int(q["flag"].sum()), len(q), a.target_ffr)[0],
        "ffr_per_kind": q.groupby("kind")["flag"].mean().round(4).to_dict(),
        "seconds_index_and_calibration": round(t_index, 1), "seconds_audit": round(t_audit, 1),
        "audit_clips_per_second": round(n_audited / t_audit, 2),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "real_audit.json").write_text(json.dumps(fig, indent=1))
    print(json.dumps(fig, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
