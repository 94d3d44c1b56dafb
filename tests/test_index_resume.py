"""A build killed with SIGKILL mid-way resumes: finished shards are kept untouched, only
the work that was in flight is redone, and the result equals an uninterrupted build."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers_index import TinyEncoder, make_corpus

from audioaudit import schema
from audioaudit.index import store
from audioaudit.index.build import build_index
from audioaudit.index.faiss import facade as fx
from audioaudit.index.options import BuildOptions
from audioaudit.index.shards import scan_shards

CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
from helpers_index import TinyEncoder
from audioaudit.index.build import build_index
from audioaudit.index.options import BuildOptions

class Slow(TinyEncoder):
    def embed(self, batch):
        time.sleep(0.15)
        return super().embed(batch)

build_index({corpus!r}, Slow(), {index!r}, opts=BuildOptions(shard_size=3, batch_size=4, workers=1, progress=False))
"""


@pytest.mark.slow
def test_sigkilled_build_resumes(tmp_path):
    corpus, index = tmp_path / "corpus", tmp_path / "index"
    make_corpus(corpus, per_class=5)
    code = CHILD.format(tests=str(Path(__file__).parent), corpus=str(corpus), index=str(index))
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    shard_dir = index / schema.SHARDS_DIR
    deadline = time.time() + 120
    while time.time() < deadline and len(list(shard_dir.glob("*.parquet"))) < 2 and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the builder and its decoding worker
    proc.wait()
    metas = scan_shards(shard_dir)
    assert 2 <= len(metas) < 5, "the kill should land mid-build"
    done = sum(len(m["members"]) + len(m["skipped"]) for m in metas.values())
    kept = {p.name: p.stat().st_mtime_ns for p in shard_dir.glob("*.parquet")}
    assert not (index / schema.MANIFEST_FILE).exists()

    enc = TinyEncoder()
    res = build_index(corpus, enc, index, opts=BuildOptions(shard_size=3, batch_size=4, workers=0, progress=False))
    assert res.reused == done and res.embedded == 15 - done  # only unfinished work is redone
    assert all((shard_dir / n).stat().st_mtime_ns == t for n, t in kept.items())
    assert not list(shard_dir.glob(".*tmp*"))  # a half-written shard never survives

    clean = build_index(corpus, TinyEncoder(), tmp_path / "clean", opts=BuildOptions(shard_size=3, workers=0, progress=False))
    a, b = store.open_index(index), store.open_index(tmp_path / "clean")
    assert a.items[["item_id", "segment", "start", "end"]].equals(b.items[["item_id", "segment", "start", "end"]])
    rows = np.arange(a.index.ntotal)
    assert np.allclose(fx.reconstruct(a.index, rows), fx.reconstruct(b.index, rows), atol=1e-5)  # batching differs
    assert res.clips == clean.clips == 15
