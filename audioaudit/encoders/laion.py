"""``laion:PATH.pt[#CONFIG]``: a LAION-CLAP checkpoint through laion-clap's own audio
branch (HTSAT or PANN) and audio projection — the text tower is never built.

* Import: ``import laion_clap`` runs ``laion_clap/training/data.py``, which loads three
  tokenizers from the hub. We import only ``clap_module/htsat.py`` and
  ``clap_module/pann_model.py``, found with ``importlib.util.find_spec`` (which does not
  run the package) and loaded under a stub parent package, so nothing touches the network.
* Checkpoint: ``torch.load(weights_only=True)`` (NumPy scalars in the metadata of some
  LAION checkpoints are allow-listed); a dict holding ``state_dict`` whose keys carry a
  ``module.`` prefix; we keep ``audio_branch.*`` and ``audio_projection.*`` and load them
  with ``strict=True`` (204 tensors for HTSAT-tiny).
* Input: mono at 48 kHz, one 10 s window (``clip_samples``) per clip; shorter clips are
  ``repeatpad``-ed exactly as LAION's inference does (tile, then zero-pad). Forward:
  ``audio_branch({"waveform", "longer"})["embedding"]`` then ``audio_projection``
  (Wu et al. 2023, "Large-scale contrastive language-audio pretraining", Sec. 2).
* CONFIG after ``#``: a name from laion-clap's ``model_configs`` (HTSAT-tiny default,
  HTSAT-base, HTSAT-large, PANN-14, PANN-14-fmax-18k, …; laion-clap's Cnn6/Cnn10 branches
  cannot take CLAP's input) or a path to a JSON in that format;
  our JSON may add an ``"htsat"`` block giving the Swin architecture explicitly (how the
  tiny test configs are described).
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import types
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from audioaudit.encoders.base import EncoderError, pickle_refusal
from audioaudit.encoders.torch_base import BatchedEncoder, default_hop, repeat_pad

DEFAULT_CONFIG = "HTSAT-tiny"
_STUB = "_audioaudit_laion_clap_module"
_KEEP = ("audio_branch.", "audio_projection.")
_HTSAT_SIZES = {"tiny": (96, [2, 2, 6, 2]), "base": (128, [2, 2, 12, 2]), "large": (256, [2, 2, 12, 2])}


@dataclass(frozen=True)
class LaionConfig:
    """laion-clap's model config, audio half: ``embed_dim`` is the branch output width."""

    name: str
    embed_dim: int
    audio_cfg: dict
    joint_dim: int = 512  # CLAP(joint_embed_shape=512): the projection width
    htsat: dict | None = field(default=None)  # explicit HTSAT_Swin_Transformer kwargs

    @property
    def sample_rate(self) -> int:
        return int(self.audio_cfg["sample_rate"])

    @property
    def clip_samples(self) -> int:
        return int(self.audio_cfg["clip_samples"])


# --------------------------------------------------------------------------- imports
def clap_module_dir() -> Path:
    spec = importlib.util.find_spec("laion_clap")  # locates the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise EncoderError("the laion backend needs laion-clap: pip install laion-clap==1.1.7")
    return Path(list(spec.submodule_search_locations)[0]) / "clap_module"


def clap_modules() -> tuple[types.ModuleType, types.ModuleType]:
    """(htsat, pann_model) from laion-clap, imported under a stub parent package."""
    if _STUB not in sys.modules:
        stub = types.ModuleType(_STUB)
        stub.__path__ = [str(clap_module_dir())]
        stub.__doc__ = "laion_clap.clap_module without its __init__ (which pulls the text side)"
        sys.modules[_STUB] = stub
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        htsat = importlib.import_module(f"{_STUB}.htsat")
        pann = importlib.import_module(f"{_STUB}.pann_model")
    return htsat, pann


# --------------------------------------------------------------------------- configs
def config_names() -> list[str]:
    """Audio configs shipped with laion-clap (model_configs/*.json with an audio_cfg)."""
    names = []
    for p in sorted((clap_module_dir() / "model_configs").glob("*.json")):
        audio = json.loads(p.read_text()).get("audio_cfg", {})
        if audio.get("model_type") == "HTSAT" or audio.get("model_name") == "Cnn14":
            names.append(p.stem)
    return names


