"""The encoder contract (DESIGN.md): clips in, L2-normalised float32 vectors out.

An encoder declares the ``sample_rate`` it wants (audio is resampled once, at the edge,
by :mod:`audioaudit.audio`), its embedding ``dim``, the analysis window/hop in seconds,
and an ``identity()`` dict that pins everything that changes its vectors (backend,
checkpoint sha256, head, segment settings). Two indexes/queries are comparable only if
their identities are equal.
"""
from __future__ import annotations

import json
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from audioaudit.errors import UserError


class EncoderError(UserError):
    """A user-facing encoder problem (bad spec, missing checkpoint, wrong architecture).

    The message is one line that says what to pass instead; the CLI prints it without a
    stack trace.
    """


@runtime_checkable
class Encoder(Protocol):
    name: str
    sample_rate: int
    dim: int
    window_seconds: float  # model input length; longer clips are cut into windows
    hop_seconds: float

    def identity(self) -> dict: ...

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        """(N, dim) L2-normalised float32 for N mono waveforms at ``sample_rate``.

        Each waveform is one window (<= ``window_seconds``); shorter ones are padded as
        the model expects. Deterministic: no random crops, eval mode, inference_mode.
        """
        ...


def pickle_refusal(e: BaseException) -> str | None:
    """One line for a failed ``torch.load(weights_only=True)``, else None. A pickle that
    would import or call something (``Unsupported global``, e.g. ``builtins.exec``) may run
    code when loaded: it is *refused*, and torch's advice to reload with
    ``weights_only=False`` or to allow-list the global is never repeated."""
    import re

    text = str(e)
    m = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if m:
        return (f"refused (Unsupported global {m.group(1)}): unpickling would import or call {m.group(1)}, "
                "which could run code, so it was not loaded; use weights from a source you trust")
    if "Weights only load failed" not in text:
        return None
    detail = [ln.strip() for ln in text.splitlines()[1:] if ln.strip() and not ln.startswith(("Please", "Check"))]
    return f"not a weights-only PyTorch pickle ({detail[0] if detail else 'damaged'}); the file is damaged or not a checkpoint"


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, eps)).astype(np.float32)


def identity_key(identity: dict) -> str:
    """Canonical JSON of an identity, for equality checks and display."""
    return json.dumps(identity, sort_keys=True, separators=(",", ":"))


def same_identity(a: dict, b: dict) -> bool:
    return identity_key(a) == identity_key(b)
