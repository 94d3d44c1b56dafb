"""The views cache: K augmented views of every training clip, rendered once, on disk.

Head-only training never needs the backbone's gradients, so the expensive part — the
augmentations and the frozen forward pass — is done once: for each clip, view 0 is the
clean clip and views 1..K are :func:`audioaudit.detector.augment.random_view` chains; each view
is *featurized* (embedded by the frozen encoder, or kept as a fixed-length waveform for
from-scratch training) and written in shards of ``shard_size`` clips.

Resumable: ``manifest.json`` pins the clip list and every setting; a rerun with the same
settings skips the shards already on disk (each written atomically), so a killed build
loses at most one shard. Clips that cannot be decoded are listed with the reason.
Randomness is per clip (``default_rng([seed, clip index])``), so a resumed build makes
exactly the views an uninterrupted one would have.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from audioaudit.errors import UserError
from audioaudit.util.atomic import atomic_path, write_json

# V waves -> (V, ...) array, or ((V, ...) array, (V,) valid lengths) for padded waveforms
Featurize = Callable[[list[np.ndarray]], "np.ndarray | tuple[np.ndarray, np.ndarray]"]


MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ViewSettings:
    n_views: int = 8  # augmented views per clip (view 0, the clean clip, comes on top)
    seed: int = 0
    n_ops: tuple[int, int] = (1, 3)
    families: tuple[str, ...] | None = None
    max_strength: float = 1.0  # strengths drawn from U(0, max_strength) (augment.random_view)
    length: int = 0  # samples per view fed to the featurizer (a crop of the clip)
    shard_size: int = 64


@dataclass(frozen=True)
class ClipSource:
    """The clips to render views of: ``load(i)`` returns clip i's waveform at ``sample_rate``
    or a string (the reason it was skipped)."""

    clip_ids: Sequence[str]
    load: Callable[[int], "np.ndarray | str"]
    sample_rate: int
    labels: Sequence[str | None] | None = None  # class per clip (None: unlabelled)


@dataclass(frozen=True)
class Featurizer:
    """What turns a clip's views into cached rows, and the identity pinned in the manifest."""

    featurize: Featurize
    identity: dict = field(default_factory=dict)


@dataclass
class ViewCache:
    """Loaded cache: ``data[i, v]`` is view v of clip ``index[i]`` (view 0 = clean)."""

    data: np.ndarray  # (N, 1 + n_views, ...) float32/float16
    index: np.ndarray  # (N,) positions in the clip list the cache was built from
    labels: list[str | None]  # per row of ``data``
    manifest: dict
    lengths: np.ndarray | None = None  # (N, 1 + n_views) valid samples of padded waveforms


def _write_manifest(path: Path, obj: dict) -> None:
    write_json(path, obj, indent=1, sort_keys=True, newline=False)


def _write_npz(path: Path, **arrays) -> None:
    with atomic_path(path) as tmp:  # the temporary name keeps the .npz suffix: np.savez adds none
        np.savez(tmp, **arrays)


