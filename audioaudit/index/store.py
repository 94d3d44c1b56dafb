"""The index directory ``index/NAME/`` on disk (file names in :mod:`audioaudit.schema`).

Reading validates: a missing or corrupt file is a :class:`UserError` naming the file and
what to do; files that disagree with each other (rows vs vectors) are an error too.
``encoder.json`` holds ``{"spec": ..., "name": ..., "identity": {...}}`` so an audit can
reload the very encoder the vectors were made with.

Readers and writers (``index build|add|background`` while ``audit`` runs): the files keep
their names and places; a writer prepares every new file in a *staging* folder
(``.staging-PID-N/``, :func:`staging`) and :func:`commit` moves them in as one step under a
readers-writer lock (:func:`reading`): readers hold it shared while they read, a commit
holds it exclusive for the few renames. A reader therefore sees the files of one commit,
never a mix (index.faiss of one build with items.parquet of another), and at worst waits
for the renames. A commit first writes a journal (``.commit.json``); a writer killed
during the renames leaves it, and the next reader or writer finishes the commit
(:func:`recover`): the folder holds the old index or the new one, whole.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from audioaudit import schema
from audioaudit.errors import UserError
from audioaudit.index.items import read_items
from audioaudit.util import atomic
from audioaudit.util.read import read_json, read_parquet

try:
    import fcntl
except ImportError:  # not POSIX: readers and writers share one exclusive lock instead
    fcntl = None


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
    with reading(d):  # every file from one commit (an ivfpq index keeps its files open, not mapped)
        manifest = read_json(d / schema.MANIFEST_FILE, "index manifest (manifest.json)")
        if manifest.get("state") != "complete":
            raise UserError(f"{d}: index build did not finish; rerun `audioaudit index build` to complete it")
        encoder = read_encoder_json(d)
        items = read_parquet(d / schema.ITEMS_FILE, "item table (items.parquet)", schema.ITEM_COLUMNS, read_items)
        params = fx.IndexParams.from_dict(manifest.get("index", {"type": "flat", "dim": 0}))
        index = fx.load(d / schema.INDEX_FILE, params) if load_faiss else None
        dups = None
        if (d / schema.DUPLICATES_FILE).exists():
            dups = read_parquet(d / schema.DUPLICATES_FILE, "duplicate groups (duplicates.parquet)",
                                schema.DUPLICATE_COLUMNS)
    if index is not None and int(index.ntotal) != len(items):
        raise UserError(
            f"{d}: {schema.INDEX_FILE} holds {index.ntotal} vectors but {schema.ITEMS_FILE} lists "
            f"{len(items)} segments; rebuild the index"
        )
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


# --------------------------------------------------------------------------- readers and writers
READERS_LOCK = ".readers.lock"  # flock: shared while reading, exclusive while a commit renames
GATE_LOCK = ".commit.lock"  # held by a committing writer: new readers queue behind it (no starvation)
JOURNAL = ".commit.json"  # a commit in progress: {"staged": folder, "ops": [["move"|"remove", name], ...]}
STAGING = ".staging-"  # prefix of a writer's folder of new files (``.staging-PID-N``)

_held: dict[str, list] = {}  # folder -> [read holds in this process, lock]: nested reads take no new lock
_held_guard = threading.Lock()
_this_thread = threading.local()
_counter = itertools.count()


class _Flock:
    """``flock(2)`` on a file: shared or exclusive, released by the kernel if the process dies.
    Without ``fcntl`` (not POSIX) every hold is an exclusive :class:`filelock.FileLock`."""

    def __init__(self, path: Path, exclusive: bool, fd: int | None = None):
        self.fd, self.file_lock = fd, None
        if fcntl is None:
            from filelock import FileLock

            self.file_lock = FileLock(str(path))
            self.file_lock.acquire()
            return
        if self.fd is None:
            try:
                self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError:  # e.g. a lock file of another account: a read-only descriptor locks too
                self.fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        except BaseException:
            os.close(self.fd)
            raise

    def release(self) -> None:
        if self.file_lock is not None:
            self.file_lock.release()
            return
        fcntl.flock(self.fd, fcntl.LOCK_UN)  # explicit: a forked child may share the descriptor
        os.close(self.fd)


def _lockable(d: Path) -> bool:
    """A folder readers must lock: an index (or a commit of one) lives there. A folder that
    cannot hold the lock files (read-only) has no writer to wait for."""
    if not ((d / schema.MANIFEST_FILE).exists() or (d / JOURNAL).exists()):
        return False
    return (d / READERS_LOCK).exists() or os.access(d, os.W_OK)


@contextlib.contextmanager
def _exclusive(d: Path) -> Iterator[None]:
    if getattr(_this_thread, "reads", {}).get(str(d.resolve())):
        raise RuntimeError(f"{d}: a commit inside a read of the same folder would wait for itself")
    gate = _Flock(d / GATE_LOCK, True)
    try:
        rw = _Flock(d / READERS_LOCK, True)
        try:
            yield
        finally:
            rw.release()
    finally:
        gate.release()


def _acquire_read(d: Path) -> _Flock | None:
    while True:
        if not _lockable(d):
            if (d / JOURNAL).exists():
                raise UserError(f"{d}: a commit was interrupted and this folder is read-only; "
                                "rerun `audioaudit index add` or `index build` where it can be written")
            return None
        gate = _Flock(d / GATE_LOCK, True)  # waits while a writer commits
        try:
            lock = _Flock(d / READERS_LOCK, False)
        finally:
            gate.release()
        if not (d / JOURNAL).exists():
            return lock
        lock.release()  # its writer died during the renames: finish them, then read
        recover(d)


@contextlib.contextmanager
def reading(index_dir: str | os.PathLike) -> Iterator[None]:
    """Hold one committed state of the index folder: while held, no :func:`commit` changes a
    file there (it waits; a reader arriving during a commit waits for its renames, a few
    milliseconds). Re-entrant within a process; an interrupted commit is finished first."""
    d = Path(index_dir)
    key = str(d.resolve())
    with _held_guard:
        entry = _held.get(key)
        if entry is not None:
            entry[0] += 1
    if entry is None:
        lock = _acquire_read(d) if d.is_dir() else None
        with _held_guard:
            entry = _held.get(key)
            if entry is None:
                _held[key] = [1, lock]
            else:  # another thread got there first: share its hold
                entry[0] += 1
                if lock is not None:
                    lock.release()
    reads = _this_thread.__dict__.setdefault("reads", {})
    reads[key] = reads.get(key, 0) + 1
    try:
        yield
    finally:
        reads[key] -= 1
        with _held_guard:
            entry = _held[key]
            entry[0] -= 1
            if entry[0] == 0:
                del _held[key]
                if entry[1] is not None:
                    entry[1].release()


def replace_file(src: Path, dst: Path) -> None:
    """One rename of a commit (tests slow it down to land a kill between two renames)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    atomic.move_into_place(src, dst)


