"""AudioLDM-format HiFi-GAN vocoder weights → transformers ``SpeechT5HifiGan``.

HiFi-GAN generator with type-1 residual blocks (Kong et al. 2020, §2.1, Fig. 1). AudioLDM's
16 kHz vocoder (Liu et al. 2023) takes 64 mel bins and upsamples 5·4·2·2·2 = 160 samples per
frame (the STFT hop) with kernels 16, 16, 8, 4, 4.

AudioLDM key names ``conv_pre / ups.i / resblocks.j.convs{1,2}.k / conv_post`` map to
transformers' ``conv_pre / upsampler.i / resblocks.j.convs{1,2}.k / conv_post``. Weight-normalised
tensors (``weight_g``/``weight_v``, or ``parametrizations.weight.original0/1``) are folded into
plain weights, ``w = g · v / ‖v‖`` with the norm over every dim but 0 (Salimans & Kingma 2016, eq. 2).
"""
from __future__ import annotations

import torch

from generators.adapters.common import load_checked
from generators.base import GeneratorError

AUDIOLDM_16K_KERNELS = [16, 16, 8, 4, 4]
AUDIOLDM_16K_RATES = [5, 4, 2, 2, 2]
HIFIGAN_V1_DILATIONS = [1, 3, 5]


def fold_weight_norm(sd: dict) -> dict:
    """Replace every weight-norm pair by the plain weight it parametrises."""
    out, pairs = {}, {}
    suffixes = ((".weight_g", ".weight_v"),
                (".parametrizations.weight.original0", ".parametrizations.weight.original1"))
    for k, v in sd.items():
        dotted = "." + k  # so a top-level "weight_g" has a suffix too
        hit = next(((suf, part) for pair in suffixes for suf, part in zip(pair, "gv") if dotted.endswith(suf)), None)
        if hit is None:
            out[k] = v
        else:
            pairs.setdefault(dotted[: -len(hit[0])][1:], {})[hit[1]] = v
    for stem, gv in pairs.items():
        if set(gv) != {"g", "v"}:
            raise GeneratorError(f"weight-norm tensor '{stem}' has only one of its two parts")
        g, v = gv["g"].float(), gv["v"].float()
        norm = v.flatten(1).norm(dim=1).view(-1, *([1] * (v.ndim - 1)))
        out[f"{stem}.weight" if stem else "weight"] = g * v / norm
    return out


def rename_audioldm_keys(sd: dict) -> dict:
    return {("upsampler." + k[len("ups."):] if k.startswith("ups.") else k): v for k, v in sd.items()}


def _count(sd: dict, prefix: str) -> int:
    return len({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)})


def infer_config(sd: dict, sampling_rate: int, source: str) -> dict:
    """A SpeechT5HifiGanConfig dict read off the weight shapes of a (renamed, folded) state dict."""
    try:
        c0, n_mels = sd["conv_pre.weight"].shape[:2]
        n_up = _count(sd, "upsampler.")
        kernels = [int(sd[f"upsampler.{i}.weight"].shape[-1]) for i in range(n_up)]
        n_res = _count(sd, "resblocks.") // n_up
        res_kernels = [int(sd[f"resblocks.{j}.convs1.0.weight"].shape[-1]) for j in range(n_res)]
        n_dil = _count(sd, "resblocks.0.convs1.")
    except (KeyError, ZeroDivisionError) as e:
        raise GeneratorError(f"{source}: not a HiFi-GAN state dict (missing {e})") from None
    if kernels == AUDIOLDM_16K_KERNELS:
        rates = AUDIOLDM_16K_RATES
    elif all(k % 2 == 0 for k in kernels):  # HiFi-GAN's convention: kernel = 2 × upsampling rate
        rates = [k // 2 for k in kernels]
    else:
        raise GeneratorError(f"{source}: cannot tell the vocoder's upsampling rates from kernels {kernels}; "
                             "put its config at vocoder/config.json")
    if n_dil != len(HIFIGAN_V1_DILATIONS):
        raise GeneratorError(f"{source}: residual blocks with {n_dil} convolutions: put the vocoder's config "
                             "at vocoder/config.json")
    return dict(model_in_dim=int(n_mels), sampling_rate=sampling_rate, upsample_initial_channel=int(c0),
                upsample_rates=rates, upsample_kernel_sizes=kernels, resblock_kernel_sizes=res_kernels,
                resblock_dilation_sizes=[HIFIGAN_V1_DILATIONS] * n_res, normalize_before=False)


def config_from_json(cfg: dict, sampling_rate: int) -> dict:
    """Accept a transformers SpeechT5HifiGan config or an AudioLDM/HiFi-GAN ``config.json``."""
    if "model_in_dim" in cfg:
        return {k: v for k, v in cfg.items() if not k.startswith("_")}
    keys = ("upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel", "resblock_kernel_sizes",
            "resblock_dilation_sizes")
    missing = [k for k in ("num_mels",) + keys if k not in cfg]
    if missing:
        raise GeneratorError(f"vocoder config lacks {', '.join(missing)}")
    return dict(model_in_dim=cfg["num_mels"], sampling_rate=int(cfg.get("sampling_rate", sampling_rate)),
                normalize_before=False, **{k: cfg[k] for k in keys})


def vocoder_from_audioldm_state(sd: dict, config: dict | None, sampling_rate: int, source: str):
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    sd = rename_audioldm_keys(fold_weight_norm(sd))
    cfg = config_from_json(config, sampling_rate) if config else infer_config(sd, sampling_rate, source)
    model = SpeechT5HifiGan(SpeechT5HifiGanConfig(**cfg))
    load_checked(model, {k: v.to(torch.float32) for k, v in sd.items()}, source, allow_missing=("mean", "scale"))
    return model.eval()