def _crop(wave: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``length``-sample window of the clip (the whole clip when shorter)."""
    if length <= 0 or len(wave) <= length:
        return wave
    start = int(rng.integers(0, len(wave) - length + 1))
    return wave[start : start + length]


def render_views(
    wave: np.ndarray, sr: int, settings: ViewSettings, rng: np.random.Generator, others: Sequence[np.ndarray]
) -> list[np.ndarray]:
    """[clean window, K augmented views of it], each cut back to ``settings.length``."""
    from audioaudit.detector.augment import random_view

    base = _crop(wave, settings.length, rng)
    views = [base]
    for _ in range(settings.n_views):
        v, _ops = random_view(base, sr, rng, families=settings.families, n_ops=settings.n_ops, others=others,
                             max_strength=settings.max_strength)
        views.append(v[: settings.length] if settings.length > 0 else v)
    return views


def _check_manifest(out: Path, manifest: dict) -> None:
    path = out / MANIFEST
    if not path.exists():
        out.mkdir(parents=True, exist_ok=True)
        _write_manifest(path, manifest)
        return
    old = json.loads(path.read_text())
    diff = sorted(k for k in set(old) | set(manifest) if k != "skipped" and old.get(k) != manifest.get(k))
    if diff:
        raise UserError(
            f"{out}: a views cache built with other settings is there ({', '.join(diff)} differ); "
            "delete it or choose another cache folder"
        )


def build_view_cache(
    out_dir: str | os.PathLike,
    source: ClipSource,
    featurizer: Featurizer,
    settings: ViewSettings,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Render + featurize the views of every clip of ``source`` into shards under ``out_dir``.

    ``progress(n)`` is called with the number of clips finished each shard.
    """
    out = Path(out_dir)
    clip_ids = list(source.clip_ids)
    labels = list(source.labels) if source.labels is not None else [None] * len(clip_ids)
    manifest = {
        "clips": clip_ids, "labels": labels, "sample_rate": source.sample_rate, "featurizer": featurizer.identity,
        "n_views": settings.n_views, "seed": settings.seed, "n_ops": list(settings.n_ops),
        "families": list(settings.families) if settings.families else None, "length": settings.length,
        "shard_size": settings.shard_size,
    }  # fmt: skip
    if settings.max_strength != 1.0:  # only when set: caches made before the option stay valid
        manifest["max_strength"] = settings.max_strength
    _check_manifest(out, manifest)
    skipped: dict[str, str] = {}
    for s0 in range(0, len(clip_ids), settings.shard_size):
        shard = out / f"shard_{s0 // settings.shard_size:05d}.npz"
        rows = range(s0, min(s0 + settings.shard_size, len(clip_ids)))
        if shard.exists():
            with np.load(shard) as z:
                skipped.update({clip_ids[i]: str(r) for i, r in zip(z["skipped_index"], z["skipped_reason"])})
        else:
            skipped.update(_build_shard(shard, rows, source, featurizer.featurize, settings))
        if progress:
            progress(len(rows))
    manifest["skipped"] = skipped
    _write_manifest(out / MANIFEST, manifest)
    return out


def _build_shard(shard: Path, rows: range, source: ClipSource, featurize: Featurize,
                 settings: ViewSettings) -> dict[str, str]:
    sr = source.sample_rate
    waves, kept, skipped = [], [], {}
    for i in rows:
        w = source.load(i)
        if isinstance(w, str):
            skipped[i] = w
        else:
            waves.append(np.asarray(w, dtype=np.float32))
            kept.append(i)
    views: list[np.ndarray] = []
    for j, (i, w) in enumerate(zip(kept, waves)):
        rng = np.random.default_rng([settings.seed, i])
        others = waves[:j] + waves[j + 1 :]  # the shard's other clips are the mixing pool
        views.extend(render_views(w, sr, settings, rng, others))
    v = settings.n_views + 1
    lengths = np.zeros((len(kept), v), dtype=np.int64)
    if views:  # one featurizer call per shard: the encoder sees full batches
        feats = featurize(views)
        if isinstance(feats, tuple):
            feats, lengths = feats[0], np.asarray(feats[1], dtype=np.int64).reshape(len(kept), v)
        data = feats.reshape(len(kept), v, *feats.shape[1:])
    else:
        data = np.zeros((0, v), dtype=np.float32)
    _write_npz(
        shard, data=data, index=np.asarray(kept, dtype=np.int64), lengths=lengths,
        skipped_index=np.asarray(list(skipped), dtype=np.int64),
        skipped_reason=np.asarray([str(r) for r in skipped.values()], dtype=str),
    )  # fmt: skip
    return {source.clip_ids[i]: r for i, r in skipped.items()}


def load_view_cache(out_dir: str | os.PathLike) -> ViewCache:
    out = Path(out_dir)
    manifest = json.loads((out / MANIFEST).read_text())
    parts, index, lengths = [], [], []
    for shard in sorted(out.glob("shard_*.npz")):
        try:  # allow_pickle stays False: a shard holding pickled objects is refused, not unpickled
            with np.load(shard) as z:
                if len(z["index"]):
                    parts.append(z["data"])
                    index.append(z["index"])
                    lengths.append(z["lengths"])
        except (OSError, ValueError, KeyError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise UserError(f"{shard}: unreadable views-cache shard ({first}); delete {out} to rebuild it") from None
    if not parts:
        raise UserError(f"{out}: the views cache holds no usable clip (all skipped: see {MANIFEST})")
    idx = np.concatenate(index)
    labels = [manifest["labels"][i] for i in idx]
    lens = np.concatenate(lengths)
    return ViewCache(np.concatenate(parts), idx, labels, manifest, lens if lens.any() else None)


def fit_views(views: list[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Featurizer for from-scratch training: views zero-padded/cropped to ``length``
    (float16) and their valid lengths (training crops stay inside them: no padding)."""
    from audioaudit.audio.io import fit_length

    lens = np.asarray([min(len(v), length) for v in views], dtype=np.int64)
    return np.stack([fit_length(v, length) for v in views]).astype(np.float16), lens


def encoder_featurizer(encoder, batch_size: int = 16) -> Featurize:
    """Featurizer for head training: the frozen encoder's embeddings of the views."""
    from audioaudit.encoders.embed import embed_waves

    win = int(round(encoder.window_seconds * encoder.sample_rate))
    return lambda views: embed_waves(encoder, [v[:win] for v in views], batch_size)
