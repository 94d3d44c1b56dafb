"""One spec string -> one encoder.

=====================  ==========================================================
spec                   encoder
=====================  ==========================================================
``mel``                log-mel mean+std descriptor, no weights (the yardstick)
``laion:PATH.pt``      LAION-CLAP checkpoint, HTSAT-tiny config
``laion:PATH.pt#CFG``  … with laion-clap config CFG (HTSAT-base, PANN-14, …) or a .json
``hf:DIR_OR_ID``       transformers CLAP directory, or hub id in the local cache
``tiny-laion[:SEED]``  tiny random LAION-CLAP tower (tests, demo)
``tiny-hf[:SEED]``     tiny random transformers CLAP tower (tests, demo)
``finetuned:DIR``      a fine-tuned copy detector (audioaudit.encoders.finetuned)
=====================  ==========================================================

Backends are imported only when asked for, so listing them is instant.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass

from audioaudit.encoders.base import Encoder, EncoderError
from audioaudit.errors import UserError


@dataclass(frozen=True)
class Backend:
    name: str
    spec: str  # how to write it
    summary: str
    target: str  # "module:function" taking (arg, *, batch_size, device, hop_seconds)
    needs_arg: bool = False
    takes_arg: bool = True


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in [
        Backend("mel", "mel", "log-mel mean+std descriptor (16 kHz, 64 mels), no weights: the yardstick",
                "audioaudit.encoders.registry:_load_mel", takes_arg=False),
        Backend("laion", "laion:PATH.pt[#CONFIG]",
                "LAION-CLAP .pt through laion-clap's audio branch + projection; CONFIG: HTSAT-tiny (default), "
                "HTSAT-base, PANN-14, ... or a .json", "audioaudit.encoders.laion:load_laion", needs_arg=True),
        Backend("hf", "hf:DIR_OR_ID", "transformers ClapAudioModelWithProjection from a save_pretrained "
                "directory or a cached hub id (laion/clap-htsat-unfused, ...)", "audioaudit.encoders.hf:load_hf",
                needs_arg=True),
        Backend("tiny-laion", "tiny-laion[:SEED]", "tiny random LAION-CLAP HTSAT tower, 4 s window (tests, demo)",
                "audioaudit.encoders.tiny:load_tiny_laion"),
        Backend("tiny-hf", "tiny-hf[:SEED]", "tiny random transformers CLAP tower, 4 s window (tests, demo)",
                "audioaudit.encoders.tiny:load_tiny_hf"),
        Backend("finetuned", "finetuned:DIR", "a copy detector fine-tuned by `audioaudit finetune`",
                "audioaudit.encoders.finetuned:load_finetuned", needs_arg=True),
    ]
}

SPEC_HELP = "one of: " + ", ".join(b.spec for b in BACKENDS.values()) + " (see `audioaudit encoders`)"


def list_backends() -> list[Backend]:
    return list(BACKENDS.values())


def parse_spec(spec: str) -> tuple[Backend, str]:
    """``"kind:arg"`` -> (backend, arg); arg may itself hold ':' (paths) and '#' (configs)."""
    spec = (spec or "").strip()
    kind, sep, arg = spec.partition(":")
    backend = BACKENDS.get(kind)
    if backend is None:
        raise EncoderError(f"unknown encoder '{spec}'; pass {SPEC_HELP}")
    if backend.needs_arg and not arg:
        raise EncoderError(f"encoder '{kind}' needs an argument: pass {backend.spec}")
    if sep and not backend.takes_arg:
        raise EncoderError(f"encoder '{kind}' takes no argument: pass {backend.spec}")
    return backend, arg


def _load_mel(arg: str = "", **kw) -> Encoder:
    from audioaudit.encoders.mel import MelEncoder

    return MelEncoder(**kw)


def _resolve(target: str):
    module, _, func = target.partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name):
            raise EncoderError(f"this build lacks {module}, which the '{target}' encoder needs") from None
        raise
    return getattr(mod, func)


def load_encoder(spec: str, device: str = "cpu", batch_size: int = 16, hop_seconds: float | None = None) -> Encoder:
    """Build the encoder a spec names. User mistakes raise :class:`EncoderError` (one line).

    ``hop_seconds``: hop between analysis windows (default: half the window).
    ``batch_size``: clips per forward pass inside ``embed``.
    """
    backend, arg = parse_spec(spec)
    loader = _resolve(backend.target)
    kw = {"device": device, "batch_size": batch_size, "hop_seconds": hop_seconds}
    params = inspect.signature(loader).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kw = {k: v for k, v in kw.items() if k in params}  # e.g. load_finetuned(dir) alone
    if "load_base" in params:  # a detector head loads its base encoder through this registry
        kw["load_base"] = load_encoder
    return loader(arg, **kw)


def load_stored_encoder(record: dict, where):
    """The encoder an index or run recorded in its ``encoder.json`` (by spec)."""
    spec = record.get("spec")
    if not spec:
        raise UserError(f"{where}: encoder.json has no spec to reload the encoder from; pass the encoder explicitly")
    return load_encoder(spec)