def load_config(name_or_path: str | None) -> LaionConfig:
    name_or_path = name_or_path or DEFAULT_CONFIG
    p = Path(name_or_path).expanduser()
    if p.suffix == ".json" or os.sep in name_or_path:
        if not p.is_file():
            raise EncoderError(f"LAION config file not found: {p}; pass #NAME with NAME one of {', '.join(config_names())}")
        raw, name = json.loads(p.read_text()), p.stem
    else:
        shipped = clap_module_dir() / "model_configs" / f"{name_or_path}.json"
        if name_or_path not in config_names():
            raise EncoderError(f"unknown LAION config '{name_or_path}'; pass one of {', '.join(config_names())} or a .json path")
        raw, name = json.loads(shipped.read_text()), name_or_path
    try:
        return LaionConfig(name=name, embed_dim=int(raw["embed_dim"]), audio_cfg=dict(raw["audio_cfg"]),
                           joint_dim=int(raw.get("joint_dim", 512)), htsat=raw.get("htsat"))
    except (KeyError, TypeError, ValueError) as e:
        raise EncoderError(f"LAION config {name_or_path} lacks {e}; it needs embed_dim and audio_cfg") from None


def config_to_json(cfg: LaionConfig) -> dict:
    d = asdict(cfg)
    d.pop("name")
    return {k: v for k, v in d.items() if v is not None}


# --------------------------------------------------------------------------- model
def build_model(cfg: LaionConfig):
    """Audio branch + projection with laion-clap's module names (``audio_branch``,
    ``audio_projection``), in eval mode. Random init; load weights afterwards."""
    from audioaudit.encoders.laion_tower import AudioTower

    htsat, pann = clap_modules()
    with warnings.catch_warnings():  # laion-clap's HTSAT calls torch.meshgrid without indexing=
        warnings.filterwarnings("ignore", message=".*torch.meshgrid.*")
        branch = _branch(cfg, htsat, pann)
    return AudioTower(branch, cfg.embed_dim, cfg.joint_dim).eval()


