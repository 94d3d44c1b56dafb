"""Which paths a report may show, and where the audio behind them lives.

A report is shared: by default it never shows an absolute machine path. Query paths are
shown relative to the generated folder, training paths relative to the corpus root, and
any other absolute path (in an encoder spec, an index location, a skipped file) is
reduced to its file name. ``absolute=True`` (``--absolute-paths``) shows them whole.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

# An absolute path with at least two components inside free text: POSIX (/a/b), home
# (~/a/b) or Windows drive (C:\a\b, C:/a/b). A lone "/word" (as in "</script>" or
# "and/or") is left alone. Stops at whitespace, quotes, brackets, commas, '#' (spec suffixes).
_SEG = r"""[^\s'"<>()\[\]{},;#|/\\]+"""
_ABS_IN_TEXT = re.compile(rf"""(?<![\w.~/<])(?:~|[A-Za-z]:)?[\\/]{_SEG}(?:[\\/]{_SEG})+[\\/]?""")


def is_absolute_text(p: str) -> bool:
    """True for a POSIX absolute path, a ``~`` path or a Windows drive path."""
    return p.startswith(("/", "~")) or bool(re.match(r"^[A-Za-z]:[\\/]", p))


def _name_of(p: str) -> str:
    cls = PureWindowsPath if re.match(r"^[A-Za-z]:[\\/]", p) else PurePosixPath
    name = cls(p.rstrip("/\\")).name
    return name or "…"


@dataclass
class PathPolicy:
    """How the report shows a path: relative to a known root, or its file name only."""

    absolute: bool = False
    roots: list[Path] = field(default_factory=list)

    def show(self, path: str | os.PathLike | None) -> str | None:
        """A displayable form of ``path`` (relative paths are shown as they are)."""
        if path is None:
            return None
        text = str(path)
        if not is_absolute_text(text):
            return Path(text).as_posix() if text else text
        if self.absolute:
            return text
        for root in self.roots:
            try:
                rel = Path(os.path.abspath(os.path.expanduser(text))).relative_to(root)
            except ValueError:
                continue
            return rel.as_posix() if rel.parts else f"…/{root.name}"
        return _name_of(text)

    def show_root(self, root: str | os.PathLike | None) -> str | None:
        """A folder name (``…/name``) for a root, or the whole path with ``absolute``."""
        if root is None:
            return None
        text = str(root)
        if self.absolute or not is_absolute_text(text):
            return text
        return f"…/{_name_of(text)}"

    def scrub(self, text: str | None) -> str | None:
        """Replace every absolute path inside free text by :meth:`show` of it."""
        if text is None or self.absolute:
            return text
        return _ABS_IN_TEXT.sub(lambda m: self.show(m.group(0)) or "…", str(text))

    def scrub_tree(self, value):
        """:meth:`scrub` applied to every string of a JSON-like value."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {self.scrub(str(k)): self.scrub_tree(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.scrub_tree(v) for v in value]
        return value


def resolve_root(root: str | None, run_dir: Path) -> Path | None:
    """The folder a run's relative audio paths hang from.

    An absolute root is used as written. A relative one was written relative to the
    directory the audit ran in, which we do not know: try the run directory, its
    parents, then the current directory, and take the first that exists.
    """
    if not root:
        return None
    p = Path(os.path.expanduser(str(root)))
    if p.is_absolute():
        return p
    run_dir = run_dir.resolve()
    for base in (run_dir, *run_dir.parents, Path.cwd()):
        if (base / p).is_dir():
            return (base / p).resolve()
    return (Path.cwd() / p).resolve()


def inside(root: Path | None, rel: str) -> Path | None:
    """``root / rel`` if ``rel`` is relative and stays inside ``root`` (else None)."""
    if root is None or not rel:
        return None
    if is_absolute_text(rel):
        return Path(os.path.expanduser(rel))
    p = (root / rel).resolve()
    try:
        p.relative_to(root.resolve())
    except ValueError:
        return None
    return p


def media_name(*parts: object, suffix: str) -> str:
    """A file name derived from content keys only: user names never reach the disk."""
    h = hashlib.sha1("\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass")).hexdigest()
    return f"{h[:20]}{suffix}"
