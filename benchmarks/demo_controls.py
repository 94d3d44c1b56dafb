"""The demo's controls at scale: how well a demo detector separates planted copies from
novel clips, on many more clips than the demo audits.

    .venv/bin/python benchmarks/demo_controls.py runs/demo [--heldout-per-class 20] [--copies-per-clip 3]

Takes a finished `audioaudit demo` folder (its detector, calibration and train split),
synthesises fresh novel clips of the same classes (another seed: the negative control) and
planted copies of every train clip (standard families, the demo's strength range), scores
every query as the audit does (top-1 max-over-windows cosine minus the SSCD background of
the 2nd–11th best training clips) and prints: the false-flag rate and recall at the demo's
calibrated threshold, recall at fixed false-flag rates, and the novel clips / copies that
sit on the wrong side, per class and per family.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np


def top1_scores(encoder, refs, queries, bg=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(normalised score, raw similarity, top-1 ref index) per query, as the audit scores:
    minus the background set's level when there is one, else the 2nd-11th references'."""
    from audioaudit import similarity
    from audioaudit.encoders import embed

    q = embed.embed_clips(encoder, queries)
    sim = similarity.clip_similarity(q, refs)
    top = np.argmax(sim, axis=1)
    s = sim[np.arange(len(sim)), top]
    level = bg.level(q.vectors, q.owner, q.n_clips) if bg is not None else similarity.background(sim)
    return s - level, s, top


def planted_copies(waves, labels, sr, per_clip, strength, seed):
    from audioaudit.detector.augment import STANDARD_FAMILIES, transform

    rng = np.random.default_rng([seed, 17])
    out, fams, cls = [], [], []
    k = 0
    for i, w in enumerate(waves):
        for _ in range(per_clip):
            fam = STANDARD_FAMILIES[k % len(STANDARD_FAMILIES)]
            k += 1
            others = [waves[j] for j in rng.choice(len(waves), 3) if j != i] or [waves[(i + 1) % len(waves)]]
            out.append(transform(w, sr, fam, float(rng.uniform(*strength)), rng, others=others))
            fams.append(fam)
            cls.append(labels[i])
    return out, fams, cls


def recall_at_ffr(pos: np.ndarray, neg: np.ndarray, ffr: float) -> tuple[float, float]:
    """The lowest threshold whose false-flag rate on ``neg`` is <= ffr (as the index
    calibration picks it), and recall there."""
    from audioaudit.audit.calibrate import ffr_threshold

    t = ffr_threshold(neg, ffr)
    return t, float((pos >= t).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("demo", type=Path)
    ap.add_argument("--heldout-per-class", type=int, default=20)
    ap.add_argument("--copies-per-clip", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--strength", type=float, nargs=2, default=(0.0, 0.5))
    ap.add_argument("--detector", type=Path, default=None, help="another detector folder (default: DEMO/detector)")
    a = ap.parse_args(argv)

    from audioaudit.audio import synth
    from audioaudit.audio.corpus import corpus_waves
    from audioaudit.encoders import load_encoder

    demo = a.demo
    from audioaudit.index.background import load_background

    det = a.detector or demo / "detector"
    bg = None if a.detector else load_background(demo / "index")
    cal_file = demo / "index" / "calibration.json" if bg is not None else det / "calibration.json"
    cal = json.loads(cal_file.read_text())
    enc = load_encoder(f"finetuned:{det}")
    sr = enc.sample_rate
    meta = json.loads((demo / "corpus" / "synth.json").read_text())
    _, labels, train = corpus_waves(demo / "corpus" / "train", sr)
    from audioaudit.encoders import embed

    refs = embed.embed_clips(enc, train)
    with tempfile.TemporaryDirectory() as tmp:
        info = synth.make_corpus(tmp, per_class=0, heldout_per_class=a.heldout_per_class, seconds=tuple(meta["seconds"]),
                                 sample_rate=meta["sample_rate"], seed=a.seed, classes=meta["classes"], verbose=False)
        _, held_labels, held = corpus_waves(Path(info.heldout_dir), sr)
    copies, fams, copy_cls = planted_copies(train, labels, sr, a.copies_per_clip, a.strength, a.seed)
    neg, neg_sim, _ = top1_scores(enc, refs, held, bg)
    pos, pos_sim, _ = top1_scores(enc, refs, copies, bg)
    use_score = cal.get("score", "score") == "score"
    n_, p_ = (neg, pos) if use_score else (neg_sim, pos_sim)
    thr = float(cal["threshold"])
    floor = cal.get("similarity_floor")
    if floor is not None and use_score:  # flagged too: raw similarity above every background clip's
        lift = thr - min(n_.min(), p_.min()) + 1.0
        n_, p_ = np.where(neg_sim >= floor, n_ + lift, n_), np.where(pos_sim >= floor, p_ + lift, p_)
        print(f"similarity floor {floor:.3f}: clips above it count as flagged")
    print(f"{demo}: {len(train)} train clips; {len(held)} novel clips, {len(copies)} planted copies")
    print(f"normalisation: {'background set of %d clips, k=%d' % (bg.n_clips, bg.k) if bg is not None else 'references'}")
    print(f"calibrated threshold {thr:.3f} on {cal.get('score')} ({cal_file}): false flags {np.mean(n_ >= thr):.3f}, "
          f"recall {np.mean(p_ >= thr):.3f}")
    for f in (0.0, 0.01, 0.02, 0.05):
        t, r = recall_at_ffr(p_, n_, f)
        print(f"  at false-flag rate <= {f:.2f}: threshold {t:.3f}, recall {r:.3f}")
    print("false flags per class at the calibrated threshold:")
    hl = np.asarray(held_labels)
    for c in sorted(set(held_labels)):
        m = hl == c
        print(f"  {c:10s} {int((n_[m] >= thr).sum())}/{int(m.sum())}  max {n_[m].max():.3f}")
    print("recall per family at the calibrated threshold:")
    fa = np.asarray(fams)
    for f in sorted(set(fams)):
        m = fa == f
        print(f"  {f:12s} {np.mean(p_[m] >= thr):.3f}  min {p_[m].min():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
