"""The reduced demo, end to end: the audit must find planted and memorised copies and leave
held-out clips alone at the demo's calibrated threshold (issue 8 acceptance)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest


@pytest.mark.slow
def test_quick_demo_meets_the_control_goals(tmp_path):
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
    assert res["planted_recall"] >= 0.9, res
    assert res["heldout_false_flag_rate"] <= 0.05, res
    assert res["memorizer_flag_rate"] >= 0.9, res
    assert res["passed"] is True
    assert "recall on planted copies" in proc.stdout
    # one report covering the four runs, openable from disk
    html = (out / "report" / "index.html").read_text()
    for name in ("edmsound", "memorizer", "heldout", "planted"):
        assert name in html
    assert str(tmp_path) not in html  # no absolute machine paths
