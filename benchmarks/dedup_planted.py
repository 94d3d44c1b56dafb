"""Duplicate detection on a corpus with planted duplicates (issue 11).

Builds a procedural corpus (audioaudit.audio.synth), plants copies of some clips — exact
(file copy, FLAC of the same PCM, zero-padded) and re-encoded (gain, resampled to
22.05/44.1 kHz, OGG Vorbis, MP3) — builds an index, and scores the duplicate groups
against the truth as pairs (precision: of the pairs put in one group, how many are the
same recording; recall: of the true pairs, how many were grouped), for several
near-duplicate thresholds.

    python benchmarks/dedup_planted.py --per-class 20 --encoder mel
"""
from __future__ import annotations

import argparse
import itertools
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

KINDS = ("copy", "flac", "pad", "gain", "resample", "ogg", "mp3")


def plant(train: Path, rels: list[str], n: int, seed: int) -> dict[str, str]:
    """Write ``n`` planted copies; returns copy rel path -> original rel path."""
    import librosa
    import soundfile as sf

    rng = np.random.default_rng(seed)
    truth = {}
    for i, orig in enumerate(rng.choice(rels, size=n, replace=False)):
        kind = KINDS[i % len(KINDS)]
        src = train / orig
        pcm, sr = sf.read(str(src), dtype="int16")
        x = pcm.astype(np.float32) / 32768
        stem = f"dups/{kind}_{i:03d}"
        if kind == "copy":
            rel = stem + ".wav"
            (train / "dups").mkdir(exist_ok=True)
            shutil.copy(src, train / rel)
        elif kind == "flac":
            rel = stem + ".flac"
            sf.write(str(train / rel), pcm, sr)
        elif kind == "pad":
            rel = stem + ".wav"
            pad = np.zeros(int(rng.uniform(0.1, 0.5) * sr), np.int16)
            sf.write(str(train / rel), np.concatenate([pad, pcm, pad[:100]]), sr)
        elif kind == "gain":
            rel = stem + ".wav"
            sf.write(str(train / rel), np.clip(x * 10 ** (rng.uniform(-12, 3) / 20), -1, 1), sr, subtype="PCM_16")
        elif kind == "resample":
            rel, to = stem + ".wav", int(rng.choice([22050, 44100]))
            sf.write(str(train / rel), librosa.resample(x, orig_sr=sr, target_sr=to), to, subtype="PCM_16")
        elif kind == "ogg":
            rel = stem + ".ogg"
            sf.write(str(train / rel), x, sr)
        else:
            rel = stem + ".mp3"
            sf.write(str(train / rel), x, sr)
        truth[rel] = str(orig)
    return truth


def pair_scores(groups, truth: dict[str, str]) -> tuple[float, float, int]:
    true_pairs = set()
    by_orig: dict[str, set] = {}
    for c, o in truth.items():
        by_orig.setdefault(o, {o}).add(c)
    for members in by_orig.values():
        true_pairs |= {tuple(sorted(p)) for p in itertools.combinations(members, 2)}
    pred = {tuple(sorted(p)) for g in groups for p in itertools.combinations(g.members, 2)}
    tp = len(pred & true_pairs)
    return (tp / len(pred) if pred else 1.0), (tp / len(true_pairs) if true_pairs else 1.0), len(pred)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="mel")
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--planted", type=int, default=35)
    ap.add_argument("--thresholds", default="0.95,0.97,0.99,0.995")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    from audioaudit.audio import synth
    from audioaudit.duplicates import groups as dupgroups
    from audioaudit.duplicates.verify import verify_pairs
    from audioaudit.encoders import load_encoder
    from audioaudit.index import store
    from audioaudit.index.build import build_index
    from audioaudit.index.near_duplicates import near_duplicate_pairs
    from audioaudit.index.options import BuildOptions

    thresholds = [float(t) for t in a.thresholds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        info = synth.make_corpus(Path(tmp) / "c", per_class=a.per_class, seed=a.seed, verbose=False)
        train = Path(info.train_dir)
        rels = sorted(p.relative_to(train).as_posix() for p in train.rglob("*.wav"))
        truth = plant(train, rels, a.planted, a.seed)
        t = time.perf_counter()
        build_index(train, load_encoder(a.encoder), Path(tmp) / "ix", spec=a.encoder,
                    opts=BuildOptions(workers=1, progress=False, near_threshold=min(thresholds)))
        build_s = time.perf_counter() - t
        ix = store.open_index(Path(tmp) / "ix")
        pairs = near_duplicate_pairs(ix.index, ix.params, ix.items, min(thresholds))
        first = ix.items.drop_duplicates("item_id")
        ids, hashes = first["item_id"].tolist(), first["pcm_hash"].tolist()
        paths = {i: str(train / p) for i, p in zip(first["item_id"], first["path"])}
        t = time.perf_counter()
        confirmed = {(a, b) for a, b, _, _ in verify_pairs(pairs, paths)}
        verify_s = time.perf_counter() - t
    print(f"corpus: {len(rels)} synth clips ({len(info.classes)} classes) + {len(truth)} planted copies "
          f"({', '.join(KINDS)}), encoder {a.encoder}, build {build_s:.1f} s")
    exact = dupgroups.group_duplicates(ids, hashes)
    p, r, n = pair_scores(exact, truth)
    print(f"exact only (PCM hash): {len(exact)} groups, {n} pairs, precision {p:.3f}, recall {r:.3f}")
    print(f"{len(pairs)} candidate pairs at coverage >= {min(thresholds)}; audio verification {verify_s:.1f} s")
    for thr in thresholds:
        for verified in (False, True):
            near = [(x, y) for x, y, s in pairs if s >= thr and (not verified or (x, y) in confirmed)]
            groups = dupgroups.group_duplicates(ids, hashes, near)
            s = dupgroups.summarise(groups)
            p, r, n = pair_scores(groups, truth)
            print(f"coverage >= {thr:<5} {'+ audio check' if verified else 'index only   '}: {s.groups} groups "
                  f"({s.exact_groups} exact, {s.near_groups} near), {s.items_in_groups} files, {n} pairs, "
                  f"precision {p:.3f}, recall {r:.3f}")
    final = dupgroups.group_duplicates(ids, hashes, [(x, y) for x, y, s in pairs
                                                 if s >= dupgroups.NEAR_THRESHOLD and (x, y) in confirmed])
    group_of = {m: g.group for g in final for m in g.members}
    for kind in KINDS:
        copies = [c for c in truth if Path(c).name.startswith(kind + "_")]
        ok = sum(group_of.get(c) is not None and group_of.get(c) == group_of.get(truth[c]) for c in copies)
        print(f"  default ({dupgroups.NEAR_THRESHOLD} + audio check): {kind:<8} {ok}/{len(copies)} copies grouped with their original")

if __name__ == "__main__":
    main()
