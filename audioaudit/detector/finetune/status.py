"""What happened to a fine-tuning run, step by step: the ``status`` entry of ``OUT/run.json``.

``run.json`` holds the run's settings (a rerun with other settings is refused) and, under
``status``, one entry per step after the settings were pinned — ``training`` (done, with
the weights written), then ``calibration`` (done / failed with the reason / skipped) — so
a run whose calibration failed says so on disk, next to a detector that still loads.
``audioaudit calibrate --out OUT`` records a later successful calibration here too.
Nothing heavy is imported: the calibration module uses this as well.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from audioaudit.util.atomic import write_json

RUN_FILE = "run.json"
STATUS = "status"


def settings_of(record: dict) -> dict:
    """The settings part of a ``run.json`` record (what a rerun must match)."""
    return {k: v for k, v in record.items() if k != STATUS}


def read_status(out_dir: str | os.PathLike) -> dict:
    p = Path(out_dir) / RUN_FILE
    return json.loads(p.read_text()).get(STATUS, {}) if p.exists() else {}


def record_step(out_dir: str | os.PathLike, step: str, state: str = "done", **detail) -> bool:
    """Set ``status[step]`` of ``out_dir/run.json`` to ``{"state": state, "at": ..., **detail}``
    (atomically). Returns False, writing nothing, where ``out_dir`` holds no fine-tuning run
    (a generation run's ``run.json`` is left alone)."""
    p = Path(out_dir) / RUN_FILE
    try:
        record = json.loads(p.read_text())
    except (OSError, ValueError):  # none there, or not ours to mend
        return False
    if not isinstance(record, dict) or not {"corpus", "recipe", "n_views"} <= set(record):
        return False
    entry = {"state": state, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **detail}
    record[STATUS] = {**record.get(STATUS, {}), step: entry}
    write_json(p, record, indent=1, sort_keys=True, newline=False)
    return True
