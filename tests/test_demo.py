"""The reduced demo, end to end at the demo's calibrated threshold.

Asserted: the pipeline runs, its printed figures are the ones in its run folders, every
memorised clip is flagged, and planted copies are flagged far more often than held-out
clips. Issue 8's full goals (planted recall >= 0.9 AND held-out false flags <= 0.05) are
printed by the demo but not yet met reliably: the calibrated threshold lets 3-20 % of
held-out synthetic clips through on the small demo corpus (see the issue's closing note)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest


@pytest.mark.slow
def test_quick_demo_runs_and_separates_copies_from_novel_clips(tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "audioaudit.cli", "demo", "--quick", "--quiet", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((out / "demo.json").read_text())
    # the figures the demo prints are the ones its run folders hold
    for src in res["sources"]:
        q = pd.read_parquet(Path(src["run_dir"]) / "queries.parquet")
        assert len(q) == src["audited"] > 0
        assert int(q["flag"].sum()) == src["flagged"]
    assert res["threshold"] is not None, "the demo must flag at a calibrated threshold"
    assert res["memorizer_flag_rate"] >= 0.9, res
    assert res["planted_recall"] >= 0.75, res
    assert res["planted_recall"] >= res["heldout_false_flag_rate"] + 0.5, res
    assert res["passed"] == (res["planted_recall"] >= 0.9 and res["heldout_false_flag_rate"] <= 0.05
                             and res["memorizer_flag_rate"] >= 0.9)
    assert "recall on planted copies" in proc.stdout
    # one report covering the four runs, openable from disk
    html = (out / "report" / "index.html").read_text()
    for name in ("edmsound", "memorizer", "heldout", "planted"):
        assert name in html
    assert str(tmp_path) not in html  # no absolute machine paths
