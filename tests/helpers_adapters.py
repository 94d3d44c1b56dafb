"""Builders of tiny random TANGO-style / AudioLDM2 components, saved in real directory layouts.

Nothing is fetched: tokenizers are trained here with the ``tokenizers`` library (in
transformers 5, slow tokenizers built from vocab files silently ignore them), models are
random with a fixed seed. Shapes follow the real models (8-channel latents, HiFi-GAN with
AudioLDM's 16 kHz upsampling 5·4·2·2·2) at a fraction of their width.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

WORDS = ("a dog barks loudly while rain falls on a tin roof and birds sing an engine revs water "
         "flows people clap cheer a door slams wind howls footsteps on gravel").split()
N_MELS = 16  # vocoder mel bins (64 in AudioLDM)
T5_DIM = 16
DURATION = 0.32  # seconds: 32 mel frames at hop 160, 16 latent frames


# ---------------------------------------------------------------------------------------------
# tokenizers (trained locally)
# ---------------------------------------------------------------------------------------------
def tiny_t5_tokenizer(max_length: int = 32):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import T5TokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=80, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    tok.train_from_iterator([" ".join(WORDS)] * 10, trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                           extra_ids=0, model_max_length=max_length)


def tiny_roberta_tokenizer(max_length: int = 77):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import RobertaTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok.train_from_iterator([" ".join(WORDS)] * 10, trainers.BpeTrainer(vocab_size=300, special_tokens=specials))
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return RobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                unk_token="<unk>", mask_token="<mask>", model_max_length=max_length)


# ---------------------------------------------------------------------------------------------
# TANGO-style parts
# ---------------------------------------------------------------------------------------------
def tiny_t5_encoder(vocab_size: int, seed: int = 0):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    return T5EncoderModel(T5Config(vocab_size=vocab_size, d_model=T5_DIM, d_ff=32, d_kv=8, num_heads=2,
                                   num_layers=1, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)).eval()


def tiny_unet(seed: int = 0, in_channels: int = 8):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=16, in_channels=in_channels, out_channels=in_channels, block_out_channels=(16, 32),
        layers_per_block=1, norm_num_groups=8, cross_attention_dim=T5_DIM, attention_head_dim=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    ).eval()


def tiny_vae(seed: int = 0, latent_channels: int = 8):
    """Two levels of 32 channels: GroupNorm(32), as in AudioLDM's latent-diffusion VAE."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(in_channels=1, out_channels=1, latent_channels=latent_channels, block_out_channels=[32, 32],
                         down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                         layers_per_block=1, scaling_factor=0.92).eval()


def tiny_vocoder(seed: int = 0):
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    torch.manual_seed(seed)
    cfg = SpeechT5HifiGanConfig(model_in_dim=N_MELS, sampling_rate=16000, upsample_initial_channel=32,
                                upsample_rates=[5, 4, 2, 2, 2], upsample_kernel_sizes=[16, 16, 8, 4, 4],
                                resblock_kernel_sizes=[3, 7], resblock_dilation_sizes=[[1, 3, 5]] * 2,
                                normalize_before=False)
    voc = SpeechT5HifiGan(cfg)
    # transformers' init (std 0.01) gives ~1e-10 audio: make it audible so tests can tell clips apart
    with torch.no_grad():
        for p in voc.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 1.0 / p[0].numel() ** 0.5)
    return voc.eval()


def tiny_scheduler(prediction_type: str = "v_prediction"):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         prediction_type=prediction_type, clip_sample=False, steps_offset=1)


def tiny_tango_parts(seed: int = 0, prediction_type: str = "v_prediction") -> dict:
    tok = tiny_t5_tokenizer()
    return dict(tokenizer=tok, text_encoder=tiny_t5_encoder(len(tok), seed), unet=tiny_unet(seed),
                vae=tiny_vae(seed), vocoder=tiny_vocoder(seed), scheduler=tiny_scheduler(prediction_type))


def save_tango_diffusers(out: Path, parts: dict | None = None) -> Path:
    from generators.adapters.tango_pipeline import TangoStylePipeline

    TangoStylePipeline(**(parts or tiny_tango_parts())).save_pretrained(str(out))
    return out


# ---------------------------------------------------------------------------------------------
# declare-lab layout (main/vae/stft configs + pytorch_model_*.bin), written from the same parts
# ---------------------------------------------------------------------------------------------
def diffusers_vae_to_ldm(sd: dict, n_levels: int) -> dict:
    """Inverse of diffusers' ``convert_ldm_vae_checkpoint``: latent-diffusion key names."""
    out = {}
    for k, v in sd.items():
        k2 = (k.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
              .replace("downsamplers.0.conv", "downsample.conv").replace("upsamplers.0.conv", "upsample.conv")
              .replace("mid_block.resnets.0", "mid.block_1").replace("mid_block.resnets.1", "mid.block_2"))
        if ".down_blocks." in k2:
            k2 = k2.replace(".down_blocks.", ".down.").replace(".resnets.", ".block.")
        if ".up_blocks." in k2:
            i = int(k2.split(".up_blocks.")[1].split(".")[0])
            k2 = k2.replace(f".up_blocks.{i}.", f".up.{n_levels - 1 - i}.").replace(".resnets.", ".block.")
        if "mid_block.attentions.0" in k2:
            k2 = (k2.replace("mid_block.attentions.0", "mid.attn_1").replace("group_norm", "norm")
                  .replace("to_q", "q").replace("to_k", "k").replace("to_v", "v").replace("to_out.0", "proj_out"))
            v = v[:, :, None, None] if v.ndim == 2 else v  # linear → 1×1 conv
        out[k2] = v.clone()
    return out


