from __future__ import annotations

import json
import os
from pathlib import Path

from audioaudit.errors import UserError


def read_json(path: str | os.PathLike, what: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} missing; rebuild the index with `audioaudit index build`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: {what} is corrupt ({e}); rebuild the index with `audioaudit index build`") from None


def read_parquet(path: str | os.PathLike, what: str, columns: list[str] | None = None, reader=None):
    """``reader(path)`` (default ``pd.read_parquet``) with every failure one UserError line."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} missing; rebuild the index with `audioaudit index build`")
    try:
        df = (reader or pd.read_parquet)(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types
        raise UserError(f"{path}: {what} is corrupt ({str(e).splitlines()[0][:160]}); rebuild the index") from None
    missing = [c for c in (columns or []) if c not in df.columns]
    if missing:
        raise UserError(f"{path}: {what} lacks columns {missing}; rebuild the index")
    return df
