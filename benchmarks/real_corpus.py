"""Real-sound corpus from free Debian packages, for copy-detection benchmarks (never run in CI).

    python benchmarks/real_corpus.py --out ~/.cache/audioaudit/real_corpus \
        [--cache ~/.cache/audioaudit/debian] [--packages a,b] [--max-per-package N] [--seed S]

``apt-get download`` into the cache (a second run downloads nothing), ``dpkg -x`` (no install),
audio pulled out of .pk3/.wz/.zip; kind per file from ``KIND_RULES``; mono 22050 Hz, long files
cut into 4-10 s excerpts; exact + near duplicates removed with audioaudit's own code; split by
package (``SPLITS``) into OUT/<split>/<kind>/<package>__<name>.wav, OUT/real_corpus.json, OUT/sources.csv.
"""
from __future__ import annotations

import argparse
import csv
import io
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

KINDS = ("effects", "speech", "music", "ambience")
SPLIT_NAMES = ("train", "background", "heldout")
SPLITS = {  # package -> split (targets ~50 / 20 / 30 % of clips; each kind in >= 2 splits)
    "megaglest-data": "train", "wesnoth-1.16-music": "train", "frozen-bubble-data": "train",
    "oxygen-sounds": "train", "sound-theme-freedesktop": "train",
    "openarena-data": "background", "lincity-ng-data": "background", "xmoto-data": "background",
    "warzone2100-music": "background", "pingus-data": "background",
    "warzone2100-data": "heldout", "supertuxkart-data": "heldout", "wesnoth-1.16-data": "heldout",
}
NOT_USED = {  # candidates looked at and left out, with the reason
    "freedoom": "sounds are DMX lumps inside WAD files, not plain audio",
    "festvox-kallpc16k": "LPC diphone tables (group file), no waveforms",
    "neverball-data": "no audio files (levels and images only)",
    "gcompris-qt-data": "Qt resource bundles (.rcc), no plain audio",
}
FORBIDDEN = {"hedgewars-data"}  # reserved for an independent check: never used here
# (package regex, inner-path regex, kind) -- first match wins; kind None = not used
KIND_RULES: list[tuple[str, str, str | None]] = [
    ("openarena", r"voices/festivoxmale|/silence\.wav$", None),  # festival TTS is not a recording
    (".", r"(^|/)music/|musi[ck]|zik|soundtrack|/albums/", "music"),
    ("supertuxkart", r"tracks/.*(theme|remix|rabbit_hole|/hot|intro2)[^/]*$", "music"),
    ("supertuxkart", r"speech", "speech"),
    ("supertuxkart", r"locomotive|engine", "ambience"),
    ("megaglest", r"/(behemoth|bull|carpet|chicken|cow|daemon|dr|dragon|eagle|evil_dragon|golem|pig)_[^/]*$",
     "effects"),
    ("megaglest", r"_(ack|select)\d*\.wav$|/(ack|select)\d*\.wav$", "speech"),
    ("megaglest", r"tilesets/.*/(day|night|nightime|sunny_day|desertday|rain|wind|hell|storm)[^/]*\.ogg$",
     "ambience"),
    ("warzone2100", r"audio/(sfx|radclick|multi)/", "effects"),
    ("warzone2100", r"audio/|sequenceaudio/", "speech"),
    ("openarena", r"sound/weapons/", "effects"),
    ("openarena", r"voices/|announcer|taunt", "speech"),  # sarge's pains and jumps are effects
    ("pingus", r"(goodidea|letsgo|ohno|yipee)\.wav$", "speech"),
    ("lincity", r"(click|build|raze|explosion|window)[^/]*\.wav$", "effects"),
    ("lincity", r".", "ambience"),
    (".", r"voice|speech|taunt", "speech"),
    (".", r"ambien|(^|/|_)amb|wind(?!ow)|rain|drone|waterfall|hum\.|/fan\d*\.|loop|fire(soft|\d)", "ambience"),
    (".", r".", "effects"),
]
AUDIO_EXT = (".wav", ".ogg", ".oga", ".opus", ".flac", ".mp3")
CONTAINER_EXT = (".pk3", ".wz", ".zip")


