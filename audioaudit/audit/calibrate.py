"""Calibrate an index's flagging threshold for a target false-flag rate on novel clips.

An audit's promise is about novel clips: "a clip that is not a copy is flagged with
probability at most α". So the threshold is set on clips that are *not* in the training set
and of the same kind — the index's background set (:mod:`audioaudit.index.background`) — each
scored exactly as the audit scores a generated clip: top-1 training similarity minus the
mean of its ``k`` best background clips, itself left out (leave-one-out). The threshold is
the lowest at which at most ``floor(α · n)`` of the ``n`` background clips score at or above
it (Neyman–Pearson style: fix the false-positive rate, report the power). A precision
target (the encoder calibration, :mod:`audioaudit.detector.calibrate`) depends on the unknown share
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from audioaudit import schema
from audioaudit.errors import UserError
from audioaudit.index import store
from audioaudit.index.background import Background
from audioaudit.index.faiss import facade as fx
from audioaudit.index.items import distinct


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
    false_flag_rate_bound: float | None = None  # the rate this calibration can vouch for (95 % upper bound)
    resolves_target: bool = True  # False: too few negatives to calibrate the target rate at all
    note: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


def rate_bound(flagged: int, n: int, target: float) -> tuple[float, bool, str | None]:
    """Pure: (95 % upper bound of the false-flag rate, whether ``n`` negatives can resolve
    ``target`` at all, a note saying so when they cannot). With n negatives a threshold can
    only be placed between them: a rate below 1/n is not measurable, so the threshold lands
    above every negative and the rate is bounded only by the Wilson interval of 0/n
    (about 3.8/n)."""
    from audioaudit.audit import statistics as stats

    hi = stats.wilson(flagged, n).hi
    resolves = target * n >= 1 - 1e-9
    note = None
    if not resolves:
        need = int(np.ceil(1 / target)) if target > 0 else None
        note = (f"{n} calibration clips cannot calibrate a false-flag rate of {target:g}"
                + (f" (that needs at least {need})" if need else "")
                + f": the threshold sits above every one of them and bounds the rate on novel clips only at "
                  f"<= {hi:.3f} (95 %)")
    return hi, resolves, note


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


@dataclass(frozen=True)
class FfrSettings:
    """How an index is calibrated (``index build --background``, ``index background``)."""

    target_false_flag_rate: float = 0.01
    negatives: str | None = None  # a folder of unseen novel clips to calibrate on instead of the background
    max_clips: int = 200  # training clips whose augmented views measure recall
    views_per_clip: int = 2
    max_strength: float = 0.5
    seed: int = 0
    progress: bool = False


def training_views(ix, encoder, settings: FfrSettings) -> list[np.ndarray]:
    """Augmented copies of up to ``max_clips`` training clips (random chains of 1-2 standard
    families at strength U(0, max_strength)), in memory at the encoder's rate."""
    from audioaudit.audio.io import load_waves
    from audioaudit.detector.augment import STANDARD_FAMILIES, random_view

    root = Path(ix.manifest.get("corpus_root") or ".")
    paths = sorted(map(str, distinct(ix.items, "path")))
    rng = np.random.default_rng([settings.seed, 3])
    picks = [str(root / paths[i]) for i in np.sort(rng.permutation(len(paths))[: settings.max_clips])]
    sr = int(encoder.sample_rate)
    waves = [w for w in load_waves(picks, sr)[0] if w is not None]
    if not waves:
        raise UserError(f"{root}: no training clip could be read back for calibration")
    views = []
    for c, w in enumerate(waves):
        others = [waves[(c + j) % len(waves)] for j in (1, 2, 3)]
        for v in range(settings.views_per_clip):
            y, _ = random_view(w, sr, np.random.default_rng([settings.seed, c, v]), families=STANDARD_FAMILIES,
                               n_ops=(1, 2), others=others, max_strength=settings.max_strength)
            views.append(np.clip(y, -1.0, 1.0).astype(np.float32))  # as a WAV file would hold it
    return views


