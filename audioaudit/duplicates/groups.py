"""Duplicates inside a training corpus (pure functions, no I/O).

Real corpora ship the same recording several times (AudioCaps, sample packs). Duplicated
training clips are the ones diffusion models memorise first (Somepalli et al. 2023;
Carlini et al. 2023, "Extracting training data from diffusion models", §4), and they
corrupt every count: a generated clip that copies one of three identical files is *one*
copy, not three. We therefore group duplicates and treat each group as one training
*source*.

* **exact** duplicates: the same decoded audio. :func:`audioaudit.audio.fingerprint.pcm_hash`
  hashes the 16-bit PCM of the mono waveform resampled to a fixed rate
  (:data:`audioaudit.audio.fingerprint.DUP_RATE`), with leading and trailing digital
  silence (exact zeros) trimmed, so container, bit depth and file name do not matter.
* **near** duplicates: the same recording after re-encoding, gain, resampling or padding;
  proposed by the index itself at a strict window coverage (:mod:`audioaudit.index.reference`),
  confirmed on the audio by aligned spectrogram correlation (:mod:`audioaudit.duplicates.verify`:
  an embedding built for similarity also puts distinct clips of one class that close),
  then merged here with the exact ones (union-find).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

NEAR_THRESHOLD = 0.97  # window coverage that makes a pair a *candidate*; audioaudit.duplicates.verify confirms it


@dataclass(frozen=True)
class DupGroup:
    """One training source made of several files. ``kinds[i]`` is ``exact`` when member
    ``i`` has a byte-identical-audio twin in the group, else ``near``."""

    group: int
    members: tuple[str, ...]
    kinds: tuple[str, ...]

    @property
    def kind(self) -> str:
        return "exact" if all(k == "exact" for k in self.kinds) else "near"

    @property
    def size(self) -> int:
        return len(self.members)


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def group_duplicates(
    ids: Sequence[str],
    hashes: Sequence[str | None],
    near_pairs: Iterable[tuple[str, str]] = (),
) -> list[DupGroup]:
    """Group items whose PCM hashes are equal or that are linked by a near pair.

    ``ids`` and ``hashes`` are parallel (a ``None`` hash never matches). Only groups of
    two or more are returned, numbered 0.. in order of their smallest member id, members
    sorted, so the result does not depend on input order.
    """
    ids = [str(i) for i in ids]
    if len(ids) != len(hashes):
        raise ValueError("ids and hashes must have the same length")
    pos = {i: n for n, i in enumerate(ids)}
    uf = _UnionFind(len(ids))
    first: dict[str, int] = {}
    count: dict[str, int] = {}
    for n, h in enumerate(hashes):
        if h is None:
            continue
        count[h] = count.get(h, 0) + 1
        if h in first:
            uf.union(first[h], n)
        else:
            first[h] = n
    for a, b in near_pairs:
        if a in pos and b in pos and a != b:
            uf.union(pos[a], pos[b])
    comps: dict[int, list[int]] = {}
    for n in range(len(ids)):
        comps.setdefault(uf.find(n), []).append(n)
    groups = []
    for members in comps.values():
        if len(members) < 2:
            continue
        members = sorted(members, key=lambda n: ids[n])
        kinds = tuple(
            "exact" if hashes[n] is not None and count[hashes[n]] > 1 else "near" for n in members
        )
        groups.append((tuple(ids[n] for n in members), kinds))
    groups.sort(key=lambda g: g[0][0])
    return [DupGroup(g, m, k) for g, (m, k) in enumerate(groups)]


def source_name(item_id: str, group: int | None) -> str:
    """The training *source* of an item: ``g<group>`` for a duplicate-group member, else its id
    (a group of copies counts once wherever the audit counts sources)."""
    return str(item_id) if group is None else f"g{int(group)}"


def source_of(groups: Sequence[DupGroup]) -> dict[str, str]:
    """item id -> source name, for the members of duplicate groups."""
    return {m: source_name(m, g.group) for g in groups for m in g.members}


def source_ids(ids: Sequence[str], groups: Sequence[DupGroup]) -> list[str]:
    """The training *source* of each item (:func:`source_name`)."""
    of = source_of(groups)
    return [of.get(str(i), str(i)) for i in ids]


@dataclass(frozen=True)
class DupSummary:
    groups: int
    exact_groups: int
    near_groups: int
    items_in_groups: int
    redundant_items: int  # items that are not the first of their group
    largest: int
    sizes: dict = field(default_factory=dict)  # group size -> number of groups


def summarise(groups: Sequence[DupGroup]) -> DupSummary:
    sizes: dict[int, int] = {}
    for g in groups:
        sizes[g.size] = sizes.get(g.size, 0) + 1
    in_groups = sum(g.size for g in groups)
    return DupSummary(
        groups=len(groups),
        exact_groups=sum(g.kind == "exact" for g in groups),
        near_groups=sum(g.kind == "near" for g in groups),
        items_in_groups=in_groups,
        redundant_items=in_groups - len(groups),
        largest=max((g.size for g in groups), default=0),
        sizes=dict(sorted(sizes.items())),
    )


def groups_to_rows(groups: Sequence[DupGroup], paths: dict[str, str] | None = None) -> list[dict]:
    """Rows of ``duplicates.parquet`` (schema.DUPLICATE_COLUMNS + ``size``)."""
    paths = paths or {}
    return [
        {"group": g.group, "item_id": m, "path": paths.get(m, m), "kind": k, "size": g.size}
        for g in groups
        for m, k in zip(g.members, g.kinds)
    ]


def groups_from_rows(rows: Iterable[dict]) -> list[DupGroup]:
    by: dict[int, list[tuple[str, str]]] = {}
    for r in rows:
        by.setdefault(int(r["group"]), []).append((str(r["item_id"]), str(r["kind"])))
    return [
        DupGroup(g, tuple(m for m, _ in sorted(v)), tuple(k for _, k in sorted(v)))
        for g, v in sorted(by.items())
    ]
