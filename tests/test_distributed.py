"""`index build --engine ray`: same shards, items and vectors as the single-machine build."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers_index import make_corpus, synth_clip, write

from audioaudit import schema
from audioaudit.encoders import load_encoder
from audioaudit.errors import MissingExtra
from audioaudit.index.build import build_index
from audioaudit.index.options import BuildOptions
from audioaudit.index.shards import read_shard, scan_shards

pytestmark = pytest.mark.slow
SPEC = "mel"
SHARD = 4


@pytest.fixture(scope="module")
def ray_cluster():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    make_corpus(root, per_class=3)
    write(root / "tone" / "long.wav", synth_clip("tone", 5, seconds=12.0))  # two 10 s windows
    (root / "noise" / "broken.wav").write_bytes(b"RIFF not really a wav")
    return root


def opts() -> BuildOptions:
    return BuildOptions(shard_size=SHARD, progress=False)


@pytest.fixture(scope="module")
def plain(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plain")
    build_index(corpus, load_encoder(SPEC), out, spec=SPEC, opts=opts())
    return out


def shard_contents(index_dir: Path) -> dict:
    out = {}
    for key, meta in scan_shards(index_dir / schema.SHARDS_DIR).items():
        rows, emb = read_shard(index_dir / schema.SHARDS_DIR / f"{key}.parquet")
        out[key] = (meta, rows, emb)
    return out


def test_ray_build_equals_the_plain_build(ray_cluster, corpus, plain, tmp_path):
    import pandas as pd

    from audioaudit.index.ray import RayPlan, build_with_ray

    res = build_with_ray(corpus, tmp_path, RayPlan(SPEC, actors=1), opts=opts())
    assert res.clips == 10 and res.segments == 11 and len(res.skipped) == 1
    a, b = shard_contents(plain), shard_contents(tmp_path)
    assert sorted(a) == sorted(b) and len(a) == 3  # same shard plan, same keys
    for key in a:
        (ma, ra, ea), (mb, rb, eb) = a[key], b[key]
        assert ma == mb  # members, skipped files with reasons, encoder salt
        pd.testing.assert_frame_equal(ra, rb)
        assert ea.shape == eb.shape and np.allclose(ea, eb, atol=1e-5)
    ia = pd.read_parquet(plain / schema.ITEMS_FILE)
    ib = pd.read_parquet(tmp_path / schema.ITEMS_FILE)
    pd.testing.assert_frame_equal(ia, ib)
    from audioaudit.index import store

    xa = store.open_index(plain).index.reconstruct_n(0, len(ia))
    xb = store.open_index(tmp_path).index.reconstruct_n(0, len(ib))
    assert np.allclose(xa, xb, atol=1e-5)
    skipped = store.open_index(tmp_path, load_faiss=False).manifest["skipped"]
    assert [s["item_id"] for s in skipped] == ["noise/broken.wav"]


class Stop(Exception):
    pass


def test_interrupted_ray_build_redoes_no_finished_shard(ray_cluster, corpus, tmp_path):
    from audioaudit.index.ray import RayPlan, build_with_ray

    def stop_after_two(plan, stats):
        if stats.shards_written == 2:
            raise Stop

    with pytest.raises(Stop):
        build_with_ray(corpus, tmp_path, RayPlan(SPEC), opts=opts(), on_shard=stop_after_two)
    shard_dir = tmp_path / schema.SHARDS_DIR
    finished = {p.stem: p.stat().st_mtime_ns for p in shard_dir.glob("*.parquet")}
    assert len(finished) == 2 and not (tmp_path / schema.ITEMS_FILE).exists()

    written: list[str] = []
    res = build_with_ray(corpus, tmp_path, RayPlan(SPEC), opts=opts(),
                         on_shard=lambda plan, stats: written.append(plan.key))
    assert len(written) == 1 and written[0] not in finished  # only the shard in flight is redone
    assert res.shards_written == 1 and res.shards_reused == 2
    assert {k: (shard_dir / f"{k}.parquet").stat().st_mtime_ns for k in finished} == finished
    assert res.clips == 10 and res.segments == 11


def test_without_ray_the_error_names_the_extra(monkeypatch, corpus, tmp_path):
    from typer.testing import CliRunner

    from audioaudit.cli import app
    from audioaudit.index.ray import RayPlan, build_with_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(MissingExtra, match=r"pip install 'audioaudit\[distributed\]'"):
        build_with_ray(corpus, tmp_path, RayPlan(SPEC))
    result = CliRunner().invoke(app, ["index", "build", str(corpus), "--encoder", SPEC, "--name", "x",
                                      "--root", str(tmp_path), "--engine", "ray"])
    assert isinstance(result.exception, MissingExtra)
    assert not (tmp_path / "x" / schema.SHARDS_DIR).exists()  # failed before any work


def test_unknown_engine_is_a_user_error(corpus, tmp_path):
    from typer.testing import CliRunner

    from audioaudit.cli import app
    from audioaudit.errors import UserError

    result = CliRunner().invoke(app, ["index", "build", str(corpus), "--encoder", SPEC, "--name", "x",
                                      "--root", str(tmp_path), "--engine", "spark"])
    assert isinstance(result.exception, UserError) and "--engine" in str(result.exception)
