"""The streaming IVF-PQ index type (``--index-type ivfpq``) through the CLI and the library:
audit results equal the flat index's, ``index add`` extends the trained index, reruns are
up to date, interrupted builds resume, every other index path opens it unchanged."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers_index import SR, TinyEncoder, make_corpus, synth_clip, write
from typer.testing import CliRunner

from audioaudit import schema
from audioaudit.cli import app
from audioaudit.errors import UserError
from audioaudit.index import store
from audioaudit.index.build import BuildHooks, _wipe, add_to_index, build_index
from audioaudit.index.faiss import facade as fx
from audioaudit.index.faiss import ivfpq as faiss_ivfpq
from audioaudit.index.options import BuildOptions

LARGE_FILES = ("rerank.npy", "large_index.json")


def cli(*args: str) -> str:
    r = CliRunner().invoke(app, [*args])
    assert r.exit_code == 0, r.output
    return r.output


def build_args(corpus: Path, root: Path, name: str, *extra: str) -> list[str]:
    return ["index", "build", str(corpus), "--encoder", "mel", "--name", name, "--root", str(root),
            "--shard-size", "4", "--workers", "0", "--no-progress", *extra]


def audit(gen: Path, root: Path, name: str, out: Path, *extra: str) -> pd.DataFrame:
    cli("audit", str(gen), "--index", name, "--root", str(root), "--out", str(out), "--threshold", "0.999",
        "--threshold-on", "similarity", "--workers", "0", "--no-progress", *extra)
    return pd.read_parquet(out / schema.QUERIES_FILE).set_index("query_id").sort_index()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A corpus of ~30 s clips (mel: 10 s windows, 5 s hop: ~200 vectors), a flat and an
    ivfpq index of it, and generated clips: exact / quieter / noisy / excerpt copies + novel."""
    base = tmp_path_factory.mktemp("ivfpq")
    waves = make_corpus(base / "corpus", per_class=12, seconds=(25.0, 40.0))
    root = base / "ix"
    cli(*build_args(base / "corpus", root, "flat", "--index-type", "flat"))
    shutil.copytree(root / "flat", root / "pq")  # same shards: only the index is rebuilt
    out = cli(*build_args(base / "corpus", root, "pq", "--index-type", "ivfpq", "--nlist", "4"))
    assert "0 files decoded" in out and "IVF4,PQ32x4fs" in out
    gen = base / "gen"
    rng = np.random.default_rng(7)
    write(gen / "exact.wav", waves["tone/tone_3.wav"])
    write(gen / "quiet.wav", waves["chirp/chirp_5.wav"] * 0.5)
    noisy = waves["tone/tone_7.wav"]
    write(gen / "noisy.wav", noisy + 0.002 * rng.standard_normal(len(noisy)).astype(np.float32))
    write(gen / "excerpt.wav", waves["chirp/chirp_1.wav"][5 * SR : 15 * SR])
    for i, cls in enumerate(["tone", "chirp", "noise"]):
        write(gen / f"novel_{i}.wav", synth_clip(cls, 9000 + i, 25.0))
    return base, root, gen


COPIES = {"exact.wav": "tone/tone_3.wav", "quiet.wav": "chirp/chirp_5.wav", "noisy.wav": "tone/tone_7.wav",
          "excerpt.wav": "chirp/chirp_1.wav"}


def test_ivfpq_audit_equals_the_flat_audit(setup):
    base, root, gen = setup
    man = json.loads((root / "pq" / schema.MANIFEST_FILE).read_text())
    assert man["index"]["type"] == "ivfpq" and man["index"]["nlist"] == 4
    assert set(man["files"]) == {schema.INDEX_FILE, schema.ITEMS_FILE, *LARGE_FILES}
    b = man["index_build"]
    assert b["factory"] == "IVF4,PQ32x4fsr" and b["n_vectors"] == man["counts"]["segments"] >= 100
    assert b["estimate"]["bytes_per_vector"] == 16 + 8 and b["peak_rss"] > 0
    info = cli("index", "info", "pq", "--root", str(root))
    assert "IVF4,PQ32x4fs + exact re-rank" in info and f"ntotal {man['counts']['segments']}" in info
    assert f"IVF4,PQ32x4fsr trained on {b['plan']['train_size']} of {b['n_vectors']} vectors" in info
    for extra in ([], ["--same-class"]):
        tag = "-".join(["run", *extra])
        flat = audit(gen, root, "flat", base / f"flat{tag}", *extra)
        pq = audit(gen, root, "pq", base / f"pq{tag}", *extra)
        assert pq["top1_item_id"].tolist() == flat["top1_item_id"].tolist()
        assert pq["flag"].tolist() == flat["flag"].tolist()
        assert np.allclose(pq["top1_similarity"], flat["top1_similarity"], atol=1e-5)
        assert all(pq.loc[q, "top1_item_id"] == item for q, item in COPIES.items())
        # the log-mel yardstick is not noise-robust (its 80 dB floor moves): the noisy copy ranks
        # first but under the threshold, on both indexes alike
        assert sorted(pq.index[pq["flag"]]) == ["exact.wav", "excerpt.wav", "quiet.wav"]
    m_flat = pd.read_parquet(base / "flatrun" / schema.MATCHES_FILE)
    m_pq = pd.read_parquet(base / "pqrun" / schema.MATCHES_FILE)
    assert m_pq[["query_id", "rank", "item_id"]].equals(m_flat[["query_id", "rank", "item_id"]])
    assert np.allclose(m_pq["similarity"], m_flat["similarity"], atol=1e-5)
    # the train-vs-train reference and the duplicate search went through the ivfpq index too
    ref = [pd.read_parquet(root / n / schema.REFERENCE_FILE).sort_values("item_id") for n in ("flat", "pq")]
    assert ref[0]["nn_item_id"].tolist() == ref[1]["nn_item_id"].tolist()
    assert np.allclose(ref[0]["similarity"], ref[1]["similarity"], atol=1e-5)


