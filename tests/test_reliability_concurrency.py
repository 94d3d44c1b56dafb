"""Concurrency: two `audit` processes against one index at the same time both succeed
(and agree); a second `index build` into a folder that is being built is refused with a
clear message, and the first build is not disturbed."""
from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers_reliability import cli, good_corpus, kill_group, leftover_temps, popen_cli, wait_for


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from audioaudit.encoders import load_encoder
    from audioaudit.index.build import build_index
    from audioaudit.index.options import BuildOptions

    base = tmp_path_factory.mktemp("concurrency")
    corpus, ix = base / "corpus", base / "index" / "train"
    rels = good_corpus(corpus, n=6)
    build_index(corpus, load_encoder("mel"), ix, spec="mel", opts=BuildOptions(progress=False))
    gen = base / "generated"
    gen.mkdir()
    for rel in rels[:3]:
        shutil.copy(corpus / rel, gen / Path(rel).name)
    return base, corpus, ix, gen


@pytest.mark.slow
def test_two_audits_of_one_index_at_once_both_succeed(built):
    base, _, ix, gen = built
    (ix / "reference.parquet").unlink()  # both audits now compute and cache it at the same time
    outs = [base / "run_a", base / "run_b"]
    procs = [popen_cli("audit", gen, "--index", ix, "--out", o, "--no-progress") for o in outs]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
    a, b = (pd.read_parquet(o / "matches.parquet") for o in outs)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) and set(a.loc[a["rank"] == 1, "similarity"].round(4)) == {1.0}  # copies found
    ref = pd.read_parquet(ix / "reference.parquet")  # the cached file is whole, not a mix of two writers
    assert len(ref) and np.isfinite(ref["similarity"]).all()
    assert leftover_temps(ix) == [] and all(leftover_temps(o) == [] for o in outs)


@pytest.mark.slow
def test_second_build_into_a_folder_being_built_is_refused(built):
    base, corpus, _, _ = built
    root = base / "locked"
    args = ["index", "build", corpus, "--encoder", "mel", "--name", "x", "--root", root, "--no-progress"]
    first = popen_cli(*args, throttle=("audioaudit.index.shards", "write_shard", 3.0))
    shards = root / "x" / "shards"
    try:
        wait_for(lambda: any(shards.glob("*.parquet")), first, what="the first build's first shard")
        kill_group(first, signal.SIGSTOP)  # hold it inside its lock while the second one starts
        second = cli(*args)
        assert second.returncode == 2
        assert "another `audioaudit index` process is building this index" in second.stderr
        assert str(root / "x") in second.stderr and "Traceback" not in second.stderr
    finally:
        kill_group(first, signal.SIGCONT)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    man = json.loads((root / "x" / "manifest.json").read_text())
    assert man["state"] == "complete" and man["counts"]["clips"] == 6
