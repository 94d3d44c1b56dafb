"""The procedural corpus: deterministic, every clip distinct, classes internally varied."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import soundfile as sf

from audioaudit.audio import sounds, speech, synth


def _pcm_sha(path) -> str:
    x, _ = sf.read(path, dtype="int16")
    return hashlib.sha256(x.tobytes()).hexdigest()


@pytest.mark.parametrize("cls", [c for c in sounds.CLASSES if c != "speech"])
def test_every_class_makes_finite_audible_audio_of_the_asked_length(cls):
    rng = np.random.default_rng(3)
    x = sounds.synthesize(cls, rng, 1.5, 16000)
    assert x.dtype == np.float32 and x.shape == (24000,)
    assert np.isfinite(x).all()
    peak = np.abs(x).max()
    assert 0.15 < peak <= 1.0  # normalised to -14..-1 dBFS
    # not a constant tone or silence: the level changes over the clip or spectrum is broad
    assert np.std(x) > 1e-3


def _logmel_descriptor(x: np.ndarray, sr: int) -> np.ndarray:
    import librosa

    m = np.log(librosa.feature.melspectrogram(y=x, sr=sr, n_mels=32) + 1e-6)
    d = np.concatenate([m.mean(1), m.std(1)])
    return d - d.mean()


@pytest.mark.parametrize("cls", ["impact", "bell", "bark", "engine", "typing"])
def test_two_clips_of_a_class_are_not_near_copies(cls):
    """Different seeds give different recordings: their spectra differ far more than the
    same clip delayed by 50 ms."""
    a = sounds.synthesize(cls, np.random.default_rng(1), 2.0)
    b = sounds.synthesize(cls, np.random.default_rng(2), 2.0)
    moved = np.roll(a, 800)
    da, db, dm = (_logmel_descriptor(v, 16000) for v in (a, b, moved))
    assert np.linalg.norm(da - db) > 2.5 * np.linalg.norm(da - dm)


def test_make_corpus_layout_determinism_and_no_twins(tmp_path):
    classes = ["impact", "rain", "chirps", "siren"]
    info = synth.make_corpus(tmp_path / "a", classes=classes, per_class=4, heldout_per_class=2,
                             seconds=(0.5, 1.0), seed=5, verbose=False)
    assert info.classes == classes
    assert len(info.train) == 16 and len(info.heldout) == 8
    for rel in info.train + info.heldout:
        split, cls, name = rel.split("/")
        assert split in ("train", "heldout") and cls in classes and name.endswith(".wav")
        x, sr = sf.read(tmp_path / "a" / rel)
        assert sr == 16000 and 0.5 * sr - 1 <= len(x) <= 1.0 * sr + 1
    shas = [_pcm_sha(tmp_path / "a" / r) for r in info.train + info.heldout]
    assert len(set(shas)) == len(shas)  # no audio-identical clips (train or held-out)
    meta = json.loads((tmp_path / "a" / "synth.json").read_text())
    assert meta["seed"] == 5 and meta["train"] == info.train
    # same seed -> identical bytes; another seed -> different audio
    again = synth.make_corpus(tmp_path / "b", classes=classes, per_class=4, heldout_per_class=2,
                              seconds=(0.5, 1.0), seed=5, verbose=False)
    assert [_pcm_sha(tmp_path / "b" / r) for r in again.train + again.heldout] == shas
    other = synth.make_corpus(tmp_path / "c", classes=classes, per_class=4, seconds=(0.5, 1.0),
                              seed=6, verbose=False)
    assert not set(_pcm_sha(tmp_path / "c" / r) for r in other.train) & set(shas)


def test_adding_clips_does_not_change_existing_ones(tmp_path):
    small = synth.make_corpus(tmp_path / "s", classes=["bell"], per_class=2, seconds=(0.5, 0.5), verbose=False)
    big = synth.make_corpus(tmp_path / "b", classes=["bell", "wind"], per_class=3, seconds=(0.5, 0.5), verbose=False)
    for rel in small.train:
        assert _pcm_sha(tmp_path / "s" / rel) == _pcm_sha(tmp_path / "b" / rel)
    assert len(big.train) == 6


def test_unknown_class_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown synth class"):
        synth.make_corpus(tmp_path, classes=["impact", "unicorn"], per_class=1)


def test_speech_is_skipped_with_a_note_without_espeak(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(speech, "espeak_program", lambda: None)
    info = synth.make_corpus(tmp_path, classes=["speech", "bell"], per_class=1, seconds=(0.5, 0.5))
    assert info.classes == ["bell"] and "speech" in info.skipped_classes
    assert "espeak-ng" in capsys.readouterr().out


@pytest.mark.skipif(speech.espeak_program() is None, reason="espeak-ng not installed on this machine")
def test_speech_clips_differ_and_are_voiced():
    a = sounds.synthesize("speech", np.random.default_rng(1), 2.0)
    b = sounds.synthesize("speech", np.random.default_rng(2), 2.0)
    assert a.shape == b.shape == (32000,)
    assert (np.abs(a) > 0.01).mean() > 0.1 and not np.allclose(a, b)


def test_background_split_is_distinct_and_listed(tmp_path):
    classes = ["impact", "bell"]
    info = synth.make_corpus(tmp_path / "a", classes=classes, per_class=2, heldout_per_class=1, background_per_class=2,
                             seconds=(0.5, 0.5), seed=2, verbose=False)
    assert len(info.background) == 4 and info.background_dir == str(tmp_path / "a" / "background")
    assert sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a" / "background").rglob("*.wav")) \
        == sorted(info.background)
    assert {r.split("/")[:2][1] for r in info.background} == set(classes)
    shas = [_pcm_sha(tmp_path / "a" / r) for r in info.train + info.heldout + info.background]
    assert len(set(shas)) == len(shas)  # background clips are not in train or held-out
    meta = json.loads((tmp_path / "a" / "synth.json").read_text())
    assert meta["background"] == info.background and meta["background_per_class"] == 2
    # adding a background split leaves the train and held-out clips as they were
    plain = synth.make_corpus(tmp_path / "b", classes=classes, per_class=2, heldout_per_class=1, seconds=(0.5, 0.5),
                              seed=2, verbose=False)
    assert [_pcm_sha(tmp_path / "b" / r) for r in plain.train + plain.heldout] == shas[:6]
    assert plain.background == [] and not (tmp_path / "b" / "background").exists()
    with pytest.raises(ValueError, match="background_per_class"):
        synth.make_corpus(tmp_path / "c", classes=classes, per_class=1, background_per_class=-1, verbose=False)


def test_synth_cli_background_per_class(tmp_path):
    from typer.testing import CliRunner

    from audioaudit.cli import app

    r = CliRunner().invoke(app, ["synth", str(tmp_path), "--per-class", "1", "--background-per-class", "2",
                                 "--class", "bell", "--class", "siren", "--min-seconds", "0.5", "--max-seconds", "0.5"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "background").rglob("*.wav"))) == 4
    assert len(json.loads((tmp_path / "synth.json").read_text())["background"]) == 4