def _branch(cfg: LaionConfig, htsat, pann):
    audio_cfg = types.SimpleNamespace(**cfg.audio_cfg)
    model_type = cfg.audio_cfg.get("model_type")
    if model_type == "HTSAT" and cfg.htsat is not None:
        arch = dict(cfg.htsat)
        arch["patch_stride"] = tuple(arch.get("patch_stride", (4, 4)))
        frames = cfg.clip_samples // int(cfg.audio_cfg["hop_size"]) + 1
        fits = arch["spec_size"] * (arch["spec_size"] // int(cfg.audio_cfg["mel_bins"]))
        if frames > fits:  # HTSAT.reshape_wav2img would refuse every clip
            raise EncoderError(f"LAION config {cfg.name}: clip_samples give {frames} frames, more than spec_size allows ({fits})")
        return htsat.HTSAT_Swin_Transformer(num_classes=cfg.audio_cfg["class_num"], config=audio_cfg, **arch)
    if model_type == "HTSAT":
        return htsat.create_htsat_model(audio_cfg)
    if model_type == "PANN" and cfg.audio_cfg.get("model_name") == "Cnn14":
        return pann.create_pann_model(audio_cfg)
    if model_type == "PANN":  # laion-clap's Cnn6/Cnn10 forward() does not take CLAP's input dict
        raise EncoderError(f"LAION config {cfg.name}: only the Cnn14 PANN (PANN-14*) works as a CLAP audio branch")
    raise EncoderError(f"LAION config {cfg.name}: audio model_type must be HTSAT or PANN, not {model_type!r}")


# --------------------------------------------------------------------------- checkpoints
def _numpy_safe_globals() -> list:
    """What NumPy scalars/arrays in checkpoint metadata unpickle through (numpy 1.x and 2.x)."""
    try:
        from numpy.core import multiarray as ma
    except ImportError:  # pragma: no cover - numpy 2
        from numpy._core import multiarray as ma
    found = [ma.scalar, ma._reconstruct, np.ndarray, np.dtype]
    found += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    return found


def _reason(e: Exception) -> str:
    """The informative line of a torch.load failure (weights_only refusals are multi-line)."""
    if pickle_refusal(e):  # a pickle that may run code: say so, never suggest allow-listing it
        return pickle_refusal(e)
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    key = [ln for ln in lines if "Unsupported global" in ln or "WeightsUnpickler" in ln]
    line = (key or lines or [""])[0].replace("WeightsUnpickler error: ", "")
    return f"{type(e).__name__}: {line}"[:240] if line else type(e).__name__


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The audio tensors of a LAION ``.pt``: ``{audio_branch.* | audio_projection.*: tensor}``."""
    import torch

    p = Path(path).expanduser()
    if not p.is_file():
        what = "is a directory (for a transformers CLAP directory use hf:DIR)" if p.is_dir() else "not found"
        raise EncoderError(f"LAION checkpoint {p} {what}; pass laion:/path/to/630k-audioset-best.pt")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a refused or broken pickle fails in many ways (KeyError, EOFError, ...)
        raise EncoderError(f"{p} is not a readable PyTorch checkpoint ({_reason(e)}); "
                           "pass a LAION-CLAP .pt such as 630k-audioset-best.pt") from None
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict):
        raise EncoderError(f"{p} holds no state_dict; pass a LAION-CLAP .pt such as 630k-audioset-best.pt")
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    audio = {k: v for k, v in sd.items() if k.startswith(_KEEP) and isinstance(v, torch.Tensor)}
    if not audio:
        raise EncoderError(f"{p} has no audio_branch.*/audio_projection.* weights, so it is not a LAION-CLAP checkpoint; "
                           "pass laion:PATH.pt with a LAION-CLAP .pt, or hf:DIR for a transformers CLAP directory")
    return audio


def guess_config(keys: set[str], shapes: dict[str, tuple]) -> str | None:
    """Which shipped config a state dict looks like (for the error message only)."""
    width = shapes.get("audio_projection.0.weight", (0, 0))[1]
    if any(k.startswith("audio_branch.conv_block6.") for k in keys):
        return "PANN-14"
    if any(k.startswith("audio_branch.layers.") for k in keys):
        return {768: "HTSAT-tiny", 1024: "HTSAT-base", 2048: "HTSAT-large"}.get(width)
    return None


def load_weights(model, audio: dict, path: Path, cfg: LaionConfig) -> None:
    """strict=True load, or a one-line error that names the config to pass instead."""
    fusion = [k for k in audio if ".fusion_model." in k or ".mel_conv1d." in k or ".mel_conv2d." in k]
    if fusion:
        raise EncoderError(f"{path} is a feature-fusion checkpoint, which the laion backend does not load; "
                           "pass a non-fusion checkpoint such as 630k-audioset-best.pt")
    own = model.state_dict()
    missing = sorted(set(own) - set(audio))
    unexpected = sorted(set(audio) - set(own))
    wrong = sorted(k for k in set(own) & set(audio) if tuple(own[k].shape) != tuple(audio[k].shape))
    if missing or unexpected or wrong:
        guess = guess_config(set(audio), {k: tuple(v.shape) for k, v in audio.items()})
        hint = (f"it looks like {guess}: pass laion:{path}#{guess}" if guess and guess != cfg.name
                else "pass the config it was trained with as laion:PATH.pt#CONFIG")
        example = (missing or unexpected or wrong)[0]
        raise EncoderError(
            f"{path} does not fit LAION config {cfg.name} ({len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(wrong)} mis-shaped tensors, e.g. {example}); {hint}"
        )
    model.load_state_dict(audio, strict=True)


# --------------------------------------------------------------------------- encoder
class LaionEncoder(BatchedEncoder):
    """A LAION-CLAP audio tower; ``model`` maps [B, clip_samples] waveforms to [B, joint_dim]."""

    def __init__(self, model, cfg: LaionConfig, *, source: dict, name: str, batch_size: int = 16,
                 device: str = "cpu", hop_seconds: float | None = None):
        self.name = name
        self.sample_rate = cfg.sample_rate
        self.dim = cfg.joint_dim
        self.window_seconds = cfg.clip_samples / cfg.sample_rate
        self.hop_seconds = default_hop(self.window_seconds, hop_seconds)
        self.config = cfg
        super().__init__(batch_size=batch_size, device=device, identity={
            "backend": "laion", **source, "config_name": cfg.name, "config": config_to_json(cfg),
            "padding": "repeatpad",
        })
        self.model = model.to(self.device).eval()

    def prepare(self, waves: list[np.ndarray]):
        import torch

        x = np.stack([repeat_pad(w, self.config.clip_samples) for w in waves]).astype(np.float32)
        return torch.from_numpy(x).to(self.device)

    def forward(self, inputs):
        return self.model(inputs)


def load_laion(arg: str, *, batch_size: int = 16, device: str = "cpu", hop_seconds: float | None = None) -> LaionEncoder:
    """``PATH.pt`` or ``PATH.pt#CONFIG`` -> encoder (see the module docstring)."""
    from audioaudit.audio.fingerprint import file_sha256

    if not arg:
        raise EncoderError("laion needs a checkpoint: pass laion:/path/to/630k-audioset-best.pt[#HTSAT-tiny]")
    path_s, _, config_s = arg.partition("#")
    path = Path(path_s).expanduser()
    audio = read_checkpoint(path)
    cfg = load_config(config_s or None)
    model = build_model(cfg)
    load_weights(model, audio, path, cfg)
    source = {"checkpoint_sha256": file_sha256(path)}  # the file's name/place do not change vectors
    return LaionEncoder(model, cfg, source=source, name=f"laion:{path.name}#{cfg.name}",
                        batch_size=batch_size, device=device, hop_seconds=hop_seconds)


def save_checkpoint(model, path: str | os.PathLike, extra: dict | None = None) -> None:
    """Write a LAION-layout ``.pt`` (``{"state_dict": {"module.audio_branch.*": ...}}``), atomically.
    Used by tests and by anyone who wants a LAION-format copy of an audio tower."""
    import torch

    from audioaudit.util.atomic import atomic_path

    sd = {f"module.{k}": v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": sd, **(extra or {})}, tmp)
