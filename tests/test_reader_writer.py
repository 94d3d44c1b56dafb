"""Readers beside a writer: `audit` while `index add` (or `index background`) replaces the
index's files sees the old index whole or waits for the commit's renames, never a mix; a
writer killed at any point leaves the old index or the new one, whole; the next reader or
writer finishes an interrupted commit and the next `index add` completes.

The writer is the real CLI in its own process, slowed after chosen functions
(``store.replace_file``: one rename of the commit; ``shards.write_shard``) so a SIGKILL
lands where we want it; the readers are real `audit` processes run back to back."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers_reliability import (
    AuditLoop,
    cli,
    cli_env,
    good_corpus,
    inode,
    kill_group,
    leftover_temps,
    popen_cli,
    wait_for,
)

from audioaudit import schema
from audioaudit.index import background as B
from audioaudit.index import store

REPLACE = ("audioaudit.index.store", "replace_file")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An index of 6 clips (mel, flat), 3 clips to add, and generated copies of 2 indexed and
    of the 3 to-be-added clips."""
    from audioaudit.encoders import load_encoder
    from audioaudit.index.build import build_index
    from audioaudit.index.options import BuildOptions

    base = tmp_path_factory.mktemp("readers")
    corpus, extra, gen = base / "corpus", base / "extra", base / "gen"
    rels = good_corpus(corpus, n=6)
    added = good_corpus(extra, n=3, seed=7, classes=("c",))
    build_index(corpus, load_encoder("mel"), base / "built", spec="mel", opts=BuildOptions(progress=False, workers=0))
    gen.mkdir()
    for i, rel in enumerate(rels[:2]):
        shutil.copy(corpus / rel, gen / f"old_{i}.wav")
    for i, rel in enumerate(added):
        shutil.copy(extra / rel, gen / f"new_{i}.wav")
    old_ids = set(pd.read_parquet(base / "built" / schema.ITEMS_FILE)["item_id"])
    added_ids = [(extra / rel).resolve().as_posix() for rel in added]  # outside the corpus root: absolute ids
    return {"base": base, "extra": extra, "gen": gen, "old": old_ids, "added": added_ids, "rels": rels}


def fresh_index(world, tmp_path: Path) -> Path:
    ix = tmp_path / "index" / "train"
    shutil.copytree(world["base"] / "built", ix)
    return ix


def snapshot_seen(world, out: Path) -> str:
    """'old' or 'new': which index one audit run saw, checked to be that index whole — every
    matched training clip and every reference row is of it, each query ranks all its clips,
    and a copy of an added clip finds that clip (only the new index holds it)."""
    m = pd.read_parquet(out / schema.MATCHES_FILE)
    ref = pd.read_parquet(out / schema.REFERENCE_FILE)
    old, new = world["old"], world["old"] | set(world["added"])
    which = "new" if set(m["item_id"]) & set(world["added"]) else "old"
    ids = old if which == "old" else new
    assert set(m["item_id"]) <= ids, (out, which)
    assert set(ref["item_id"]) == ids, (out, which)  # the reference cache is of the same index
    assert (m.groupby("query_id").size() == len(ids)).all(), (out, which)  # top-10 lists every clip
    top1 = m[m["rank"] == 1].set_index("query_id")
    for i, rel in enumerate(world["rels"][:2]):
        assert top1.loc[f"old_{i}.wav", "item_id"] == rel and top1.loc[f"old_{i}.wav", "similarity"] > 0.999
    for i, item_id in enumerate(world["added"]):
        hit = top1.loc[f"new_{i}.wav"]
        assert (hit["item_id"] == item_id) == (which == "new"), (out, which, hit["item_id"])
        if which == "new":
            assert hit["similarity"] > 0.999
    return which


def add_args(world, ix: Path) -> list:
    return ["index", "add", ix.name, world["extra"], "--root", ix.parent, "--workers", "0", "--no-progress"]


