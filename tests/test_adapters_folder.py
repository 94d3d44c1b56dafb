"""folder:DIR — clips made elsewhere, metadata carried along, bad files listed as skipped."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from generators.adapters.folder import FolderGenerator
from generators.base import Generator, GeneratorError
from generators.registry import load_generator


def _tone(sr: int, seconds: float = 0.25, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    w = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([w] * channels, axis=1) if channels > 1 else w


@pytest.fixture()
def clips(tmp_path):
    d = tmp_path / "gen"
    (d / "sub").mkdir(parents=True)
    sf.write(d / "a.wav", _tone(16000, freq=300), 16000)
    sf.write(d / "b.flac", _tone(16000, freq=500, channels=2), 16000)
    sf.write(d / "sub" / "c.wav", _tone(22050, freq=700), 22050)
    (d / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (d / "notes.txt").write_text("not audio")
    (d / "metadata.csv").write_text(
        "path,prompt,seed,model\n"
        "a.wav,a dog barks,10,v1\n"
        "b.flac,rain on a roof,11,v1\n"
        "gone.wav,missing clip,12,v1\n"
    )
    return d


def test_list_clips_carries_metadata_without_decoding(clips):
    listing = FolderGenerator(clips).list_clips()
    assert [c.rel_path for c in listing.clips] == ["a.wav", "b.flac", "broken.wav", "sub/c.wav"]
    a = listing.clips[0]
    assert a.condition == "a dog barks" and a.seed == 10 and a.meta["model"] == "v1"
    assert listing.clips[3].meta == {} and listing.clips[3].condition is None
    assert [(s.kind, s.path.endswith("gone.wav")) for s in listing.skipped] == [("missing", True)]
    assert listing.metadata.endswith("metadata.csv")


def test_generate_decodes_keeps_rates_and_reports_skips(clips):
    g = load_generator(f"folder:{clips}")
    assert isinstance(g, Generator) and g.sample_rate == 16000  # the most common rate among readable files
    batch = g.generate(10)  # 3 usable files: a short batch that says why
    assert batch.sample_rate == 16000 and len(batch.clips) == 3
    assert "has 3 usable audio file(s) (2 other file(s) skipped" in batch.meta["shortfall"]
    assert [c.meta["position"] for c in batch.clips] == [0, 1, 2]
    by = {c.meta["rel_path"]: c for c in batch.clips}
    assert by["a.wav"].seed == 10 and by["a.wav"].condition == "a dog barks"
    assert by["a.wav"].wave.shape == (4000,) and by["a.wav"].meta["sample_rate"] == 16000
    np.testing.assert_allclose(by["b.flac"].wave, _tone(16000, freq=500), atol=1e-4)  # stereo → mono
    c = by["sub/c.wav"]
    assert c.meta["original_sample_rate"] == 22050 and abs(c.wave.shape[0] - 4000) <= 1
    kinds = sorted((s["kind"], s["path"].rsplit("/", 1)[-1]) for s in batch.meta["skipped"])
    assert kinds == [("missing", "gone.wav"), ("unreadable", "broken.wav")]
    assert batch.meta["requested"] == 10 and batch.meta["available"] == 3


def test_seed_is_the_listing_position_and_conditions_are_refused(clips):
    g = FolderGenerator(clips)
    assert [c.meta["rel_path"] for c in g.generate(1).clips] == ["a.wav"]
    both = g.generate(2, conditions=[None, None], seed=1)  # unconditional requests: every clip qualifies
    assert [c.meta["rel_path"] for c in both.clips] == ["b.flac", "sub/c.wav"] and "shortfall" not in both.meta
    alone = g.generate(1, conditions=[None], seed=2)  # clip i of seed s is clip 0 of seed s + i
    np.testing.assert_array_equal(alone.clips[0].wave, both.clips[1].wave)
    assert g.generate(1, conditions=[""]).clips[0].meta["rel_path"] == "a.wav"
    with pytest.raises(GeneratorError, match="cannot be conditioned.*rain on a roof.*metadata CSV"):
        g.generate(1, conditions=["rain on a roof"])
    past = g.generate(2, seed=5)
    assert past.clips == [] and "files 5..6 of its listing" in past.meta["shortfall"]
    at22 = g.generate(1, sample_rate=22050)
    assert at22.sample_rate == 22050 and at22.clips[0].meta["original_sample_rate"] == 16000


def test_a_file_that_fails_to_decode_ends_the_batch_with_its_reason(clips, monkeypatch):
    import soundfile

    g = FolderGenerator(clips)
    g.usable()  # headers read fine
    real = soundfile.read

    def read(path, *a, **k):
        if str(path).endswith("b.flac"):
            raise RuntimeError("corrupt frame")
        return real(path, *a, **k)

    monkeypatch.setattr(soundfile, "read", read)
    batch = g.generate(3)
    assert [c.meta["rel_path"] for c in batch.clips] == ["a.wav"]  # a prefix: clip i is still sample i
    assert "b.flac cannot be decoded (RuntimeError: corrupt frame)" in batch.meta["shortfall"]


def test_explicit_metadata_and_bad_csvs(clips, tmp_path):
    other = tmp_path / "meta.csv"
    other.write_text("file,class\nsub/c.wav,dog\n")
    listing = FolderGenerator(clips, metadata=other).list_clips()
    assert {c.rel_path: c.condition for c in listing.clips}["sub/c.wav"] == "dog"
    bad = tmp_path / "bad.csv"
    bad.write_text("name,prompt\na.wav,x\n")
    with pytest.raises(GeneratorError, match=r"bad\.csv.*'path' column"):
        FolderGenerator(clips, metadata=bad).list_clips()
    bad.write_text("path,prompt\na.wav,x\na.wav,y\n")
    with pytest.raises(GeneratorError, match="listed twice"):
        FolderGenerator(clips, metadata=bad).list_clips()
    bad.write_text("")
    with pytest.raises(GeneratorError, match="empty"):
        FolderGenerator(clips, metadata=bad).list_clips()
    with pytest.raises(GeneratorError, match="not found"):
        FolderGenerator(clips, metadata=tmp_path / "nope.csv")
    with pytest.raises(GeneratorError, match="not found"):
        load_generator(f"folder:{tmp_path / 'nope'}")
    with pytest.raises(GeneratorError, match="unknown option"):
        FolderGenerator(clips).generate(1, steps=3)
    with pytest.raises(GeneratorError, match="unknown load option.*steps.*metadata, extensions"):
        load_generator(f"folder:{clips}", steps=3)
