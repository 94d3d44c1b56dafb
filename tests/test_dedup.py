"""Duplicates: PCM hashing, grouping, planted exact + re-encoded copies found at build
time with the real `mel` encoder, and an audit that counts a group as one source."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from helpers_index import SR, make_corpus, write

from audioaudit import schema
from audioaudit.audio.fingerprint import pcm_hash
from audioaudit.duplicates import groups as dupgroups
from audioaudit.duplicates.groups import DupGroup, group_duplicates
from audioaudit.index import store

PLANTED = {  # planted copy -> (original, kind it must get)
    "tone/tone_0_copy.wav": ("tone/tone_0.wav", "exact"),
    "other/tone_0.flac": ("tone/tone_0.wav", "exact"),
    "tone/tone_0_quiet.wav": ("tone/tone_0.wav", "near"),
    "chirp/chirp_1_22k.wav": ("chirp/chirp_1.wav", "near"),
    "noise/noise_2_padded.wav": ("noise/noise_2.wav", "exact"),
    "noise/noise_3.ogg": ("noise/noise_3.wav", "near"),
}


def test_pcm_hash_is_the_decoded_audio():
    w = np.sin(np.linspace(0, 300, SR)).astype(np.float32) * 0.5
    h = pcm_hash(w, SR)
    assert h == pcm_hash(w.copy(), SR)
    assert h == pcm_hash(np.concatenate([np.zeros(500, np.float32), w, np.zeros(7, np.float32)]), SR)
    assert h != pcm_hash(w * 0.5, SR) and h != pcm_hash(w[:-100], SR)
    assert pcm_hash(w, 32000) == pcm_hash(w, 32000) != h  # resampled to the fixed rate first


def test_group_duplicates_unions_exact_and_near_independent_of_order():
    ids = ["c", "a", "b", "d", "e"]
    hashes = ["h1", "h1", "h2", None, "h3"]
    groups = group_duplicates(ids, hashes, [("b", "c"), ("d", "zz")])
    assert groups == [DupGroup(0, ("a", "b", "c"), ("exact", "near", "exact"))]
    assert groups[0].kind == "near" and groups[0].size == 3
    rev = group_duplicates(ids[::-1], hashes[::-1], [("c", "b")])
    assert rev == groups
    assert dupgroups.source_ids(["a", "e"], groups) == ["g0", "e"]
    s = dupgroups.summarise(groups + [DupGroup(1, ("x", "y"), ("exact", "exact"))])
    assert (s.groups, s.exact_groups, s.near_groups, s.items_in_groups, s.redundant_items) == (2, 1, 1, 5, 3)
    assert dupgroups.groups_from_rows(dupgroups.groups_to_rows(groups)) == groups


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    import librosa
    import soundfile as sf

    from audioaudit.encoders import load_encoder
    from audioaudit.index.build import build_index
    from audioaudit.index.options import BuildOptions

    base = tmp_path_factory.mktemp("dups")
    corpus = base / "corpus"
    waves = make_corpus(corpus, per_class=4)
    shutil.copy(corpus / "tone/tone_0.wav", corpus / "tone/tone_0_copy.wav")
    pcm, _ = sf.read(str(corpus / "tone/tone_0.wav"), dtype="int16")  # same PCM samples, another container
    (corpus / "other").mkdir()
    sf.write(str(corpus / "other/tone_0.flac"), pcm, SR)
    write(corpus / "tone/tone_0_quiet.wav", waves["tone/tone_0.wav"] * 0.4)
    y = librosa.resample(waves["chirp/chirp_1.wav"], orig_sr=SR, target_sr=22050)
    write(corpus / "chirp/chirp_1_22k.wav", y, sr=22050)
    write(corpus / "noise/noise_2_padded.wav", np.concatenate([np.zeros(3000, np.float32), waves["noise/noise_2.wav"]]))
    sf.write(str(corpus / "noise/noise_3.ogg"), waves["noise/noise_3.wav"], SR)
    res = build_index(corpus, load_encoder("mel"), base / "index", spec="mel",
                      opts=BuildOptions(workers=0, progress=False))
    return base, corpus, res


def test_planted_duplicates_are_grouped_with_full_precision(planted):
    base, _, res = planted
    ix = store.open_index(base / "index")
    d = ix.duplicates
    assert list(d.columns[:4]) == schema.DUPLICATE_COLUMNS
    groups = {g: set(m) for g, m in d.groupby("group")["item_id"]}
    truth: dict[str, set] = {}
    for copy, (orig, _) in PLANTED.items():
        truth.setdefault(orig, {orig}).add(copy)
    assert sorted(map(sorted, groups.values())) == sorted(map(sorted, truth.values()))
    kinds = dict(zip(d["item_id"], d["kind"]))
    for copy, (_, kind) in PLANTED.items():
        assert kinds[copy] == kind, copy
    assert res.duplicates.groups == 4 and res.duplicates.items_in_groups == 10
    assert ix.manifest["counts"]["duplicate_groups"] == 4
    # the reference never pairs a clip with a member of its own group
    ref = pd.read_parquet(base / "index" / schema.REFERENCE_FILE)
    gid = dict(zip(d["item_id"], d["group"]))
    same = [gid.get(a) is not None and gid.get(a) == gid.get(b) for a, b in zip(ref.item_id, ref.nn_item_id)]
    assert not any(same)


def test_audit_counts_a_duplicate_group_once(planted, tmp_path):
    from audioaudit.audit.options import AuditOptions
    from audioaudit.audit.run import run_audit

    base, corpus, _ = planted
    gen = tmp_path / "gen"
    gen.mkdir()
    shutil.copy(corpus / "tone/tone_0.wav", gen / "copy_of_tone0.wav")
    shutil.copy(corpus / "noise/noise_1.wav", gen / "copy_of_noise1.wav")
    res = run_audit(gen, base / "index", tmp_path / "run",  # encoder reloaded from encoder.json's spec
                    opts=AuditOptions(progress=False, workers=0, threshold=0.999, threshold_on="similarity"))
    m = res.matches[res.matches.query_id == "copy_of_tone0.wav"]
    members = {"tone/tone_0.wav", "tone/tone_0_copy.wav", "other/tone_0.flac", "tone/tone_0_quiet.wav"}
    assert len(set(m["item_id"]) & members) == 1  # one row for the whole group
    top = m.iloc[0]
    assert top.item_id in members and top.flag and top.dup_size == 4
    assert set(top.dup_members.split(";")) == members
    q = res.queries.set_index("query_id")
    assert q.loc["copy_of_tone0.wav", "exact_copy_of"] in members
    s = res.summary
    assert s["flagged"]["count"] == 2 and s["flagged_sources"] == 2
    lv = {x["size"]: x for x in s["memorisation"]["levels"]}
    assert lv["4+"]["copies"] == 1 and lv["1"]["copies"] == 1


def test_dedup_and_index_info_commands(planted, tmp_path):
    from typer.testing import CliRunner

    from audioaudit.cli import app

    base, corpus, _ = planted
    r = CliRunner().invoke(app, ["dedup", str(corpus), "--workers", "0", "--out", str(tmp_path / "d.csv")])
    assert r.exit_code == 0, r.output
    assert "2 groups (2 exact, 0 near)" in r.output  # PCM hash alone: the exact copies
    df = pd.read_csv(tmp_path / "d.csv")
    assert set(df["item_id"]) == {"tone/tone_0.wav", "tone/tone_0_copy.wav", "other/tone_0.flac",
                                  "noise/noise_2.wav", "noise/noise_2_padded.wav"}
    r = CliRunner().invoke(app, ["dedup", str(base / "index")])
    assert r.exit_code == 0 and "4 groups" in r.output and "chirp_1_22k.wav" in r.output
    r = CliRunner().invoke(app, ["index", "info", str(base / "index")])
    assert r.exit_code == 0, r.output
    assert "Flat (exact inner product)" in r.output and '"backend":"mel"' in r.output and "4 groups" in r.output


def test_audio_check_tells_a_re_encoded_copy_from_another_clip_of_the_class():
    import librosa
    from helpers_index import synth_clip

    from audioaudit.duplicates.verify import compare, spectrogram

    a = synth_clip("noise", 1, 2.0)
    spec = spectrogram(a)
    resampled = librosa.resample(librosa.resample(a, orig_sr=SR, target_sr=22050), orig_sr=22050, target_sr=SR)
    shifted = np.concatenate([np.zeros(1105, np.float32), a * 0.3])  # codec delay + gain
    for copy in (resampled, shifted):
        v = compare(spec, spectrogram(copy))
        assert v.same and v.corr > 0.98, v
    for seed in (2, 3, 4):
        v = compare(spec, spectrogram(synth_clip("noise", seed, 2.0)))
        assert not v.same, v
