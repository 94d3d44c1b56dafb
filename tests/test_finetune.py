"""Fine-tuning: losses, views cache, checkpoints, resume, and the trained encoder."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers_finetune import SR, make_clip

from audioaudit.detector.finetune.losses import info_nce, koleo, pos_neg_similarity, triplet_loss
from audioaudit.detector.finetune.recipes import get_recipe
from audioaudit.detector.finetune.trainer import ViewTask, fit
from audioaudit.detector.finetune.views import (
    ClipSource,
    Featurizer,
    ViewSettings,
    build_view_cache,
    fit_views,
    load_view_cache,
)
from audioaudit.encoders import checkpoint as ck
from audioaudit.errors import UserError


def _norm(x):
    return torch.nn.functional.normalize(x, dim=-1)


# --------------------------------------------------------------------------- losses
def test_losses_prefer_aligned_views():
    g = torch.Generator().manual_seed(0)
    centres = _norm(torch.randn(8, 16, generator=g))
    ids = torch.arange(8).repeat_interleave(2)
    tight = _norm(centres[ids] + 0.05 * torch.randn(16, 16, generator=g))
    loose = _norm(torch.randn(16, 16, generator=g))
    assert info_nce(tight, ids) < info_nce(loose, ids)
    pos, neg = pos_neg_similarity(tight, ids)
    assert pos > 0.9 and neg < 0.5
    a, p = tight[0::2], tight[1::2]
    assert float(triplet_loss(a, p, torch.roll(p, 1, 0))) < float(triplet_loss(a, torch.roll(p, 1, 0), p))
    collapsed = _norm(torch.ones(16, 16) + 0.01 * torch.randn(16, 16, generator=g))
    assert koleo(collapsed, ids) > koleo(loose, ids)  # KoLeo penalises crowding


def test_optimizer_state_round_trips_through_safetensors(tmp_path):
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    ck.save_training(tmp_path, 0, model, opt, {"history": []})
    model2 = torch.nn.Linear(4, 3)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-2)
    info = ck.load_training(tmp_path, model2, opt2)
    assert info["epoch"] == 0
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict()["state"][0], opt2.state_dict()["state"][0]
    assert all(torch.equal(torch.as_tensor(s1[k]), torch.as_tensor(s2[k])) for k in s1)


# --------------------------------------------------------------------------- views cache
def _clips(n=6):
    kinds = ["chirp", "bursts", "harmonic", "clicks", "amfm"]
    return [make_clip(kinds[i % 5], i, 0.5) for i in range(n)]


def _cache(tmp_path, clips, load=None, **kw):
    settings = ViewSettings(n_views=3, seed=1, length=SR // 2, shard_size=2, **kw)
    ids = [f"c{i}" for i in range(len(clips))]
    load = load or (lambda i: clips[i])
    featurizer = Featurizer(lambda v: fit_views(v, SR // 2), {"kind": "waveforms"})
    return build_view_cache(tmp_path, ClipSource(ids, load, SR), featurizer, settings)


def test_view_cache_resumes_identically_and_lists_skipped(tmp_path):
    clips = _clips()
    load = lambda i: "unreadable: broken header" if i == 3 else clips[i]  # noqa: E731
    _cache(tmp_path / "a", clips, load)
    full = load_view_cache(tmp_path / "a")
    assert full.data.shape == (5, 4, SR // 2) and list(full.index) == [0, 1, 2, 4, 5]
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["skipped"] == {"c3": "unreadable: broken header"}
    # an interrupted build: one shard missing -> the rerun renders exactly the same views
    _cache(tmp_path / "b", clips, load)
    (tmp_path / "b" / "shard_00001.npz").unlink()
    _cache(tmp_path / "b", clips, load)
    again = load_view_cache(tmp_path / "b")
    np.testing.assert_array_equal(full.data, again.data)
    np.testing.assert_array_equal(full.lengths, again.lengths)
    assert not np.array_equal(full.data[0, 0], full.data[0, 1])  # views differ from the clean clip
    with pytest.raises(UserError, match="other settings"):
        build_view_cache(tmp_path / "a", ClipSource(["c0"], load, SR), Featurizer(fit_views, {"kind": "waveforms"}),
                         ViewSettings(n_views=2))


def test_view_cache_records_max_strength_only_when_set(tmp_path):
    clips = _clips(4)
    _cache(tmp_path / "d", clips)
    assert "max_strength" not in json.loads((tmp_path / "d" / "manifest.json").read_text())
    _cache(tmp_path / "h", clips, max_strength=0.5)
    assert json.loads((tmp_path / "h" / "manifest.json").read_text())["max_strength"] == 0.5
    with pytest.raises(UserError, match="other settings"):
        _cache(tmp_path / "h", clips)  # a cache of milder views is not reused for the default
    milder, full = load_view_cache(tmp_path / "h"), load_view_cache(tmp_path / "d")
    np.testing.assert_array_equal(milder.data[:, 0], full.data[:, 0])  # the clean crops are the same


def test_job_settings_name_the_views_only_when_not_default(tmp_path):
    from audioaudit.detector.finetune.pipeline import Job

    job = dict(corpus=str(tmp_path), out_dir=tmp_path, recipe=get_recipe("infonce"))
    assert "views" not in Job(**job).settings()
    assert Job(**job, max_strength=0.5).settings()["views"] == {"families": None, "max_strength": 0.5}
    assert Job(**job, families=("gain",)).settings()["views"] == {"families": ["gain"], "max_strength": 1.0}


# --------------------------------------------------------------------------- training loop
def _toy_task(recipe_name="infonce", **kw):
    # views = clip + a big nuisance confined to 8 of 24 dimensions (what an augmentation
    # moves) + small noise: a head that learns to ignore those dimensions generalises
    rng = np.random.default_rng(0)
    n = 120
    centres = rng.standard_normal((n, 24)).astype(np.float32)
    nuisance = np.zeros((n, 5, 24), dtype=np.float32)
    nuisance[..., :8] = 3.0 * rng.standard_normal((n, 5, 8))
    data = centres[:, None, :] + nuisance + 0.1 * rng.standard_normal((n, 5, 24)).astype(np.float32)
    labels = [f"k{i % 4}" for i in range(n)]
    recipe = get_recipe(recipe_name, epochs=3, batch_size=16, lr=1e-2, koleo_weight=0.1, val_fraction=0.2, **kw)
    return ViewTask(data, labels, recipe)


def _toy_model(seed=0):
    from audioaudit.encoders.heads import HeadConfig, ProjectionHead

    torch.manual_seed(seed)
    return ProjectionHead(HeadConfig(in_dim=24, hidden=32, out_dim=16))


@pytest.mark.parametrize("recipe", ["infonce", "triplet"])
def test_training_lowers_the_loss_and_separates_copies(tmp_path, recipe):
    task = _toy_task(recipe)
    model = _toy_model()
    before = task.validate(model)
    res = fit(model, task, tmp_path / "ck", quiet=True)
    after = res.history[-1]
    assert len(res.history) == 3 and res.resumed_from == 0
    assert after["val_loss"] < before["val_loss"]
    assert after["pos_sim"] > after["neg_sim"]  # copies end closer than other clips


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    straight = _toy_model()
    fit(straight, _toy_task(), tmp_path / "a", quiet=True)

    class Killed(Exception):
        pass

    def die(row):
        if row["epoch"] == 2:
            raise Killed  # as if the process died right after epoch 2 was checkpointed

    interrupted = _toy_model()
    with pytest.raises(Killed):
        fit(interrupted, _toy_task(), tmp_path / "b", quiet=True, on_epoch=die, checkpoint_every_s=0)
    resumed = _toy_model(seed=123)  # a fresh process: other initial weights, restored from disk
    res = fit(resumed, _toy_task(), tmp_path / "b", quiet=True)
    assert res.resumed_from == 2 and [r["epoch"] for r in res.history] == [1, 2, 3]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "b").glob("epoch_*")) == [
        "epoch_0002.json", "epoch_0002.model.safetensors", "epoch_0002.optim.safetensors"]


def test_triplet_negatives_come_from_the_same_class():
    task = _toy_task("triplet")
    rng = np.random.default_rng(0)
    idx = task.train_ids[:10]
    neg = task._negatives(idx, rng)
    assert all(task.labels[i] == task.labels[j] and i != j for i, j in zip(idx, neg))


def test_waveform_rows_are_cropped_inside_valid_spans():
    data = np.zeros((3, 2, 100), dtype=np.float16)
    lengths = np.array([[60, 80], [100, 50], [70, 70]])
    for c in range(3):
        for v in range(2):
            data[c, v, : lengths[c, v]] = 1.0  # valid samples are 1, padding 0
    task = ViewTask(data, [None] * 3, get_recipe("infonce"), lengths=lengths, min_crop=20)
    rows = task._rows(np.array([0, 1, 2]), np.array([1, 1, 0]), np.random.default_rng(0))
    assert rows.shape[1] <= 50 and torch.all(rows == 1.0)


def test_epoch_order_class_batches_groups_same_kind_clips():
    import numpy as np

    from audioaudit.detector.finetune.trainer import epoch_order

    labels = [f"c{i % 5}" for i in range(100)]
    ids = np.arange(100)
    plain = epoch_order(ids, labels, 20, 0, np.random.default_rng(0))
    assert sorted(plain.tolist()) == list(range(100))
    order = epoch_order(ids, labels, 20, 2, np.random.default_rng(0))
    assert sorted(order.tolist()) == list(range(100))  # every clip once
    classes_per_batch = [len({labels[i] for i in order[s : s + 20]}) for s in range(0, 100, 20)]
    assert max(classes_per_batch) <= 3 and np.mean(classes_per_batch) < 3  # random batches hold ~5
    assert np.mean([len({labels[i] for i in plain[s : s + 20]}) for s in range(0, 100, 20)]) > 4
    # unlabelled clips: a plain shuffle
    assert sorted(epoch_order(ids, [None] * 100, 20, 2, np.random.default_rng(0)).tolist()) == list(range(100))
    # deterministic per rng state
    assert (epoch_order(ids, labels, 20, 2, np.random.default_rng(3)) == epoch_order(ids, labels, 20, 2, np.random.default_rng(3))).all()
