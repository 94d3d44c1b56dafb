"""index build / add / info: shards, resume, incremental work, identity, locks, corruption."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers_index import TinyEncoder, make_corpus, synth_clip, write

from audioaudit import schema
from audioaudit.errors import UserError
from audioaudit.index import store
from audioaudit.index.build import BuildHooks, add_to_index, build_index
from audioaudit.index.faiss import facade as fx
from audioaudit.index.options import BuildOptions

OPTS = dict(shard_size=3, workers=0, progress=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    make_corpus(root, per_class=4)
    (root / "noise" / "broken.wav").write_bytes(b"RIFF not really")
    return root


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory):
    d = tmp_path_factory.mktemp("idx") / "t"
    enc = TinyEncoder()
    res = build_index(corpus, enc, d, spec=None, opts=BuildOptions(**OPTS))
    return d, res, enc


def test_build_writes_the_index_directory(built, corpus):
    d, res, _ = built
    for name in (schema.INDEX_FILE, schema.ITEMS_FILE, schema.ENCODER_FILE, schema.MANIFEST_FILE,
                 schema.REFERENCE_FILE, schema.DUPLICATES_FILE):
        assert (d / name).is_file(), name
    ix = store.open_index(d)
    assert list(ix.items.columns[: len(schema.ITEM_COLUMNS)]) == schema.ITEM_COLUMNS
    assert ix.index.ntotal == len(ix.items) == res.segments
    assert ix.items["row"].tolist() == list(range(len(ix.items)))
    assert res.clips == 12 and ix.items["item_id"].nunique() == 12
    # every clip of 1-3 s at 1 s windows / 0.5 s hop: ceil-ish count, last window aligned to the end;
    # windows of digital silence (the noise bursts' quiet stretches) are not indexed
    from audioaudit.audio.io import LoadOptions, load_audio
    from audioaudit.audio.windows import audible_bounds, window_bounds

    for item_id, g in ix.items.groupby("item_id"):
        dur = g["duration"].iloc[0]
        wave = load_audio(corpus / item_id, LoadOptions(sample_rate=16000)).wave
        bounds = window_bounds(len(wave), 16000, 1.0, 0.5)
        assert bounds[0][0] == 0 and abs(bounds[-1][1] / 16000 - dur) < 1e-6
        assert len(bounds) == (1 if dur <= 1.0 else int(np.floor((dur - 1.0) / 0.5)) + 1 + (((dur - 1.0) / 0.5) % 1 > 1e-9))
        assert list(zip(g["start"], g["end"])) == [(s / 16000, e / 16000) for s, e in audible_bounds(wave, bounds, -80.0)]
    assert set(ix.items["label"]) == {"tone", "chirp", "noise"}
    enc = json.loads((d / schema.ENCODER_FILE).read_text())
    assert enc["identity"] == TinyEncoder().identity() and "spec" in enc
    man = ix.manifest
    assert man["counts"]["clips"] == 12 and man["index"]["type"] == "flat"
    bad = [s for s in man["skipped"] if s["path"].endswith("broken.wav")]
    assert bad and bad[0]["kind"] == "unreadable" and "decode" in bad[0]["reason"]
    # the stored vector of a window is the encoder's embedding of that window
    first = ix.items.iloc[0]
    from audioaudit.audio.io import LoadOptions, load_audio

    clip = load_audio(corpus / first["path"], LoadOptions(sample_rate=16000))
    w = clip.wave[int(first["start"] * 16000) : int(round(first["end"] * 16000))]
    assert np.allclose(fx.reconstruct(ix.index, np.array([0]))[0], TinyEncoder().embed([w])[0], atol=1e-5)


def test_unchanged_rerun_does_no_work(built, corpus):
    d, _, _ = built
    before = {p.name: p.stat().st_mtime_ns for p in d.iterdir() if p.is_file()}
    enc = TinyEncoder()
    res = build_index(corpus, enc, d, opts=BuildOptions(**OPTS))
    assert res.up_to_date and res.embedded == 0 and enc.calls == 0
    after = {p.name: p.stat().st_mtime_ns for p in d.iterdir() if p.is_file()}
    assert before == after


def test_touched_file_is_not_reembedded(built, corpus, tmp_path):
    d0, _, _ = built
    d = tmp_path / "copy"
    shutil.copytree(d0, d)
    p = corpus / "tone" / "tone_1.wav"
    st = p.stat()
    try:
        import os

        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000_000))
        enc = TinyEncoder()
        res = build_index(corpus, enc, d, opts=BuildOptions(**OPTS))
        assert res.embedded == 0 and enc.calls == 0  # same sha256: matched, nothing decoded
    finally:
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_interrupted_build_resumes_without_redoing_finished_shards(corpus, tmp_path):
    d = tmp_path / "r"
    written: list[str] = []

    def stop_after_two(plan, stats):
        written.append(plan.key)
        if len(written) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_index(corpus, TinyEncoder(), d, opts=BuildOptions(**OPTS), hooks=BuildHooks(on_shard=stop_after_two))
    shard_dir = d / schema.SHARDS_DIR
    assert sorted(p.stem for p in shard_dir.glob("*.parquet")) == sorted(written)
    assert not (d / schema.MANIFEST_FILE).exists()
    with pytest.raises(UserError, match="manifest"):
        store.open_index(d)
    kept = {p.name: p.stat().st_mtime_ns for p in shard_dir.glob("*.parquet")}
    res = build_index(corpus, TinyEncoder(), d, opts=BuildOptions(**OPTS))
    assert res.reused == 6 and res.embedded == 13 - 6 and res.shards_reused == 2
    assert all((shard_dir / n).stat().st_mtime_ns == t for n, t in kept.items())  # not rewritten
    clean = build_index(corpus, TinyEncoder(), tmp_path / "clean", opts=BuildOptions(**OPTS))
    a, b = store.open_index(d), store.open_index(tmp_path / "clean")
    pd.testing.assert_frame_equal(a.items.drop(columns=["mtime_ns"]), b.items.drop(columns=["mtime_ns"]))
    rows = np.arange(a.index.ntotal)
    assert np.array_equal(fx.reconstruct(a.index, rows), fx.reconstruct(b.index, rows))
    assert clean.segments == res.segments


def test_add_embeds_only_new_files(built, corpus, tmp_path):
    d0, res0, _ = built
    d = tmp_path / "a"
    shutil.copytree(d0, d)
    extra = tmp_path / "extra"
    write(extra / "tone" / "new_tone.wav", synth_clip("tone", 777, 2.0))
    write(extra / "chirp" / "new_chirp.wav", synth_clip("chirp", 778, 1.2))
    enc = TinyEncoder()
    res = add_to_index(d, [str(extra), str(corpus / "tone" / "tone_0.wav")], encoder=enc,
                       opts=BuildOptions(**OPTS))
    assert res.embedded == 2 and res.clips == res0.clips + 2
    ix = store.open_index(d)
    new = ix.items[ix.items["item_id"].str.endswith("new_tone.wav")]
    assert len(new) and new["label"].iloc[0] == "tone" and Path(new["path"].iloc[0]).is_absolute()
    assert ix.index.ntotal == len(ix.items)
    again = add_to_index(d, [str(extra)], encoder=TinyEncoder(), opts=BuildOptions(**OPTS))
    assert again.up_to_date and again.embedded == 0


def test_different_encoder_identity_is_refused_naming_both(built, corpus):
    d, _, _ = built
    with pytest.raises(UserError) as e:
        build_index(corpus, TinyEncoder(seed=1), d, opts=BuildOptions(**OPTS))
    assert '"seed":0' in str(e.value) and '"seed":1' in str(e.value)
    with pytest.raises(UserError, match="identity differs"):
        add_to_index(d, [str(corpus)], encoder=TinyEncoder(seed=1), opts=BuildOptions(**OPTS))


def test_second_build_into_a_locked_folder_is_refused(corpus, tmp_path):
    d = tmp_path / "locked"
    with store.build_lock(d):
        with pytest.raises(UserError, match="another"):
            build_index(corpus, TinyEncoder(), d, opts=BuildOptions(**OPTS))


def test_corrupt_index_file_is_a_clear_error_and_a_rebuild_repairs_it(built, corpus, tmp_path):
    d0, _, _ = built
    d = tmp_path / "c"
    shutil.copytree(d0, d)
    (d / schema.INDEX_FILE).write_bytes(b"\x00garbage" * 10)
    with pytest.raises(UserError, match="corrupt"):
        store.open_index(d)
    enc = TinyEncoder()
    res = build_index(corpus, enc, d, opts=BuildOptions(**OPTS))
    assert not res.up_to_date and res.embedded == 0 and enc.calls == 0  # rebuilt from the shards
    assert store.open_index(d).index.ntotal == res.segments
    (d / schema.ITEMS_FILE).unlink()
    with pytest.raises(UserError, match="items.parquet"):
        store.open_index(d)


def test_missing_index_and_unknown_name_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="no such index"):
        store.open_index(tmp_path / "nothing")
    with pytest.raises(UserError, match="missing"):
        fx.load(tmp_path / "none.faiss")


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_ann_index_types_agree_with_exact_search(built, corpus, tmp_path, kind):
    d0, _, _ = built
    d = tmp_path / kind
    shutil.copytree(d0, d)  # same shards: only the FAISS index is rebuilt
    res = build_index(corpus, TinyEncoder(), d, opts=BuildOptions(**OPTS, index_type=kind, nlist=4, nprobe=4, ef_search=32))
    assert res.embedded == 0 and res.params.type == kind
    ix, flat = store.open_index(d), store.open_index(d0)
    assert ix.manifest["index"]["type"] == kind
    stored = ix.manifest["index"]
    assert (stored["nlist"], stored["nprobe"]) == (4, 4) if kind == "ivf" else stored["ef_search"] == 32
    q = fx.reconstruct(flat.index, np.arange(0, flat.index.ntotal, 5))
    _, i_ann = fx.search(ix.index, q, 1, ix.params)
    _, i_flat = fx.search(flat.index, q, 1, flat.params)
    assert np.array_equal(i_ann, i_flat)


def test_index_choice_by_size():
    assert fx.choose_params(50_000, 512).type == "flat"
    p = fx.choose_params(1_000_000, 512)
    assert p.type == "ivf" and p.nlist == 4096 and p.nprobe == 32
    assert fx.choose_params(100, 8, "ivf").nlist == 2  # >= 39 training points per cell
    assert fx.choose_params(10, 8, "hnsw", ef_search=50).ef_search == 50
    with pytest.raises(UserError):
        fx.choose_params(10, 8, "lsh")
