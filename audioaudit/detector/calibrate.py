"""Calibrate the flagging threshold of a copy detector on its own training corpus.

Positives: augmented copies of training clips (random chains of the standard copy
transformations, :func:`audioaudit.detector.augment.random_view`), scored against their source.
Negatives: augmented views of training clips scored against the *rest* of the corpus —
their own clip and its twins left out — i.e. how a novel clip of the same kind scores
against its best match. The threshold is the one of highest recall among those at which
``precision = TP / (TP + FP) >= target``, with as many negatives as positives (a
balanced prior; the audit states the precision it stands for). Scores are the audit's: max
cosine over segment pairs, SSCD-normalised by default (:mod:`audioaudit.similarity`); clips
are cut by the one windowing rule (:func:`audioaudit.encoders.embed.embed_clips`).

Writes ``OUT/calibration.json``::

    {"threshold", "score": "score"|"similarity", "precision", "target_precision",
     "recall", "n_positive", "n_negative", "encoder": identity, ...}
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from audioaudit import similarity
from audioaudit.detector.benchmark import metrics
from audioaudit.encoders import embed
from audioaudit.schema import CALIBRATION_FILE
from audioaudit.util.atomic import write_text


@dataclass(frozen=True)
class PrecisionPick:
    """The threshold picked for a target precision, and what it achieves there."""

    threshold: float
    precision: float
    recall: float
    reached: bool  # False: the target precision is reached at no threshold


@dataclass(frozen=True)
class CalibrateOptions:
    """What :func:`calibrate_encoder` does (the ``audioaudit calibrate`` options)."""

    target_precision: float = 0.95
    normalise: bool = True  # calibrate the normalised score (else the raw similarity)
    max_clips: int = 200  # clips giving positive and negative views
    max_corpus: int = 1000  # corpus clips they are scored against (a seeded sample)
    views_per_clip: int = 2
    families: tuple[str, ...] | None = None  # None: the standard transformation families
    seed: int = 0


@dataclass(frozen=True)
class Calibration:
    threshold: float
    score: str  # "score" (normalised) | "similarity"
    precision: float  # achieved at the threshold
    target_precision: float
    recall: float
    n_positive: int
    n_negative: int
    encoder: dict
    reached: bool = True
    alternatives: dict = field(default_factory=dict)  # the other score kind's threshold
    settings: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def pick_threshold(positive: np.ndarray, negative: np.ndarray, target: float) -> PrecisionPick:
    """The threshold (score >= t is a copy) with the highest recall among those whose
    precision reaches ``target`` (the highest such threshold when several share that
    recall). Ties cannot be split; unreachable → just above the highest negative."""
    pos, neg = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    scores = np.r_[pos, neg]
    labels = np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)]
    r = metrics.recall_at_precision(metrics.pr_curve(scores, labels, len(pos)), target)
    if r.recall > 0:
        return PrecisionPick(float(r.threshold), float(r.precision), float(r.recall), True)
    t = float(np.nextafter(neg.max(), np.inf)) if len(neg) else float(pos.min(initial=0.0))
    tp, fp = int((pos >= t).sum()), int((neg >= t).sum())
    prec = tp / (tp + fp) if tp + fp else float("nan")
    return PrecisionPick(t, prec, tp / max(len(pos), 1), False)


def calibration_scores(sim: np.ndarray, source: np.ndarray, twins: Sequence[set[int]], positive: np.ndarray):
    """Pure: (similarity, normalised score) per view from a (views × clips) matrix.

    ``source[i]``: the clip view ``i`` was made from; ``twins[c]``: clips sharing clip
    ``c``'s audio (itself included); ``positive[i]``: True → score against the source
    (its twins other than itself left out of the background), False → a novel clip:
    its whole twin group is left out and its best remaining match is scored."""
    n, m = sim.shape
    exclude = np.zeros((n, m), bool)
    for i in range(n):
        group = list(twins[int(source[i])])
        exclude[i, group] = True
        if positive[i]:
            exclude[i, int(source[i])] = False
    masked = np.where(exclude, -np.inf, sim)
    scores = similarity.normalised(masked)  # the left-out clips are no background either
    rows = np.arange(n)
    col = np.where(positive, source, np.argmax(masked, axis=1))
    return masked[rows, col].astype(np.float32), scores[rows, col].astype(np.float32)


def _views(waves, sr, picks, twins, opts: CalibrateOptions):
    from audioaudit.detector.augment import STANDARD_FAMILIES, random_view

    fams = list(opts.families or STANDARD_FAMILIES)
    out, src, is_pos = [], [], []
    for flag in (True, False):
        for c in picks:
            for v in range(opts.views_per_clip):
                rng = np.random.default_rng([opts.seed, int(flag), int(c), v])
                others = [w for n, w in enumerate(waves) if n not in twins[c]][:64]
                y, _ = random_view(waves[c], sr, rng, families=fams, n_ops=(1, 2), others=others)
                out.append(y)
                src.append(c)
                is_pos.append(flag)
    return out, np.asarray(src), np.asarray(is_pos)


def corpus_files(corpus: str | os.PathLike) -> list[str]:
    """Training clips of a corpus: ``CORPUS/train`` when it has a train/heldout split."""
    from audioaudit.audio.corpus import scan_corpus

    root = Path(corpus)
    if (root / "train").is_dir() and (root / "heldout").is_dir():
        root = root / "train"
    return [it.path for it in scan_corpus(root).items]


def calibrate_encoder(
    encoder,
    corpus: str | os.PathLike | Sequence[str],
    out_dir: str | os.PathLike | None,
    opts: CalibrateOptions | None = None,
    *,
    progress: Callable[[int], None] | None = None,
) -> Calibration:
    """Calibrate ``encoder`` on ``corpus`` (a folder, or a list of audio files) and write
    ``out_dir/calibration.json`` (unless ``out_dir`` is None).

    ``opts.max_clips`` clips give positive and negative views; they are scored against at
    most ``opts.max_corpus`` corpus clips (a seeded sample the calibration clips come from): on a
    larger corpus the negatives' best matches are then slightly optimistic. Clips are loaded
    by :func:`audioaudit.audio.io.load_waves` and embedded window by window exactly as the
    index and the audit embed them (:func:`audioaudit.encoders.embed.embed_clips`)."""
    from audioaudit.audio.io import load_waves
    from audioaudit.duplicates.twins import twin_groups
    from audioaudit.errors import UserError

    opts = opts or CalibrateOptions()
    if not 0 < opts.target_precision <= 1:
        raise UserError(f"--target-precision must be in (0, 1], got {opts.target_precision}")
    paths = list(corpus) if isinstance(corpus, (list, tuple)) else corpus_files(corpus)
    if len(paths) > opts.max_corpus:
        keep = np.sort(np.random.default_rng([opts.seed, 2]).permutation(len(paths))[: opts.max_corpus])
        paths = [paths[i] for i in keep]
    loaded, _ = load_waves(paths, encoder.sample_rate)
    paths = [p for p, w in zip(paths, loaded) if w is not None]
    waves = [w for w in loaded if w is not None]
    if len(waves) < 3:
        raise UserError(f"{corpus}: calibration needs at least 3 readable clips, found {len(waves)}")
    sr = encoder.sample_rate
    twins = twin_groups(paths, waves, sr)
    rng = np.random.default_rng([opts.seed, 1])
    picks = np.sort(rng.permutation(len(waves))[: opts.max_clips]).tolist()
    views, source, is_pos = _views(waves, sr, picks, twins, opts)
    ref = embed.embed_clips(encoder, waves, progress=progress)
    qry = embed.embed_clips(encoder, views, progress=progress)
    sim, score = calibration_scores(similarity.clip_similarity(qry, ref), source, twins, is_pos)
    normalise, target = opts.normalise, opts.target_precision
    chosen, other = (score, sim) if normalise else (sim, score)
    t = pick_threshold(chosen[is_pos], chosen[~is_pos], target)
    alt = pick_threshold(other[is_pos], other[~is_pos], target)
    cal = Calibration(
        threshold=t.threshold, score="score" if normalise else "similarity", precision=t.precision,
        target_precision=target, recall=t.recall, n_positive=int(is_pos.sum()),
        n_negative=int((~is_pos).sum()), encoder=encoder.identity(), reached=t.reached,
        alternatives={"similarity" if normalise else "score": asdict(alt)},
        settings={"clips": len(picks), "reference_clips": len(waves), "views_per_clip": opts.views_per_clip,
                  "families": list(opts.families) if opts.families else "standard", "seed": opts.seed,
                  "normalisation": "minus mean of the 2nd-11th best training clips (SSCD)",
                  "prior": "balanced (as many negatives as positives)"})
    if out_dir is not None:
        write_calibration(out_dir, cal)
    return cal


def write_calibration(out_dir: str | os.PathLike, cal: Calibration) -> Path:
    """``out_dir/calibration.json``; in a fine-tuned detector's folder, also marks the
    run's calibration step done in its ``run.json`` (a redo after a failed one included)."""
    from audioaudit.detector.finetune.status import record_step

    path = Path(out_dir) / CALIBRATION_FILE
    write_text(path, json.dumps(cal.to_json(), indent=1, default=float))
    record_step(out_dir, "calibration", threshold=cal.threshold, score=cal.score, file=CALIBRATION_FILE)
    return path

