"""Calibrate an index's flagging threshold for a target false-flag rate on novel clips.

An audit's promise is about novel clips: "a clip that is not a copy is flagged with
probability at most α". So the threshold is set on clips that are *not* in the training set
and of the same kind — the index's background set (:mod:`audioaudit.background`) — each
scored exactly as the audit scores a generated clip: top-1 training similarity minus the
mean of its ``k`` best background clips, itself left out (leave-one-out). The threshold is
the lowest at which at most ``floor(α · n)`` of the ``n`` background clips score at or above
it (Neyman–Pearson style: fix the false-positive rate, report the power). A precision
target (the encoder calibration, :mod:`audioaudit.calibrate`) depends on the unknown share
of copies among generated clips; a false-flag rate does not.

A clip is also flagged when its raw top-1 similarity is above every background clip's
(``similarity_floor``): subtracting the background level can push a near-exact copy of a
clip from a crowded kind (speech, wind: background ≈ 0.65) under the score threshold.

Recall is reported on augmented copies of training clips (random chains of 1–2 standard
transformation families at strengths up to ``max_strength``), scored the same way.

Writes ``INDEX/calibration.json`` (the audit's first threshold source)::

    {"threshold", "similarity_floor", "score": "score", "normalisation": "background", "target_false_flag_rate",
     "false_flag_rate", "false_flag_rate_ci", "recall", "n_negative", "n_positive", ...}
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from audioaudit import schema, store
from audioaudit.errors import UserError


@dataclass(frozen=True)
class IndexCalibration:
    threshold: float
    target_false_flag_rate: float
    false_flag_rate: float  # on the background clips, at the threshold
    false_flag_rate_ci: tuple[float, float]  # Wilson 95 %
    recall: float  # on augmented training clips
    n_negative: int
    n_positive: int
    encoder: dict
    similarity_floor: float | None = None  # also flagged: raw similarity >= this (above every negative)
    score: str = "score"
    normalisation: str = "background"
    precision: float | None = None  # not estimated: depends on the share of copies
    target_precision: float | None = None
    settings: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def ffr_threshold(negative: np.ndarray, target: float) -> float:
    """Pure: the lowest threshold (score >= t flags) with at most ``floor(target * n)``
    negatives at or above it — just above the (that + 1)-th highest negative."""
    neg = np.sort(np.asarray(negative, np.float64))[::-1]
    if not len(neg):
        raise ValueError("no negatives")
    allowed = int(math.floor(target * len(neg) + 1e-9))
    if allowed >= len(neg):
        return float(neg[-1])
    return float(np.nextafter(neg[allowed], np.inf))


def _training_views(ix, root: Path, out: Path, encoder, *, max_clips: int, views: int, max_strength: float,
                    seed: int) -> int:
    from audioaudit.audio import write_wav
    from audioaudit.augment import STANDARD_FAMILIES, random_view
    from audioaudit.bench_run import load_waves

    paths = sorted(set(ix.items["path"].astype(str)))
    rng = np.random.default_rng([seed, 3])
    picks = [str(root / paths[i]) for i in np.sort(rng.permutation(len(paths))[:max_clips])]
    sr = int(encoder.sample_rate)
    waves = [w for w in load_waves(picks, sr)[0] if w is not None]
    n = 0
    for c, w in enumerate(waves):
        others = [waves[(c + j) % len(waves)] for j in (1, 2, 3)]
        for v in range(views):
            y, _ = random_view(w, sr, np.random.default_rng([seed, c, v]), families=STANDARD_FAMILIES, n_ops=(1, 2),
                               others=others, max_strength=max_strength)
            write_wav(out / f"view_{c:05d}_{v}.wav", y, sr)
            n += 1
    return n


def calibrate_index(index_dir, encoder, *, target_false_flag_rate: float = 0.01, max_clips: int = 200,
                    views_per_clip: int = 2, max_strength: float = 0.5, seed: int = 0, write: bool = True,
                    progress: bool = False, negatives=None) -> IndexCalibration:
    """Calibrate ``index_dir`` (which must have a background set) and write its calibration.json.

    ``negatives``: a folder of novel clips (in neither the corpus nor the background set, and
    not used to fine-tune the detector) to calibrate on instead of the background clips. A
    detector fine-tuned on the background clips scores them lower than truly novel clips
    (the demo: 0.019 on the background vs 0.03-0.04 on novel clips), so unseen negatives
    give an unbiased false-flag rate."""
    from audioaudit import faiss_index as fx
    from audioaudit import stats
    from audioaudit.audit import BACKGROUND_DEPTH, AuditOptions, QuerySet, load_queries, score_queries, training_sources
    from audioaudit.background import load_background

    if not 0 <= target_false_flag_rate < 1:
        raise UserError(f"target false-flag rate must be in [0, 1), got {target_false_flag_rate}")
    ix = store.open_index(index_dir)
    store.check_encoder(ix.encoder, encoder, ix.dir)
    bg = load_background(ix.dir, ix.encoder.get("identity"), ix.items.get("pcm_hash"))
    if bg is None:
        raise UserError(f"{ix.dir}: no background set to calibrate on; add one with "
                        f"`audioaudit index background {ix.dir.name} FOLDER`")
    root = Path(ix.manifest.get("corpus_root") or ".")
    src, params = training_sources(ix), ix.params
    if negatives is not None:  # novel clips, scored exactly as the audit scores a generated clip
        neg_qs = load_queries(negatives, encoder, AuditOptions(progress=progress, workers=0))
        _, _, sims, level = score_queries(ix, neg_qs, params, src, BACKGROUND_DEPTH, False, bg)
        what = f"{len(neg_qs.table)} novel clips from {Path(negatives).resolve()}"
    else:  # every background clip, scored against the training set, itself left out
        table = bg.clips.assign(query_id=bg.clips["path"])
        neg_qs = QuerySet(table, bg.vectors, bg.owner, np.zeros(len(bg.owner)), np.zeros(len(bg.owner)))
        _, _, sims, level = score_queries(ix, neg_qs, params, src, BACKGROUND_DEPTH, False, bg,
                                          exclude_bg=np.arange(bg.n_clips))
        what = f"{bg.n_clips} background-set clips, leave-one-out"
    negative = sims[:, 0] - level
    t = ffr_threshold(negative, target_false_flag_rate)
    # near-exact copies: the background term can push a copy of a clip from a crowded kind
    # (speech, wind) under ``t`` although its similarity is ~1; so also flag raw similarity
    # above every negative's (adds at most ~1/(n+1) false flags on novel clips)
    floor = ffr_threshold(sims[:, 0], 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        n_views = _training_views(ix, root, Path(tmp), encoder, max_clips=max_clips, views=views_per_clip,
                                  max_strength=max_strength, seed=seed)
        if not n_views:
            raise UserError(f"{root}: no training clip could be read back for calibration")
        pos_qs = load_queries(tmp, encoder, AuditOptions(progress=progress, workers=0))
        _, _, psims, plevel = score_queries(ix, pos_qs, params, src, BACKGROUND_DEPTH, False, bg)
    positive = psims[:, 0] - plevel
    k = int(((negative >= t) | (sims[:, 0] >= floor)).sum())
    ci = stats.wilson(k, len(negative))
    cal = IndexCalibration(
        threshold=t, target_false_flag_rate=target_false_flag_rate, false_flag_rate=k / len(negative),
        false_flag_rate_ci=(ci.lo, ci.hi), recall=float(((positive >= t) | (psims[:, 0] >= floor)).mean()),
        n_negative=len(negative),
        n_positive=len(positive), encoder=ix.encoder.get("identity"), similarity_floor=floor,
        settings={"negatives": what, "negatives_folder": str(Path(negatives).resolve()) if negatives else None,
                  "positives": f"{views_per_clip} views of up to {max_clips} training clips: 1-2 standard families, "
                               f"strength U(0, {max_strength})",
                  "background_k": bg.k, "seed": seed, "index_search": fx.IndexParams.as_dict(params),
                  "negative_percentiles": stats.percentiles(negative),
                  "positive_percentiles": stats.percentiles(positive)})
    if write:
        store.write_json(ix.dir / schema.CALIBRATION_FILE, cal.to_json())
    return cal
