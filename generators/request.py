"""A request (options + conditions) checked against what the generator declares it uses.

The one place where an option or a condition the generator would not use is caught, before
any work: an error names the option (as its command-line flag), the generator and why; an
option that changes nothing for this generator (``Uses.ignored``) is a warning and is left out
of the request, so what is recorded is what was used. Per generator:

- ``folder:`` copies clips made elsewhere: sampler options (``--sampler``, ``--steps``,
  ``--cfg``) and conditions (``--class``, ``--prompt``) are errors;
- ``edmsound:`` without classes (unconditional) and ``memorizer:``: ``--cfg`` is a warning
  (nothing to guide); a class it does not know, or a prompt, is an error;
- ``tango:`` / ``audioldm2:`` are conditioned on text: ``--class`` is an error (pass ``--prompt``).

Options beyond the declared ones of a generator that drives an EDM sampler go to that sampler's
own check (:func:`generators.edmsound.samplers.check_options`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from generators.base import GeneratorError, Uses

CONDITION_FLAGS = {"class": "--class", "prompt": "--prompt/--prompts-file"}
CONDITION_WORDS = {"class": "classes", "prompt": "text prompts"}


@dataclass(frozen=True)
class CheckedRequest:
    options: dict  # what goes to ``generate``: the used options only
    warnings: list[str] = field(default_factory=list)  # one line each, naming option and generator


def flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def check_request(name: str, uses: Uses, options: Mapping, kind: str | None,
                  conditions: Sequence[str | None] = ()) -> CheckedRequest:
    """``options`` (None values mean "not given") and the ``conditions`` of kind ``kind``
    ("class" or "prompt") checked against ``uses``; ``name`` is the generator spec."""
    kept, extra, warnings = {}, {}, []
    for key, value in options.items():
        if value is None:
            continue
        if key in uses.ignored:
            warnings.append(f"{name} does not use {flag(key)}: {uses.ignored[key]}; ignored")
        elif key in uses.options:
            kept[key] = value
        elif uses.sampler is not None:
            extra[key] = value
        else:
            why = f": {uses.why}" if uses.why else ""
            used = ", ".join(uses.options) or "none"
            raise GeneratorError(f"{name} does not use {flag(key)}{why} (the options it takes: {used})")
    if uses.sampler is not None:
        from generators.edmsound.samplers import check_options

        try:
            check_options(str(kept.get("sampler") or uses.sampler), extra)
        except GeneratorError as e:
            raise GeneratorError(f"{name}: {e}") from None
        kept.update(extra)
    check_conditions(name, uses, kind, conditions)
    return CheckedRequest(kept, warnings)


def check_conditions(name: str, uses: Uses, kind: str | None, conditions: Sequence[str | None]) -> None:
    given = [str(c) for c in conditions if c not in (None, "")]
    if not given:
        return
    kind = kind or "class"
    if uses.conditions is None:
        why = f": {uses.why}" if uses.why else ""
        raise GeneratorError(f"{name} cannot be conditioned on {CONDITION_FLAGS[kind]} (got '{given[0]}'){why}")
    if uses.conditions != kind:
        raise GeneratorError(f"{name} is conditioned on {CONDITION_WORDS[uses.conditions]}, not "
                             f"{CONDITION_WORDS[kind]}: pass {CONDITION_FLAGS[uses.conditions]} "
                             f"instead of {CONDITION_FLAGS[kind]}")
    if uses.classes:
        unknown = sorted({c for c in given if c not in uses.classes})
        if unknown:
            raise GeneratorError(f"{name} does not know class(es) {', '.join(map(repr, unknown))}; "
                                 f"it knows: {', '.join(uses.classes)}")
