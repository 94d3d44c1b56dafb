"""Hostile files: pickles that would run code are refused by every loader that reads
pickles (and our own safetensors/npz readers refuse them too), with a message naming the
file; hostile file names are escaped in the report; corpus manifest paths cannot reach
outside the corpus root."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers_reliability import cli, clip, evil_pickle, good_corpus, items, prove_payload_runs, write_wav

from audioaudit.errors import UserError

TINY_CONV = {"arch": "conv", "channels": [4, 8], "dim": 16, "window_seconds": 1.0, "hop_seconds": 0.5}


@pytest.fixture(scope="module")
def evil(tmp_path_factory):
    """(a torch pickle whose unsafe load writes ``marker``, marker path)."""
    d = tmp_path_factory.mktemp("evil")
    marker = d / "CODE_RAN"
    path = evil_pickle(d / "evil.pt", marker)
    prove_payload_runs(path, marker)
    return path, marker


def _refused(exc_info, path: Path, marker: Path) -> str:
    msg = str(exc_info.value)
    assert not marker.exists(), "the pickle's code ran"
    assert isinstance(exc_info.value, UserError) or type(exc_info.value).__name__ == "GeneratorError"
    assert str(path) in msg and "\n" not in msg, msg  # names the file, one line
    assert "refused" in msg and "add_safe_globals" not in msg, msg  # never advise allow-listing the payload
    return msg


def test_laion_checkpoint_pickle_is_refused(evil):
    from audioaudit.encoders import load_encoder

    path, marker = evil
    with pytest.raises(UserError) as info:
        load_encoder(f"laion:{path}")
    assert "exec" in _refused(info, path, marker)


def test_hf_directory_with_a_pickled_weights_file_is_refused(evil, tmp_path):
    from helpers_encoders import write_tiny_hf_dir

    from audioaudit.encoders import load_encoder

    path, marker = evil
    _, d = write_tiny_hf_dir(tmp_path / "hf")
    for f in d.glob("*.safetensors"):
        f.unlink()
    shutil.copy(path, d / "pytorch_model.bin")
    with pytest.raises(UserError) as info:
        load_encoder(f"hf:{d}")
    _refused(info, d / "pytorch_model.bin", marker)


def test_tango_adapter_bin_weights_pickle_is_refused(evil, tmp_path):
    pytest.importorskip("diffusers")  # the tango adapter's optional extra
    from generators.registry import load_generator

    path, marker = evil
    d = tmp_path / "tango"
    d.mkdir()
    for name in ("main_config.json", "vae_config.json"):
        (d / name).write_text("{}")
    for name in ("pytorch_model_main.bin", "pytorch_model_vae.bin"):
        shutil.copy(path, d / name)
    with pytest.raises(Exception) as info:
        load_generator(f"tango:{d}")
    _refused(info, d / "pytorch_model_main.bin", marker)


def _scratch_detector(d: Path) -> Path:
    from audioaudit.encoders.checkpoint import save_tensors
    from audioaudit.encoders.finetuned import CONFIG, FORMAT
    from audioaudit.encoders.scratch import build_scratch

    net, arch = build_scratch(TINY_CONV)
    save_tensors(d / "model.safetensors", net.state_dict())
    (d / CONFIG).write_text(json.dumps({"format": FORMAT, "kind": "scratch", "arch": arch.to_dict()}))
    return d


def test_finetuned_weights_replaced_by_a_pickle_are_refused(evil, tmp_path):
    from audioaudit.encoders import load_encoder

    path, marker = evil
    d = _scratch_detector(tmp_path / "det")
    assert load_encoder(f"finetuned:{d}").dim == 16  # the genuine folder loads
    shutil.copy(path, d / "model.safetensors")
    with pytest.raises(UserError) as info:
        load_encoder(f"finetuned:{d}")
    _refused(info, d / "model.safetensors", marker)


def test_finetune_resume_refuses_a_pickled_checkpoint_and_views_cache(evil, tmp_path):
    import torch

    from audioaudit.detector.finetune.views import load_view_cache
    from audioaudit.encoders import checkpoint as ck

    path, marker = evil
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    ck.save_training(tmp_path / "ckpt", 0, model, opt, {"history": []})
    assert ck.load_training(tmp_path / "ckpt", model, opt)["epoch"] == 0
    victim = tmp_path / "ckpt" / "epoch_0000.model.safetensors"
    shutil.copy(path, victim)
    with pytest.raises(UserError) as info:
        ck.load_training(tmp_path / "ckpt", model, opt)
    _refused(info, victim, marker)

    cache = tmp_path / "cache"  # a views-cache shard whose "data" array is a pickle that runs code
    cache.mkdir()
    (cache / "manifest.json").write_text(json.dumps({"labels": [None], "skipped": {}}))
    shard = cache / "shard_00000.npz"
    np.savez(shard, data=np.array([_Payload(marker)], dtype=object), index=np.array([0]),
             lengths=np.zeros((1, 1), np.int64))
    with np.load(shard, allow_pickle=True) as z:  # sanity: an unsafe load runs it
        z["data"]
    assert marker.exists()
    marker.unlink()
    with pytest.raises(UserError) as info:
        load_view_cache(cache)
    assert str(shard) in str(info.value) and "\n" not in str(info.value) and not marker.exists()


class _Payload:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


@pytest.mark.slow
def test_cli_refuses_a_code_running_checkpoint_in_one_line(evil, tmp_path):
    path, marker = evil
    wav = write_wav(tmp_path / "x.wav", clip(1, 1.0))
    r = cli("embed", wav, "--encoder", f"laion:{path}")
    assert r.returncode == 2 and not marker.exists()
    assert r.stderr.startswith("error: ") and str(path) in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------ manifest paths
@pytest.mark.slow
def test_manifest_paths_cannot_escape_the_corpus_root(tmp_path):
    corpus, outside = tmp_path / "corpus", tmp_path / "outside.wav"
    rels = good_corpus(corpus, n=3, classes=("a",))  # a/clip_0.wav a/clip_1.wav a/clip_2.wav
    write_wav(outside, clip(42, 1.0))
    os.symlink(outside, corpus / "a" / "link.wav")  # inside the root by name, outside by target
    rows = {
        rels[0]: "ok", f"{corpus}/{rels[1]}": "ok",  # relative, and absolute inside the root
        "a/../a/clip_2.wav": "ok",  # stays inside: stored normalised
        "../outside.wav": "outside_root", str(outside): "outside_root", "a/../../outside.wav": "outside_root",
        "a/link.wav": "outside_root", "/etc/passwd": "outside_root",
    }
    man = tmp_path / "manifest.csv"
    man.write_text("path,label\n" + "".join(f"{p},x\n" for p in rows))
    r = cli("index", "build", corpus, "--encoder", "mel", "--name", "m", "--root", tmp_path / "ix",
            "--manifest", man, "--no-progress")
    assert r.returncode == 0, r.stderr
    it = items(tmp_path / "ix" / "m")
    assert sorted(set(it["item_id"])) == sorted(rels)  # normalised ids, nothing from outside
    assert not any(".." in p or p.startswith("/") for p in it["path"])
    skipped = json.loads((tmp_path / "ix" / "m" / "manifest.json").read_text())["skipped"]
    assert sorted(s["path"] for s in skipped) == sorted(p for p, k in rows.items() if k == "outside_root")
    assert {s["kind"] for s in skipped} == {"outside_root"}


# ------------------------------------------------------------------ report escaping
HOSTILE_NAME = "<img src=x onerror=alert(1)>.wav"
HOSTILE_DIR, HOSTILE_FILE = "q<", "script><b onmouseover=alert(2)>x.wav"  # rel path "q</script><b ..."


@pytest.mark.slow
def test_hostile_file_names_are_escaped_in_the_cli_report(tmp_path):
    from audioaudit.encoders import load_encoder
    from audioaudit.index.build import build_index
    from audioaudit.index.options import BuildOptions

    corpus, ix, gen, run = tmp_path / "corpus", tmp_path / "ix", tmp_path / "gen", tmp_path / "run"
    rels = good_corpus(corpus, n=3)
    build_index(corpus, load_encoder("mel"), ix, spec="mel", opts=BuildOptions(progress=False))
    gen.mkdir()
    shutil.copy(corpus / rels[0], gen / HOSTILE_NAME)
    (gen / HOSTILE_DIR).mkdir()
    shutil.copy(corpus / rels[1], gen / HOSTILE_DIR / HOSTILE_FILE)
    r = cli("audit", gen, "--index", ix, "--out", run, "--report", "--no-progress")
    assert r.returncode == 0, r.stderr
    html = (run / "report" / "index.html").read_text(encoding="utf-8")
    for raw in ("<img src=x onerror", "onerror=alert(1)>", "</script><b", "<b onmouseover"):
        assert raw not in html, raw
    assert "&lt;img src=x onerror=alert(1)&gt;" in html or "\\u003cimg src=x onerror=alert(1)\\u003e" in html
    assert not [p for p in (run / "report").rglob("*") if "<" in p.name or ">" in p.name]  # media names are ours
