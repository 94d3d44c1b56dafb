"""The Generator contract (DESIGN.md): ``generate(n, *, conditions, seed)``.

Seeds are per sample: sample ``i`` of a call with ``seed=s`` uses seed ``s + i`` and is
reproduced alone by ``generate(1, conditions=[c_i], seed=s + i)``.

A call returns the ``n`` clips asked for, clip ``i`` for sample ``i``. A generator that cannot
make them all either raises :class:`GeneratorError` or returns the first ``k < n`` of them with
the reason in ``batch.meta["shortfall"]`` (``folder:`` running out of files); a caller treats a
short batch as an error naming the generator and that reason, never as success.

A generator declares what it does with a request in ``uses`` (:class:`Uses`); requests from the
command line are checked against it in one place, :func:`generators.request.check_request`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence, runtime_checkable

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


@dataclass(frozen=True)
class Uses:
    """What a loaded generator does with a request (see :func:`generators.request.check_request`).

    ``options``: the ``generate`` options it uses; any other is an error naming the option, the
    generator and ``why`` -- except the ``ignored`` ones (option -> why it changes nothing here),
    which are a warning and are left out of the request. ``sampler``: when the generator drives
    an EDM sampler, its default; options beyond ``options`` are then that sampler's (or those of
    the one ``sampler=`` names), checked by ``generators.edmsound.samplers.check_options``.
    ``conditions``: what it can be conditioned on, "class", "prompt" or None (nothing: a
    condition is an error, with ``why``); ``classes``: the classes it knows, when it lists them.
    """

    options: tuple[str, ...] = ()
    conditions: str | None = None
    classes: tuple[str, ...] = ()
    ignored: Mapping[str, str] = field(default_factory=dict)
    sampler: str | None = None
    why: str = ""


@runtime_checkable
class Generator(Protocol):
    name: str
    sample_rate: int

    def generate(
        self, n: int, *, conditions: Sequence[str | None] | None = None, seed: int = 0, **opts
    ) -> GeneratedBatch: ...