def test_rerun_is_up_to_date_and_add_extends_the_trained_index(setup, tmp_path):
    base, root0, gen = setup
    corpus, root = tmp_path / "corpus", tmp_path / "ix"
    shutil.copytree(base / "corpus", corpus)
    cli(*build_args(corpus, root, "pq", "--index-type", "ivfpq", "--nlist", "4"))
    assert "up to date" in cli(*build_args(corpus, root, "pq", "--index-type", "ivfpq", "--nlist", "4"))
    for i, cls in enumerate(["tone", "noise"]):
        write(corpus / "new" / f"{cls}_new.wav", synth_clip(cls, 7000 + i, 26.0))
    out = cli("index", "add", "pq", str(corpus / "new"), "--root", str(root), "--workers", "0", "--no-progress")
    assert "2 files decoded" in out
    man = json.loads((root / "pq" / schema.MANIFEST_FILE).read_text())
    ext = man["index_build"]["extended"]  # the trained quantizer was reused, only new rows added
    assert ext["to"] == man["counts"]["segments"] > ext["from"] == ext["trained_for"]
    assert "up to date" in cli("index", "add", "pq", str(corpus / "new"), "--root", str(root), "--workers", "0")
    # a fresh ivfpq build of the union: same items, same vectors, same audit
    cli(*build_args(corpus, root, "union", "--index-type", "ivfpq", "--nlist", "4"))
    a, b = store.open_index(root / "pq"), store.open_index(root / "union")
    assert "extended" not in b.manifest["index_build"]
    key = ["item_id", "segment"]
    ia, ib = a.items.sort_values(key), b.items.sort_values(key)
    cols = ["item_id", "segment", "start", "end", "sha256"]  # not label: `index add DIR` labels by DIR's sub-folders
    assert ia[cols].reset_index(drop=True).equals(ib[cols].reset_index(drop=True))
    assert np.allclose(fx.reconstruct(a.index, ia["row"].to_numpy()), fx.reconstruct(b.index, ib["row"].to_numpy()),
                       atol=1e-6)
    qa, qb = audit(gen, root, "pq", tmp_path / "ra"), audit(gen, root, "union", tmp_path / "rb")
    assert qa["top1_item_id"].tolist() == qb["top1_item_id"].tolist() and qa["flag"].tolist() == qb["flag"].tolist()
    assert np.allclose(qa["top1_similarity"], qb["top1_similarity"], atol=1e-6)


# --------------------------------------------------------------------------- library level (tiny encoder)
OPTS = dict(shard_size=5, workers=0, progress=False)


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    make_corpus(root, per_class=8, seconds=(2.0, 4.0))  # 1 s windows, 0.5 s hop: ~120 vectors
    return root


def test_interrupted_ivfpq_build_resumes(tiny_corpus, tmp_path):
    d, written = tmp_path / "r", []

    def stop_after_two(plan, stats):
        written.append(plan.key)
        if len(written) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_index(tiny_corpus, TinyEncoder(), d, opts=BuildOptions(index_type="ivfpq", **OPTS),
                    hooks=BuildHooks(on_shard=stop_after_two))
    (d / faiss_ivfpq.BUILD_DIR).mkdir()  # as a build killed while indexing leaves it
    (d / faiss_ivfpq.BUILD_DIR / "rerank.npy").write_bytes(b"half")
    res = build_index(tiny_corpus, TinyEncoder(), d, opts=BuildOptions(index_type="ivfpq", **OPTS))
    assert res.shards_reused == 2 and res.reused == 10 and res.params.type == "ivfpq"
    assert not (d / faiss_ivfpq.BUILD_DIR).exists()
    clean = build_index(tiny_corpus, TinyEncoder(), tmp_path / "clean", opts=BuildOptions(index_type="ivfpq", **OPTS))
    a, b = store.open_index(d), store.open_index(tmp_path / "clean")
    pd.testing.assert_frame_equal(a.items.drop(columns=["mtime_ns"]), b.items.drop(columns=["mtime_ns"]))
    rows = np.arange(clean.segments)
    assert np.array_equal(fx.reconstruct(a.index, rows), fx.reconstruct(b.index, rows))
    q = fx.reconstruct(a.index, rows[::7])
    assert np.array_equal(fx.search(a.index, q, 5, a.params)[1], fx.search(b.index, q, 5, b.params)[1])


