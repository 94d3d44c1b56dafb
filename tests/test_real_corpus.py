"""benchmarks/real_corpus.py: the pure parts (no network, no Debian cache)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import real_corpus as rc


def _settings(**kw) -> rc.Settings:
    return rc.Settings(out=Path("unused"), cache=Path("unused"), packages=[], **kw)


@pytest.mark.parametrize("package, inner, kind", [
    ("wesnoth-1.16-music", "usr/share/games/wesnoth/1.16/music/battle.ogg", "music"),
    ("warzone2100-data", "usr/share/games/warzone2100/base.wz!audio/tutorial/tut1.ogg", "speech"),
    ("warzone2100-data", "usr/share/games/warzone2100/base.wz!audio/sfx/weapons/gun.ogg", "effects"),
    ("openarena-data", "baseoa/pak0.pk3!sound/world/wind1.wav", "ambience"),
    ("openarena-data", "mp-pak0.pk3!sound/voices/festivoxmale/yes.wav", None),
    ("oxygen-sounds", "usr/share/sounds/Oxygen-Window-Close.ogg", "effects"),
    ("megaglest-data", "techs/megapack/factions/romans/units/archer/sounds/archer_select3.wav", "speech"),
    ("megaglest-data", "techs/megapack/factions/magic/units/daemon/sounds/daemon_ack2.wav", "effects"),
    ("megaglest-data", "tilesets/forest/sounds/night.ogg", "ambience"),
    ("some-new-package", "sounds/boing.wav", "effects"),
])
def test_kind_table(package, inner, kind):
    assert rc.kind_of(package, inner) == kind


def test_excerpts_short_file_kept_whole_and_too_short_dropped():
    s, sr, rng = _settings(), 1000, np.random.default_rng(0)
    assert rc.excerpt_spans(7_000, sr, rng, s) == [(0, 7_000)]
    assert rc.excerpt_spans(200, sr, rng, s) == []  # 0.2 s < 0.3 s


def test_excerpts_of_a_long_file_are_4_to_10_s_non_overlapping_and_capped():
    sr = 1000
    for n, cap in ((25_000, 12), (600_000, 12), (600_000, 3)):
        spans = rc.excerpt_spans(n, sr, np.random.default_rng(1), _settings(max_excerpts=cap))
        assert 1 <= len(spans) <= cap
        assert all(4_000 <= length <= 10_000 for _, length in spans)
        ends = [0] + [a + b for a, b in spans]
        assert all(start >= end for (start, _), end in zip(spans, ends))  # sorted, no overlap
        assert spans[-1][0] + spans[-1][1] <= n
    assert len(rc.excerpt_spans(600_000, sr, np.random.default_rng(1), _settings())) == 12


def test_cut_clips_drops_silent_excerpts():
    sr, s = 1000, _settings()
    wave = np.zeros(60_000, np.float32)
    wave[:30_000] = 0.5 * np.sin(np.arange(30_000) / 3.0)
    clips = rc.cut_clips(wave, sr, np.random.default_rng(0), s)
    spans = rc.excerpt_spans(len(wave), sr, np.random.default_rng(0), s)
    assert clips and len(clips) < len(spans)  # the excerpts in the silent half are gone
    assert all(start < 30.0 and np.abs(x).max() >= 10 ** (s.silence_dbfs / 20) for start, x in clips)


def test_split_table_and_kind_in_two_splits_check():
    assert set(rc.SPLITS.values()) == set(rc.SPLIT_NAMES)
    assert "hedgewars-data" not in rc.SPLITS and "hedgewars-data" in rc.FORBIDDEN
    assert rc.split_of("megaglest-data") == "train"
    with pytest.raises(ValueError, match="no split"):
        rc.split_of("not-a-package")
    rows = [("music", "train"), ("music", "heldout"), ("speech", "train"), ("speech", "train")]
    counts = rc.kind_split_counts(rows)
    assert counts["music"] == {"train": 1, "background": 0, "heldout": 1}
    problems = rc.check_splits(counts)
    assert len(problems) == 1 and "speech" in problems[0]
    assert rc.check_splits(rc.kind_split_counts(rows + [("speech", "background")])) == []


def test_dedupe_removes_one_exact_and_one_near_copy():
    sr = 22050
    rng = np.random.default_rng(0)
    t = np.arange(int(1.5 * sr)) / sr
    waves = [(0.3 * np.sin(2 * np.pi * f * t * (1 + 0.3 * t)) * np.exp(-t)).astype(np.float32) + 0.01 * rng.standard_normal(
        t.size).astype(np.float32) for f in (220, 440, 900, 1500)]
    waves.append(waves[0].copy())  # exact copy of clip 0
    near = np.concatenate([np.zeros(300, np.float32), 0.6 * waves[1]])  # clip 1: delayed, quieter
    waves.append((near + 0.002 * rng.standard_normal(near.size)).astype(np.float32))
    ids = [f"c{i}" for i in range(len(waves))]
    sigs = [rc.signature(w, sr) for w in waves]
    rep, stats = rc.dedupe(ids, [h for h, _ in sigs], [low for _, low in sigs])
    assert rep == [0, 1, 2, 3, 0, 1]  # each copy points at the clip kept for it
    assert stats["removed"] == 2 and stats["removed_exact"] == 1 and stats["removed_near"] == 1


def test_clip_name_is_filesystem_safe():
    name = rc.clip_name("openarena-data", "usr/share/games/openarena/baseoa/pak0.pk3!sound/world/x y.wav", 12.5, True)
    assert name.startswith("openarena-data__") and name.endswith("_0012500")
    assert all(c.isalnum() or c in "._-" for c in name)


def test_cli_refuses_reserved_and_unknown_packages_before_any_download(tmp_path, capsys):
    for pkgs, msg in (("pingus-data,hedgewars-data", "reserved"), ("no-such-package", "no split")):
        with pytest.raises(SystemExit) as e:
            rc.main(["--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), "--packages", pkgs])
        assert e.value.code == 2 and msg in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()