def _negatives(view, encoder, settings: FfrSettings):
    """(similarities, levels, description) of the calibration's novel clips."""
    from audioaudit.audit.options import AuditOptions
    from audioaudit.audit.queries import QuerySet, load_queries
    from audioaudit.audit.score import score_queries

    bg = view.bg
    if settings.negatives is not None:  # novel clips, scored exactly as the audit scores a generated clip
        neg_qs = load_queries(settings.negatives, encoder, AuditOptions(progress=settings.progress, workers=0))
        _, _, sims, level = score_queries(view, neg_qs)
        return sims, level, f"{len(neg_qs.table)} novel clips from {Path(settings.negatives).resolve()}"
    # every background clip, scored against the training set, itself left out
    table = bg.clips.assign(query_id=bg.clips["path"])
    neg_qs = QuerySet(table, bg.vectors, bg.owner, np.zeros(len(bg.owner)), np.zeros(len(bg.owner)))
    _, _, sims, level = score_queries(view, neg_qs, exclude_bg=np.arange(bg.n_clips))
    return sims, level, f"{bg.n_clips} background-set clips, leave-one-out"


def calibrate_index(index, encoder, settings: FfrSettings = FfrSettings(), *, write: bool = True,
                    background: Background | None = None) -> IndexCalibration:
    """Calibrate ``index`` (a folder or an open index, which must have a background set) and
    write its calibration.json. ``background``: the set just built, passed on instead of
    being read back from disk.

    ``settings.negatives``: a folder of novel clips (in neither the corpus nor the background
    set, and not used to fine-tune the detector) to calibrate on instead of the background
    clips. A detector fine-tuned on the background clips scores them lower than truly novel
    clips (the demo: 0.019 on the background vs 0.03-0.04 on novel clips), so unseen
    negatives give an unbiased false-flag rate."""
    import pandas as pd

    from audioaudit import similarity
    from audioaudit.audit import statistics as stats
    from audioaudit.audit.queries import QuerySet
    from audioaudit.audit.score import IndexView, score_queries
    from audioaudit.encoders.embed import embed_clips
    from audioaudit.index.background import load_background

    alpha = settings.target_false_flag_rate
    if not 0 <= alpha < 1:
        raise UserError(f"target false-flag rate must be in [0, 1), got {alpha}")
    ix = store.as_open(index)
    store.check_encoder(ix.encoder, encoder, ix.dir)
    bg = background or load_background(ix.dir, ix.encoder.get("identity"), distinct(ix.items, "pcm_hash"))
    if bg is None:
        raise UserError(f"{ix.dir}: no background set to calibrate on; add one with "
                        f"`audioaudit index background {ix.dir.name} FOLDER`")
    view = IndexView.of(ix, bg=bg)
    sims, level, what = _negatives(view, encoder, settings)
    negative = similarity.normalise(sims[:, 0], level)
    t = ffr_threshold(negative, alpha)
    # near-exact copies: the background term can push a copy of a clip from a crowded kind
    # (speech, wind) under ``t`` although its similarity is ~1; so also flag raw similarity
    # above every negative's (adds at most ~1/(n+1) false flags on novel clips)
    floor = ffr_threshold(sims[:, 0], 0.0)
    emb = embed_clips(encoder, training_views(ix, encoder, settings))  # the one windowing rule, no files
    pos_qs = QuerySet.of(pd.DataFrame({"query_id": np.arange(emb.n_clips).astype(str), "label": None}), emb)
    _, _, psims, plevel = score_queries(view, pos_qs)
    positive = similarity.normalise(psims[:, 0], plevel)
    k = int(((negative >= t) | (sims[:, 0] >= floor)).sum())
    ci = stats.wilson(k, len(negative))
    bound, resolves, note = rate_bound(k, len(negative), alpha)
    cal = IndexCalibration(
        threshold=t, target_false_flag_rate=alpha, false_flag_rate=k / len(negative),
        false_flag_rate_ci=(ci.lo, ci.hi), recall=float(((positive >= t) | (psims[:, 0] >= floor)).mean()),
        n_negative=len(negative),
        n_positive=len(positive), encoder=ix.encoder.get("identity"), similarity_floor=floor,
        false_flag_rate_bound=bound, resolves_target=resolves, note=note,
        settings={"negatives": what,
                  "negatives_folder": str(Path(settings.negatives).resolve()) if settings.negatives else None,
                  "positives": f"{settings.views_per_clip} views of up to {settings.max_clips} training clips: "
                               f"1-2 standard families, strength U(0, {settings.max_strength})",
                  "background_k": bg.k, "seed": settings.seed, "index_search": fx.IndexParams.as_dict(view.params),
                  "negative_percentiles": stats.percentiles(negative),
                  "positive_percentiles": stats.percentiles(positive)})
    if write:
        store.replace_json(ix.dir, schema.CALIBRATION_FILE, cal.to_json())  # one commit: readers see it whole
    return cal