def _replay(d: Path) -> bool:
    """Apply the journal's operations (each idempotent), then drop it and its staging folder."""
    if not (d / JOURNAL).exists():
        return False
    journal = read_json(d / JOURNAL, "commit journal (.commit.json)")
    staged = d / journal["staged"] if journal.get("staged") else None
    for op, name in journal["ops"]:
        if op == "move" and staged is not None and (staged / name).is_file():
            replace_file(staged / name, d / name)
        elif op == "remove":
            (d / name).unlink(missing_ok=True)
    if fcntl is not None:  # the renames themselves reach the disk before the journal goes
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    (d / JOURNAL).unlink()
    if staged is not None:
        shutil.rmtree(staged, ignore_errors=True)
    return True


def recover(index_dir: str | os.PathLike) -> bool:
    """Finish a commit whose writer was killed during its renames (True if there was one)."""
    d = Path(index_dir)
    if not (d / JOURNAL).exists():
        return False
    with _exclusive(d):
        return _replay(d)


def commit(index_dir: str | os.PathLike, staged: Path | None, remove: Sequence[str] = ()) -> None:
    """Move every file of ``staged`` (a :func:`staging` folder; names relative to it, e.g.
    ``background/vectors.npy``) into ``index_dir`` and delete the files named in ``remove``,
    as one step for readers; ``manifest.json`` goes last."""
    d = Path(index_dir)
    moves = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()) if staged else []
    last = [n for n in moves if n == schema.MANIFEST_FILE]
    ops = ([["move", n] for n in moves if n not in last] + [["remove", n] for n in remove if n not in moves]
           + [["move", n] for n in last])
    with _exclusive(d):
        _replay(d)  # an earlier writer's unfinished commit comes first
        atomic.write_json(d / JOURNAL, {"staged": staged.name if staged else None, "ops": ops})
        _replay(d)


def _in_journal(d: Path, staged: Path) -> bool:
    try:
        return json.loads((d / JOURNAL).read_text()).get("staged") == staged.name
    except (OSError, ValueError):
        return False


def _remove_stale_staging(d: Path) -> None:
    """Staging folders of killed writers (nobody holds their lock; no journal names them)."""
    if fcntl is None:
        return
    for p in d.glob(STAGING + "*"):
        if not p.is_dir() or _in_journal(d, p):
            continue
        fd = os.open(p, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a live writer's
        finally:
            os.close(fd)
        shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def staging(index_dir: str | os.PathLike) -> Iterator[Path]:
    """A fresh folder inside ``index_dir`` for a writer's new files, to :func:`commit`.
    Removed on the way out unless a commit's journal still needs it."""
    d = Path(index_dir)
    d.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(d)
    st = d / f"{STAGING}{os.getpid()}-{next(_counter)}"
    st.mkdir()
    owner = _Flock(st, True, os.open(st, os.O_RDONLY)) if fcntl is not None else None
    try:
        yield st
    finally:
        if not _in_journal(d, st):
            shutil.rmtree(st, ignore_errors=True)
        if owner is not None:
            owner.release()


def replace_json(index_dir: str | os.PathLike, name: str, obj) -> None:
    """One JSON file of the folder (e.g. calibration.json) replaced by a commit."""
    with staging(index_dir) as st:
        atomic.write_json(st / name, obj)
        commit(index_dir, st)
