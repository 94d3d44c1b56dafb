"""The Generator contract (DESIGN.md): ``generate(n, *, conditions, seed)``.

Seeds are per sample: sample ``i`` of a call with ``seed=s`` uses seed ``s + i`` and is
reproduced alone by ``generate(1, conditions=[c_i], seed=s + i)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

import numpy as np


class GeneratorError(Exception):
    """A user-facing generator problem (missing part, empty prompts file, bad spec)."""


@dataclass
class GeneratedClip:
    wave: np.ndarray  # float32 mono
    seed: int | None
    condition: str | None = None  # class name or prompt
    meta: dict = field(default_factory=dict)  # sampler, nfe, cfg, checkpoint, source path ...


@dataclass
class GeneratedBatch:
    clips: list[GeneratedClip]
    sample_rate: int
    generator: str  # spec string or name
    meta: dict = field(default_factory=dict)


@runtime_checkable
class Generator(Protocol):
    name: str
    sample_rate: int

    def generate(
        self, n: int, *, conditions: Sequence[str | None] | None = None, seed: int = 0, **opts
    ) -> GeneratedBatch: ...
