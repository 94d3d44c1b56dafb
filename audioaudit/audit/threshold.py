"""The flagging threshold of an audit and where it came from (explicit, index or encoder calibration)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audioaudit import schema
from audioaudit.errors import UserError
from audioaudit.util.read import read_json


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
    false_flag_rate_bound: float | None = None  # 95 % upper bound the calibration vouches for
    note: str | None = None  # e.g. too few calibration clips for the target rate

    def as_dict(self) -> dict:
        d = {"value": self.value, "on": self.on, "source": self.source, "precision": self.precision,
             "target_precision": self.target_precision, "path": self.path}
        if self.target_false_flag_rate is not None:
            d |= {"false_flag_rate": self.false_flag_rate, "target_false_flag_rate": self.target_false_flag_rate}
            if self.false_flag_rate_bound is not None:
                d["false_flag_rate_bound"] = self.false_flag_rate_bound
        if self.passed_over:
            d["passed_over"] = self.passed_over
        if self.similarity_floor is not None:
            d["similarity_floor"] = self.similarity_floor
        if self.note:
            d["note"] = self.note
        if self.value is None:
            d["note"] = ("no threshold: pass --threshold, or calibrate the encoder; nothing is flagged, "
                         "only statistics are reported")
        return d


@dataclass(frozen=True)
class Calibration:
    """One ``calibration.json``, whichever stage wrote it, read into one record.

    The index calibration (:mod:`audioaudit.audit.calibrate`: a false-flag rate on novel
    clips, background normalisation, a similarity floor) and the encoder calibration
    (:mod:`audioaudit.detector.calibrate`: a precision on augmented views, normalised by the
    2nd-11th references) share ``threshold`` and ``score``; what each file leaves out takes
    the value that file's writer meant (the on-disk keys are unchanged)."""

    path: str
    threshold: float
    score: str = "score"  # "score" (normalised) | "similarity"
    normalisation: str = "references"  # "references" | "background" (only the index calibration writes it)
    precision: float | None = None
    target_precision: float | None = None
    false_flag_rate: float | None = None
    target_false_flag_rate: float | None = None
    similarity_floor: float | None = None
    false_flag_rate_bound: float | None = None
    note: str | None = None

    @staticmethod
    def from_json(path: str | os.PathLike, d: dict) -> "Calibration":
        score = d.get("score", "score")
        return Calibration(str(path), float(d["threshold"]), score, d.get("normalisation", "references"),
                           d.get("precision"), d.get("target_precision"), d.get("false_flag_rate"),
                           d.get("target_false_flag_rate"), d.get("similarity_floor") if score == "score" else None,
                           d.get("false_flag_rate_bound"), d.get("note"))

    def threshold_from(self, source: str, passed_over: list[str]) -> "Threshold":
        return Threshold(self.threshold, self.score, source, self.precision, self.target_precision, self.path,
                         self.false_flag_rate, self.target_false_flag_rate, passed_over, self.similarity_floor,
                         self.false_flag_rate_bound, self.note)


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
        cal = load_calibration(path)
        if cal is None:
            continue
        if cal.score == "score" and cal.normalisation != normalisation:
            passed_over.append(f"{path} (calibrated for {cal.normalisation} normalisation)")
            continue
        return cal.threshold_from(source, passed_over)
    return Threshold(None, passed_over=passed_over)


# --------------------------------------------------------------------------- tables
def flag_mask(sim: np.ndarray, score: np.ndarray, thr: Threshold) -> np.ndarray:
    if thr.value is None:
        return np.zeros(len(sim), dtype=bool)
    flag = np.nan_to_num(score if thr.on == "score" else sim, nan=-np.inf) >= thr.value
    if thr.similarity_floor is not None:  # a near-exact copy is one however crowded its neighbourhood
        flag |= np.nan_to_num(sim, nan=-np.inf) >= thr.similarity_floor
    return flag


def read_calibration(path: str | os.PathLike) -> dict | None:
    """``calibration.json`` ({"threshold", "score", "precision", "target_precision"}) or None."""
    path = Path(path)
    if not path.is_file():
        return None
    cal = read_json(path, "calibration (calibration.json)")
    if not isinstance(cal.get("threshold"), (int, float)):
        raise UserError(f"{path}: calibration has no numeric 'threshold'")
    if cal.get("score", "score") not in ("score", "similarity"):
        raise UserError(f"{path}: calibration 'score' must be 'score' or 'similarity'")
    return cal


def load_calibration(path: str | os.PathLike) -> Calibration | None:
    """:func:`read_calibration` as a :class:`Calibration` record."""
    cal = read_calibration(path)
    return None if cal is None else Calibration.from_json(path, cal)
