"""``hf:DIR_OR_ID``: transformers' ``ClapAudioModelWithProjection`` + ``ClapFeatureExtractor``
from a local directory (``save_pretrained`` layout: config.json + safetensors, optional
preprocessor_config.json) or a hub id already in the local cache (``laion/clap-htsat-unfused``,
``laion/larger_clap_general``, …). A full ``ClapModel`` directory works too: its text
weights are simply not loaded.

Feature-extractor settings are passed explicitly: the directory's preprocessor_config.json
where it has one, else the hub configs' values (:data:`HUB_FEATURE_SETTINGS`) — never the
``ClapFeatureExtractor`` code defaults, which differ (``frequency_min`` 0 vs 50,
``truncation`` "fusion" vs "rand_trunc"). Deterministic by construction: windows never
exceed ``max_length_s`` (so "rand_trunc" never crops) and ``is_longer`` is always False
(the extractor would otherwise flag a random clip for fusion models). Short clips are
``repeatpad``-ed by the extractor, as in LAION-CLAP.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from audioaudit.encoders.base import EncoderError, pickle_refusal
from audioaudit.encoders.torch_base import BatchedEncoder, default_hop

# preprocessor_config.json of laion/clap-htsat-unfused (the values the hub models were trained with)
HUB_FEATURE_SETTINGS = {
    "feature_size": 64,
    "sampling_rate": 48000,
    "hop_length": 480,
    "max_length_s": 10,
    "fft_window_size": 1024,
    "padding_value": 0.0,
    "return_attention_mask": False,
    "frequency_min": 50,
    "frequency_max": 14000,
    "top_db": None,
    "truncation": "rand_trunc",
    "padding": "repeatpad",
}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load report and progress bars while loading."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def feature_settings(directory: Path | None, audio_config) -> dict:
    """Explicit extractor settings: the saved ones over the hub values, made deterministic."""
    settings = dict(HUB_FEATURE_SETTINGS)
    saved = directory / "preprocessor_config.json" if directory else None
    if saved is not None and saved.is_file():
        raw = json.loads(saved.read_text())
        settings.update({k: raw[k] for k in HUB_FEATURE_SETTINGS if k in raw})
    settings["truncation"] = "fusion" if getattr(audio_config, "enable_fusion", False) else "rand_trunc"
    if int(settings["feature_size"]) != int(audio_config.num_mel_bins):
        raise EncoderError(
            f"{directory}: feature extractor has {settings['feature_size']} mel bins but the model expects "
            f"{audio_config.num_mel_bins}; fix preprocessor_config.json or pass the matching directory"
        )
    frames = int(settings["max_length_s"] * settings["sampling_rate"]) // int(settings["hop_length"]) + 1
    fits = audio_config.spec_size * (audio_config.spec_size // audio_config.num_mel_bins)
    if frames > fits:  # ClapAudioEncoder.reshape_mel2img would refuse every clip
        raise EncoderError(f"{directory}: a {settings['max_length_s']} s window gives {frames} frames, more than the "
                           f"model's {fits}; fix max_length_s in preprocessor_config.json")
    return settings


class HFClapEncoder(BatchedEncoder):
    """``model`` is a ``ClapAudioModelWithProjection``; ``prepare`` runs the feature extractor."""

    def __init__(self, model, settings: dict, *, source: dict, name: str, batch_size: int = 16,
                 device: str = "cpu", hop_seconds: float | None = None):
        from transformers import ClapFeatureExtractor

        self.name = name
        self.settings = dict(settings)
        self.extractor = ClapFeatureExtractor(**self.settings)
        self.sample_rate = int(settings["sampling_rate"])
        self.dim = int(model.config.projection_dim)
        self.window_seconds = float(settings["max_length_s"])
        self.hop_seconds = default_hop(self.window_seconds, hop_seconds)
        super().__init__(batch_size=batch_size, device=device, identity={
            "backend": "hf", **source, "config": _audio_config_json(model.config),
            "feature_extractor": self.settings, "padding": settings["padding"],
        })
        self.model = model.to(self.device).eval()

    def prepare(self, waves: list[np.ndarray]) -> dict:
        import torch

        feats = self.extractor(
            [w.astype(np.float64) for w in waves], sampling_rate=self.sample_rate,
            max_length=self.window_samples, return_tensors="np",
        )
        x = torch.from_numpy(np.asarray(feats["input_features"], dtype=np.float32)).to(self.device)
        longer = torch.zeros((len(waves), 1), dtype=torch.bool, device=self.device)
        return {"input_features": x, "is_longer": longer}

    def forward(self, inputs):
        return self.model(**inputs).audio_embeds


def _audio_config_json(config) -> dict:
    keep = ("num_mel_bins", "spec_size", "patch_size", "patch_stride", "hidden_size", "projection_dim",
            "depths", "num_attention_heads", "window_size", "patch_embeds_hidden_size", "enable_fusion",
            "fusion_type", "projection_hidden_act", "mlp_ratio")
    d = config.to_dict()
    return {k: (list(d[k]) if isinstance(d[k], tuple) else d[k]) for k in keep if k in d}


def weights_sha256(directory: Path) -> str:
    """One digest over the weight files of a directory (name + bytes, sorted)."""
    from audioaudit.audio.fingerprint import file_sha256

    files = sorted(p for p in directory.iterdir() if p.suffix in (".safetensors", ".bin"))
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.name}:{file_sha256(p)}\n".encode())
    return h.hexdigest()


def resolve(target: str) -> tuple[Path, dict]:
    """A local directory, or a hub id found in the local cache -> (directory, identity source)."""
    local = Path(target).expanduser()
    if local.is_dir():
        return local, {}
    if local.exists() or target.startswith((".", "/", "~")) or target.count("/") > 1:
        what = "is a file, not a directory" if local.is_file() else "not found"
        hint = "; for a LAION .pt use laion:PATH.pt" if local.suffix in (".pt", ".ckpt") else ""
        raise EncoderError(f"hf: {target} {what}; pass hf:DIR (a save_pretrained CLAP directory) or hf:HUB_ID{hint}")
    from huggingface_hub import constants, snapshot_download

    offline = bool(constants.HF_HUB_OFFLINE)
    try:
        snap = snapshot_download(target, local_files_only=offline, allow_patterns=["*.json", "*.safetensors", "*.txt"])
    except Exception as e:  # noqa: BLE001 - any hub failure is the same user-facing answer
        why = "the hub is offline (HF_HUB_OFFLINE=1) and it is not in the local cache" if offline else type(e).__name__
        raise EncoderError(
            f"cannot load hub model '{target}': {why}; download it once with `hf download {target}` "
            f"(network, HF_HUB_OFFLINE=0) or pass hf:/path/to/a/saved/clap/dir"
        ) from None
    return Path(snap), {"hub_id": target, "revision": Path(snap).name}


def check_directory(directory: Path) -> None:
    cfg_file = directory / "config.json"
    if not cfg_file.is_file():
        pts = sorted(p.name for p in directory.glob("*.pt"))
        hint = f"; for the LAION checkpoint inside use laion:{directory / pts[0]}" if pts else ""
        raise EncoderError(f"{directory} has no config.json, so it is not a transformers model directory{hint}")
    model_type = json.loads(cfg_file.read_text()).get("model_type")
    if model_type not in ("clap", "clap_audio_model"):
        raise EncoderError(
            f"{directory} holds a '{model_type}' model, not CLAP; pass hf: with a CLAP directory "
            "(config.json model_type 'clap') such as a save_pretrained of laion/clap-htsat-unfused"
        )
    if not any((directory / f).is_file() for f in WEIGHT_FILES):
        raise EncoderError(f"{directory} has a CLAP config.json but no weights (model.safetensors); pass a complete directory")


def load_hf(arg: str, *, batch_size: int = 16, device: str = "cpu", hop_seconds: float | None = None) -> HFClapEncoder:
    """``hf:DIR_OR_ID`` -> encoder (see the module docstring)."""
    if not arg:
        raise EncoderError("hf needs a directory or hub id: pass hf:/path/to/dir or hf:laion/clap-htsat-unfused")
    directory, source = resolve(arg)
    check_directory(directory)
    from transformers import ClapAudioModelWithProjection

    try:
        with quiet_transformers():
            model, info = ClapAudioModelWithProjection.from_pretrained(
                str(directory), output_loading_info=True, ignore_mismatched_sizes=True)  # reported below
    except Exception as e:  # noqa: BLE001 - corrupt files, bad configs ...
        if pickle_refusal(e):
            raise EncoderError(f"{directory / 'pytorch_model.bin'} is not a loadable weights file ({pickle_refusal(e)}); "
                               "pass a CLAP directory saved by save_pretrained (safetensors)") from None
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise EncoderError(f"{directory}: cannot load a CLAP audio model ({first}); pass a CLAP directory saved by save_pretrained") from None
    missing = sorted(info.get("missing_keys") or [])
    wrong = sorted(info.get("mismatched_keys") or [], key=lambda t: str(t[0]))
    if missing or wrong:
        example = missing[0] if missing else f"{wrong[0][0]} {tuple(wrong[0][1])} vs {tuple(wrong[0][2])}"
        raise EncoderError(
            f"{directory}: weights do not fit config.json ({len(missing)} missing, {len(wrong)} mis-shaped tensors, "
            f"e.g. {example}); pass a directory saved from ClapModel or ClapAudioModelWithProjection"
        )
    settings = feature_settings(directory, model.config)
    if not source:
        source = {"weights_sha256": weights_sha256(directory)}
    name = f"hf:{source.get('hub_id') or directory.name}"
    return HFClapEncoder(model.float(), settings, source=source, name=name, batch_size=batch_size,
                         device=device, hop_seconds=hop_seconds)


def save_directory(model, settings: dict, directory: str | os.PathLike) -> Path:
    """``save_pretrained`` the model (safetensors + config.json) and its feature extractor."""
    from transformers import ClapFeatureExtractor

    directory = Path(directory)
    with quiet_transformers():
        model.save_pretrained(str(directory), safe_serialization=True)
        ClapFeatureExtractor(**settings).save_pretrained(str(directory))
    return directory
