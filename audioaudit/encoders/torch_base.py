"""What every torch-backed encoder shares: input checks, batching under
``torch.inference_mode``, L2 normalisation, padding, devices and weight digests.

A backend subclasses :class:`BatchedEncoder` and supplies two steps:

* ``prepare(waves)`` — CPU pre-processing of up to ``batch_size`` mono windows into the
  model's input (padding, feature extraction);
* ``forward(inputs)`` — the model forward, returning an un-normalised ``(N, dim)`` tensor.

Keeping them apart lets a fine-tuning loop reuse ``prepare`` + ``model`` with gradients,
and lets the benchmark time the bare forward against the whole ``embed``.
"""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np

from audioaudit.encoders.base import EncoderError, l2_normalise


def repeat_pad(wave: np.ndarray, n: int) -> np.ndarray:
    """LAION-CLAP's ``repeatpad``: tile a short clip ``floor(n / len)`` times, then zero-pad
    to ``n`` samples (laion_clap.training.data.get_audio_features, data_filling="repeatpad").
    Longer input is an error here: callers cut windows first."""
    if len(wave) > n:
        raise ValueError(f"{len(wave)} samples do not fit a window of {n}")
    if len(wave) == n:
        return wave
    reps = max(1, n // len(wave))
    tiled = np.tile(wave, reps)
    return np.pad(tiled, (0, n - len(tiled)))


def resolve_device(device: str | None) -> str:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (cuda when present)."""
    import torch

    device = (device or "cpu").lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EncoderError(f"device '{device}' asked for but no CUDA GPU is visible; pass --device cpu")
    if not (device == "cpu" or device.startswith("cuda") or device == "mps"):
        raise EncoderError(f"unknown device '{device}'; pass cpu, cuda, cuda:N or auto")
    return device


def state_dict_sha256(module) -> str:
    """Digest of a module's tensors (names, shapes, dtypes, bytes), for weights that have no file."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        if t.dtype == torch.bfloat16:
            t = t.float()
        h.update(t.numpy().tobytes())
    return h.hexdigest()


class BatchedEncoder:
    """Base of the learned and mel backends. Subclasses set the attributes and implement
    :meth:`prepare` and :meth:`forward` (and ``self.model`` when they have one)."""

    name: str
    sample_rate: int
    dim: int
    window_seconds: float
    hop_seconds: float
    model: Any = None

    def __init__(self, *, batch_size: int = 16, device: str = "cpu", identity: dict):
        if batch_size < 1:
            raise EncoderError(f"batch size must be >= 1 (got {batch_size})")
        self.batch_size = int(batch_size)
        self.device = resolve_device(device)
        self._identity = identity

    # ---------------------------------------------------------------- contract
    @property
    def window_samples(self) -> int:
        """Longest accepted waveform: the model input length (same rounding as window_bounds)."""
        return max(1, int(round(self.window_seconds * self.sample_rate)))

    def identity(self) -> dict:
        return {
            **self._identity,
            "sample_rate": int(self.sample_rate),
            "dim": int(self.dim),
            "window_seconds": float(self.window_seconds),
            "hop_seconds": float(self.hop_seconds),
        }

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        """(N, dim) L2-normalised float32; deterministic, batched, no gradients."""
        import torch

        waves = [self._check(w, i) for i, w in enumerate(batch)]
        if not waves:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        with torch.inference_mode():
            for i in range(0, len(waves), self.batch_size):
                y = self.forward(self.prepare(waves[i : i + self.batch_size]))
                out.append(y.detach().float().cpu().numpy())
        return l2_normalise(np.concatenate(out, axis=0))

    # ---------------------------------------------------------------- steps
    def prepare(self, waves: list[np.ndarray]) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, inputs: Any):  # pragma: no cover - abstract
        raise NotImplementedError

    # ---------------------------------------------------------------- helpers
    def _check(self, wave: np.ndarray, i: int) -> np.ndarray:
        w = np.asarray(wave, dtype=np.float32)
        if w.ndim != 1:
            raise ValueError(f"waveform {i}: expected a mono 1-D array, got shape {w.shape}")
        if w.size == 0:
            raise ValueError(f"waveform {i} is empty")
        if w.size > self.window_samples:
            raise ValueError(
                f"waveform {i} has {w.size} samples, more than one {self.window_seconds:g} s window "
                f"({self.window_samples}); cut it with audioaudit.audio.windows.cut() first"
            )
        if not np.all(np.isfinite(w)):
            raise ValueError(f"waveform {i} holds NaN/inf samples")
        return w

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, sr={self.sample_rate}, dim={self.dim}, "
            f"window={self.window_seconds:g}s, hop={self.hop_seconds:g}s, device={self.device!r})"
        )


def default_hop(window_seconds: float, hop_seconds: float | None) -> float:
    """Hop between analysis windows: half a window (50 % overlap) unless given."""
    if hop_seconds is None:
        return window_seconds / 2.0
    if not hop_seconds > 0:
        raise EncoderError(f"hop must be > 0 seconds (got {hop_seconds})")
    return float(hop_seconds)