def speecht5_to_audioldm_vocoder(sd: dict) -> dict:
    return {("ups." + k[len("upsampler."):] if k.startswith("upsampler.") else k): v.clone()
            for k, v in sd.items() if k not in ("mean", "scale")}


def save_tango_declare_lab(out: Path, parts: dict | None = None, *,
                           unet_config_at: str = "diffusion_model_config.json",
                           with_text_encoder_dir: bool = True) -> Path:
    """Files as in a declare-lab/tango model repo; the UNet config copied next to them as a user would,
    the FLAN-T5 config + tokenizer in ``text_encoder/`` (weights only in pytorch_model_main.bin)."""
    parts = parts or tiny_tango_parts()
    out.mkdir(parents=True, exist_ok=True)
    main = {"text_encoder_name": "google/flan-t5-large", "scheduler_name": "stabilityai/stable-diffusion-2-1",
            "unet_model_name": None, "unet_model_config_path": "configs/diffusion_model_config.json", "snr_gamma": 5.0}
    (out / "main_config.json").write_text(json.dumps(main))
    main_sd = {f"unet.{k}": v for k, v in parts["unet"].state_dict().items()}
    main_sd.update({f"text_encoder.{k}": v for k, v in parts["text_encoder"].state_dict().items()})
    torch.save(main_sd, out / "pytorch_model_main.bin")
    if unet_config_at:
        (out / unet_config_at).parent.mkdir(parents=True, exist_ok=True)
        (out / unet_config_at).write_text(json.dumps(dict(parts["unet"].config)))
    if with_text_encoder_dir:
        parts["text_encoder"].config.save_pretrained(out / "text_encoder")
        parts["tokenizer"].save_pretrained(out / "text_encoder")
    vae = parts["vae"]
    n = len(vae.config.block_out_channels)
    vae_cfg = {"image_key": "fbank", "subband": 1, "embed_dim": vae.config.latent_channels, "time_shuffle": 1,
               "ddconfig": {"double_z": True, "z_channels": vae.config.latent_channels, "resolution": 256,
                            "downsample_time": False, "in_channels": 1, "out_ch": 1,
                            "ch": vae.config.block_out_channels[0],
                            "ch_mult": [c // vae.config.block_out_channels[0] for c in vae.config.block_out_channels],
                            "num_res_blocks": vae.config.layers_per_block, "attn_resolutions": [], "dropout": 0.0},
               "scale_factor": vae.config.scaling_factor}
    (out / "vae_config.json").write_text(json.dumps(vae_cfg))
    vae_sd = diffusers_vae_to_ldm(vae.state_dict(), n)
    vae_sd.update({f"vocoder.{k}": v for k, v in speecht5_to_audioldm_vocoder(parts["vocoder"].state_dict()).items()})
    torch.save(vae_sd, out / "pytorch_model_vae.bin")
    (out / "stft_config.json").write_text(json.dumps({"filter_length": 1024, "hop_length": 160, "win_length": 1024,
                                                      "n_mel_channels": N_MELS, "sampling_rate": 16000,
                                                      "mel_fmin": 0, "mel_fmax": 8000}))
    return out


# ---------------------------------------------------------------------------------------------
# AudioLDM2 (as diffusers' own fast tests build it, with local tokenizers)
# ---------------------------------------------------------------------------------------------
def tiny_audioldm2_pipeline(seed: int = 0):
    from diffusers import AudioLDM2Pipeline, AudioLDM2ProjectionModel, AudioLDM2UNet2DConditionModel, DDIMScheduler
    from transformers import (
        ClapAudioConfig,
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapTextConfig,
        GPT2Config,
        GPT2LMHeadModel,
        T5Config,
        T5EncoderModel,
    )

    torch.manual_seed(seed)
    unet = AudioLDM2UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8, sample_size=16, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=([None, 16, 32], [None, 16, 32]),
        attention_head_dim=4)
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False)
    vae = tiny_vae(seed, latent_channels=4)
    tok = tiny_roberta_tokenizer()
    text_cfg = ClapTextConfig(bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=16, intermediate_size=24,
                              num_attention_heads=2, num_hidden_layers=1, vocab_size=len(tok), projection_dim=16)
    audio_cfg = ClapAudioConfig(spec_size=64, window_size=4, num_mel_bins=64, intermediate_size=24, depths=[1, 1],
                                num_attention_heads=[2, 2], num_hidden_layers=2, hidden_size=32,
                                patch_embeds_hidden_size=16, projection_dim=16, patch_size=2, patch_stride=2,
                                patch_embed_input_channels=4)
    clap = ClapModel(ClapConfig(text_config=text_cfg.to_dict(), audio_config=audio_cfg.to_dict(), projection_dim=16))
    tok2 = tiny_t5_tokenizer(max_length=77)
    t5 = T5EncoderModel(T5Config(vocab_size=len(tok2), d_model=32, d_ff=37, d_kv=8, num_heads=2, num_layers=1))
    lm = GPT2LMHeadModel(GPT2Config(n_embd=16, n_head=2, n_layer=1, vocab_size=100, n_ctx=99, n_positions=99,
                                    bos_token_id=0, eos_token_id=0))
    lm.config.max_new_tokens = 4
    proj = AudioLDM2ProjectionModel(text_encoder_dim=16, text_encoder_1_dim=32, langauge_model_dim=16)
    voc = tiny_vocoder(seed)
    return AudioLDM2Pipeline(vae=vae, text_encoder=clap, text_encoder_2=t5, projection_model=proj, language_model=lm,
                             tokenizer=tok, tokenizer_2=tok2, feature_extractor=ClapFeatureExtractor(), unet=unet,
                             scheduler=sched, vocoder=voc)
