"""Shared by the encoder tests (and usable by other areas' tests): tiny random CLAP towers
saved in the real on-disk formats, and a reference embedding computed without the encoder
classes."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from audioaudit.encoders import hf as hf_backend
from audioaudit.encoders import laion as laion_backend
from audioaudit.encoders import tiny


def sine_noise(seconds: float, sr: int, seed: int = 0, freq: float = 440.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def write_laion_checkpoint(model, path: Path, *, with_text_tower: bool = True, numpy_meta: bool = True) -> Path:
    """A `630k-audioset-best.pt`-shaped file: {"state_dict": {"module.audio_branch.*", ...}, ...}
    plus the parts a real one carries that we must ignore: text tower, audio_transform,
    logit scales, training metadata with NumPy scalars."""
    extra_sd = {}
    if with_text_tower:
        extra_sd = {
            "module.text_branch.embeddings.word_embeddings.weight": torch.randn(10, 4),
            "module.text_projection.0.weight": torch.randn(4, 4),
            "module.audio_transform.sequential.0.weight": torch.randn(4, 4),
            "module.logit_scale_a": torch.tensor(2.6592),
            "module.logit_scale_t": torch.tensor(2.6592),
        }
    sd = {f"module.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    obj = {"epoch": 45, "name": "tiny", "state_dict": {**sd, **extra_sd}}
    if numpy_meta:
        obj["best_score"] = np.float64(0.4567)
        obj["lr_history"] = np.array([1e-4, 5e-5])
    torch.save(obj, path)
    return path


def write_laion_config(cfg, path: Path) -> Path:
    path.write_text(json.dumps(laion_backend.config_to_json(cfg)))
    return path


def write_pickle_with_object(path: Path) -> Path:
    """A checkpoint whose metadata holds an arbitrary Python object (weights_only refuses it)."""
    torch.save({"state_dict": {"module.audio_projection.0.weight": torch.zeros(2, 2)},
                "args": argparse.Namespace(lr=1e-4)}, path)
    return path


def laion_reference(model, waves: list[np.ndarray], clip_samples: int) -> np.ndarray:
    """CLAP.get_audio_embedding by hand: repeat-pad (tile, zero-pad), branch, projection, normalise."""
    rows = []
    for w in waves:
        tiled = np.tile(w, clip_samples // len(w))
        rows.append(np.concatenate([tiled, np.zeros(clip_samples - len(tiled), np.float32)]))
    x = torch.from_numpy(np.stack(rows))
    with torch.no_grad():
        emb = model.audio_branch({"waveform": x, "longer": torch.zeros(len(rows), dtype=torch.bool)},
                                 device="cpu")["embedding"]
        return torch.nn.functional.normalize(model.audio_projection(emb), dim=-1).numpy()


def hf_reference(model, settings: dict, waves: list[np.ndarray]) -> np.ndarray:
    """ClapFeatureExtractor + ClapAudioModelWithProjection used directly, as transformers documents."""
    from transformers import ClapFeatureExtractor

    fe = ClapFeatureExtractor(**settings)
    feats = fe([w.astype(np.float64) for w in waves], sampling_rate=settings["sampling_rate"], return_tensors="pt")
    with torch.no_grad():
        out = model(input_features=feats["input_features"].float(), is_longer=feats["is_longer"])
        return torch.nn.functional.normalize(out.audio_embeds, dim=-1).numpy()


def write_tiny_hf_dir(directory: Path, seed: int = 0, *, full_clap: bool = False) -> tuple[object, Path]:
    """Save a tiny random CLAP as transformers would: safetensors + config.json + preprocessor_config.json.
    ``full_clap`` saves a whole ClapModel (text tower too), like the hub repos."""
    from transformers import ClapAudioConfig, ClapConfig, ClapModel, ClapTextConfig

    model = tiny.tiny_hf_model(seed)
    if full_clap:
        text = ClapTextConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=32, max_position_embeddings=40, projection_dim=tiny.TINY_DIM)
        cfg = ClapConfig(text_config=text.to_dict(), audio_config=ClapAudioConfig(**tiny.TINY_HF_AUDIO).to_dict(),
                         projection_dim=tiny.TINY_DIM)
        full = tiny.seeded(seed + 1, lambda: ClapModel(cfg).eval())
        full.audio_model.load_state_dict(model.audio_model.state_dict())
        full.audio_projection.load_state_dict(model.audio_projection.state_dict())
        with hf_backend.quiet_transformers():
            full.save_pretrained(str(directory))
        from transformers import ClapFeatureExtractor

        ClapFeatureExtractor(**tiny.TINY_HF_FEATURES).save_pretrained(str(directory))
        return model, directory
    hf_backend.save_directory(model, tiny.TINY_HF_FEATURES, directory)
    return model, directory
