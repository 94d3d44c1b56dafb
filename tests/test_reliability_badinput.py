"""Bad input: a corpus of hostile files goes through `index build` and `audit` (the real
CLI); both finish, list every skipped file with its reason, and index every good file.

Decisions recorded here:
* a truncated WAV (header declares more data than the file holds) is *skipped* with kind
  ``truncated``: libsndfile would silently decode the part that is present, and an index
  of half a file is not evidence about the whole;
* a 1-sample clip is *accepted*: one (padded) window with a finite unit vector, like any
  clip shorter than the encoder's window;
* a 30-minute file is *accepted and segmented* (under the 3600 s cap; its silent windows
  are not indexed, see the last test); a 2-hour file is refused by the cap from the header
  alone, before any decoding;
* a FIFO named ``.wav`` is skipped as "not a regular file" (opening it would block).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers_reliability import (
    LOOP,
    SR,
    cli,
    clip,
    good_corpus,
    index_vectors,
    items,
    sparse_wav,
    this_run,
    truncated_wav,
    write_bad_inputs,
    write_wav,
)

from audioaudit.audio import io

REASON_WORDS = {"truncated": "truncated", "empty": "zero-byte", "silent": "silent", "non_finite": "NaN",
                "too_long": "cap", "symlink_loop": "symlink loop"}


# ------------------------------------------------------------------ unit level
def test_truncated_wav_is_refused_naming_both_lengths(tmp_path):
    p = truncated_wav(tmp_path / "t.wav", seconds=2.0, keep=0.5)
    got = io.try_load(p)
    assert isinstance(got, io.Skipped) and got.kind == "truncated"
    assert "2.000 s" in got.reason and "1.000 s" in got.reason
    # the same bytes with a streaming writer's placeholder size (0xFFFFFFFF) are not truncation
    data = bytearray(p.read_bytes())
    data[40:44] = (0xFFFFFFFF).to_bytes(4, "little")
    (tmp_path / "stream.wav").write_bytes(bytes(data))
    assert io.wav_truncation(str(tmp_path / "stream.wav")) is None
    # and a complete file, with an extra chunk before its data, is fine
    good = write_wav(tmp_path / "good.wav", clip(1, 1.0))
    assert io.wav_truncation(str(good)) is None and isinstance(io.try_load(good), io.Clip)


def test_overlong_file_is_refused_from_its_header_without_decoding(tmp_path, monkeypatch):
    p = sparse_wav(tmp_path / "two_hours.wav", 7200.0)

    def no_decoding(path):
        raise AssertionError("the whole file was decoded")

    monkeypatch.setattr(io, "_decode", no_decoding)
    with pytest.raises(io.TooLongAudio, match="7200.0 s is longer than the cap of 3600 s"):
        io.load_audio(p, io.LoadOptions(sample_rate=SR))


def test_fifo_is_skipped_not_opened(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.wav")  # opening it for reading would block forever
    got = io.try_load(tmp_path / "pipe.wav")
    assert isinstance(got, io.Skipped) and got.kind == "unreadable" and "not a regular file" in got.reason


# ------------------------------------------------------------------ through the CLI
def _skipped_by_rel(records, root: Path) -> dict[str, tuple[str, str]]:
    out = {}
    for r in records:
        p = Path(r["path"])
        rel = p.relative_to(root.resolve()).as_posix() if p.is_absolute() else p.as_posix()
        out[rel] = (r["kind"], r["reason"])
    return out


def _check_reasons(skipped: dict[str, tuple[str, str]], expected: dict[str, str]) -> None:
    assert {k: v[0] for k, v in skipped.items()} == expected
    for rel, (kind, reason) in skipped.items():
        assert reason and reason.strip(), rel
        if kind in REASON_WORDS:
            assert REASON_WORDS[kind] in reason, (rel, reason)
    assert "not a regular file" in skipped["bad/pipe.wav"][1]
    assert "cannot decode" in skipped["bad/notes.wav"][1]


@pytest.mark.slow
def test_index_build_and_audit_finish_on_a_hostile_corpus(tmp_path):
    corpus, ixroot = tmp_path / "corpus", tmp_path / "index"
    good = good_corpus(corpus, n=4)
    cases = write_bad_inputs(corpus)
    expected_skips = {k: v for k, v in cases.items() if v} | {LOOP: "symlink_loop"}
    accepted = set(good) | {k for k, v in cases.items() if v is None}

    r = cli("index", "build", corpus, "--encoder", "mel", "--name", "bad", "--root", ixroot, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert this_run(r.stdout)["decoded"] == len(good) + len(cases)  # every file reached the decoder once
    assert f"skipped: {len(expected_skips)}" in r.stdout
    manifest = json.loads((ixroot / "bad" / "manifest.json").read_text())
    _check_reasons(_skipped_by_rel(manifest["skipped"], corpus), expected_skips)

    it = items(ixroot / "bad")
    assert set(it["item_id"]) == accepted  # every good file, nothing else
    per = it.groupby("item_id").agg(n=("segment", "size"), dur=("duration", "first"))
    # 10 s windows every 5 s over 1800 s, of which only those holding a tone burst (at 0, 600
    # and 1795 s) are audible; the silent stretches are not indexed (they would match any silence)
    long_rows = it[it["item_id"] == "edge/thirty_minutes.wav"]
    assert long_rows["start"].tolist() == [0.0, 595.0, 600.0, 1790.0]
    assert per.loc["edge/thirty_minutes.wav", "dur"] == pytest.approx(1800.0)
    assert per.loc["edge/one_sample.wav", "dur"] == pytest.approx(1 / SR)
    assert per.loc["edge/eight_channels_96k.wav", "dur"] == pytest.approx(1.0)
    vec = index_vectors(ixroot / "bad")
    norms = np.linalg.norm(vec, axis=1)
    assert np.isfinite(vec).all() and np.allclose(norms, 1.0, atol=1e-4)  # finite unit vectors only

    gen = tmp_path / "generated"
    for rel in good[:2]:  # two verbatim copies of training clips
        (gen / "copies").mkdir(parents=True, exist_ok=True)
        shutil.copy(corpus / rel, gen / "copies" / Path(rel).name)
    gen_cases = write_bad_inputs(gen, long_ok=False)
    run = tmp_path / "run"
    r = cli("audit", gen, "--index", "bad", "--root", ixroot, "--out", run, "--no-progress")
    assert r.returncode == 0, r.stderr
    skipped = pd.read_csv(run / "skipped.csv").to_dict("records")
    _check_reasons(_skipped_by_rel(skipped, gen), {k: v for k, v in gen_cases.items() if v} | {LOOP: "symlink_loop"})
    q = pd.read_parquet(run / "queries.parquet").set_index("query_id")
    want = {f"copies/{Path(g).name}" for g in good[:2]} | {k for k, v in gen_cases.items() if v is None}
    assert set(q.index) == want
    assert np.isfinite(q["top1_similarity"]).all()
    for g in good[:2]:  # the copies find their sources
        assert q.loc[f"copies/{Path(g).name}", "top1_item_id"] == g
        assert q.loc[f"copies/{Path(g).name}", "top1_similarity"] == pytest.approx(1.0, abs=1e-4)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_queries"] == len(want) and summary["n_skipped"] == len(skipped)


# ------------------------------------------------------------------ silent stretches
class SilencePointEncoder:
    """helpers_index.TinyEncoder, except that digital silence maps to one fixed unit vector,
    as a CLAP tower does (it cannot return "no vector"): two silent windows are identical."""

    def __new__(cls):
        from helpers_index import TinyEncoder

        class _Enc(TinyEncoder):
            name = "tiny-silence-point"

            def identity(self):
                return dict(super().identity(), silence="point")

            def embed(self, batch):
                z = super().embed(batch)
                z[np.linalg.norm(z, axis=1) < 0.5] = np.eye(self.dim, dtype=np.float32)[0]
                return z

        return _Enc()


def test_silent_stretches_never_match_each_other(tmp_path):
    """Clips with digital-silence tails must not match one another through their silence
    (a false copy at similarity 1.0), and that silence must not drown a real copy's score
    (the background of ranks 2-11 would be 1.0 too): silent windows are not indexed or searched."""
    from audioaudit.audit.options import AuditOptions
    from audioaudit.audit.run import run_audit
    from audioaudit.index.build import build_index
    from audioaudit.index.options import BuildOptions

    corpus, gen, ix = tmp_path / "corpus", tmp_path / "gen", tmp_path / "ix"
    tail = np.zeros(3 * SR, np.float32)
    for i in range(4):
        write_wav(corpus / f"t{i}.wav", np.concatenate([clip(i, 2.0), tail]))
    write_wav(gen / "novel.wav", np.concatenate([clip(99, 2.0), tail]))
    shutil.copy(corpus / "t1.wav", gen / "copy.wav")
    enc = SilencePointEncoder()
    build_index(corpus, enc, ix, opts=BuildOptions(progress=False, near_dups=False))
    it = items(ix)
    assert (it["start"] < 2.0).all()  # no window lies wholly in the silent tail
    res = run_audit(gen, ix, tmp_path / "run", encoder=enc, opts=AuditOptions(progress=False, workers=0))
    q = res.queries.set_index("query_id")
    assert q.loc["novel.wav", "top1_similarity"] < 0.999
    assert q.loc["copy.wav", "top1_item_id"] == "t1.wav"
    assert q.loc["copy.wav", "top1_similarity"] == pytest.approx(1.0, abs=1e-5)
    assert q.loc["copy.wav", "background"] < 0.999  # ranks 2-11 are other clips, not silence ties at 1.0
    assert q.loc["copy.wav", "top1_score"] > q.loc["novel.wav", "top1_score"]
    ref = pd.read_parquet(ix / "reference.parquet")
    assert ref["similarity"].max() < 0.999  # the train-vs-train baseline is not inflated by silence
