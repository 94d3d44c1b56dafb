"""Load the parts of a TANGO-style checkpoint directory into diffusers/transformers modules.

Two layouts are accepted (chosen by what the directory holds):

**declare-lab** — the files of the ``declare-lab/tango*`` model repositories:

    main_config.json          {"text_encoder_name", "scheduler_name", "unet_model_config_path", ...}
    pytorch_model_main.bin    state dict: ``unet.*`` (diffusers UNet2DConditionModel keys) and
                              ``text_encoder.*`` (transformers T5EncoderModel keys)
    vae_config.json           AudioLDM VAE config: {"ddconfig": {...}, "embed_dim", "scale_factor", ...}
    pytorch_model_vae.bin     AudioLDM VAE state dict in latent-diffusion key names, with the
                              HiFi-GAN vocoder under ``vocoder.*`` (conv_pre / ups / resblocks / conv_post)
    stft_config.json          optional; only ``sampling_rate`` is read (default 16000)
    pytorch_model_stft.bin    not needed for generation (mel analysis for training)

  plus what those repositories leave to TANGO's code repo or the hub, looked up locally:
    - the UNet config (``unet_model_config_path`` names a file of TANGO's code repository, e.g.
      ``configs/diffusion_model_config.json``): ``DIR/<that path>``, ``DIR/<its file name>``,
      ``DIR/unet/config.json``, ``DIR/unet_config.json`` or ``unet_config=PATH``;
    - the text encoder's config + tokenizer (``text_encoder_name``, e.g. google/flan-t5-large):
      ``DIR/text_encoder/`` (+ ``DIR/tokenizer/``), ``text_encoder=DIR``, a local path in
      main_config.json, or the local Hugging Face cache; the weights come from
      ``pytorch_model_main.bin``;
    - the scheduler (``scheduler_name``): ``DIR/scheduler/scheduler_config.json``, a local path,
      the HF cache, or — for ``stabilityai/stable-diffusion-2-1``, which TANGO names — that
      repository's published DDPM settings (v-prediction, scaled-linear betas 0.00085…0.012);
    - the vocoder config: ``DIR/vocoder/config.json`` or ``DIR/vocoder_config.json``, else read
      from the weight shapes (AudioLDM's 16 kHz HiFi-GAN upsampling 5·4·2·2·2 when the kernels
      are 16,16,8,4,4).
  Each ``*.bin`` may instead be a ``*.safetensors`` of the same stem. Pickles are read with
  ``torch.load(weights_only=True)``.

**diffusers** — one subfolder per part, as ``TangoStylePipeline.save_pretrained`` writes it:
``tokenizer/ text_encoder/ unet/ vae/ vocoder/ scheduler/`` (``model_index.json`` optional).
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

from generators.adapters.common import find_weights, load_checked, load_state_dict, sub_state_dict
from generators.adapters.hifigan import vocoder_from_audioldm_state
from generators.base import GeneratorError

DECLARE_LAB_REQUIRED = ("main_config.json", "pytorch_model_main", "vae_config.json", "pytorch_model_vae")
DIFFUSERS_PARTS = {  # subfolder -> files of which one must exist
    "tokenizer": ("tokenizer.json", "tokenizer_config.json", "spiece.model"),
    "text_encoder": ("config.json",),
    "unet": ("config.json",),
    "vae": ("config.json",),
    "vocoder": ("config.json",),
    "scheduler": ("scheduler_config.json",),
}
# stabilityai/stable-diffusion-2-1 scheduler/scheduler_config.json, the DDPM fields (public config).
SD21_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                      prediction_type="v_prediction", clip_sample=False, steps_offset=1)


@dataclass
class TangoParts:
    tokenizer: object
    text_encoder: object
    unet: object
    vae: object
    vocoder: object
    scheduler: object
    layout: str
    sources: dict = field(default_factory=dict)  # part -> file or folder it came from

    def modules(self) -> dict:
        return {k: getattr(self, k) for k in ("tokenizer", "text_encoder", "unet", "vae", "vocoder", "scheduler")}


def detect_layout(root: Path) -> str:
    if not root.is_dir():
        raise GeneratorError(f"{root}: checkpoint directory not found")
    if (root / "main_config.json").exists() or find_weights(root, "pytorch_model_main"):
        return "declare-lab"
    if (root / "model_index.json").exists() or any((root / p).is_dir() for p in DIFFUSERS_PARTS):
        return "diffusers"
    raise GeneratorError(
        f"{root}: not a TANGO checkpoint: expected main_config.json + pytorch_model_main.bin + vae_config.json"
        f" + pytorch_model_vae.bin (declare-lab layout) or subfolders {', '.join(DIFFUSERS_PARTS)} (diffusers layout)"
    )


def load_tango_parts(root: str | Path, *, text_encoder: str | None = None, unet_config: str | None = None,
                     vocoder_config: str | None = None) -> TangoParts:
    root = Path(root).expanduser()
    if detect_layout(root) == "diffusers":
        return load_diffusers_layout(root)
    return load_declare_lab_layout(root, text_encoder=text_encoder, unet_config=unet_config,
                                   vocoder_config=vocoder_config)


# ---------------------------------------------------------------------------------------------
# diffusers layout
# ---------------------------------------------------------------------------------------------
def _check_diffusers_parts(root: Path) -> None:
    missing = []
    for sub, files in DIFFUSERS_PARTS.items():
        if not any((root / sub / f).is_file() for f in files):
            missing.append(f"{sub}/{files[0]}")
    if missing:
        raise GeneratorError(f"{root}: diffusers-layout TANGO checkpoint is missing {', '.join(missing)}")


def _from_pretrained(cls, path: Path):
    extra = {}
    if cls.__module__.startswith("diffusers"):  # without accelerate, diffusers warns unless told
        extra["low_cpu_mem_usage"] = importlib.util.find_spec("accelerate") is not None
    try:
        return cls.from_pretrained(str(path), local_files_only=True, **extra)
    except (OSError, ValueError, EnvironmentError) as e:
        raise GeneratorError(f"{path}: cannot load {cls.__name__}: {str(e).splitlines()[0][:300]}") from None


def load_diffusers_layout(root: Path) -> TangoParts:
    import diffusers
    from transformers import AutoTokenizer, SpeechT5HifiGan, T5EncoderModel

    _check_diffusers_parts(root)
    sched_cfg = _read_json(root / "scheduler" / "scheduler_config.json")
    sched_cls = getattr(diffusers, str(sched_cfg.get("_class_name", "DDPMScheduler")), diffusers.DDPMScheduler)
    if not (isinstance(sched_cls, type) and issubclass(sched_cls, diffusers.SchedulerMixin)):
        sched_cls = diffusers.DDPMScheduler
    parts = TangoParts(
        tokenizer=_from_pretrained(AutoTokenizer, root / "tokenizer"),
        text_encoder=_from_pretrained(T5EncoderModel, root / "text_encoder"),
        unet=_from_pretrained(diffusers.UNet2DConditionModel, root / "unet"),
        vae=_from_pretrained(diffusers.AutoencoderKL, root / "vae"),
        vocoder=_from_pretrained(SpeechT5HifiGan, root / "vocoder"),
        scheduler=sched_cls.from_config(sched_cfg),
        layout="diffusers",
    )
    parts.sources = {k: str(root / k) for k in DIFFUSERS_PARTS}
    return parts


# ---------------------------------------------------------------------------------------------
# declare-lab layout
# ---------------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise GeneratorError(f"{path}: cannot read JSON config ({e})") from None


def load_declare_lab_layout(root: Path, *, text_encoder=None, unet_config=None, vocoder_config=None) -> TangoParts:
    missing = [n if n.endswith(".json") else f"{n}.bin" for n in DECLARE_LAB_REQUIRED
               if not ((root / n).is_file() if n.endswith(".json") else find_weights(root, n))]
    if missing:
        raise GeneratorError(f"{root}: declare-lab TANGO checkpoint is missing {', '.join(missing)}")
    main = _read_json(root / "main_config.json")
    main_w, vae_w = find_weights(root, "pytorch_model_main"), find_weights(root, "pytorch_model_vae")
    main_sd = load_state_dict(main_w)
    vae_sd = load_state_dict(vae_w)
    stft = _read_json(root / "stft_config.json") if (root / "stft_config.json").is_file() else {}
    unet, unet_src = _unet_from_main(root, main, main_sd, main_w, unet_config)
    tok, enc, enc_src = _text_from_main(root, main, main_sd, main_w, text_encoder)
    vae = _vae_from_ldm(root / "vae_config.json", vae_sd, vae_w)
    vocoder, voc_src = _vocoder(root, vae_sd, vae_w, vocoder_config, int(stft.get("sampling_rate", 16000)))
    sched, sched_src = _scheduler_from_main(root, main)
    return TangoParts(tok, enc, unet, vae, vocoder, sched, layout="declare-lab",
                      sources={"unet": unet_src, "text_encoder": enc_src, "vae": str(vae_w),
                               "vocoder": voc_src, "scheduler": sched_src})


def _unet_config_path(root: Path, main: dict, override: str | None) -> Path:
    if override:
        p = Path(override).expanduser()
        if not p.is_file():
            raise GeneratorError(f"{p}: UNet config not found (unet_config=)")
        return p
    named = main.get("unet_model_config_path") or ""
    cands = [root / "unet" / "config.json", root / "unet_config.json"]
    if named:
        cands = [root / named, root / Path(named).name] + cands
    for c in cands:
        if c.is_file():
            return c
    where = f"main_config.json names '{named}' (a file of TANGO's code repository); " if named else ""
    raise GeneratorError(f"{root}: the UNet config is missing: {where}put it at "
                         f"{cands[1] if named else cands[0]} or pass unet_config=PATH")


def _unet_from_main(root, main, main_sd, main_w, override):
    from diffusers import UNet2DConditionModel

    if any(k.startswith("group_in.") for k in main_sd):
        raise GeneratorError(f"{main_w}: this TANGO variant wraps a Stable Diffusion UNet with group_in/group_out "
                             "projections, which this adapter does not support")
    cfg_path = _unet_config_path(root, main, override)
    cfg = _read_json(cfg_path)
    if cfg.get("_class_name", "UNet2DConditionModel") != "UNet2DConditionModel":
        raise GeneratorError(f"{cfg_path}: UNet class '{cfg['_class_name']}' is not supported "
                             "(this adapter runs diffusers' UNet2DConditionModel, as TANGO and TANGO 2 use)")
    try:
        unet = UNet2DConditionModel.from_config(cfg)
    except (TypeError, ValueError) as e:
        raise GeneratorError(f"{cfg_path}: not a UNet2DConditionModel config ({e})") from None
    sd = sub_state_dict(main_sd, "unet.")
    if not sd:
        raise GeneratorError(f"{main_w}: no 'unet.*' weights in this file")
    load_checked(unet, sd, f"{main_w} (unet.*) with {cfg_path}")
    return unet.eval(), f"{main_w} + {cfg_path}"


def _text_source(root: Path, main: dict, override: str | None) -> str:
    if override:
        if not Path(override).expanduser().is_dir():
            raise GeneratorError(f"{override}: text encoder directory not found (text_encoder=)")
        return str(Path(override).expanduser())
    if (root / "text_encoder" / "config.json").is_file():
        return str(root / "text_encoder")
    name = str(main.get("text_encoder_name") or "")
    for p in (Path(name).expanduser(), root / name):
        if name and (p / "config.json").is_file():
            return str(p)
    if not name:
        raise GeneratorError(f"{root}: main_config.json has no text_encoder_name and there is no text_encoder/ folder")
    return name  # a hub id: only the local cache is tried


def _text_from_main(root, main, main_sd, main_w, override):
    from transformers import AutoConfig, AutoTokenizer, T5EncoderModel

    src = _text_source(root, main, override)
    tok_src = str(root / "tokenizer") if (root / "tokenizer").is_dir() else src
    try:
        tok = AutoTokenizer.from_pretrained(tok_src, local_files_only=True)
        cfg = AutoConfig.from_pretrained(src, local_files_only=True)
    except (OSError, ValueError) as e:
        raise GeneratorError(
            f"{root}: text encoder '{src}' (main_config.json text_encoder_name) is not available offline "
            f"({str(e).splitlines()[0][:160]}); put its config.json and tokenizer files in {root / 'text_encoder'}/ "
            "or pass text_encoder=DIR") from None
    sd = sub_state_dict(main_sd, "text_encoder.")
    if not sd:  # weights not in the main file: the local encoder directory must hold them
        return tok, _from_pretrained(T5EncoderModel, Path(src)).eval(), src
    if getattr(cfg, "model_type", "") != "t5":
        raise GeneratorError(f"{src}: text encoder config is '{cfg.model_type}', expected a T5 (FLAN-T5) encoder")
    enc = T5EncoderModel(cfg)
    load_checked(enc, sd, f"{main_w} (text_encoder.*) with config {src}")
    return tok, enc.eval(), f"{main_w} + {src}"


def _vae_from_ldm(cfg_path: Path, vae_sd: dict, vae_w: Path):
    """AudioLDM's latent-diffusion VAE → diffusers AutoencoderKL (key mapping by diffusers itself)."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    cfg = _read_json(cfg_path)
    dd = cfg.get("ddconfig")
    if not isinstance(dd, dict):
        raise GeneratorError(f"{cfg_path}: no 'ddconfig' section (not an AudioLDM VAE config)")
    checks = {"attn_resolutions": not dd.get("attn_resolutions"), "double_z": dd.get("double_z", True),
              "embed_dim == z_channels": cfg.get("embed_dim", dd.get("z_channels")) == dd.get("z_channels"),
              "subband": cfg.get("subband", 1) == 1, "time_shuffle": cfg.get("time_shuffle", 1) == 1}
    unsupported = [k for k, ok in checks.items() if not ok]
    if unsupported:
        raise GeneratorError(f"{cfg_path}: VAE setting(s) not supported: {', '.join(unsupported)}")
    try:
        n = len(dd["ch_mult"])
        config = dict(in_channels=dd["in_channels"], out_channels=dd["out_ch"], latent_channels=dd["z_channels"],
                      block_out_channels=[dd["ch"] * m for m in dd["ch_mult"]],
                      down_block_types=["DownEncoderBlock2D"] * n, up_block_types=["UpDecoderBlock2D"] * n,
                      layers_per_block=dd["num_res_blocks"], scaling_factor=float(cfg.get("scale_factor", 1.0)))
    except KeyError as e:
        raise GeneratorError(f"{cfg_path}: ddconfig lacks {e}") from None
    vae = AutoencoderKL(**config)
    ldm = {k: v for k, v in vae_sd.items() if not k.startswith("vocoder.") and k != "scale_factor"}
    load_checked(vae, convert_ldm_vae_checkpoint(ldm, config), f"{vae_w} with {cfg_path}")
    return vae.eval()


