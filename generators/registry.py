"""Generators chosen by spec string: ``KIND:ARG`` (e.g. ``edmsound:runs/gen``, ``folder:clips/``).

Each kind maps to ``module:function`` taking ``(arg: str, **opts)`` and returning a
:class:`generators.base.Generator`. Modules are imported only when used. Each module declares
the load options its ``from_spec`` takes in ``LOAD_OPTIONS``: any other is an error here, in one
place (the generate-time options are the loaded generator's ``uses``, see
:mod:`generators.request`).
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
    module = importlib.import_module(mod)
    known = tuple(module.LOAD_OPTIONS)
    unknown = sorted(k for k in opts if k not in known)
    if unknown:
        raise GeneratorError(f"{spec}: unknown load option(s) {', '.join(unknown)}; "
                             f"{kind}: takes {', '.join(known) or 'none'}")
    return getattr(module, fn)(arg, **opts)