@dataclass
class Settings:
    out: Path
    cache: Path
    packages: list[str]
    max_per_package: int | None = None
    seed: int = 0
    sample_rate: int = 22050
    min_seconds: float = 0.3
    excerpt: tuple[float, float] = (4.0, 10.0)  # excerpt length range; files longer than the max are cut
    max_excerpts: int = 12  # per long file, spread over its length
    silence_dbfs: float = -45.0  # an excerpt whose peak is below this is dropped


@dataclass
class ClipRec:
    package: str
    inner: str  # path inside the package (container!member for archives)
    kind: str
    start: float  # excerpt start, seconds
    staged: Path
    hash: str
    low: np.ndarray = field(repr=False)  # 4 kHz copy for near-twin search
    name: str = ""
    split: str = ""


# --------------------------------------------------------------------------- pure parts
def kind_of(package: str, inner: str) -> str | None:
    """The kind of a file from ``KIND_RULES`` (first match wins); None = not used."""
    for pkg_re, path_re, kind in KIND_RULES:
        if re.search(pkg_re, package) and re.search(path_re, inner, re.IGNORECASE):
            return kind
    return None


def excerpt_spans(n: int, sr: int, rng: np.random.Generator, s: Settings) -> list[tuple[int, int]]:
    """(start, length) in samples: the whole file when it is at most ``excerpt[1]`` s long,
    else up to ``max_excerpts`` non-overlapping excerpts of 4-10 s, one per equal part."""
    lo, hi = (round(x * sr) for x in s.excerpt)
    if n < round(s.min_seconds * sr):
        return []
    if n <= hi:
        return [(0, n)]
    parts = min(s.max_excerpts, n // hi)
    size = n // parts
    lengths = [int(x) for x in rng.integers(lo, hi + 1, size=parts)]
    return [(k * size + int(rng.integers(0, size - m + 1)), m) for k, m in enumerate(lengths)]


def cut_clips(wave: np.ndarray, sr: int, rng: np.random.Generator, s: Settings) -> list[tuple[float, np.ndarray]]:
    """(start seconds, excerpt) for every non-silent excerpt of ``wave``."""
    floor = 10 ** (s.silence_dbfs / 20)
    out = []
    for start, length in excerpt_spans(len(wave), sr, rng, s):
        x = wave[start:start + length]
        if x.size and float(np.max(np.abs(x))) >= floor:
            out.append((start / sr, x))
    return out


def signature(wave: np.ndarray, sr: int) -> tuple[str, np.ndarray]:
    """PCM hash (exact twins) and the 4 kHz copy :func:`near_twin_pairs` compares."""
    from audioaudit.audio.fingerprint import pcm_hash
    from audioaudit.audio.io import resample

    return pcm_hash(wave, sr), resample(np.asarray(wave, np.float32), sr, 4000)


def dedupe(ids: list[str], hashes: list[str], lows: list[np.ndarray]) -> tuple[list[int], dict]:
    """For each item the position of the one kept for its duplicate group (the smallest id;
    itself when kept), and removal counts."""
    from audioaudit.duplicates.groups import group_duplicates, summarise
    from audioaudit.duplicates.twins import near_twin_pairs

    near = [(ids[a], ids[b]) for a, b, _ in near_twin_pairs(lows, 4000)]
    groups = group_duplicates(ids, hashes, near)
    summ = summarise(groups)
    stats = {"removed": summ.redundant_items, "groups": summ.groups, "exact_groups": summ.exact_groups,
             "near_groups": summ.near_groups, "largest_group": summ.largest, "near_pairs": len(near),
             "removed_exact": len(hashes) - len(set(hashes))}  # same PCM as a clip before it
    stats["removed_near"] = stats["removed"] - stats["removed_exact"]
    pos, rep = {x: i for i, x in enumerate(ids)}, list(range(len(ids)))
    for g in groups:
        for m in g.members[1:]:
            rep[pos[m]] = pos[g.members[0]]
    return rep, stats


def split_of(package: str) -> str:
    if package not in SPLITS:
        raise ValueError(f"{package}: no split in SPLITS; add it to the table in {Path(__file__).name}")
    return SPLITS[package]


def kind_split_counts(rows: list[tuple[str, str]]) -> dict[str, dict[str, int]]:
    """(kind, split) pairs -> {kind: {split: count}} over every kind and split."""
    c = Counter(rows)
    kinds = [k for k in KINDS if any(r[0] == k for r in rows)] + sorted({r[0] for r in rows} - set(KINDS))
    return {k: {s: c[(k, s)] for s in SPLIT_NAMES} for k in kinds}


def check_splits(counts: dict[str, dict[str, int]]) -> list[str]:
    """Problems: a kind present in fewer than two splits."""
    return [f"kind {k!r} lives only in {[s for s, n in v.items() if n]}" for k, v in counts.items()
            if sum(n > 0 for n in v.values()) < 2]


def clip_name(package: str, inner: str, start: float, long_file: bool) -> str:
    """<package>__<short inner path>[_<ms>] with only [A-Za-z0-9._-]."""
    inner = re.sub(r"^usr/share/(games/)?(sounds/)?", "", inner)
    stem = re.sub(r"\.[A-Za-z0-9]+$", "", inner.replace("!", "/"))
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-")[-90:]
    return f"{package}__{stem}" + (f"_{round(start * 1000):07d}" if long_file else "")


# --------------------------------------------------------------------------- fetch + unpack
def fetch(package: str, cache: Path) -> tuple[Path, str]:
    """The cached .deb (``apt-get download`` when absent) and its version from the file name."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        cmd = ["apt-get", "download", package]
        if subprocess.run(cmd, cwd=debs, capture_output=True, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True, check=False)
            r = subprocess.run(cmd, cwd=debs, capture_output=True, text=True, check=False)
            if r.returncode != 0:
                raise RuntimeError(f"apt-get download failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
        found = sorted(debs.glob(f"{package}_*.deb"))
    return found[-1], urllib.parse.unquote(found[-1].name.split("_")[1])


def unpack(deb: Path, root: Path) -> Path:
    """``dpkg -x`` into root (once), then the audio members of zip-like containers into
    root/__archives__/<container path>/ (once)."""
    done = root / ".unpacked"
    if done.is_file():
        return root
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True, capture_output=True)
    for box in sorted(p for p in root.rglob("*") if p.suffix.lower() in CONTAINER_EXT and p.is_file()):
        dest = root / "__archives__" / box.relative_to(root)
        try:
            with zipfile.ZipFile(box) as zf:
                members = [m for m in zf.namelist() if m.lower().endswith(AUDIO_EXT) and ".." not in m]
                zf.extractall(dest, members)
        except zipfile.BadZipFile:
            continue  # not a zip after all: its contents stay unused
    done.write_text("ok\n")
    return root


def list_sources(root: Path) -> list[tuple[str, Path]]:
    """(inner path, file) for every plain audio file; archive members as container!member."""
    out = []
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() not in AUDIO_EXT or not p.is_file():
            continue
        rel = p.relative_to(root).as_posix()
        if rel.startswith("__archives__/"):
            m = re.match(r"__archives__/(.+?\.(?:pk3|wz|zip))/(.+)$", rel, re.IGNORECASE)
            rel = f"{m.group(1)}!{m.group(2)}" if m else rel
        out.append((rel, p))
    return out


def decode_package(package: str, root: Path, s: Settings, skipped: list[dict]) -> list[ClipRec]:
    """Decode, cut and stage every usable clip of one unpacked package."""
    from audioaudit.audio.io import LoadOptions, Skipped, try_load, write_wav

    opts = LoadOptions(sample_rate=s.sample_rate, min_seconds=s.min_seconds, max_seconds=None)
    rng = np.random.default_rng([s.seed, sum(map(ord, package))])
    sources, recs = list_sources(root), []
    rng.shuffle(sources)
    for inner, path in sources:
        if s.max_per_package is not None and len(recs) >= s.max_per_package:
            break
        kind = kind_of(package, inner)
        if kind is None:
            skipped.append({"package": package, "path": inner, "reason": "left out by KIND_RULES"})
            continue
        clip = try_load(path, opts)
        if isinstance(clip, Skipped):
            skipped.append({"package": package, "path": inner, "reason": f"{clip.kind}: {clip.reason}"})
            continue
        long_file = clip.seconds > s.excerpt[1]
        for start, x in cut_clips(clip.wave, s.sample_rate, rng, s):
            staged = s.out / ".staging" / f"{package}-{len(recs):06d}.wav"
            write_wav(staged, x, s.sample_rate)
            h, low = signature(x, s.sample_rate)
            recs.append(ClipRec(package, inner, kind, start, staged, h, low,
                                clip_name(package, inner, start, long_file)))
    return recs


def place(recs: list[ClipRec], out: Path) -> None:
    """Move the kept staged clips to OUT/<split>/<kind>/<name>.wav (names made unique)."""
    seen: Counter = Counter()
    for r in recs:
        r.split = split_of(r.package)
        seen[r.name] += 1
        if seen[r.name] > 1:
            r.name = f"{r.name}-{seen[r.name]}"
        dest = out / r.split / r.kind / f"{r.name}.wav"
        dest.parent.mkdir(parents=True, exist_ok=True)
        r.staged.replace(dest)
        r.staged = dest


def write_manifest(recs: list[ClipRec], meta: dict, out: Path) -> None:
    from audioaudit.util.atomic import write_json, write_text

    buf = io.StringIO()
    csv.writer(buf).writerows([["clip", "package", "original_path", "kind", "split", "excerpt_start_s"]] + [
        [r.staged.relative_to(out).as_posix(), r.package, r.inner, r.kind, r.split, f"{r.start:.3f}"] for r in recs])
    write_text(out / "sources.csv", buf.getvalue())
    write_json(out / "real_corpus.json", meta, indent=1)


def print_table(counts: dict[str, dict[str, int]]) -> None:
    total = sum(sum(v.values()) for v in counts.values())
    print(f"{'kind':<10}" + "".join(f"{s:>12}" for s in SPLIT_NAMES) + f"{'total':>9}")
    for k, v in counts.items():
        print(f"{k:<10}" + "".join(f"{v[s]:>12}" for s in SPLIT_NAMES) + f"{sum(v.values()):>9}")
    col = {s: sum(v[s] for v in counts.values()) for s in SPLIT_NAMES}
    print(f"{'total':<10}" + "".join(f"{col[s]:>6} ({col[s] / max(total, 1):4.0%})" for s in SPLIT_NAMES)
          + f"{total:>9}")


@dataclass
class Log:
    versions: dict = field(default_factory=dict)
    decoded: dict = field(default_factory=dict)  # package -> clips before dedupe
    failed: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    dropped: list = field(default_factory=list)  # duplicates removed, with the clip kept instead
    seconds: dict = field(default_factory=dict)


def collect(s: Settings, log: Log) -> list[ClipRec]:
    """Fetch, unpack, decode and stage every package; a failing package is logged, not fatal."""
    t0, recs = time.perf_counter(), []
    for pkg in s.packages:
        try:
            deb, log.versions[pkg] = fetch(pkg, s.cache)
            got = decode_package(pkg, unpack(deb, s.cache / "x" / pkg), s, log.skipped)
        except Exception as e:  # noqa: BLE001 - one package's failure is reported, the rest goes on
            log.failed[pkg] = f"{type(e).__name__}: {e}"
            continue
        if not got:
            log.failed[pkg] = NOT_USED.get(pkg, "no usable plain audio found")
        log.decoded[pkg] = len(got)
        recs += got
        print(f"{pkg:<26} {log.versions[pkg]:<24} {len(got):>5} clips  ({time.perf_counter() - t0:.0f} s)", flush=True)
    log.seconds["fetch_decode"] = round(time.perf_counter() - t0, 1)
    return recs


def keep_unique(recs: list[ClipRec], log: Log) -> tuple[list[ClipRec], dict]:
    """Drop the staged files of duplicates; the survivors, and the counts."""
    t0 = time.perf_counter()
    rep, dup = dedupe([r.staged.name for r in recs], [r.hash for r in recs], [r.low for r in recs])
    for r, k in ((r, recs[k]) for r, k in zip(recs, rep) if r is not recs[k]):
        r.staged.unlink()
        log.dropped.append({"package": r.package, "path": r.inner, "start": r.start,
                            "duplicate_of": f"{k.package}:{k.inner}@{k.start:.2f}"})
    log.seconds["dedupe"] = round(time.perf_counter() - t0, 1)
    return [r for i, r in enumerate(recs) if rep[i] == i], dup


def metadata(s: Settings, recs: list[ClipRec], log: Log, dup: dict, argv: list[str]) -> dict:
    counts = kind_split_counts([(r.kind, r.split) for r in recs])
    return {"command": " ".join([Path(sys.argv[0]).name, *argv]), "settings": {
        "sample_rate": s.sample_rate, "min_seconds": s.min_seconds, "excerpt_seconds": s.excerpt,
        "max_excerpts": s.max_excerpts, "max_per_package": s.max_per_package, "seed": s.seed},
        "packages": {p: {"version": log.versions.get(p), "split": SPLITS.get(p), "decoded": log.decoded.get(p, 0),
                         "clips": sum(r.package == p for r in recs)} for p in s.packages},
        "failed": log.failed, "not_used": NOT_USED, "clips": len(recs), "kind_split_counts": counts,
        "duplicates": dup | {"dropped": log.dropped}, "problems": check_splits(counts), "seconds": log.seconds,
        "skipped": log.skipped}


def build(s: Settings, argv: list[str]) -> int:
    t0, log = time.perf_counter(), Log()
    for d in (*SPLIT_NAMES, ".staging"):
        shutil.rmtree(s.out / d, ignore_errors=True)
    recs, dup = keep_unique(collect(s, log), log)
    place(recs, s.out)
    shutil.rmtree(s.out / ".staging", ignore_errors=True)
    log.seconds["total"] = round(time.perf_counter() - t0, 1)
    meta = metadata(s, recs, log, dup, argv)
    write_manifest(recs, meta, s.out)
    print(f"\n{len(recs)} clips after removing {dup['removed']} duplicates ({dup['removed_exact']} exact, "
          f"{dup['removed_near']} near); {len(log.skipped)} files skipped; {log.seconds['total']:.0f} s")
    print_table(meta["kind_split_counts"])
    for p, why in log.failed.items():
        print(f"no clips from {p}: {why}")
    for p in meta["problems"]:
        print(f"ERROR: {p}")
    return 1 if meta["problems"] else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "audioaudit" / "debian")
    ap.add_argument("--packages", default=",".join(SPLITS), help="comma-separated Debian packages")
    ap.add_argument("--max-per-package", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    packages = [p.strip() for p in a.packages.split(",") if p.strip()]
    for p in sorted(set(packages) & FORBIDDEN):
        ap.error(f"{p} is reserved for an independent check and is never used here")
    for p in (p for p in packages if p not in SPLITS and p not in NOT_USED):
        ap.error(f"{p}: no split in SPLITS; add it to the table in {Path(__file__).name}")
    s = Settings(out=a.out.expanduser(), cache=a.cache.expanduser(), packages=packages,
                 max_per_package=a.max_per_package, seed=a.seed)
    s.out.mkdir(parents=True, exist_ok=True)
    return build(s, argv)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())
