"""``tiny-laion[:SEED]`` and ``tiny-hf[:SEED]``: small random CLAP audio towers built in
memory, for tests and the demo. They run the real code paths of the two backends (laion-clap's
HTSAT, transformers' CLAP) with the real 48 kHz front end, at a size that embeds a clip in
milliseconds: Swin depths [1, 1], 32 mel bins, a 128-wide spectrogram image, a 4 s window
and 32-dim embeddings. The weights are a pure function of the seed (and the torch version);
``identity()`` pins them by digest.
"""
from __future__ import annotations

from audioaudit.encoders.base import EncoderError
from audioaudit.encoders.laion import LaionConfig, LaionEncoder, build_model
from audioaudit.encoders.torch_base import state_dict_sha256

TINY_WINDOW_S = 4
TINY_DIM = 32

TINY_LAION = LaionConfig(
    name="tiny-laion",
    embed_dim=32,  # Swin width after the last stage: 16 * 2**(2-1)
    joint_dim=TINY_DIM,
    audio_cfg={
        "audio_length": 1024, "clip_samples": 48000 * TINY_WINDOW_S, "mel_bins": 32, "sample_rate": 48000,
        "window_size": 1024, "hop_size": 480, "fmin": 50, "fmax": 14000, "class_num": 8,
        "model_type": "HTSAT", "model_name": "tiny-random",
    },
    htsat={"spec_size": 128, "patch_size": 4, "patch_stride": [4, 4], "embed_dim": 16, "depths": [1, 1],
           "num_heads": [2, 4], "window_size": 8},
)

TINY_HF_AUDIO = {
    "num_mel_bins": 32, "spec_size": 128, "patch_embeds_hidden_size": 16, "hidden_size": 32,
    "depths": [1, 1], "num_attention_heads": [2, 4], "window_size": 8, "projection_dim": TINY_DIM,
    "num_classes": 8,
}
TINY_HF_FEATURES = {
    "feature_size": 32, "sampling_rate": 48000, "hop_length": 480, "max_length_s": TINY_WINDOW_S,
    "fft_window_size": 1024, "padding_value": 0.0, "return_attention_mask": False, "frequency_min": 50,
    "frequency_max": 14000, "top_db": None, "truncation": "rand_trunc", "padding": "repeatpad",
}


def parse_seed(arg: str, kind: str) -> int:
    if not arg:
        return 0
    try:
        return int(arg)
    except ValueError:
        raise EncoderError(f"{kind}:{arg}: the seed must be an integer, e.g. {kind}:0") from None


def seeded(seed: int, build):
    """Run ``build()`` under a private RNG seeded with ``seed`` (the global RNG is untouched)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def tiny_laion_model(seed: int = 0):
    return seeded(seed, lambda: build_model(TINY_LAION))


def tiny_hf_model(seed: int = 0):
    from transformers import ClapAudioConfig, ClapAudioModelWithProjection

    return seeded(seed, lambda: ClapAudioModelWithProjection(ClapAudioConfig(**TINY_HF_AUDIO)).eval())


def load_tiny_laion(arg: str = "", **kw) -> LaionEncoder:
    seed = parse_seed(arg, "tiny-laion")
    model = tiny_laion_model(seed)
    source = {"random_seed": seed, "weights_sha256": state_dict_sha256(model)}
    return LaionEncoder(model, TINY_LAION, source=source, name=f"tiny-laion:{seed}", **kw)


def load_tiny_hf(arg: str = "", **kw):
    from audioaudit.encoders.hf import HFClapEncoder

    seed = parse_seed(arg, "tiny-hf")
    model = tiny_hf_model(seed)
    source = {"random_seed": seed, "weights_sha256": state_dict_sha256(model)}
    return HFClapEncoder(model, TINY_HF_FEATURES, source=source, name=f"tiny-hf:{seed}", **kw)
