"""Audio I/O (audioaudit/audio/): decoding, mono mix, resampling, windows, typed
errors, and the corpus scanner. Every file is made here, in a temp dir."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from audioaudit.audio import corpus as audio_corpus
from audioaudit.audio import fingerprint, io, windows
from audioaudit.errors import UserError

SR = 22050


def tone(seconds: float = 1.0, sr: int = SR, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def stereo(seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    x = tone(seconds, sr)
    return np.stack([x, -0.5 * x], axis=1)  # mono mix = 0.25 * x


FORMATS = {
    "wav": {},
    "flac": {},
    "ogg": {"format": "OGG", "subtype": "VORBIS"},
    "mp3": {"format": "MP3", "subtype": "MPEG_LAYER_III"},
}


def write(path: Path, data: np.ndarray, sr: int = SR, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sr, **kw)
    return path


def dominant_hz(wave: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / sr)[np.argmax(spec)])


# ------------------------------------------------------------------ decoding
@pytest.mark.parametrize("ext", sorted(FORMATS))
def test_decode_each_format_mixes_to_mono(tmp_path, ext):
    p = write(tmp_path / f"x.{ext}", stereo(), **FORMATS[ext])
    clip = io.load_audio(p)
    assert clip.original_channels == 2 and clip.original_rate == SR and clip.sample_rate == SR
    assert clip.wave.dtype == np.float32 and clip.wave.ndim == 1
    # MP3 adds encoder delay/padding; the others are exact in length
    if ext == "mp3":
        assert abs(clip.seconds - 1.0) < 0.1
    else:
        assert len(clip.wave) == SR
    # mono mix of (x, -x/2) is x/4: peak 0.125, and the tone survives the codec
    assert abs(float(np.max(np.abs(clip.wave))) - 0.125) < 0.03
    assert abs(dominant_hz(clip.wave, SR) - 440) < 5


def test_lossless_mono_mix_is_exact_mean(tmp_path):
    data = stereo()
    clip = io.load_audio(write(tmp_path / "s.flac", data, subtype="PCM_24"))
    np.testing.assert_allclose(clip.wave, data.mean(axis=1), atol=1e-6)


def test_resample_once_to_consumer_rate(tmp_path):
    p = write(tmp_path / "x.wav", tone(2.0, 44100), 44100, subtype="FLOAT")
    clip = io.load_audio(p, io.LoadOptions(sample_rate=16000))
    assert clip.sample_rate == 16000 and clip.original_rate == 44100
    assert len(clip.wave) == 32000
    assert abs(dominant_hz(clip.wave, 16000) - 440) < 2
    # no aliasing of a tone above the new Nyquist: a 10 kHz tone nearly vanishes at 16 kHz
    hi = io.resample(tone(1.0, 44100, freq=10000), 44100, 16000)
    assert float(np.sqrt(np.mean(hi[1000:-1000] ** 2))) < 0.01  # edges aside
    same = tone(0.1)
    assert io.resample(same, SR, SR) is same or np.array_equal(io.resample(same, SR, SR), same)


def test_eight_channel_96k(tmp_path):
    rng = np.random.default_rng(0)
    data = (0.1 * rng.standard_normal((96000 // 2, 8))).astype(np.float32)
    data[:, 3] += tone(0.5, 96000, freq=1000)  # one channel holds a tone
    p = write(tmp_path / "8ch.wav", data, 96000, subtype="PCM_24")
    clip = io.load_audio(p, io.LoadOptions(sample_rate=16000))
    assert clip.original_channels == 8 and clip.original_rate == 96000
    assert len(clip.wave) == 8000
    assert abs(dominant_hz(clip.wave, 16000) - 1000) < 5


# ------------------------------------------------------------------ typed errors
def expect(path, kind: type[io.AudioError], opts: io.LoadOptions = io.LoadOptions(), *words: str):
    with pytest.raises(kind) as info:
        io.load_audio(path, opts)
    err = info.value
    assert err.path == str(path) and str(path) in str(err)
    for w in words:
        assert w in err.reason
    skipped = io.try_load(path, opts)
    assert isinstance(skipped, io.Skipped) and skipped.kind == kind.kind and skipped.path == str(path)
    return err


def test_corrupt_file(tmp_path):
    p = tmp_path / "corrupt.wav"
    p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(64))
    expect(p, io.UnreadableAudio, io.LoadOptions(), "cannot decode")


def test_truncated_mp3(tmp_path):
    good = write(tmp_path / "good.mp3", stereo(), **FORMATS["mp3"])
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(good.read_bytes()[:200])
    assert isinstance(io.try_load(bad), io.Skipped)


def test_zero_byte_file(tmp_path):
    p = tmp_path / "zero.wav"
    p.write_bytes(b"")
    expect(p, io.EmptyAudio, io.LoadOptions(), "zero-byte")


def test_header_only_wav_has_no_samples(tmp_path):
    p = write(tmp_path / "empty.wav", np.zeros((0, 1), np.float32))
    expect(p, io.EmptyAudio, io.LoadOptions(), "zero length")


def test_text_renamed_wav(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("this is not audio\n" * 20)
    expect(p, io.UnreadableAudio, io.LoadOptions(), "cannot decode")


def test_missing_file_and_directory(tmp_path):
    expect(tmp_path / "nope.wav", io.UnreadableAudio, io.LoadOptions(), "not found")
    expect(tmp_path, io.UnreadableAudio, io.LoadOptions(), "directory")


def test_silent_and_quiet(tmp_path):
    expect(write(tmp_path / "sil.wav", np.zeros(SR, np.float32)), io.SilentAudio, io.LoadOptions(), "-inf")
    quiet = write(tmp_path / "quiet.wav", tone(amp=1e-5), subtype="FLOAT")
    expect(quiet, io.SilentAudio, io.LoadOptions(silence_dbfs=-80), "dBFS")
    # the level is configurable, and None disables the check
    assert isinstance(io.load_audio(quiet, io.LoadOptions(silence_dbfs=-120)), io.Clip)
    assert isinstance(io.load_audio(tmp_path / "sil.wav", io.LoadOptions(silence_dbfs=None)), io.Clip)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path, bad):
    x = tone()
    x[[10, 500]] = bad
    p = write(tmp_path / "nan.wav", x, subtype="FLOAT")
    expect(p, io.NonFiniteAudio, io.LoadOptions(sample_rate=16000), "2 NaN/inf")


def test_too_short_or_padded(tmp_path):
    p = write(tmp_path / "short.wav", tone(0.25))
    expect(p, io.TooShortAudio, io.LoadOptions(min_seconds=1.0), "shorter than the minimum 1 s")
    clip = io.load_audio(p, io.LoadOptions(min_seconds=1.0, pad_to_min=True))
    assert len(clip.wave) == SR and not np.any(clip.wave[int(0.25 * SR) + 1 :])


def test_too_long(tmp_path):
    p = write(tmp_path / "long.flac", tone(3.0))
    expect(p, io.TooLongAudio, io.LoadOptions(max_seconds=2.0), "longer than the cap of 2 s")
    assert io.load_audio(p, io.LoadOptions(max_seconds=None)).seconds == pytest.approx(3.0)


# ------------------------------------------------------------------ windows
def test_window_bounds_cover_the_clip():
    sr = 10
    assert windows.window_bounds(35, sr, 1.0, 0.5) == [(0, 10), (5, 15), (10, 20), (15, 25), (20, 30), (25, 35)]
    # the last window is aligned to the end so the tail is never lost
    assert windows.window_bounds(37, sr, 1.0, 1.0) == [(0, 10), (10, 20), (20, 30), (27, 37)]
    # a clip no longer than one window is one window: the whole clip
    assert windows.window_bounds(7, sr, 1.0, 0.5) == [(0, 7)]
    assert windows.window_bounds(10, sr, 1.0, 0.5) == [(0, 10)]


def test_windows_and_fit_length():
    wave = np.arange(25, dtype=np.float32)
    ws = windows.cut(wave, windows.WindowSpec(10, 1.0, 1.0))
    assert [(w.start, w.end) for w in ws] == [(0.0, 1.0), (1.0, 2.0), (1.5, 2.5)]
    np.testing.assert_array_equal(ws[-1].wave, wave[15:25])
    assert len(io.fit_length(wave, 30)) == 30 and io.fit_length(wave, 30)[25:].sum() == 0
    np.testing.assert_array_equal(io.fit_length(wave, 5), wave[:5])


def test_write_wav_is_atomic_and_readable(tmp_path):
    p = tmp_path / "sub" / "out.wav"
    io.write_wav(p, tone(0.5) * 3, SR)  # clipped into [-1, 1]
    assert sorted(os.listdir(p.parent)) == ["out.wav"]
    clip = io.load_audio(p)
    assert clip.seconds == pytest.approx(0.5) and float(np.max(np.abs(clip.wave))) <= 1.0
    assert fingerprint.file_sha256(p) == fingerprint.file_sha256(str(p)) and len(fingerprint.file_sha256(p)) == 64


# ------------------------------------------------------------------ corpus scan
@pytest.fixture()
def corpus(tmp_path) -> Path:
    root = tmp_path / "corpus"
    write(root / "dogs" / "a.wav", tone())
    write(root / "dogs" / "deep" / "b.flac", tone())
    write(root / "cats" / "c.ogg", tone(), **FORMATS["ogg"])
    write(root / "top.mp3", tone(), **FORMATS["mp3"])
    (root / "cats" / "readme.txt").write_text("not audio")
    (root / "cats" / "bad.wav").write_text("not audio either")
    return root


def test_scan_folder_labels(corpus):
    res = audio_corpus.scan_corpus(corpus)
    got = {i.rel_path: i.label for i in res.items}
    assert got == {"cats/bad.wav": "cats", "cats/c.ogg": "cats", "dogs/a.wav": "dogs",
                   "dogs/deep/b.flac": "dogs", "top.mp3": None}
    assert all(os.path.isabs(i.path) and os.path.exists(i.path) for i in res.items)
    assert res.skipped == []  # decoding is not the scanner's job
    unlabelled = audio_corpus.scan_corpus(corpus, labels="none", extensions=["wav", ".FLAC"])
    assert {i.rel_path: i.label for i in unlabelled.items} == {
        "cats/bad.wav": None, "dogs/a.wav": None, "dogs/deep/b.flac": None}


def test_scan_then_load_keeps_good_and_lists_bad(corpus):
    res = audio_corpus.scan_corpus(corpus)
    loaded = dict(io.load_many([i.path for i in res.items], io.LoadOptions(sample_rate=16000)))
    bad = {Path(p).name: r for p, r in loaded.items() if isinstance(r, io.Skipped)}
    assert list(bad) == ["bad.wav"] and bad["bad.wav"].kind == "unreadable"
    assert sum(isinstance(r, io.Clip) for r in loaded.values()) == 4


@pytest.mark.timeout(120)
def test_load_many_in_worker_processes_keeps_order(corpus):
    paths = [i.path for i in audio_corpus.scan_corpus(corpus).items]
    opts = io.LoadOptions(sample_rate=16000)
    serial = list(io.load_many(paths, opts))
    parallel = list(io.load_many(paths, opts, workers=2))
    assert [p for p, _ in parallel] == paths == [p for p, _ in serial]
    for (_, a), (_, b) in zip(serial, parallel):
        assert type(a) is type(b)
        if isinstance(a, io.Clip):
            np.testing.assert_array_equal(a.wave, b.wave)


def test_scan_csv_manifest(corpus, tmp_path):
    man = tmp_path / "m.csv"
    man.write_text(
        "path,label,split\n"
        "dogs/a.wav,barking,train\n"
        "top.mp3,,train\n"
        "cats/missing.wav,meow,test\n"
        "../outside.wav,x,train\n"
        f"{corpus / 'cats' / 'c.ogg'},abs,train\n"
    )
    write(tmp_path / "outside.wav", tone())
    res = audio_corpus.scan_corpus(corpus, manifest=man)
    # an empty label cell is no label; an absolute path inside the root is accepted
    assert [(i.rel_path, i.label) for i in res.items] == [
        ("dogs/a.wav", "barking"), ("top.mp3", None), ("cats/c.ogg", "abs")]
    assert res.items[0].meta["split"] == "train"
    assert sorted((s.kind, Path(s.path).name) for s in res.skipped) == [
        ("missing", "missing.wav"), ("outside_root", "outside.wav")]
    assert "escapes the corpus root" in [s for s in res.skipped if s.kind == "outside_root"][0].reason
    absolute_outside = tmp_path / "m2.csv"
    absolute_outside.write_text(f"path\n{tmp_path / 'outside.wav'}\n")
    assert [s.kind for s in audio_corpus.scan_corpus(corpus, manifest=absolute_outside).skipped] == ["outside_root"]


def test_scan_parquet_manifest_with_class_column(corpus, tmp_path):
    man = tmp_path / "m.parquet"
    pd.DataFrame({"path": ["dogs/deep/b.flac", "cats/c.ogg"], "class": ["d", None]}).to_parquet(man)
    res = audio_corpus.scan_corpus(corpus, manifest=man)
    assert [(i.rel_path, i.label) for i in res.items] == [("dogs/deep/b.flac", "d"), ("cats/c.ogg", None)]


def test_manifest_without_path_column(corpus, tmp_path):
    man = tmp_path / "m.csv"
    man.write_text("file,label\na.wav,x\n")
    with pytest.raises(audio_corpus.ManifestError, match="'path' column") as info:
        audio_corpus.scan_corpus(corpus, manifest=man)
    assert isinstance(info.value, UserError)  # the CLI prints it as one line


def test_manifest_symlink_escaping_root(corpus, tmp_path):
    write(tmp_path / "secret.wav", tone())
    os.symlink(tmp_path / "secret.wav", corpus / "link.wav")
    man = tmp_path / "m.csv"
    man.write_text("path\nlink.wav\n")
    res = audio_corpus.scan_corpus(corpus, manifest=man)
    assert res.items == [] and [s.kind for s in res.skipped] == ["outside_root"]


def test_symlink_loop_is_reported_not_followed(corpus):
    os.symlink(corpus, corpus / "dogs" / "loop")  # dogs/loop -> corpus root
    os.symlink(corpus / "nowhere.wav", corpus / "dangling.wav")
    res = audio_corpus.scan_corpus(corpus)
    rels = sorted(i.rel_path for i in res.items)
    assert rels == ["cats/bad.wav", "cats/c.ogg", "dogs/a.wav", "dogs/deep/b.flac", "top.mp3"]
    by_kind = {s.kind: s for s in res.skipped}
    assert set(by_kind) == {"symlink_loop", "unreadable"}
    assert by_kind["symlink_loop"].path.endswith("loop")
    assert "broken symlink" in by_kind["unreadable"].reason


def test_scan_single_file_and_missing_root(corpus):
    res = audio_corpus.scan_corpus(corpus / "dogs" / "a.wav")
    assert [i.rel_path for i in res.items] == ["a.wav"]
    with pytest.raises(FileNotFoundError):
        audio_corpus.scan_corpus(corpus / "absent")
