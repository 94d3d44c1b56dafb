"""`audioaudit generate` with every generator spec, through the CLI: what it prints is what is on disk.

Each test counts the WAVs in --out, the rows of metadata.csv / metadata.parquet and the numbers
the command printed (helpers_edmsound.written_counts); a generator that falls short is an error
naming it and why, the clips it gave are kept, and a rerun resumes.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from helpers_edmsound import micro_config, one_thread, tone, write_corpus, written_counts
from typer.testing import CliRunner

from audioaudit.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")
assert one_thread
runner = CliRunner()


def generate(out, spec, *args):
    return runner.invoke(app, ["generate", "--generator", spec, "--out", str(out), "--no-progress", *args])


def make_folder(d, names, sr=16000):
    d.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        sf.write(str(d / name), tone(300 + 100 * i, 0.25, sr=sr), sr)
    return d


def train_micro(d, classes):
    from helpers_edmsound import eight_clips

    from generators.edmsound.trainer import Trainer, waves_to_specs

    cfg = micro_config(classes=classes)
    waves, labels = eight_clips()
    Trainer(cfg, waves_to_specs(waves, cfg), torch.tensor(labels) if classes else None, d).run(1, progress=False)
    return d


@pytest.fixture(scope="module")
def edm(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("edm")
    out = {"cond": train_micro(root / "cond", ("bark", "ring")), "uncond": train_micro(root / "uncond", ())}
    torch.set_num_threads(before)
    return out


# --------------------------------------------------------------------------- folder
def test_folder_without_metadata_copies_every_clip(tmp_path):
    src = make_folder(tmp_path / "g", [f"c{i}.wav" for i in range(5)])
    out = tmp_path / "out"
    r = generate(out, f"folder:{src}", "--n", "5")
    assert written_counts(out, r) == 5 and "5 clips written, 0 kept" in r.output
    meta = pd.read_csv(out / "metadata.csv")
    assert list(meta["rel_path"]) == [f"c{i}.wav" for i in range(5)] and list(meta["position"]) == [0, 1, 2, 3, 4]
    for row in meta.itertuples():
        np.testing.assert_allclose(sf.read(str(out / row.path))[0], sf.read(str(src / row.rel_path))[0],
                                   atol=2 / 32768)
    assert written_counts(out, generate(out, f"folder:{src}", "--n", "5")) == 5  # rerun: all kept


def test_folder_with_metadata_mixes_conditioned_and_unconditioned_clips(tmp_path):
    src = make_folder(tmp_path / "g", ["a.wav", "b.wav", "c.wav", "d.wav"])
    (src / "metadata.csv").write_text("path,prompt,seed\na.wav,a dog barks,7\nc.wav,rain,9\n")
    out = tmp_path / "out"
    r = generate(out, f"folder:{src}", "--n", "4", "--batch-size", "3")
    assert written_counts(out, r) == 4
    meta = pd.read_csv(out / "metadata.csv")
    assert meta["condition"].fillna("-").tolist() == ["a dog barks", "-", "rain", "-"]
    assert meta["seed"].fillna(-1).astype(int).tolist() == [7, -1, 9, -1]
    assert sorted(p.name for p in out.glob("*.wav")) == ["gen_00000_seed7.wav", "gen_00001.wav",
                                                         "gen_00002_seed9.wav", "gen_00003.wav"]


def test_folder_with_fewer_clips_than_n_is_a_stated_shortfall_and_a_rerun_resumes(tmp_path):
    src = make_folder(tmp_path / "g", [f"c{i}.wav" for i in range(5)])
    (src / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    out, spec = tmp_path / "out", f"folder:{src}"
    r = generate(out, spec, "--n", "8", "--batch-size", "3")
    assert r.exit_code != 0
    msg = str(r.exception)
    assert f"{spec} gave 2 of the 3 clips asked for (clips 3..5 of the 8 of this run)" in msg
    assert "has 5 usable audio file(s) (1 other file(s) skipped" in msg and "5 clip(s) written so far are kept" in msg
    assert len(list(out.glob("*.wav"))) == 5 and len(pd.read_csv(out / "metadata.csv")) == 5
    assert pd.read_csv(out / "skipped.csv")["path"].str.endswith("broken.wav").tolist() == [True]

    below = generate(out, spec, "--n", "3")  # would disown clips 3 and 4
    assert below.exit_code != 0 and "pass --n 5 or more" in str(below.exception)
    valid = generate(out, spec, "--n", "5")
    assert written_counts(out, valid) == 5 and "0 clips written, 5 kept" in valid.output
    assert "1 source file(s) skipped" in valid.stderr

    make_folder(src, [f"d{i}.wav" for i in range(3)])  # more clips arrive: the run grows
    more = generate(out, spec, "--n", "8")
    assert written_counts(out, more) == 8 and "3 clips written, 5 kept" in more.output
    assert json.loads((out / "run.json").read_text())["n"] == 8


def test_an_empty_folder_writes_nothing_and_says_so(tmp_path):
    src = tmp_path / "g"
    src.mkdir()
    r = generate(tmp_path / "out", f"folder:{src}", "--n", "2")
    assert r.exit_code != 0 and "has 0 usable audio file(s)" in str(r.exception)
    assert "Nothing was written" in str(r.exception)
    assert not list((tmp_path / "out").glob("*.wav")) and not (tmp_path / "out" / "metadata.csv").exists()


def test_overwrite_removes_the_earlier_runs_clips(tmp_path):
    src = make_folder(tmp_path / "g", [f"c{i}.wav" for i in range(4)])
    out = tmp_path / "out"
    assert written_counts(out, generate(out, f"folder:{src}", "--n", "4")) == 4
    r = generate(out, f"folder:{src}", "--n", "2", "--seed", "1", "--overwrite")
    assert written_counts(out, r) == 2
    assert pd.read_csv(out / "metadata.csv")["rel_path"].tolist() == ["c1.wav", "c2.wav"]


# --------------------------------------------------------------------------- memorizer, edmsound
def test_memorizer_unconditioned_and_by_class(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", seconds=0.5)
    out = tmp_path / "out"
    r = generate(out, f"memorizer:{corpus}", "--n", "2", "--steps", "3")
    assert written_counts(out, r) == 2
    assert "1 source file(s) skipped" in r.stderr and "silent" in (out / "skipped.csv").read_text()
    ring = tmp_path / "ring"
    r = generate(ring, f"memorizer:{corpus}", "--n", "2", "--class", "ring", "--steps", "3")
    assert written_counts(ring, r) == 2
    assert all("/ring/" in p for p in pd.read_csv(ring / "metadata.csv")["source_path"])


def test_edmsound_conditional_and_unconditional_models(edm, tmp_path):
    out = tmp_path / "cond"
    assert written_counts(out, generate(out, f"edmsound:{edm['cond']}", "--n", "3", "--steps", "2")) == 3
    assert pd.read_csv(out / "metadata.csv")["class"].tolist() == ["bark", "ring", "bark"]  # classes[seed % K]
    one = tmp_path / "ring"
    r = generate(one, f"edmsound:{edm['cond']}", "--class", "ring", "--n", "2", "--steps", "2", "--seed", "4")
    assert written_counts(one, r) == 2 and set(pd.read_csv(one / "metadata.csv")["class"]) == {"ring"}
    un = tmp_path / "uncond"
    assert written_counts(un, generate(un, f"edmsound:{edm['uncond']}", "--n", "2", "--steps", "2")) == 2
    assert pd.read_csv(un / "metadata.csv")["class"].isna().all()


# --------------------------------------------------------------------------- tango, audioldm2
@pytest.fixture(scope="module")
def text_models(tmp_path_factory):
    pytest.importorskip("diffusers")
    import helpers_adapters as H

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("text")
    tango = H.save_tango_diffusers(root / "tango", H.tiny_tango_parts(seed=0))
    H.tiny_audioldm2_pipeline(seed=0).save_pretrained(str(root / "audioldm2"))
    torch.set_num_threads(before)
    return {"tango": tango, "audioldm2": root / "audioldm2"}


@pytest.mark.parametrize("kind", ["tango", "audioldm2"])
def test_text_to_audio_models_write_what_they_print(text_models, tmp_path, kind):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a dog barks\nrain on a roof\n")
    out, spec = tmp_path / "out", f"{kind}:{text_models[kind]}"
    r = generate(out, spec, "--prompts-file", str(prompts), "--n", "3", "--steps", "2", "--batch-size", "2")
    assert written_counts(out, r) == 3
    meta = pd.read_csv(out / "metadata.csv")
    assert meta["prompt"].tolist() == ["a dog barks", "rain on a roof", "a dog barks"]
    assert list(meta["seed"]) == [0, 1, 2] and set(meta["sample_rate"]) == {16000}
    bad = generate(tmp_path / "bad", spec, "--class", "dog", "--n", "1", "--steps", "2")
    assert bad.exit_code != 0 and f"{spec} is conditioned on text prompts, not classes" in str(bad.exception)
    assert not (tmp_path / "bad").exists()