def assert_settled(ix: Path, clips: int) -> None:
    """A finished folder: the new index opens whole, no journal, staging folder or temp file."""
    opened = store.open_index(ix)
    assert opened.manifest["counts"]["clips"] == opened.items["item_id"].nunique() == clips
    assert opened.index.ntotal == len(opened.items)
    assert not (ix / store.JOURNAL).exists() and not list(ix.glob(store.STAGING + "*"))
    assert leftover_temps(ix) == []


@pytest.mark.slow
def test_audits_during_an_add_killed_twice_each_see_one_whole_index(world, tmp_path):
    ix = fresh_index(world, tmp_path)
    loop = AuditLoop(world["gen"], ix, tmp_path / "runs").start()
    try:
        wait_for(lambda: loop.finished_after(0) >= 1, what="a first audit of the old index")
        # 1. killed while embedding (its shard is written, nothing is committed)
        shards = set((ix / "shards").glob("*.parquet"))
        first = popen_cli(*add_args(world, ix), throttle=("audioaudit.index.shards", "write_shard", 60.0))
        wait_for(lambda: set((ix / "shards").glob("*.parquet")) - shards, first, what="the add's shard")
        kill_group(first)
        first.wait(timeout=60)
        assert not (ix / store.JOURNAL).exists() and store.open_index(ix).items["item_id"].nunique() == 6
        # 2. killed in the middle of its commit: index.faiss is the new one, items.parquet still the old
        before = {n: inode(ix / n) for n in (schema.INDEX_FILE, schema.ITEMS_FILE, schema.MANIFEST_FILE)}
        second = popen_cli(*add_args(world, ix), throttle=(*REPLACE, 2.0))
        wait_for(lambda: inode(ix / schema.INDEX_FILE) != before[schema.INDEX_FILE], second,
                 what="the commit's rename of index.faiss")
        # the kill lands inside the commit (the writer sleeps 2 s after each rename): a mixed folder
        # on disk. Checked before the kill: after it, a waiting audit may finish the commit at once
        assert (ix / store.JOURNAL).exists()
        assert inode(ix / schema.ITEMS_FILE) == before[schema.ITEMS_FILE]
        assert inode(ix / schema.MANIFEST_FILE) == before[schema.MANIFEST_FILE]
        kill_group(second)
        second.wait(timeout=60)
        killed_at = time.monotonic()
        wait_for(lambda: loop.finished_after(killed_at) >= 2, what="two audits after the kill")
    finally:
        runs = loop.stop()
    seen = []
    for out, rc, err, started, _ in runs:
        assert rc == 0, f"{out}: {err}"
        assert "Traceback" not in err
        seen.append((started, snapshot_seen(world, out)))
    assert {s for _, s in seen} == {"old", "new"}  # both states were read, each whole
    assert all(s == "new" for t, s in seen if t > killed_at)  # a reader finished the killed commit
    third = cli(*add_args(world, ix))
    assert third.returncode == 0, third.stderr
    assert "up to date" in third.stdout  # the rolled-forward commit is the add's own result
    assert_settled(ix, 9)


@pytest.mark.slow
def test_a_reader_arriving_during_a_long_commit_waits_and_reads_the_new_index(world, tmp_path):
    ix = fresh_index(world, tmp_path)
    writer = popen_cli(*add_args(world, ix), throttle=(*REPLACE, 1.0))
    wait_for(lambda: (ix / store.JOURNAL).exists(), writer, what="the commit to start")
    reader = popen_cli("audit", world["gen"], "--index", ix, "--out", tmp_path / "run", "--workers", "0",
                       "--no-progress")
    opened = store.open_index(ix)  # here too, in this process: waits for the renames
    assert not (ix / store.JOURNAL).exists()  # it returned after the commit, not during it
    assert opened.items["item_id"].nunique() == 9 and opened.index.ntotal == len(opened.items)
    _, err = reader.communicate(timeout=300)
    assert reader.returncode == 0, err
    assert snapshot_seen(world, tmp_path / "run") == "new"
    _, err = writer.communicate(timeout=300)
    assert writer.returncode == 0, err
    assert_settled(ix, 9)


# ------------------------------------------------------------------ in one process: the commit itself
HOLD = """
import sys
from audioaudit.index import store
with store.reading(sys.argv[1]):
    print("holding", flush=True)
    sys.stdin.readline()
"""


