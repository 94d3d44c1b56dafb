"""The index directory ``index/NAME/`` on disk (file names in :mod:`audioaudit.schema`).

Reading validates: a missing or corrupt file is a :class:`UserError` naming the file and
what to do; files that disagree with each other (rows vs vectors) are an error too.
Writing is atomic per file (temp file + ``os.replace``); ``manifest.json`` is written
last, so an index whose manifest is missing or stale is rebuilt from its shards.
``encoder.json`` holds ``{"spec": ..., "name": ..., "identity": {...}}`` so an audit can
reload the very encoder the vectors were made with.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from audioaudit import schema
from audioaudit.errors import UserError
from audioaudit.util.read import read_json, read_parquet


# --------------------------------------------------------------------------- paths
def resolve_index_dir(name_or_path: str | os.PathLike, root: str | os.PathLike = "index") -> Path:
    """``NAME`` under ``root``, or a path to an index directory given directly."""
    p = Path(name_or_path).expanduser()
    if (p / schema.ENCODER_FILE).exists() or (p / schema.MANIFEST_FILE).exists():
        return p
    if p.is_absolute() or len(p.parts) > 1:
        return p
    return Path(root).expanduser() / p


# --------------------------------------------------------------------------- encoder
def encoder_record(encoder, spec: str | None) -> dict:
    return {"spec": spec, "name": getattr(encoder, "name", None), "identity": encoder.identity()}


def describe_identity(identity: dict) -> str:
    from audioaudit.encoders.base import identity_key

    key = identity_key(identity)
    return key if len(key) <= 300 else key[:297] + "..."


def check_encoder(stored: dict, encoder, where: str | os.PathLike) -> None:
    """Refuse an encoder whose identity differs from the index's, naming both."""
    from audioaudit.encoders.base import same_identity

    ident = encoder.identity()
    if not same_identity(stored.get("identity", {}), ident):
        raise UserError(
            f"{where}: encoder identity differs from the index's. "
            f"index: {stored.get('spec') or stored.get('name')} {describe_identity(stored.get('identity', {}))}; "
            f"given: {getattr(encoder, 'name', '?')} {describe_identity(ident)}. "
            "Use the index's encoder, or build a new index (--name) with this one."
        )


# --------------------------------------------------------------------------- lock
@contextlib.contextmanager
def build_lock(index_dir: str | os.PathLike) -> Iterator[None]:
    """Exclusive lock on an index folder for a build/add; a second one is refused."""
    from filelock import FileLock, Timeout

    d = Path(index_dir)
    d.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(d / schema.LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(
            f"{d}: another `audioaudit index` process is building this index (lock {d / schema.LOCK_FILE}); "
            "wait for it to finish or use another --name"
        ) from None
    try:
        yield
    finally:
        lock.release()


# --------------------------------------------------------------------------- open
@dataclass
class OpenIndex:
    dir: Path
    items: "object"  # pandas DataFrame (schema.ITEM_COLUMNS + pcm_hash ...)
    index: "object"  # faiss.Index
    params: "object"  # faiss_index.IndexParams
    encoder: dict  # encoder.json
    manifest: dict
    duplicates: "object | None"  # DataFrame (schema.DUPLICATE_COLUMNS) or None

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.dir.name)


def read_encoder_json(index_dir: Path) -> dict:
    rec = read_json(index_dir / schema.ENCODER_FILE, "encoder identity (encoder.json)")
    if "identity" not in rec:  # tolerate a bare identity dict
        rec = {"spec": None, "name": rec.get("name"), "identity": rec}
    return rec


def open_index(index_dir: str | os.PathLike, *, load_faiss: bool = True) -> OpenIndex:
    """Open and validate a built index; every problem is one UserError line."""
    from audioaudit.index.faiss import facade as fx

    d = Path(index_dir)
    if not d.is_dir():
        raise UserError(f"{d}: no such index; build one with `audioaudit index build CORPUS --name {d.name}`")
    manifest = read_json(d / schema.MANIFEST_FILE, "index manifest (manifest.json)")
    if manifest.get("state") != "complete":
        raise UserError(f"{d}: index build did not finish; rerun `audioaudit index build` to complete it")
    encoder = read_encoder_json(d)
    items = read_parquet(d / schema.ITEMS_FILE, "item table (items.parquet)", schema.ITEM_COLUMNS)
    params = fx.IndexParams.from_dict(manifest.get("index", {"type": "flat", "dim": 0}))
    index = fx.load(d / schema.INDEX_FILE, params) if load_faiss else None
    if index is not None and int(index.ntotal) != len(items):
        raise UserError(
            f"{d}: {schema.INDEX_FILE} holds {index.ntotal} vectors but {schema.ITEMS_FILE} lists "
            f"{len(items)} segments; rebuild the index"
        )
    dups = None
    if (d / schema.DUPLICATES_FILE).exists():
        dups = read_parquet(d / schema.DUPLICATES_FILE, "duplicate groups (duplicates.parquet)", schema.DUPLICATE_COLUMNS)
    return OpenIndex(d, items, index, params, encoder, manifest, dups)


def as_open(index, *, load_faiss: bool = True) -> OpenIndex:
    """``index`` when it is already an open index (with its FAISS index when one is needed),
    else :func:`open_index` of that folder: a command that opened the index once passes it on."""
    if isinstance(index, OpenIndex) and (index.index is not None or not load_faiss):
        return index
    return open_index(index.dir if isinstance(index, OpenIndex) else index, load_faiss=load_faiss)


def files_intact(index_dir: Path, man: dict) -> bool:
    """Every file the manifest lists (index.faiss, items.parquet, rerank.npy ...) has its size."""
    files = man.get("files", {})
    return bool(files) and all((index_dir / n).is_file() and (index_dir / n).stat().st_size == size
                               for n, size in files.items())
