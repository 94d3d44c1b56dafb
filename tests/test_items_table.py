"""The items table held compact (per-clip text as categoricals) and the one-probe
near-duplicate pass: same answers as the plain table and the every-window search."""

from __future__ import annotations

import itertools

import faiss
import numpy as np
import pandas as pd
import pytest

from audioaudit.index import items as items_table
from audioaudit.index.faiss import facade as fx
from audioaudit.index.near_duplicates import coverage, near_duplicate_pairs
from audioaudit.util.atomic import write_parquet


def plain_items(n_clips: int = 50, windows: int = 8, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for c in rng.permutation(n_clips):
        for w in range(int(rng.integers(1, windows + 1))):
            rows.append({"row": len(rows), "item_id": f"dir/clip_{c:04d}.wav", "path": f"dir/clip_{c:04d}.wav",
                         "label": None if c % 5 == 0 else f"class{c % 3}", "segment": w, "start": 2.0 * w,
                         "end": 2.0 * w + 4, "duration": 20.0, "sha256": f"{c:064x}", "size": 100 + c,
                         "mtime_ns": 0, "pcm_hash": f"{c:032x}"})
    return pd.DataFrame(rows)


def test_compact_table_answers_like_the_plain_one(tmp_path):
    plain = plain_items()
    compact = items_table.compact(plain.copy())
    for col in ("item_id", "label"):
        codes, uniq = items_table.row_codes(compact, col)
        want_codes, want_uniq = pd.factorize(plain[col], sort=False)
        assert np.array_equal(codes, want_codes)
        assert list(uniq) == list(want_uniq)
    rows = np.array([0, 3, 7, len(plain) - 1])
    assert list(items_table.values_at(compact, "path", rows)) == plain["path"].to_numpy()[rows].tolist()
    labels = items_table.values_at(compact, "label", np.arange(len(plain)))
    assert [x is None for x in labels] == plain["label"].isna().tolist()
    assert items_table.first_rows(compact)["item_id"].astype(str).tolist() == \
        plain.drop_duplicates("item_id")["item_id"].tolist()
    assert sorted(items_table.distinct(compact, "label")) == sorted(plain["label"].dropna().unique())
    assert items_table.distinct(compact, "no_such_column") == []

    # concat of per-shard frames keeps every row and value, categoricals throughout
    parts = [items_table.compact(plain.iloc[s : s + 37].reset_index(drop=True)) for s in range(0, len(plain), 37)]
    joined = items_table.concat(parts)
    assert isinstance(joined["item_id"].dtype, pd.CategoricalDtype)
    assert joined["item_id"].astype(str).tolist() == plain["item_id"].tolist()
    assert np.array_equal(joined["start"].to_numpy(), plain["start"].to_numpy())

    # written and read back: categoricals straight from the parquet dictionaries, same values
    write_parquet(joined, tmp_path / "items.parquet")
    back = items_table.read_items(tmp_path / "items.parquet")
    assert isinstance(back["sha256"].dtype, pd.CategoricalDtype)
    for col in plain.columns:
        assert back[col].astype(object).where(back[col].notna(), None).tolist() == \
            plain[col].astype(object).where(plain[col].notna(), None).tolist(), col
    # an items.parquet written with plain strings (older indexes) reads compact too
    write_parquet(plain, tmp_path / "old.parquet")
    assert isinstance(items_table.read_items(tmp_path / "old.parquet")["path"].dtype, pd.CategoricalDtype)


def test_compact_table_is_smaller():
    plain = plain_items(n_clips=400, windows=8)
    compact = items_table.compact(plain.copy())
    assert compact.memory_usage(deep=True).sum() < 0.6 * plain.memory_usage(deep=True).sum()


def _clip_table(lengths: list[int]) -> pd.DataFrame:
    rows = [{"item_id": f"c{c}", "path": f"c{c}", "segment": w} for c, n in enumerate(lengths) for w in range(n)]
    return items_table.compact(pd.DataFrame(rows))


@pytest.mark.parametrize("seed", [0, 1])
def test_one_probe_near_duplicate_pass_equals_every_pair(seed):
    """The one-probe pass finds exactly the pairs an exhaustive coverage check over every
    pair of clips finds: trimmed, padded and exact near copies, and not a clip that shares
    a single window with another."""
    d, rng = 32, np.random.default_rng(seed)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    base = [unit(rng.standard_normal((n, d))) for n in (6, 5, 7, 4)]
    noisy = lambda v: unit(v + 0.02 * rng.standard_normal(v.shape))  # noqa: E731  (cos ~0.9998)
    clips = base + [
        noisy(base[0]),                                          # near copy of clip 0
        noisy(base[0][1:-1]),                                    # trimmed copy of clip 0
        np.concatenate([unit(rng.standard_normal((1, d))), noisy(base[1])]),  # padded copy of clip 1
        np.concatenate([base[2][:1], unit(rng.standard_normal((5, d)))]),     # shares one window only
    ]
    x = np.concatenate(clips).astype(np.float32)
    items = _clip_table([len(c) for c in clips])
    index = faiss.IndexFlatIP(d)
    index.add(x)
    params = fx.IndexParams("flat", d)
    got = {(a, b) for a, b, _ in near_duplicate_pairs(index, params, items, 0.97)}
    want = {(f"c{i}", f"c{j}") for i, j in itertools.combinations(range(len(clips)), 2)
            if coverage(clips[i], clips[j]) >= 0.97}
    assert want == {("c0", "c4"), ("c0", "c5"), ("c4", "c5"), ("c1", "c6")}
    assert got == want
