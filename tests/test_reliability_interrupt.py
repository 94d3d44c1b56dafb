"""Interruptions: `index build` and `finetune` are SIGKILLed mid-run (real CLI, own process
group) and rerun. Nothing finished is redone, the result equals an uninterrupted run, and
no temporary or half-written file survives.

To land the kill between two units of work on any machine, the killed run is the real
CLI with one function slowed down (``helpers_reliability.THROTTLED``: a sleep after each
shard / checkpoint write); the reruns and the reference runs are the plain CLI.
"""
from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers_reliability import (
    cli,
    good_corpus,
    index_vectors,
    items,
    kill_group,
    leftover_temps,
    popen_cli,
    this_run,
    wait_for,
)

TINY_CONV = {"arch": "conv", "channels": [4, 8], "dim": 16, "window_seconds": 1.0, "hop_seconds": 0.5}


def _mtimes(paths) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in paths}


def test_build_removes_temp_files_a_killed_writer_left(tmp_path):
    """A writer killed between ``write(tmp)`` and ``os.replace`` leaves ``.NAME.tmpPID``;
    the next build removes such leftovers in the index folder and in its shards."""
    from audioaudit.encoders import load_encoder
    from audioaudit.index.build import build_index
    from audioaudit.index.options import BuildOptions

    corpus, ix = tmp_path / "corpus", tmp_path / "ix"
    good_corpus(corpus, n=3)
    (ix / "shards").mkdir(parents=True)
    stale = [ix / ".items.parquet.tmp99999", ix / ".manifest.json.tmp99999", ix / ".index.faiss.tmp99999",
             ix / "shards" / ".0123abcd.parquet.tmp99999"]
    for p in stale:
        p.write_bytes(b"half written")
    build_index(corpus, load_encoder("mel"), ix, spec="mel", opts=BuildOptions(progress=False, near_dups=False))
    assert leftover_temps(ix) == []


@pytest.mark.slow
def test_sigkilled_index_build_resumes_without_redoing_finished_shards(tmp_path):
    corpus, root = tmp_path / "corpus", tmp_path / "index"
    good_corpus(corpus, n=8)
    args = ["index", "build", corpus, "--encoder", "mel", "--root", root, "--shard-size", "2", "--no-progress"]
    shards = root / "killed" / "shards"

    proc = popen_cli(*args, "--name", "killed", throttle=("audioaudit.index.shards", "write_shard", 1.5))
    wait_for(lambda: len(list(shards.glob("*.parquet"))) >= 1, proc, what="the first finished shard")
    kill_group(proc, signal.SIGKILL)
    proc.wait()
    finished = sorted(shards.glob("*.parquet"))
    assert 1 <= len(finished) < 4, "the kill must land mid-build (4 shards planned)"
    assert not (root / "killed" / "manifest.json").exists()  # the build did not commit
    before = _mtimes(finished)

    r = cli(*args, "--name", "killed")
    assert r.returncode == 0, r.stderr
    counts = this_run(r.stdout)
    assert counts["reused"] == 2 * len(finished) and counts["decoded"] == 8 - 2 * len(finished)
    assert counts["shards_reused"] == len(finished) and counts["shards_written"] == 4 - len(finished)
    assert _mtimes(finished) == before  # finished shards were not rewritten
    assert leftover_temps(root) == []

    r = cli(*args, "--name", "clean")
    assert r.returncode == 0, r.stderr
    a, b = items(root / "killed"), items(root / "clean")
    pd.testing.assert_frame_equal(a, b)  # same rows, same order, same fingerprints
    assert np.array_equal(index_vectors(root / "killed"), index_vectors(root / "clean"))
    assert (root / "killed" / "index.faiss").read_bytes() == (root / "clean" / "index.faiss").read_bytes()


def _finetune_args(corpus: Path, cfg: Path, out: Path) -> list:
    return ["finetune", corpus, "--from-scratch", cfg, "--out", out, "--epochs", "4", "--views", "2",
            "--batch-size", "4", "--seed", "3", "--quiet", "--no-calibrate"]


def _weights(path: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(path))


@pytest.mark.slow
def test_sigkilled_finetune_resumes_to_the_uninterrupted_result(tmp_path):
    corpus, cfg = tmp_path / "corpus", tmp_path / "arch.json"
    good_corpus(corpus, n=8, seconds=(1.0, 1.5))
    cfg.write_text(json.dumps(TINY_CONV))
    out = tmp_path / "killed"

    proc = popen_cli(*_finetune_args(corpus, cfg, out),
                     throttle=("audioaudit.encoders.checkpoint", "save_training", 3.0))
    last = out / "checkpoints" / "last.json"
    wait_for(last.exists, proc, what="the first epoch checkpoint")
    kill_group(proc, signal.SIGKILL)
    proc.wait()
    done = json.loads(last.read_text())["epoch"] + 1  # epochs finished before the kill (1 unless very slow)
    assert 1 <= done < 4
    assert not (out / "config.json").exists() and not (out / "model.safetensors").exists()
    cache = sorted((out / "cache").rglob("shard_*.npz"))
    assert cache
    kept = _mtimes(cache)

    r = cli(*_finetune_args(corpus, cfg, out))
    assert r.returncode == 0, r.stderr
    assert f"resumed after epoch {done}" in " ".join(r.stdout.split())
    epochs = [int(n) for n in re.findall(r"^epoch\s+(\d+)\s+train\s", r.stdout, re.M)]
    assert epochs == list(range(done + 1, 5))  # finished epochs were not trained again
    assert _mtimes(cache) == kept  # the views cache was not re-rendered
    assert leftover_temps(out) == []

    ref = tmp_path / "uninterrupted"
    r = cli(*_finetune_args(corpus, cfg, ref))
    assert r.returncode == 0, r.stderr
    wk, wr = _weights(out / "model.safetensors"), _weights(ref / "model.safetensors")
    assert wk.keys() == wr.keys()
    for k in wk:
        np.testing.assert_array_equal(wk[k], wr[k], err_msg=k)
    assert json.loads((out / "history.json").read_text()) == json.loads((ref / "history.json").read_text())
