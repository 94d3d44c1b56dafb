"""Training *sources*: a duplicate group of the corpus counts once, every other clip is its own."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audioaudit.duplicates.groups import source_name
from audioaudit.index import items as items_table
from audioaudit.index import store


# --------------------------------------------------------------------------- sources
@dataclass
class Sources:
    """Training sources: a duplicate group counts once, every other clip is its own."""

    row_source: np.ndarray  # (rows,) source code of each vector
    names: np.ndarray  # source code -> "g<group>" or item id
    sizes: dict[str, int]  # source name -> number of files
    group_of: dict[str, int]  # item id -> duplicate group
    members: dict[int, list[str]]  # group -> member item ids


def training_sources(ix: store.OpenIndex) -> Sources:
    import pandas as pd

    group_of: dict[str, int] = {}
    members: dict[int, list[str]] = {}
    if ix.duplicates is not None and len(ix.duplicates):
        for g, i in zip(ix.duplicates["group"], ix.duplicates["item_id"]):
            group_of[str(i)] = int(g)
            members.setdefault(int(g), []).append(str(i))
    item_code, ids = items_table.row_codes(ix.items, "item_id")  # per clip, not per window (10M rows)
    src = np.asarray([source_name(str(i), group_of.get(str(i))) for i in ids], dtype=object)
    src_code, names = pd.factorize(src)
    codes = src_code[item_code]
    sizes = {n: 1 for n in names}
    sizes.update({source_name("", g): len(m) for g, m in members.items()})
    return Sources(codes.astype(np.int64), np.asarray(names, dtype=object), sizes, group_of, members)