def test_add_past_twice_the_trained_size_retrains(tiny_corpus, tmp_path):
    d, extra = tmp_path / "g", tmp_path / "extra"
    first = build_index(tiny_corpus, TinyEncoder(), d, opts=BuildOptions(index_type="ivfpq", **OPTS))
    for i in range(30):
        write(extra / f"tone_x{i}.wav", synth_clip("tone", 3000 + i, 3.5))
    res = add_to_index(d, [str(extra)], encoder=TinyEncoder(), opts=BuildOptions(index_type="ivfpq", **OPTS))
    assert res.segments > 2 * first.segments
    b = store.open_index(d).manifest["index_build"]
    assert "extended" not in b and b["plan"]["n"] == b["n_vectors"] == res.segments  # trained afresh
    (d / faiss_ivfpq.BUILD_DIR).mkdir()
    _wipe(d)  # what `index build --overwrite` does for another encoder
    assert not any((d / n).exists() for n in (schema.INDEX_FILE, *LARGE_FILES, faiss_ivfpq.BUILD_DIR))


def test_switching_types_and_damaged_files(tiny_corpus, tmp_path):
    d = tmp_path / "s"
    build_index(tiny_corpus, TinyEncoder(), d, opts=BuildOptions(index_type="ivfpq", **OPTS))
    ix = store.open_index(d)
    flat_q = fx.reconstruct(ix.index, np.arange(0, ix.index.ntotal, 4))
    sims, ids = fx.search(ix.index, flat_q, 1, ix.params)
    assert (ids[:, 0] == np.arange(0, ix.index.ntotal, 4)).all() and np.allclose(sims, 1.0, atol=1e-5)
    allowed = np.arange(1, ix.index.ntotal, 3)  # a row restriction (same-class search) holds inside the lists
    s_r, i_r = fx.search(ix.index, flat_q, 3, ix.params, allowed)
    exact = flat_q @ fx.reconstruct(ix.index, allowed).T
    assert np.array_equal(i_r[:, 0], allowed[exact.argmax(1)]) and np.allclose(s_r[:, 0], exact.max(1), atol=1e-5)
    stamps = {n: (d / n).stat().st_mtime_ns for n in (schema.INDEX_FILE, *LARGE_FILES)}
    res = build_index(tiny_corpus, TinyEncoder(), d, opts=BuildOptions(index_type="ivfpq", near_threshold=0.99, **OPTS))
    assert not res.up_to_date and res.embedded == 0  # another request, same rows: the index files are kept
    assert stamps == {n: (d / n).stat().st_mtime_ns for n in stamps}
    assert store.open_index(d).index.ntotal == res.segments
    (d / "rerank.npy").write_bytes((d / "rerank.npy").read_bytes()[:-256])  # truncated: a different size
    res = build_index(tiny_corpus, TinyEncoder(), d, opts=BuildOptions(index_type="ivfpq", **OPTS))
    assert not res.up_to_date and res.embedded == 0  # rebuilt from the shards
    (d / "rerank.npy").unlink()
    with pytest.raises(UserError, match="rerank.npy"):
        store.open_index(d)
    res = build_index(tiny_corpus, TinyEncoder(), d, opts=BuildOptions(index_type="flat", **OPTS))
    assert res.params.type == "flat" and not any((d / n).exists() for n in LARGE_FILES)
    assert set(store.open_index(d).manifest["files"]) == {schema.INDEX_FILE, schema.ITEMS_FILE}


def test_ivfpq_choice_and_clamping():
    assert fx.choose_params(3_000_000, 512).type == "ivfpq"  # 6 GB of raw vectors
    assert fx.choose_params(2_000_000, 512).type == "ivf"  # 3.8 GiB: IVF-Flat still fits
    assert fx.choose_params(3_000_000, 128).type == "ivf"
    p = fx.choose_params(3_000_000, 512)
    assert (p.nlist, p.pq_m, p.pq_bits, p.nprobe) == (8192, 128, 4, 128)
    small = fx.choose_params(200, 64, "ivfpq", nlist=64, nprobe=100)
    assert small.nlist == 200 // 39 and small.nprobe == small.nlist and 64 % small.pq_m == 0
    assert fx.with_overrides(small, nprobe=2).nprobe == 2
    assert fx.IndexParams.from_dict(small.as_dict()) == small
    with pytest.raises(UserError, match="at least 78 vectors"):
        fx.choose_params(50, 64, "ivfpq")
