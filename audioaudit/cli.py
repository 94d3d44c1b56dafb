"""The `audioaudit` command line. Each area registers its commands from
``audioaudit/commands/<area>.py`` (``register(app)``); heavy imports happen inside the
commands, so ``audioaudit --help`` is fast and never touches the network."""
from __future__ import annotations

import importlib
import os
import sys

# laion-clap / transformers must never reach for the hub from this tool.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import typer

app = typer.Typer(
    name="audioaudit",
    help="Find out whether an audio generator copies its training data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

AREAS = ["encoders", "index", "audit", "finetune", "bench", "generate", "report", "dedup", "demo"]

for _area in AREAS:
    try:
        _mod = importlib.import_module(f"audioaudit.commands.{_area}")
    except ModuleNotFoundError as _e:  # an area not built yet must not break the others
        if _e.name != f"audioaudit.commands.{_area}":
            raise
        continue
    _mod.register(app)


def main() -> None:
    """Console entry point: user mistakes print one line, not a stack trace."""
    from audioaudit.errors import UserError

    user_errors: tuple[type[BaseException], ...] = (UserError, FileNotFoundError)
    try:
        from generators.base import GeneratorError

        user_errors = user_errors + (GeneratorError,)
    except Exception:  # noqa: BLE001
        pass
    try:
        app()
    except user_errors as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
