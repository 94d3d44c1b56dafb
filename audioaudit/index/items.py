"""The items table in memory: one row per window, its per-clip text columns dictionary-encoded.

``items.parquet`` repeats a clip's id, path, label and hashes on every window of the clip.
Held as plain strings that is ~160 bytes a row — 2.2 GiB at 10M windows, more than the
IVF-PQ index itself. As pandas categoricals (Arrow dictionaries: one int32 code per row,
each distinct string once) the same table is ~3x smaller, and the searches only ever need
the codes (:func:`row_codes`). Every reader and writer of the table goes through here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# per-clip text columns: the same value on every window of a clip
DICT_COLUMNS = ("item_id", "path", "label", "sha256", "pcm_hash")


def compact(df):
    """``df`` with its :data:`DICT_COLUMNS` as categoricals (in place of strings). Row order
    and values are kept, and the categories are kept sorted, so that sorting, comparing and
    grouping by such a column orders rows as the plain strings would."""
    for c in DICT_COLUMNS:
        if c not in df.columns:
            continue
        if not isinstance(df[c].dtype, _categorical()):
            df[c] = df[c].astype("category")  # pandas infers sorted categories
        elif not df[c].cat.categories.is_monotonic_increasing:  # Arrow dictionaries: first-seen order
            df[c] = df[c].cat.reorder_categories(df[c].cat.categories.sort_values())
    return df


def concat(frames: list):
    """Concatenate compacted frames without ever holding the plain strings of all rows
    (pandas' concat of categoricals with different categories falls back to objects)."""
    import pandas as pd
    from pandas.api.types import union_categoricals

    if not frames:
        return pd.DataFrame()
    frames = [compact(f) for f in frames]
    cols = {}
    for c in frames[0].columns:
        if isinstance(frames[0][c].dtype, _categorical()):
            cols[c] = pd.Series(union_categoricals([f[c] for f in frames], sort_categories=True), name=c)
        else:
            cols[c] = pd.Series(np.concatenate([f[c].to_numpy() for f in frames]), name=c)
    return pd.DataFrame(cols)


def read_items(path: str | os.PathLike, columns: list[str] | None = None):
    """``items.parquet`` with the per-clip columns read straight into categoricals (the
    strings are never materialised per row)."""
    import pyarrow.parquet as pq

    path = Path(path)
    names = pq.read_schema(path).names
    table = pq.read_table(path, columns=columns, read_dictionary=[c for c in DICT_COLUMNS if c in names])
    return compact(table.to_pandas())


def row_codes(items, column: str = "item_id") -> tuple[np.ndarray, np.ndarray]:
    """(code of every row, distinct values in code order): codes numbered by first
    appearance, like ``pd.factorize(items[column])``, from the categorical codes without
    building a per-row array of strings."""
    import pandas as pd

    col = items[column]
    if isinstance(col.dtype, _categorical()):
        raw = col.cat.codes.to_numpy().astype(np.int64)
        uniq, first = np.unique(raw, return_index=True)
        order = uniq[np.argsort(first)]  # categories in order of first appearance
        order = order[order >= 0]  # missing values: code -1, as pd.factorize
        remap = np.full(len(col.cat.categories) + 1, -1, dtype=np.int64)
        remap[order] = np.arange(len(order))
        codes = np.where(raw >= 0, remap[raw], -1)
        return codes, np.asarray(col.cat.categories.to_numpy()[order], dtype=object)
    codes, uniques = pd.factorize(col, sort=False)
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def distinct(items, column: str) -> list:
    """The distinct non-missing values of ``column`` (empty when the table lacks it)."""
    if column not in items.columns:
        return []
    return list(row_codes(items, column)[1])


def values_at(items, column: str, rows: np.ndarray) -> np.ndarray:
    """``items[column]`` at ``rows`` as a plain object array (only those rows materialised)."""
    col = items[column]
    if isinstance(col.dtype, _categorical()):
        codes = col.cat.codes.to_numpy()[rows]
        cats = np.append(np.asarray(col.cat.categories.to_numpy(), dtype=object), None)
        return cats[np.where(codes >= 0, codes, len(cats) - 1)]  # code -1 (missing) -> None, even with no categories
    return col.take(rows).to_numpy(dtype=object)


def first_rows(items, column: str = "item_id"):
    """One row per distinct ``column`` value (its first), like ``drop_duplicates(column)``."""
    codes, _ = row_codes(items, column)
    _, first = np.unique(codes, return_index=True)
    return items.iloc[np.sort(first)]


def _categorical():
    import pandas as pd

    return pd.CategoricalDtype
