"""What an index build was asked for (``BuildOptions``), as a record the manifest keeps and ``index add`` reuses."""
from __future__ import annotations

from dataclasses import dataclass

from audioaudit.duplicates.groups import NEAR_THRESHOLD
from audioaudit.util.workers import resolve_workers


@dataclass
class BuildOptions:
    index_type: str = "auto"
    nlist: int | None = None
    nprobe: int | None = None
    hnsw_m: int | None = None
    ef_search: int | None = None
    shard_size: int = 256
    batch_size: int = 32
    workers: int | None = None  # None: min(4, cores - 1)
    near_dups: bool = True
    near_threshold: float = NEAR_THRESHOLD
    max_reference: int = 10_000
    progress: bool = True
    # which files and how they are labelled (not part of the recorded request)
    labels: str = "folders"  # "folders": first sub-folder is the class; "none"
    corpus_manifest: str | None = None  # CSV/parquet listing the files to use
    overwrite: bool = False  # an index made with another encoder is wiped instead of refused

    def request(self) -> dict:
        return {"index_type": self.index_type, "nlist": self.nlist, "nprobe": self.nprobe, "hnsw_m": self.hnsw_m,
                "ef_search": self.ef_search, "near_dups": self.near_dups, "near_threshold": self.near_threshold,
                "max_reference": self.max_reference}

    def n_workers(self) -> int:
        return resolve_workers(self.workers)


def options_from_manifest(man: dict) -> BuildOptions:
    req, b = man.get("request", {}), man.get("build", {})
    o = BuildOptions()
    for k, v in req.items():
        if hasattr(o, k) and k != "index_type":
            setattr(o, k, v)
    o.index_type = req.get("index_type", "auto")
    o.shard_size, o.batch_size = b.get("shard_size", o.shard_size), b.get("batch_size", o.batch_size)
    return o
