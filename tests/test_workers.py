"""Decode workers and model threads are picked from the cores, and torch's setting is restored."""
from __future__ import annotations

import torch

from audioaudit.util import workers as W


def test_model_threads_are_the_cores_the_decoders_leave(monkeypatch):
    monkeypatch.setattr(W, "cpu_count", lambda: 2)
    assert W.default_workers() == 1 and W.model_threads(1) == 1 and W.model_threads(0) == 2
    monkeypatch.setattr(W, "cpu_count", lambda: 16)
    assert W.default_workers() == 4 and W.model_threads(4) == 12 and W.model_threads(99) == 1
    assert W.resolve_workers(None) == 4 and W.resolve_workers(0) == 0


def test_torch_threads_is_set_for_the_block_and_restored():
    before = torch.get_num_threads()
    with W.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with W.torch_threads(None):
        assert torch.get_num_threads() == before


def test_embed_shards_runs_the_model_beside_its_decoders(monkeypatch, tmp_path):
    """The pipeline's default: one decode worker on a 2-core box -> 1 model thread."""
    import numpy as np
    import soundfile as sf

    from audioaudit.audio.decode import work_item
    from audioaudit.index import shards

    monkeypatch.setattr(shards, "model_threads", lambda w: 1)
    seen = []

    class Probe:
        name, sample_rate, dim, window_seconds, hop_seconds = "probe", 8000, 4, 1.0, 0.5

        def identity(self):
            return {"backend": "probe"}

        def embed(self, batch):
            seen.append(torch.get_num_threads())
            return np.tile(np.eye(4, dtype=np.float32)[:1], (len(batch), 1))

    p = tmp_path / "a.wav"
    sf.write(str(p), np.sin(np.arange(8000) / 5).astype(np.float32) * 0.3, 8000)
    plans = shards.plan_shards([work_item(str(p), "a.wav", "a.wav", None)], 4)
    shards.embed_shards(plans, Probe(), tmp_path / "s", shards.EmbedSettings(workers=1))
    assert seen and set(seen) == {1}
