"""The held-out-family protocol: a detector is judged on transformations it never trained on.

``bench --train-families A,B --test-families C,D`` reports the families the detector
trained on and the ones it never saw as two groups (each pooled with all distractors).
A test family that a fine-tuned detector's training views drew from is refused: a figure
on it would measure memory of the augmentation, not copy detection.
"""
from __future__ import annotations

import json
from pathlib import Path

from audioaudit.detector.augment import FAMILIES, STANDARD_FAMILIES, TRAINING_FAMILIES, UNSEEN_FAMILIES
from audioaudit.errors import UserError

NAMED = {"standard": STANDARD_FAMILIES, "training": TRAINING_FAMILIES, "unseen": UNSEEN_FAMILIES}


def parse_families(value: str | None) -> tuple[str, ...]:
    """'a,b' or a named set ('standard', 'training', 'unseen', also inside a list) -> names."""
    out: list[str] = []
    for item in (v.strip() for v in (value or "").split(",")):
        if item:
            out += list(NAMED.get(item, (item,)))
    unknown = [f for f in out if f not in FAMILIES]
    if unknown:
        raise UserError(f"unknown transformation family: {', '.join(unknown)} (known: {', '.join(FAMILIES)}; "
                        f"sets: {', '.join(NAMED)})")
    return tuple(dict.fromkeys(out))


def family_groups(train: str | None, test: str | None) -> dict[str, tuple[str, ...]]:
    """{"train": ..., "test": ...} (only the groups given); overlapping groups are an error."""
    groups = {k: parse_families(v) for k, v in (("train", train), ("test", test)) if v}
    both = set(groups.get("train", ())) & set(groups.get("test", ()))
    if both:
        raise UserError(f"--train-families and --test-families share {', '.join(sorted(both))}: a family is either "
                        "trained on or held out")
    return groups


def trained_families(spec: str) -> tuple[str, ...] | None:
    """The families a ``finetuned:DIR`` detector's training views drew from (its run.json),
    or None when the encoder is not a fine-tuned detector or the folder does not say."""
    if not spec.startswith("finetuned:"):
        return None
    run = Path(spec.split(":", 1)[1]) / "run.json"
    try:
        views = json.loads(run.read_text()).get("views") or {}
    except (OSError, ValueError):
        return None
    return tuple(views.get("families") or TRAINING_FAMILIES)


def check_unseen(spec: str, test: tuple[str, ...]) -> None:
    """Refuse test families that ``spec``'s training views drew from."""
    seen = set(trained_families(spec) or ()) & set(test)
    if seen:
        raise UserError(f"{spec} trained on {', '.join(sorted(seen))}: pass test families it never saw "
                        "(e.g. --test-families unseen)")