def _vocoder(root: Path, vae_sd: dict, vae_w: Path, override: str | None, sampling_rate: int):
    from transformers import SpeechT5HifiGan

    sd = sub_state_dict(vae_sd, "vocoder.")
    if override:
        cfg_path = Path(override).expanduser()
        if not cfg_path.is_file():
            raise GeneratorError(f"{override}: vocoder config not found (vocoder_config=)")
    else:
        cfg_path = next((p for p in (root / "vocoder" / "config.json", root / "vocoder_config.json")
                         if p.is_file()), None)
    if not sd:
        if find_weights(root / "vocoder", "model") or find_weights(root / "vocoder", "pytorch_model"):
            return _from_pretrained(SpeechT5HifiGan, root / "vocoder").eval(), str(root / "vocoder")
        raise GeneratorError(f"{vae_w}: no 'vocoder.*' (HiFi-GAN) weights, and no vocoder/ folder with weights")
    config = _read_json(cfg_path) if cfg_path else None
    return vocoder_from_audioldm_state(sd, config, sampling_rate, f"{vae_w} (vocoder.*)"), \
        f"{vae_w}" + (f" + {cfg_path}" if cfg_path else "")


def _scheduler_from_main(root: Path, main: dict):
    from diffusers import DDPMScheduler

    name = str(main.get("scheduler_name") or "")
    cands = [root / "scheduler" / "scheduler_config.json"]
    if name:
        cands += [Path(name).expanduser() / "scheduler" / "scheduler_config.json",
                  root / name / "scheduler" / "scheduler_config.json"]
    for p in cands:
        if p.is_file():
            return DDPMScheduler.from_pretrained(str(p.parent)), str(p)
    if name.rstrip("/") == "stabilityai/stable-diffusion-2-1":
        return DDPMScheduler(**SD21_SCHEDULER), f"{name} (its published DDPM settings)"
    try:
        return DDPMScheduler.from_pretrained(name, subfolder="scheduler", local_files_only=True), f"{name} (HF cache)"
    except (OSError, ValueError):
        raise GeneratorError(f"{root}: scheduler '{name}' (main_config.json scheduler_name) is not available "
                             f"offline; put its scheduler_config.json in {root / 'scheduler'}/") from None
