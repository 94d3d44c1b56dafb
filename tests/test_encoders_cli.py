"""`audioaudit encoders` / `audioaudit embed`, and the CLI's one-line user errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from helpers_encoders import sine_noise
from typer.testing import CliRunner

from audioaudit import cli
from audioaudit.audio.windows import WindowSpec, cut
from audioaudit.encoders import load_encoder, same_identity

runner = CliRunner()
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audioaudit.cli", *args], capture_output=True, text=True,
                          env=ENV, timeout=300)


@pytest.fixture()
def files(tmp_path):
    d = tmp_path / "clips"
    (d / "sub").mkdir(parents=True)
    sf.write(d / "long.wav", sine_noise(12.0, 22050, 0), 22050)
    sf.write(d / "sub" / "short.flac", sine_noise(2.0, 44100, 1, 990), 44100)
    (d / "broken.wav").write_text("not audio")
    return d


def test_help_everywhere():
    top = run_cli("--help")
    assert top.returncode == 0 and "encoders" in top.stdout and "embed" in top.stdout
    for cmd in ("encoders", "embed"):
        res = runner.invoke(cli.app, [cmd, "--help"])
        assert res.exit_code == 0 and "Usage" in res.output
    assert "--encoder" in runner.invoke(cli.app, ["embed", "--help"]).output


def test_encoders_lists_backends():
    res = runner.invoke(cli.app, ["encoders"])
    assert res.exit_code == 0
    for spec in ("mel", "laion:PATH.pt", "hf:DIR_OR_ID", "tiny-laion", "tiny-hf", "finetuned:DIR"):
        assert spec in res.output
    rows = json.loads(runner.invoke(cli.app, ["encoders", "--json"]).output)
    assert [r["name"] for r in rows] == ["mel", "laion", "hf", "tiny-laion", "tiny-hf", "finetuned"]


def test_embed_writes_parquet_and_lists_skips(files, tmp_path):
    out = tmp_path / "out" / "vecs.parquet"
    res = runner.invoke(cli.app, ["embed", str(files), str(tmp_path / "ghost.wav"), "--encoder", "mel", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "wrote 3 segment vectors of 2 files" in res.output and "2 skipped" in res.output
    table = pq.read_table(out)
    assert table.column_names == ["path", "segment", "start", "end", "duration", "sha256", "embedding"]
    assert table.schema.field("embedding").type.list_size == 128
    df = table.to_pandas()
    long = df[df.path.str.endswith("long.wav")]
    # 12 s at mel's 10 s window, 5 s hop: the second window is aligned to the end
    assert (list(long.segment), list(long.start), list(long.end)) == ([0, 1], [0.0, 2.0], [10.0, 12.0])
    vecs = np.stack(df.embedding.to_numpy())
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    # the rows are exactly what the encoder gives for those windows
    enc = load_encoder("mel")
    from audioaudit.audio.io import LoadOptions, load_audio

    wave = load_audio(files / "long.wav", LoadOptions(sample_rate=enc.sample_rate)).wave
    segs = cut(wave, WindowSpec.of(enc))
    assert [(s.start, s.end) for s in segs] == list(zip(long.start, long.end))
    np.testing.assert_allclose(np.stack(long.embedding.to_numpy()), enc.embed([s.wave for s in segs]), atol=1e-6)
    meta = json.loads(table.schema.metadata[b"audioaudit.encoder"])
    assert same_identity(meta, enc.identity())
    skipped = (out.parent / "vecs.skipped.csv").read_text()
    assert "broken.wav" in skipped and "ghost.wav" in skipped and "unreadable" in skipped


def test_embed_with_a_learned_encoder_prints_a_table(files):
    res = runner.invoke(cli.app, ["embed", str(files / "sub" / "short.flac"), "-e", "tiny-hf:1", "-b", "2"])
    assert res.exit_code == 0, res.output
    assert "tiny-hf:1: 1 segment vectors, dim 32" in res.output and "short.flac" in res.output


def test_user_errors_exit_2_with_one_line(files, tmp_path, monkeypatch, capsys):
    def main(*args):
        monkeypatch.setattr(sys, "argv", ["audioaudit", *args])
        with pytest.raises(SystemExit) as info:
            cli.main()
        err = capsys.readouterr().err.strip()
        assert info.value.code == 2 and err.startswith("error: ") and "\n" not in err, err
        return err

    assert "unknown encoder 'clip'" in main("embed", str(files), "-e", "clip")
    assert "nothing to embed: " in main("embed", str(files / "broken.wav"))
    monkeypatch.setattr(sys, "argv", ["audioaudit", "embed", str(files / "broken.wav"), str(tmp_path / "ghost.wav")])
    with pytest.raises(SystemExit) as info:
        cli.main()
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and err[-1] == "error: none of the 2 inputs could be embedded (reasons above)"
    assert len(err) == 3 and {"broken.wav", "ghost.wav"} == {os.path.basename(ln.split(":")[0]) for ln in err[:2]}
    assert "ending in .parquet" in main("embed", str(files), "--out", str(tmp_path / "x.csv"))
    assert "hf download" in main("embed", str(files), "-e", "hf:laion/clap-htsat-unfused")


def test_bad_checkpoint_from_the_shell(files, tmp_path):
    bad = tmp_path / "630k-audioset-best.pt"
    bad.write_bytes(b"\x80\x02 truncated download")
    res = run_cli("embed", str(files / "long.wav"), "--encoder", f"laion:{bad}")
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and "Warning" not in ln and "meshgrid" not in ln]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "not a readable PyTorch checkpoint" in lines[0]
    assert "Traceback" not in res.stderr
