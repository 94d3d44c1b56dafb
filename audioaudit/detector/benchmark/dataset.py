"""A DISC-style copy-detection benchmark built from a corpus (Douze et al. 2021, §3).

* **references**: the corpus clips (``CORPUS/train`` when the corpus has a
  ``train/``+``heldout/`` split, else a seeded ~75 % of it);
* **copy queries**: transformed copies of references, ``per_family`` per
  transformation family, at a grid of strengths (:func:`audioaudit.detector.augment.transform`);
* **distractor queries**: clips that are *not* in the reference set (``heldout/`` or the
  other ~25 %), also transformed, which must match nothing.

Duplicates first (issue 11): exact twins (same decoded PCM, :func:`audioaudit.audio.fingerprint.pcm_hash`)
and near twins (the same recording re-encoded / re-gained / resampled / padded: a
normalised waveform cross-correlation at 4 kHz >= ``near_threshold``) are grouped. A
distractor candidate that is a twin of any reference is dropped (it *is* reference
audio), and a copy query's ground truth is the whole group of its source, so a match to
any twin counts as correct.

The built set (query WAVs + ``bench.json``) is cached on disk under a key of the corpus
listing and the spec, so encoders are compared on the very same queries. Scoring lives
in :mod:`audioaudit.detector.benchmark.evaluate`.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from audioaudit.duplicates.twins import near_twin_pairs
from audioaudit.util.atomic import write_json

BENCH_VERSION = 1


BENCH_FILE = "bench.json"


QUERIES_DIR = "queries"


DEFAULT_STRENGTHS = (0.25, 0.5, 0.75)


@dataclass(frozen=True)
class BenchSpec:
    families: tuple[str, ...] = ()  # empty: augment.STANDARD_FAMILIES
    per_family: int = 20
    strengths: tuple[float, ...] = DEFAULT_STRENGTHS
    distractors: int = 100
    seed: int = 0
    sample_rate: int | None = None  # None: the most common rate of the references
    distractor_fraction: float = 0.25  # only for a corpus without a train/heldout split
    near_threshold: float = 0.9
    dedupe: bool = True  # False only to measure what ignoring duplicates does to the figures


@dataclass(frozen=True)
class Reference:
    item_id: str  # path relative to the corpus root (posix)
    path: str  # absolute
    label: str | None
    source: str  # duplicate-group source id (dupgroups.source_ids): twins share it


@dataclass(frozen=True)
class Query:
    query_id: str
    path: str  # relative to the benchmark directory
    family: str | None  # None: distractor
    strength: float
    source: str | None  # item_id of the reference it copies (None: distractor)
    truth: tuple[str, ...]  # item_ids that count as a correct match (the source's twins)
    label: str | None
    transform: str  # family applied (distractors are transformed too)


@dataclass
class BenchSet:
    root: str  # the cache directory holding bench.json and queries/
    corpus: str
    key: str
    spec: BenchSpec
    sample_rate: int
    references: list[Reference]
    queries: list[Query]
    groups: list[dict] = field(default_factory=list)  # duplicate groups (dupgroups.groups_to_rows)
    dropped: list[dict] = field(default_factory=list)  # {"path", "kind", "reason"}
    notes: list[str] = field(default_factory=list)

    @property
    def n_copies(self) -> int:
        return sum(q.family is not None for q in self.queries)

    @property
    def n_distractors(self) -> int:
        return sum(q.family is None for q in self.queries)


# --------------------------------------------------------------------------- corpus split
def split_corpus(corpus: str | os.PathLike, spec: BenchSpec):
    """(references, distractor pool, skipped) as lists of CorpusItem, rel_path from CORPUS."""
    from audioaudit.audio.corpus import CorpusItem, scan_corpus

    root = Path(corpus).expanduser().resolve()
    if (root / "train").is_dir() and (root / "heldout").is_dir():
        def scan(sub):  # classes are the folders under train/ and heldout/
            res = scan_corpus(root / sub)
            return [CorpusItem(i.path, f"{sub}/{i.rel_path}", i.label) for i in res.items], res.skipped
        refs, s1 = scan("train")
        pool, s2 = scan("heldout")
        return refs, pool, s1 + s2
    res = scan_corpus(root)
    order = np.random.default_rng([spec.seed, 7]).permutation(len(res.items))
    n_pool = int(round(spec.distractor_fraction * len(order)))
    pool_idx = set(order[:n_pool].tolist())
    refs = [it for n, it in enumerate(res.items) if n not in pool_idx]
    pool = [it for n, it in enumerate(res.items) if n in pool_idx]
    return refs, pool, res.skipped


def cache_key(refs, pool, spec: BenchSpec) -> str:
    """Key of a built set: spec + every file's (relative path, size, mtime)."""
    h = hashlib.sha256(json.dumps({"v": BENCH_VERSION, "spec": asdict(spec)}, sort_keys=True).encode())
    for tag, items in (("ref", refs), ("pool", pool)):
        for it in items:
            st = os.stat(it.path)
            h.update(f"{tag}|{it.rel_path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _common_rate(paths: Sequence[str]) -> int:
    import soundfile as sf

    rates = Counter()
    for p in paths[:200]:
        try:
            rates[int(sf.info(p).samplerate)] += 1
        except Exception:  # noqa: BLE001 - the loader reports the file later
            continue
    return rates.most_common(1)[0][0] if rates else 16000


def _load(items, sr: int, dropped: list[dict], progress) -> tuple[list, list[np.ndarray]]:
    from audioaudit.audio.io import LoadOptions, Skipped, load_many

    ok, waves = [], []
    by_path = {it.path: it for it in items}
    for path, res in load_many([it.path for it in items], LoadOptions(sample_rate=sr)):
        if isinstance(res, Skipped):
            dropped.append({"path": res.path, "kind": res.kind, "reason": res.reason})
        else:
            ok.append(by_path[path])
            waves.append(res.wave)
        if progress:
            progress("load", 1)
    return ok, waves


# --------------------------------------------------------------------------- dedupe
def dedupe(refs, ref_waves, pool, pool_waves, sr: int, near_threshold: float):
    """Group twins across references and distractor pool.

    Returns (references, kept pool indices, group rows, dropped records)."""
    from audioaudit.audio import fingerprint
    from audioaudit.duplicates import groups as dupgroups

    ids = [it.rel_path for it in refs] + [it.rel_path for it in pool]
    waves = list(ref_waves) + list(pool_waves)
    hashes = [fingerprint.pcm_hash(w, sr) for w in waves]
    near = [(ids[a], ids[b]) for a, b, _ in near_twin_pairs(waves, sr, threshold=near_threshold)]
    groups = dupgroups.group_duplicates(ids, hashes, near)
    src = dupgroups.source_ids(ids, groups)
    group_of = {m: g for g in groups for m in g.members}
    references = [Reference(it.rel_path, it.path, it.label, s) for it, s in zip(refs, src[: len(refs)])]
    ref_sources = {r.source: r.item_id for r in references}
    keep, seen, dropped = [], set(), []
    for n, (it, s) in enumerate(zip(pool, src[len(refs):])):
        g = group_of.get(it.rel_path)
        if s in ref_sources:
            dropped.append({"path": it.path, "kind": f"twin_of_reference_{g.kind if g else 'exact'}",
                            "reason": f"same audio as reference {ref_sources[s]}; not a novel distractor"})
        elif s in seen:
            dropped.append({"path": it.path, "kind": "twin_of_distractor",
                            "reason": "same audio as another held-out clip; kept once"})
        else:
            seen.add(s)
            keep.append(n)
    return references, keep, dupgroups.groups_to_rows(groups), dropped


# --------------------------------------------------------------------------- queries
def _crc(s: str) -> int:
    return zlib.crc32(s.encode())


def plan_copies(references: Sequence[Reference], spec: BenchSpec, families: Sequence[str],
                have_others: bool) -> tuple[list[tuple[Query, int]], list[str]]:
    """(query, reference index) for every copy query, one source per duplicate group."""
    from audioaudit.detector.augment import FAMILIES

    reps: dict[str, int] = {}
    for n, r in enumerate(references):
        reps.setdefault(r.source, n)
    truth = {}
    for r in references:
        truth.setdefault(r.source, []).append(r.item_id)
    sources = list(reps.values())
    plans, notes = [], []
    for f in families:
        if FAMILIES[f].needs_others and not have_others:
            notes.append(f"family '{f}' skipped: it needs clips outside the reference set and there are none")
            continue
        order = np.random.default_rng([spec.seed, _crc(f)]).permutation(len(sources))
        for i in range(spec.per_family if sources else 0):
            ref = references[sources[order[i % len(sources)]]]
            q = Query(f"{f}_{i:04d}", f"{QUERIES_DIR}/{f}_{i:04d}.wav", f,
                      float(spec.strengths[i % len(spec.strengths)]), ref.item_id,
                      tuple(sorted(truth[ref.source])), ref.label, f)
            plans.append((q, sources[order[i % len(sources)]]))
    return plans, notes


def plan_distractors(pool_labels: Sequence[str | None], spec: BenchSpec,
                     families: Sequence[str]) -> list[tuple[Query, int]]:
    """Distractor queries: held-out clips through a random (self-contained) family."""
    from audioaudit.detector.augment import FAMILIES

    plain = [f for f in families if not FAMILIES[f].needs_others] or ["gain"]
    rng = np.random.default_rng([spec.seed, 11])
    chosen = rng.permutation(len(pool_labels))[: spec.distractors]
    plans = []
    for i, n in enumerate(chosen.tolist()):
        f = plain[int(rng.integers(len(plain)))]
        q = Query(f"distractor_{i:04d}", f"{QUERIES_DIR}/distractor_{i:04d}.wav", None,
                  float(rng.choice(spec.strengths)), None, (), pool_labels[n], f)
        plans.append((q, n))
    return plans


def render_query(q: Query, wave: np.ndarray, sr: int, seed: int, others: Sequence[np.ndarray]) -> np.ndarray:
    """The query audio: its own rng (seed, query id), so each query is reproducible alone."""
    from audioaudit.detector.augment import transform

    rng = np.random.default_rng([seed, _crc(q.query_id)])
    pool = [o for o in others if o is not wave]
    return transform(wave, sr, q.transform, q.strength, rng, others=pool)


# --------------------------------------------------------------------------- build / cache
def build_benchmark(
    corpus: str | os.PathLike,
    cache_dir: str | os.PathLike,
    spec: BenchSpec = BenchSpec(),
    *,
    rebuild: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> BenchSet:
    """Build (or reuse from ``cache_dir``) the benchmark of ``corpus`` for ``spec``."""
    from audioaudit.detector.augment import FAMILIES, STANDARD_FAMILIES
    from audioaudit.errors import UserError

    families = tuple(spec.families) or tuple(STANDARD_FAMILIES)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise UserError(f"unknown transformation family: {', '.join(unknown)} (known: {', '.join(FAMILIES)})")
    spec = BenchSpec(**{**asdict(spec), "families": families})
    refs, pool, skipped = split_corpus(corpus, spec)
    if not refs:
        raise UserError(f"{corpus}: no audio files found for the reference set")
    key = cache_key(refs, pool, spec)
    out = Path(cache_dir) / f"{Path(corpus).resolve().name}-{key}"
    if (out / BENCH_FILE).is_file() and not rebuild:
        return load_benchmark(out)
    sr = spec.sample_rate or _common_rate([it.path for it in refs])
    dropped = [{"path": s.path, "kind": s.kind, "reason": s.reason} for s in skipped]
    notes: list[str] = []
    refs, ref_waves = _load(refs, sr, dropped, progress)
    pool, pool_waves = _load(pool, sr, dropped, progress)
    if spec.dedupe:
        references, keep, groups, twins = dedupe(refs, ref_waves, pool, pool_waves, sr, spec.near_threshold)
    else:
        references = [Reference(it.rel_path, it.path, it.label, it.rel_path) for it in refs]
        keep, groups, twins = list(range(len(pool))), [], []
        notes.append("duplicates NOT removed (--no-dedupe): distractors may be reference audio")
    dropped += twins
    others = [pool_waves[n] for n in keep]
    copies, more = plan_copies(references, spec, families, bool(others))
    notes += more
    distract = plan_distractors([pool[n].label for n in keep], spec, families)
    if len(distract) < spec.distractors:
        notes.append(f"only {len(distract)} distractors available (asked for {spec.distractors})")
    jobs = [(q, ref_waves[i]) for q, i in copies] + [(q, others[n]) for q, n in distract]
    _write_queries(out, jobs, sr, spec.seed, others, progress)
    bench = BenchSet(str(out), str(Path(corpus).resolve()), key, spec, sr, references,
                     [q for q, _ in jobs], groups, dropped, notes)
    write_json(out / BENCH_FILE, _to_json(bench), indent=1, newline=False)
    return bench


def _write_queries(out: Path, jobs, sr: int, seed: int, others, progress) -> None:
    """Render and write every query WAV; existing ones are kept (resumable, deterministic)."""
    from audioaudit.audio.io import write_wav

    for q, wave in jobs:
        path = out / q.path
        if not path.is_file():
            write_wav(path, render_query(q, wave, sr, seed, others), sr)
        if progress:
            progress("queries", 1)


def _to_json(b: BenchSet) -> dict:
    return {"version": BENCH_VERSION, "corpus": b.corpus, "key": b.key, "spec": asdict(b.spec),
            "sample_rate": b.sample_rate, "references": [asdict(r) for r in b.references],
            "queries": [asdict(q) for q in b.queries], "groups": b.groups, "dropped": b.dropped, "notes": b.notes}


def load_benchmark(path: str | os.PathLike) -> BenchSet:
    """Read a built benchmark directory (``bench.json`` + ``queries/``)."""
    from audioaudit.errors import UserError

    p = Path(path)
    f = p / BENCH_FILE if p.is_dir() else p
    try:
        d = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{f}: not a built benchmark ({e})") from None
    if d.get("version") != BENCH_VERSION:
        raise UserError(f"{f}: benchmark version {d.get('version')} != {BENCH_VERSION}; rebuild it")
    spec = d["spec"]
    spec = BenchSpec(**{**spec, "families": tuple(spec["families"]), "strengths": tuple(spec["strengths"])})
    queries = [Query(**{**q, "truth": tuple(q["truth"])}) for q in d["queries"]]
    return BenchSet(str(f.parent), d["corpus"], d["key"], spec, int(d["sample_rate"]),
                    [Reference(**r) for r in d["references"]], queries, d["groups"], d["dropped"], d["notes"])
