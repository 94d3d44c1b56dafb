"""A background set for score normalisation: clips of the same kind as the training
corpus that are *not* in it.

SSCD normalises a query's similarity by its similarity to a background set of distractors
(Pizzi et al., "A Self-Supervised Descriptor for Image Copy Detection", CVPR 2022, §3.3:
``s'(q, r) = s(q, r) - β · s(q, b_k)``). Without one, the audit uses the query's 2nd–11th
best training sources as the background — which works on a large corpus but is weak on a
small one, where a novel clip's few same-kind training neighbours are all it has. With a
background set the score is

    score(q) = max_r sim(q, r) - mean of the ``k`` best sim(q, b), b in the background,

(clip-level similarities: max cosine over window pairs, as everywhere in the audit). A novel
clip is about as close to the background as to the training set (score ≈ 0); a copy is
much closer to its source. The background also gives calibration its negatives: each
background clip is a novel clip with a known answer (:mod:`audioaudit.audit.calibrate`).

Stored in ``INDEX/background/``: ``vectors.npy`` (window vectors), ``clips.parquet`` (one row
per clip: path, pcm_hash, n_segments, first/last vector row) and ``background.json``
(encoder identity, k, counts, skipped files and clips left out because the training set
holds the same audio). The three files (and a calibration made on the set) are replaced
together by one commit (:func:`audioaudit.index.store.commit`) and read under one
:func:`audioaudit.index.store.reading`: an audit never pairs vectors of one set with
clips of another.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audioaudit import similarity
from audioaudit.encoders import embed
from audioaudit.encoders.embed import FolderOptions, embed_folder
from audioaudit.errors import UserError
from audioaudit.index import store
from audioaudit.index.items import distinct
from audioaudit.util import atomic, read
from audioaudit.util.workers import resolve_workers

DIR = "background"


VECTORS, CLIPS, META = "vectors.npy", "clips.parquet", "background.json"


DEFAULT_K = 3  # mean of the 3 best background clips (best of k in {1, 3, 10, 20} on the demo's controls)


@dataclass(frozen=True)
class Background:
    clips: "object"  # DataFrame: path, pcm_hash, n_segments
    vectors: np.ndarray  # (S, dim) window vectors, L2-normalised
    owner: np.ndarray  # (S,) clip of each vector (non-decreasing)
    k: int
    meta: dict

    @property
    def n_clips(self) -> int:
        return len(self.clips)

    def embeddings(self) -> embed.ClipEmbeddings:
        return embed.ClipEmbeddings(self.vectors, self.owner, self.n_clips)

    def similarity(self, vectors: np.ndarray, q_clip: np.ndarray, n_queries: int) -> np.ndarray:
        """(n_queries, n_clips) clip-level similarity (max cosine over window pairs)."""
        return similarity.clip_similarity(embed.ClipEmbeddings(vectors, np.asarray(q_clip, np.int64), n_queries),
                                       self.embeddings())

    def level(self, vectors: np.ndarray, q_clip: np.ndarray, n_queries: int,
              exclude: np.ndarray | None = None) -> np.ndarray:
        """Per query: mean of its ``k`` best background clips (``exclude``: (Q,) background
        clip to leave out per query, -1 for none — a background clip queried against its own set)."""
        sim = self.similarity(vectors, q_clip, n_queries)
        return similarity.top_k_mean(sim, self.k, exclude)

    def without(self, pcm_hashes) -> "Background":
        """The set less the clips whose audio the training set now holds (added after the
        set was built: `index add`, a rebuild); they are listed in ``meta["in_training_set"]``."""
        keep = ~self.clips["pcm_hash"].astype(str).isin(set(map(str, pcm_hashes))).to_numpy()
        if keep.all():
            return self
        seg = keep[self.owner]
        meta = {**self.meta, "in_training_set": list(self.meta.get("in_training_set", []))
                + self.clips.loc[~keep, "path"].tolist()}
        return Background(self.clips[keep].reset_index(drop=True), self.vectors[seg],
                          (np.cumsum(keep) - 1)[self.owner[seg]].astype(np.int64), self.k, meta)


def build_background(index, folder: str | os.PathLike, encoder, *, k: int = DEFAULT_K,
                     progress: bool = False, workers: int | None = 0, save: bool = True) -> Background:
    """Embed every clip of ``folder`` (windows as the audit cuts them) into ``INDEX/background/``
    (``save=False``: only return it, for :func:`save_background` with its calibration).
    Clips whose decoded audio equals a training clip's (same PCM hash) are left out and listed:
    a training clip in the background would cancel its own copies' scores."""
    import pandas as pd

    ix = store.as_open(index, load_faiss=False)  # ``index``: a folder or an already open index
    d = ix.dir
    store.check_encoder(ix.encoder, encoder, d)
    if k < 1:
        raise UserError(f"background k must be >= 1 (got {k})")
    fe = embed_folder(folder, encoder, FolderOptions(workers=resolve_workers(workers), progress=progress,
                                                     what="background clips"))
    clips = pd.DataFrame(fe.clips, columns=["path", "pcm_hash", "n_segments", "duration", "label"])
    train_hashes = set(map(str, distinct(ix.items, "pcm_hash")))
    keep = ~clips["pcm_hash"].astype(str).isin(train_hashes).to_numpy()
    dropped = clips.loc[~keep, "path"].tolist()
    if keep.sum() < k + 1:
        raise UserError(f"{folder}: a background set needs at least {k + 1} clips not in the training set "
                        f"(found {int(keep.sum())}; {len(dropped)} equal training clips, {len(fe.skipped)} unreadable)")
    new_clip = np.cumsum(keep) - 1
    seg_keep = keep[fe.emb.owner]
    vectors = np.ascontiguousarray(fe.emb.vectors[seg_keep], dtype=np.float32)
    owner = new_clip[fe.emb.owner[seg_keep]].astype(np.int64)
    clips = clips[keep].reset_index(drop=True)
    meta = {"folder": str(Path(folder).resolve()), "k": int(k), "clips": int(len(clips)), "windows": int(len(vectors)),
            "encoder": ix.encoder.get("identity"), "skipped": fe.skipped,
            "in_training_set": dropped,
            "method": f"score = top-1 training similarity - mean of the {k} best background clips (SSCD)"}
    bg = Background(clips, vectors, owner, k, meta)
    if save:
        save_background(d, bg)
    return bg