def gate_taken(ix: Path) -> bool:
    import fcntl
    import os

    fd = os.open(ix / store.GATE_LOCK, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


class Killed(BaseException):
    """Stands for a SIGKILL between two renames (a BaseException: nothing may catch it)."""


def kill_after(monkeypatch, renames: int) -> None:
    real, done = store.replace_file, []

    def replace(src, dst):
        if len(done) == renames:
            raise Killed
        real(src, dst)
        done.append(dst)

    monkeypatch.setattr(store, "replace_file", replace)


def tiny_background(tag: int, n_clips: int, identity: dict) -> B.Background:
    rng = np.random.default_rng(tag)
    owner = np.repeat(np.arange(n_clips), 2)
    vectors = rng.standard_normal((len(owner), 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    clips = pd.DataFrame({"path": [f"bg{tag}_{i}.wav" for i in range(n_clips)],
                          "pcm_hash": [f"h{tag}_{i}" for i in range(n_clips)], "n_segments": 2,
                          "duration": 1.0, "label": None})
    meta = {"k": 2, "clips": n_clips, "windows": len(owner), "encoder": identity, "skipped": [],
            "in_training_set": [], "tag": tag}
    return B.Background(clips, vectors, owner, 2, meta)


def test_a_background_commit_killed_midway_is_finished_by_the_next_reader(world, tmp_path, monkeypatch):
    ix = fresh_index(world, tmp_path)
    ident = store.open_index(ix, load_faiss=False).encoder["identity"]
    B.save_background(ix, tiny_background(1, 4, ident), {"threshold": 0.1, "tag": 1})
    kill_after(monkeypatch, 1)  # background.json is the new one; clips and vectors still the old
    with pytest.raises(Killed):
        B.save_background(ix, tiny_background(2, 6, ident), {"threshold": 0.2, "tag": 2})
    monkeypatch.undo()
    assert (ix / store.JOURNAL).exists()
    assert json.loads((ix / "background" / B.META).read_text())["tag"] == 2
    assert len(pd.read_parquet(ix / "background" / B.CLIPS)) == 4  # the mixed folder a reader must not see
    bg = B.load_background(ix, ident)  # finishes the commit first
    assert bg.meta["tag"] == 2 and bg.n_clips == 6 and len(bg.vectors) == 12
    assert json.loads((ix / schema.CALIBRATION_FILE).read_text())["tag"] == 2  # committed with its set
    assert not (ix / store.JOURNAL).exists() and not list(ix.glob(store.STAGING + "*"))
    B.remove_background(ix)
    assert B.load_background(ix) is None


def test_a_waiting_commit_holds_back_new_readers_until_it_is_done(world, tmp_path):
    """A commit waits for the reader that holds the folder; a reader arriving meanwhile queues
    behind the commit (no writer starvation) and then reads the committed file."""
    ix = fresh_index(world, tmp_path)
    store.replace_json(ix, schema.CALIBRATION_FILE, {"threshold": 0.1})
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(ix)], env=cli_env(), text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    later = None
    try:
        assert holder.stdout.readline().strip() == "holding"
        writer = threading.Thread(target=store.replace_json, args=(ix, schema.CALIBRATION_FILE, {"threshold": 0.2}))
        writer.start()
        wait_for(lambda: gate_taken(ix), what="the writer at the gate")
        later = subprocess.Popen([sys.executable, "-c", HOLD, str(ix)], env=cli_env(), text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        writer.join(timeout=1.0)
        assert writer.is_alive()  # waits for the holder
        assert json.loads((ix / schema.CALIBRATION_FILE).read_text())["threshold"] == 0.1
        holder.stdin.write("\n")
        holder.stdin.flush()
        writer.join(timeout=60)
        assert not writer.is_alive()
        assert later.stdout.readline().strip() == "holding"  # let in after the commit
        assert json.loads((ix / schema.CALIBRATION_FILE).read_text())["threshold"] == 0.2
        later.stdin.write("\n")
        later.stdin.flush()
        assert later.wait(timeout=60) == 0
    finally:
        for p in (holder, later):
            if p is not None and p.poll() is None:
                p.kill()
    assert holder.wait(timeout=60) == 0


def test_ivfpq_add_killed_midway_rolls_forward_to_the_new_index(tmp_path, monkeypatch):
    """ivfpq: index.faiss, rerank.npy and large_index.json change together with items.parquet."""
    from helpers_index import TinyEncoder, make_corpus, synth_clip, write

    from audioaudit.index.build import add_to_index, build_index
    from audioaudit.index.faiss import facade as fx
    from audioaudit.index.options import BuildOptions

    opts = dict(shard_size=5, workers=0, progress=False, index_type="ivfpq")
    make_corpus(tmp_path / "corpus", per_class=8, seconds=(2.0, 4.0))
    d, extra = tmp_path / "pq", tmp_path / "extra"
    first = build_index(tmp_path / "corpus", TinyEncoder(), d, opts=BuildOptions(**opts))
    for i in range(4):
        write(extra / f"tone_x{i}.wav", synth_clip("tone", 500 + i, 3.0))
    old = {n: (d / n).read_bytes() for n in ("rerank.npy", schema.ITEMS_FILE)}
    kill_after(monkeypatch, 3)  # sorted renames: duplicates, encoder, index.faiss | items, large_index.json ...
    with pytest.raises(Killed):
        add_to_index(d, [str(extra)], encoder=TinyEncoder(), opts=BuildOptions(**opts))
    monkeypatch.undo()
    assert (d / store.JOURNAL).exists() and all((d / n).read_bytes() == b for n, b in old.items())
    ix = store.open_index(d)  # finishes the commit
    assert ix.items["item_id"].nunique() == 28 and ix.index.ntotal == len(ix.items) > first.segments
    assert ix.manifest["index_build"]["extended"]["from"] == first.segments
    rows = np.arange(len(ix.items))
    vecs = fx.reconstruct(ix.index, rows)  # rerank.npy of the new index
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    assert (fx.search(ix.index, vecs[::5], 1, ix.params)[1][:, 0] == rows[::5]).all()
    again = add_to_index(d, [str(extra)], encoder=TinyEncoder(), opts=BuildOptions(**opts))
    assert again.up_to_date
    assert not list(d.glob(store.STAGING + "*")) and leftover_temps(d) == []


def test_overwrite_with_another_encoder_keeps_the_old_index_readable_until_its_commit(tmp_path):
    """`index build --overwrite` with another encoder no longer wipes first: killed before its
    commit, the old index (and its background set) still opens; the killed run's shards are
    reused; the finished build drops the old background set and calibration."""
    from helpers_index import TinyEncoder, make_corpus

    from audioaudit.index.build import BuildHooks, build_index
    from audioaudit.index.options import BuildOptions

    make_corpus(tmp_path / "corpus", per_class=2, seconds=(1.0, 2.0))
    ix = tmp_path / "ix"
    opts = BuildOptions(progress=False, workers=0, shard_size=2, overwrite=True)
    build_index(tmp_path / "corpus", TinyEncoder(), ix, opts=opts)
    ident = TinyEncoder().identity()
    B.save_background(ix, tiny_background(1, 4, ident), {"threshold": 0.1})

    def stop(plan, stats):
        raise Killed

    other = TinyEncoder(seed=1)
    with pytest.raises(Killed):
        build_index(tmp_path / "corpus", other, ix, opts=opts, hooks=BuildHooks(on_shard=stop))
    still = store.open_index(ix)
    assert still.encoder["identity"] == ident and B.load_background(ix, ident) is not None
    res = build_index(tmp_path / "corpus", other, ix, opts=opts)
    assert res.shards_reused == 1  # the shard of the killed run, made with this encoder
    now = store.open_index(ix)
    assert now.encoder["identity"] == other.identity() and now.index.ntotal == len(now.items)
    assert B.load_background(ix) is None and not (ix / schema.CALIBRATION_FILE).exists()
    assert len(list((ix / "shards").glob("*.parquet"))) == res.shards_reused + res.shards_written
