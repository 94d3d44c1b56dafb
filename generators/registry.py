"""Generators chosen by spec string: ``KIND:ARG`` (e.g. ``edmsound:runs/gen``, ``folder:clips/``).

Each kind maps to ``module:function`` taking ``(arg: str, **opts)`` and returning a
:class:`generators.base.Generator`. Modules are imported only when used.
"""
from __future__ import annotations

import importlib

from generators.base import Generator, GeneratorError

KINDS: dict[str, tuple[str, str]] = {
    "edmsound": ("generators.edmsound.generator", "from_spec"),
    "memorizer": ("generators.memorizer", "from_spec"),
    "tango": ("generators.adapters.tango", "from_spec"),
    "audioldm2": ("generators.adapters.audioldm2", "from_spec"),
    "folder": ("generators.adapters.folder", "from_spec"),
}


def parse_spec(spec: str) -> tuple[str, str]:
    kind, _, arg = spec.partition(":")
    if kind not in KINDS:
        raise GeneratorError(f"unknown generator '{kind}' in '{spec}'; use one of: " + ", ".join(f"{k}:..." for k in KINDS))
    if not arg:
        raise GeneratorError(f"generator spec '{spec}' needs a path after '{kind}:'")
    return kind, arg


def load_generator(spec: str, **opts) -> Generator:
    kind, arg = parse_spec(spec)
    mod, fn = KINDS[kind]
    return getattr(importlib.import_module(mod), fn)(arg, **opts)
