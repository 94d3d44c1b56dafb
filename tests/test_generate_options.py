"""Options and conditions a generator would not use: an error naming the option and the generator
(before anything is written), or -- where they change nothing -- a warning, and left out of run.json.
Plus the run's own guard: a generator that gives more or fewer clips than asked is an error."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers_edmsound import eight_clips, micro_config, one_thread, tone, write_corpus, written_counts
from typer.testing import CliRunner

from audioaudit.cli import app
from audioaudit.generation.run import GenerateRun, run_generate
from generators.base import GeneratedBatch, GeneratedClip, GeneratorError, Uses
from generators.request import check_request

pytestmark = pytest.mark.usefixtures("one_thread")
assert one_thread
runner = CliRunner()


def generate(out, spec, *args):
    return runner.invoke(app, ["generate", "--generator", spec, "--out", str(out), "--no-progress", *args])


@pytest.fixture(scope="module")
def uncond(tmp_path_factory):
    from generators.edmsound.trainer import Trainer, waves_to_specs

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("uncond")
    cfg = micro_config(classes=())
    Trainer(cfg, waves_to_specs(eight_clips()[0], cfg), None, d).run(1, progress=False)
    torch.set_num_threads(before)
    return d


@pytest.fixture()
def folder(tmp_path):
    import soundfile as sf

    d = tmp_path / "g"
    d.mkdir()
    for i in range(3):
        sf.write(str(d / f"c{i}.wav"), tone(300 + 100 * i), 22050)
    return d


@pytest.mark.parametrize("args, named", [
    (["--steps", "4"], "--steps"),
    (["--sampler", "heun"], "--sampler"),
    (["--cfg", "2"], "--cfg"),
    (["--class", "dog"], "--class"),
    (["--prompt", "a dog barks"], "--prompt"),
])
def test_folder_refuses_sampler_options_and_conditions(folder, tmp_path, args, named):
    out, spec = tmp_path / "out", f"folder:{folder}"
    r = generate(out, spec, "--n", "2", *args)
    assert r.exit_code != 0
    msg = str(r.exception)
    assert spec in msg and named in msg and "copies clips made elsewhere" in msg
    assert not out.exists()  # refused before anything was written


def test_unconditional_edmsound_warns_about_cfg_and_refuses_a_class(uncond, tmp_path):
    out, spec = tmp_path / "out", f"edmsound:{uncond}"
    r = generate(out, spec, "--n", "2", "--steps", "2", "--cfg", "4")
    assert written_counts(out, r) == 2
    assert f"warning: {spec} does not use --cfg: the model is unconditional" in r.stderr
    assert json.loads((out / "run.json").read_text())["options"] == {"steps": 2}  # what was used
    assert "0 clips written, 2 kept" in generate(out, spec, "--n", "2", "--steps", "2").output  # same run
    bad = generate(tmp_path / "bad", spec, "--n", "1", "--class", "bark")
    assert bad.exit_code != 0 and f"{spec} cannot be conditioned on --class (got 'bark')" in str(bad.exception)


def test_conditional_edmsound_refuses_prompts_unknown_classes_and_samplers_up_front(tmp_path):
    from generators.edmsound.trainer import Trainer, waves_to_specs

    d = tmp_path / "cond"
    cfg = micro_config()
    waves, labels = eight_clips()
    Trainer(cfg, waves_to_specs(waves, cfg), torch.tensor(labels), d).run(1, progress=False)
    spec = f"edmsound:{d}"
    for args, expect in [(["--prompt", "bark"], "is conditioned on classes, not text prompts: pass --class"),
                         (["--class", "meow"], "does not know class(es) 'meow'; it knows: bark, ring"),
                         (["--sampler", "rk45"], "unknown sampler 'rk45'")]:
        r = generate(tmp_path / "out", spec, "--n", "2", *args)
        assert r.exit_code != 0 and spec in str(r.exception) and expect in str(r.exception), r.exception
        assert not (tmp_path / "out").exists()


def test_memorizer_warns_about_cfg(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", seconds=0.5)
    out, spec = tmp_path / "out", f"memorizer:{corpus}"
    r = generate(out, spec, "--n", "1", "--steps", "2", "--cfg", "3")
    assert written_counts(out, r) == 1
    assert f"{spec} does not use --cfg: its ideal denoiser takes no guidance; ignored" in r.stderr


def test_check_request_in_one_place():
    sampled = Uses(("sampler", "steps"), "class", ("a", "b"), {"cfg": "nothing to guide"}, "deis")
    checked = check_request("x:1", sampled, {"steps": 3, "cfg": 2.0, "sampler": None}, "class", ["a", None])
    assert checked.options == {"steps": 3} and checked.warnings == ["x:1 does not use --cfg: nothing to guide; ignored"]
    assert check_request("x:1", sampled, {"sampler": "heun", "churn": 1.0}, "class").options["churn"] == 1.0
    with pytest.raises(GeneratorError, match="x:1: sampler 'deis' does not take option.*'churn'"):
        check_request("x:1", sampled, {"churn": 1.0}, "class")  # the sampler's own check (samplers.check_options)
    copier = Uses(("sample_rate",), why="it copies")
    with pytest.raises(GeneratorError, match=r"x:1 does not use --steps: it copies \(the options it takes: sample_rate\)"):
        check_request("x:1", copier, {"steps": 3}, None)
    assert check_request("x:1", copier, {}, "prompt", [None, ""]).options == {}  # no condition given: fine
    text = Uses(("steps",), "prompt")
    with pytest.raises(GeneratorError, match="conditioned on text prompts, not classes: pass --prompt"):
        check_request("x:1", text, {}, "class", ["dog"])


class Fixed:
    """A generator that gives ``give(n)`` clips for a request of ``n``."""

    name, sample_rate = "fixed", 8000

    def __init__(self, give, reason=None):
        self.give, self.reason = give, reason

    def generate(self, n, *, conditions=None, seed=0, **opts):
        clips = [GeneratedClip(np.full(80, 0.1, np.float32), seed + i, None) for i in range(self.give(n))]
        return GeneratedBatch(clips, 8000, "fixed", {"shortfall": self.reason} if self.reason else {})


@pytest.mark.parametrize("give, reason, expect, kept", [
    (lambda n: n - 1, None, "fixed:x gave 1 of the 2 clips asked for (clips 0..1 of the 4 of this run): "
                            "it gave no reason", 1),
    (lambda n: n - 1, "out of paper", "out of paper", 1),
    (lambda n: n + 1, None, "gave 3 clips where 2 were asked for", 0),
])
def test_a_generator_that_gives_the_wrong_number_of_clips_is_an_error(tmp_path, give, reason, expect, kept):
    out = tmp_path / "out"
    with pytest.raises(GeneratorError) as e:
        run_generate(GenerateRun("fixed:x", [None] * 4), out, gen=Fixed(give, reason), batch_size=2, progress=False)
    assert expect in str(e.value)
    assert len(list(out.glob("*.wav"))) == kept
    res = run_generate(GenerateRun("fixed:x", [None] * 4), out, gen=Fixed(lambda n: n), batch_size=2, progress=False)
    assert (res.written, res.kept, res.listed) == (4 - kept, kept, 4)  # the rerun resumes
