"""EDMSound generation, the `generate` / `generator train` CLI, and the memorizer control."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from helpers_edmsound import eight_clips, micro_config, one_thread, write_config_file, write_corpus
from typer.testing import CliRunner

from audioaudit.cli import app
from generators.base import Generator, GeneratorError
from generators.edmsound.trainer import Trainer, waves_to_specs
from generators.registry import load_generator

pytestmark = pytest.mark.usefixtures("one_thread")
assert one_thread
runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("ckpt")
    cfg = micro_config()
    waves, labels = eight_clips()
    Trainer(cfg, waves_to_specs(waves, cfg), torch.tensor(labels), d).run(3, progress=False)
    torch.set_num_threads(before)
    return d


def test_generator_seeds_are_per_sample(checkpoint):
    gen = load_generator(f"edmsound:{checkpoint}")
    assert isinstance(gen, Generator) and gen.sample_rate == 22050
    batch = gen.generate(3, seed=5, sampler="deis", steps=4, cfg=2.0)
    alone = gen.generate(1, conditions=[batch.clips[1].condition], seed=6, sampler="deis", steps=4, cfg=2.0)
    assert [c.seed for c in batch.clips] == [5, 6, 7]
    assert [c.condition for c in batch.clips] == ["ring", "bark", "ring"]  # classes[(seed) % K]
    assert np.allclose(batch.clips[1].wave, alone.clips[0].wave, atol=1e-5)
    assert not np.allclose(batch.clips[0].wave, batch.clips[1].wave)
    m = batch.clips[0].meta
    assert (m["sampler"], m["steps"], m["nfe"], m["cfg"]) == ("deis", 4, 4, 2.0)
    assert m["checkpoint"] == str(checkpoint.resolve()) and m["step"] == 3
    heun = gen.generate(1, conditions=["bark"], seed=0, sampler="heun", steps=3, churn=1.0)
    assert heun.clips[0].meta["nfe"] == 5 and heun.clips[0].wave.shape == (int(0.25 * 22050),)


def test_generator_errors(checkpoint, tmp_path):
    gen = load_generator(f"edmsound:{checkpoint}")
    with pytest.raises(GeneratorError, match="unknown class 'meow'.*bark, ring"):
        gen.generate(1, conditions=["meow"])
    with pytest.raises(GeneratorError, match="unknown sampler"):
        gen.generate(1, sampler="rk45")
    with pytest.raises(GeneratorError, match="no EDMSound checkpoint"):
        load_generator(f"edmsound:{tmp_path}")


def test_generate_cli_writes_wavs_and_metadata_and_one_seed_reproduces_one_clip(checkpoint, tmp_path):
    out = tmp_path / "gen"
    args = ["generate", "--generator", f"edmsound:{checkpoint}", "--n", "3", "--seed", "10", "--steps", "3",
            "--out", str(out), "--no-progress"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    meta = pd.read_csv(out / "metadata.csv")
    assert list(meta["seed"]) == [10, 11, 12] and set(meta["sampler"]) == {"deis"}
    assert {"path", "class", "nfe", "checkpoint", "sample_rate", "cfg"} <= set(meta.columns)
    assert pd.read_parquet(out / "metadata.parquet")["path"].tolist() == meta["path"].tolist()
    wavs = [sf.read(str(out / p))[0] for p in meta["path"]]
    assert all(len(w) == int(0.25 * 22050) for w in wavs)

    again = runner.invoke(app, args)  # same run again: everything kept (resume)
    assert again.exit_code == 0 and "0 clips written, 3 kept" in again.output

    one = tmp_path / "one"
    r = runner.invoke(app, ["generate", "--generator", f"edmsound:{checkpoint}", "--n", "1", "--seed", "11",
                            "--class", meta["class"][1], "--steps", "3", "--out", str(one), "--no-progress"])
    assert r.exit_code == 0, r.output
    w1 = sf.read(str(one / pd.read_csv(one / "metadata.csv")["path"][0]))[0]
    assert np.allclose(w1, wavs[1], atol=2 / 32768)

    clash = runner.invoke(app, [a if a != "3" else "4" for a in args])  # --steps 4 into the same --out
    assert clash.exit_code != 0 and "different generate run" in str(clash.exception)


def test_train_cli_lists_silent_clips_and_resumes(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    cfg_file = write_config_file(tmp_path / "micro.json", micro_config())
    out = tmp_path / "model"
    r = runner.invoke(app, ["generator", "train", str(corpus), "--config", str(cfg_file), "--out", str(out),
                            "--steps", "2", "--sigma-data", "auto", "--no-progress"])
    assert r.exit_code == 0, r.output
    sd = json.loads((out / "config.json").read_text())["edm"]["sigma_data"]
    assert 0 < sd < 0.2 and f"std of the training spectrograms {sd:.4g}" in r.output
    skipped = pd.read_csv(out / "skipped.csv")
    assert list(skipped["kind"]) == ["silent"] and skipped["path"][0].endswith("silent.wav")
    assert len(pd.read_csv(out / "training_clips.csv")) == 6
    assert {"config.json", "ema.safetensors", "model.safetensors", "train_state.safetensors"} <= {
        p.name for p in out.iterdir()}
    r = runner.invoke(app, ["generator", "train", str(corpus), "--out", str(out), "--steps", "3", "--resume",
                            "--no-progress"])
    assert r.exit_code == 0 and "step 3" in r.output, r.output


def test_memorizer_reproduces_training_clips(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", seconds=0.5)
    gen = load_generator(f"memorizer:{corpus}", clip_seconds=0.5)
    assert isinstance(gen, Generator)
    assert [r for _, r in gen.data.skipped] == ["silent (peak below -60 dBFS)"]
    batch = gen.generate(3, seed=1, steps=8)
    for clip in batch.clips:
        src, _ = sf.read(clip.meta["source_path"], dtype="float32")
        err = np.abs(clip.wave - src[: len(clip.wave)]).max() / np.abs(src).max()
        assert err < 1e-3 and clip.meta["source_distance"] < 1e-4, (err, clip.meta)
    alone = gen.generate(1, seed=2, steps=8)
    assert np.array_equal(alone.clips[0].wave, batch.clips[1].wave)
    ring = gen.generate(2, conditions=["ring", "ring"], seed=0, sampler="dpmpp_2m", steps=6)
    assert all("/ring/" in c.meta["source_path"] for c in ring.clips)
    with pytest.raises(GeneratorError, match="no training clips of class 'meow'"):
        gen.generate(1, conditions=["meow"])


def test_an_interrupted_generate_run_resumes_past_a_lost_clip_and_a_torn_journal_line(tmp_path):
    from audioaudit.generation.run import JOURNAL, GenerateRun, generate_missing, resume_state, write_tables
    from generators.base import GeneratedBatch, GeneratedClip

    class Counting:
        def generate(self, n, *, conditions=None, seed=0, **opts):
            clips = [GeneratedClip(np.full(100, 0.01 * (seed + i), np.float32), seed + i, c)
                     for i, c in enumerate(conditions)]
            return GeneratedBatch(clips, 8000, "counting")

    run, out = GenerateRun("counting:", ["a", "b", "a", "b"], seed=5), tmp_path / "gen"
    assert resume_state(out, run, overwrite=False) == set()
    generate_missing(Counting(), run, [0, 1, 2], out, batch_size=2, progress=False)
    (out / "gen_00001_seed6.wav").unlink()  # a clip lost after its row was written
    with open(out / JOURNAL, "a") as f:
        f.write('{"path": "gen_00003_se')  # the writer was killed mid-line
    assert resume_state(out, run, overwrite=False) == {0, 2}
    generate_missing(Counting(), run, [1, 3], out, batch_size=2, progress=False)
    assert write_tables(out) == 4
    meta = pd.read_csv(out / "metadata.csv")
    assert list(meta["index"]) == [0, 1, 2, 3] and list(meta["seed"]) == [5, 6, 7, 8]
    assert list(meta["class"]) == ["a", "b", "a", "b"] and all((out / p).is_file() for p in meta["path"])
