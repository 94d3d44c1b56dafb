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
    batch = g.generate(10)
    assert batch.sample_rate == 16000 and len(batch.clips) == 3
    by = {c.meta["rel_path"]: c for c in batch.clips}
    assert by["a.wav"].seed == 10 and by["a.wav"].condition == "a dog barks"
    assert by["a.wav"].wave.shape == (4000,) and by["a.wav"].meta["sample_rate"] == 16000
    np.testing.assert_allclose(by["b.flac"].wave, _tone(16000, freq=500), atol=1e-4)  # stereo → mono
    c = by["sub/c.wav"]
    assert c.meta["original_sample_rate"] == 22050 and abs(c.wave.shape[0] - 4000) <= 1
    kinds = sorted((s["kind"], s["path"].rsplit("/", 1)[-1]) for s in batch.meta["skipped"])
    assert kinds == [("missing", "gone.wav"), ("unreadable", "broken.wav")]
    assert batch.meta["requested"] == 10 and batch.meta["available"] == 4


def test_n_conditions_and_explicit_rate(clips):
    g = FolderGenerator(clips)
    assert [c.meta["rel_path"] for c in g.generate(1).clips] == ["a.wav"]
    only = g.generate(5, conditions=["rain on a roof"])
    assert [c.condition for c in only.clips] == ["rain on a roof"] and only.meta["available"] == 1
    at22 = g.generate(1, sample_rate=22050)
    assert at22.sample_rate == 22050 and at22.clips[0].meta["original_sample_rate"] == 16000


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