def save_background(index_dir: str | os.PathLike, bg: Background, calibration: dict | None = None) -> None:
    """Write the set (and ``calibration``: the calibration.json made on it) as one commit."""
    from audioaudit import schema

    with store.staging(index_dir) as st:
        out = st / DIR
        out.mkdir()
        atomic.save_npy(out / VECTORS, bg.vectors)
        starts = np.searchsorted(bg.owner, np.arange(bg.n_clips))
        atomic.write_parquet(bg.clips.assign(owner_start=starts), out / CLIPS)
        atomic.write_json(out / META, bg.meta)
        if calibration is not None:
            atomic.write_json(st / schema.CALIBRATION_FILE, calibration)
        store.commit(index_dir, st)


def load_background(index_dir: str | os.PathLike, identity: dict | None = None,
                    train_hashes=None) -> Background | None:
    """The index's background set, or None when it has none. ``identity``: the encoder
    identity the caller searches with (must equal the one the set was embedded with).
    ``train_hashes``: the training clips' PCM hashes; background clips among them are left out."""
    d = Path(index_dir) / DIR
    with store.reading(index_dir):  # the three files of one commit
        if not (d / META).is_file():
            return None
        meta = read.read_json(d / META, "background set (background.json)")
        if identity is not None and meta.get("encoder") != identity:
            raise UserError(f"{d}: the background set was embedded with another encoder; rebuild it with "
                            "`audioaudit index background`")
        clips = read.read_parquet(d / CLIPS, "background clips (clips.parquet)")
        try:
            vectors = np.load(d / VECTORS, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise UserError(f"{d / VECTORS}: unreadable background vectors ({e}); rebuild the background set") from None
    starts = clips["owner_start"].to_numpy(np.int64)
    owner = np.searchsorted(starts, np.arange(len(vectors)), side="right") - 1
    if len(vectors) != int(meta.get("windows", -1)) or len(clips) != int(meta.get("clips", -1)):
        raise UserError(f"{d}: background files disagree with background.json; rebuild the background set")
    bg = Background(clips, vectors, owner.astype(np.int64), int(meta.get("k", DEFAULT_K)), meta)
    return bg.without(train_hashes) if train_hashes is not None else bg


def remove_background(index_dir: str | os.PathLike) -> None:
    if (Path(index_dir) / DIR).is_dir():
        store.commit(index_dir, None, [f"{DIR}/{name}" for name in (META, CLIPS, VECTORS)])
