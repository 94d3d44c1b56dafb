"""Small helpers shared by the adapters: optional imports, prompts, seeds, checked weight loading."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Iterable, Sequence

from generators.base import GeneratorError

INSTALL_HINT = "pip install 'audioaudit[diffusers]'"


def require_diffusers():
    """Import diffusers or raise a one-line :class:`GeneratorError` naming the extra to install."""
    try:
        return importlib.import_module("diffusers")
    except ImportError:
        raise GeneratorError(f"this generator needs the optional package 'diffusers': {INSTALL_HINT}") from None


def read_prompts(path: str | Path) -> list[str]:
    """One prompt per line; blank lines are ignored. A missing or empty file is an error."""
    p = Path(path)
    if not p.is_file():
        raise GeneratorError(f"{p}: prompts file not found")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise GeneratorError(f"{p}: prompts file is not UTF-8 text ({e.reason})") from None
    prompts = [ln.strip() for ln in lines if ln.strip()]
    if not prompts:
        raise GeneratorError(f"{p}: prompts file is empty (write one prompt per line)")
    return prompts


def resolve_conditions(
    n: int, conditions: Sequence[str | None] | None, prompts_file: str | Path | None, kind: str
) -> list[str]:
    """The prompt of each of ``n`` samples: sample ``i`` gets ``prompts[i % len(prompts)]``.

    Prompts come from ``conditions`` (repeated CLI flags) and/or ``prompts_file``. A text model
    without any prompt is an error; pass an explicit empty prompt for unconditional samples.
    """
    if n < 1:
        raise GeneratorError(f"{kind}: asked for {n} samples; ask for at least 1")
    prompts = [("" if c is None else str(c)) for c in (conditions or [])]
    if prompts_file is not None:
        prompts += read_prompts(prompts_file)
    if not prompts:
        raise GeneratorError(
            f"{kind}: this text-to-audio model needs prompts: pass --prompt TEXT (repeatable) or a prompts file"
            " (one prompt per line); use an empty prompt '' for unconditional samples"
        )
    return [prompts[i % len(prompts)] for i in range(n)]


def check_opts(opts: dict, known: Iterable[str], kind: str) -> None:
    """Unknown generation options are an error (a typo must not be silently ignored)."""
    known = set(known)
    unknown = sorted(set(opts) - known)
    if unknown:
        raise GeneratorError(f"{kind}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def guidance_from(opts: dict, default: float) -> float:
    """``guidance`` and ``cfg`` are synonyms (classifier-free guidance scale)."""
    g, c = opts.pop("guidance", None), opts.pop("cfg", None)
    if g is not None and c is not None and float(g) != float(c):
        raise GeneratorError(f"guidance={g} and cfg={c} disagree; pass one of them")
    value = g if g is not None else c
    return float(default if value is None else value)


def pick_device(device: str | None):
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def cpu_generators(seeds: Sequence[int]):
    """One CPU ``torch.Generator`` per sample, so sample ``i`` depends on its own seed only."""
    import torch

    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def find_weights(root: Path, stem: str) -> Path | None:
    """``stem.safetensors`` or ``stem.bin`` inside ``root`` (first found), else None."""
    for ext in (".safetensors", ".bin"):
        p = root / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


def load_state_dict(path: Path) -> dict:
    """A flat tensor dict: safetensors, or a foreign pickle read with ``torch.load(weights_only=True)``."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or truncated file, or a pickle that needs arbitrary code
        raise GeneratorError(f"{path}: {_load_failure(e)}") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise GeneratorError(f"{path}: expected a state dict of tensors, found {type(sd).__name__}")
    return sd


def _load_failure(e: Exception) -> str:
    """One line. A pickle refused by ``weights_only=True`` because it would import or call
    something (``Unsupported global``, e.g. ``builtins.exec``) may run code when loaded: say
    so, and never repeat torch's advice to reload with ``weights_only=False`` or to
    allow-list the global."""
    import re

    text = str(e)
    m = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if m:
        return (f"cannot read weights (refused (Unsupported global {m.group(1)}): unpickling would import or call "
                f"{m.group(1)}, which could run code, so it was not loaded; use weights from a source you trust)")
    if "Weights only load failed" in text:
        detail = [ln.strip() for ln in text.splitlines()[1:] if ln.strip() and not ln.startswith(("Please", "Check"))]
        return f"cannot read weights (not a weights-only PyTorch pickle: {detail[0] if detail else 'damaged'})"
    return f"cannot read weights ({type(e).__name__}: {_first_line(e)})"


def sub_state_dict(sd: dict, prefix: str) -> dict:
    """Entries of ``sd`` under ``prefix`` (e.g. ``"unet."``) with the prefix removed."""
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def load_checked(module, sd: dict, source: str, allow_missing: Iterable[str] = ()) -> None:
    """``load_state_dict`` that fails with a message naming the file and the mismatched keys.

    Missing keys are tolerated only for tied aliases of a loaded tensor (T5's
    ``encoder.embed_tokens`` ↔ ``shared``) and for names in ``allow_missing`` (unused buffers).
    """
    own = module.state_dict(keep_vars=True)
    try:
        missing, unexpected = module.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shape mismatch
        raise GeneratorError(f"{source}: weights do not fit the configured model: {_first_line(e)}") from None
    loaded = {own[k].data_ptr() for k in sd if k in own}
    missing = [k for k in missing if k not in set(allow_missing) and own[k].data_ptr() not in loaded]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(list(unexpected)[:3])})")
        raise GeneratorError(f"{source}: weights do not match the model config: " + "; ".join(parts))


def _first_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return " ".join(lines[:2])[:300]
