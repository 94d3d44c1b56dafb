"""User-facing errors: the CLI prints their message as one line, no stack trace."""


class UserError(Exception):
    """A mistake the user can fix (bad path, bad spec, incompatible index ...).

    The message names the file/option at fault and says what to pass instead.
    """


class MissingExtra(UserError):
    """An optional dependency is not installed."""

    def __init__(self, module: str, extra: str):
        super().__init__(
            f"this needs the optional package '{module}': pip install 'audioaudit[{extra}]'"
        )


def require(module: str, extra: str):
    """Import an optional module or raise :class:`MissingExtra` naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(module, extra) from None
