"""Atomic writes: the one implementation every file audioaudit (and generators) writes goes through.

A reader sees the old file or the new one, never a half-written one: data goes to a
temporary file beside the target (a name unique to this process and call, so two writers
never share it), is flushed and fsync'ed, then renamed over the target (``os.replace`` is
atomic on POSIX within one file system). On any error the temporary file is removed and
the target is untouched. Temporary names start with ``.`` and contain ``.tmp``, so
leftovers of a killed writer match ``.*.tmp*``.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
from pathlib import Path
from typing import Iterator

_counter = itertools.count()


def temp_path(path: str | os.PathLike) -> Path:
    """A fresh temporary name beside ``path`` (pid + per-process counter), keeping its suffix
    so libraries that infer the format from the name (soundfile, numpy) still do."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}-{next(_counter)}{path.suffix}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def move_into_place(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """fsync a finished file and rename it over ``dst`` (same file system)."""
    _fsync(Path(src))
    os.replace(src, dst)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_path(p) as tmp:`` write ``tmp`` any way you like; it becomes ``p`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        move_into_place(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # after a successful rename it is already gone


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj, *, indent: int | None = 2, sort_keys: bool = False,
               newline: bool = True) -> None:
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, default=str)
    write_text(path, text + ("\n" if newline else ""))


def write_parquet(df, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_csv(df, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def save_npy(path: str | os.PathLike, array) -> None:
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)
