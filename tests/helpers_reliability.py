"""Fixtures for the reliability / security / determinism tests: the real CLI in a
subprocess (optionally throttled so a kill lands mid-run), tiny corpora of good and
hostile inputs, sparse long WAVs, pickles that would run code, index readers."""
from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

SR = 16000
CLI_TIMEOUT = 300
TMP_PATTERN = ".*.tmp*"  # what every atomic writer of ours leaves while writing

# ------------------------------------------------------------------ the CLI
# The real command line with one function slowed down (a sleep *after* it returns), so a
# SIGKILL can be aimed between two units of work without racing a fast machine.
THROTTLED = """
import sys, time, importlib
_mod = importlib.import_module({module!r})
_orig = getattr(_mod, {func!r})
def _slow(*a, **k):
    out = _orig(*a, **k)
    time.sleep({seconds!r})
    return out
setattr(_mod, {func!r}, _slow)
from audioaudit.cli import main
sys.argv = ["audioaudit"] + sys.argv[1:]
main()
"""


def cli_env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "RAY_AUTH_MODE": "disabled",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            "MPLBACKEND": "Agg", "COLUMNS": "200"}


def cli_argv(*args) -> list[str]:
    """The installed console script next to this interpreter (``python -m`` as a fallback)."""
    script = Path(sys.executable).with_name("audioaudit")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "audioaudit.cli"]
    return head + [str(a) for a in args]


def cli(*args, timeout: int = CLI_TIMEOUT, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cli_argv(*args), env=cli_env(), capture_output=True, text=True, timeout=timeout, cwd=cwd)


def popen_cli(*args, throttle: tuple[str, str, float] | None = None, **kw) -> subprocess.Popen:
    """Start the CLI in its own process group (kill it and its workers with :func:`kill_group`).
    ``throttle=(module, function, seconds)`` sleeps after every call of that function."""
    if throttle:
        module, func, seconds = throttle
        argv = [sys.executable, "-c", THROTTLED.format(module=module, func=func, seconds=seconds)]
        argv += [str(a) for a in args]
    else:
        argv = cli_argv(*args)
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(argv, env=cli_env(), text=True, start_new_session=True, **kw)


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def wait_for(cond: Callable[[], bool], proc: subprocess.Popen | None = None, timeout: float = CLI_TIMEOUT,
             what: str = "condition") -> None:
    """Poll ``cond`` every 20 ms; fail if ``proc`` exits first or time runs out."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process exited ({proc.returncode}) before {what}:\n{out}\n{err}")
        time.sleep(0.02)
    if proc is not None:
        kill_group(proc)  # leave no stray CLI behind a failed test
    raise AssertionError(f"timed out waiting for {what}")


def leftover_temps(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob(TMP_PATTERN))


# ------------------------------------------------------------------ audio
def clip(seed: int, seconds: float = 1.5, sr: int = SR) -> np.ndarray:
    """A distinct, clearly audible clip: two seeded partials, an envelope, a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f1, f2 = rng.uniform(150, 2000, size=2)
    x = np.sin(2 * np.pi * f1 * t) + 0.5 * np.sin(2 * np.pi * f2 * t + rng.uniform(0, 6))
    x *= 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.5, 5) * t)
    x += 0.05 * rng.standard_normal(len(t))
    return (0.4 * x / np.max(np.abs(x))).astype(np.float32)


def write_wav(path: Path, wave: np.ndarray, sr: int = SR, subtype: str = "PCM_16") -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave, sr, subtype=subtype, format="WAV")
    return path


def good_corpus(root: Path, n: int = 6, seconds=(1.0, 2.0), seed: int = 0, classes=("a", "b")) -> list[str]:
    """``root/<class>/clip_<i>.wav``; returns the relative paths."""
    rng = np.random.default_rng(seed)
    rels = []
    for i in range(n):
        rel = f"{classes[i % len(classes)]}/clip_{i}.wav"
        write_wav(root / rel, clip(1000 * seed + i, float(rng.uniform(*seconds))))
        rels.append(rel)
    return rels


def sparse_wav(path: Path, seconds: float, sr: int = SR, bursts: tuple[float, ...] = (0.0,)) -> Path:
    """A 16-bit mono WAV of ``seconds`` written as a sparse file: a correct header, a hole
    of zeros, and one-second tone bursts at ``bursts`` (s). Instant to write at any length."""
    nbytes = 2 * int(seconds * sr)
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, sr, 2 * sr, 2, 16)
    header = b"RIFF" + struct.pack("<I", 36 + nbytes) + b"WAVE" + b"fmt " + fmt + b"data" + struct.pack("<I", nbytes)
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr) * 32767).astype("<i2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + nbytes)
        for start in bursts:
            f.seek(len(header) + 2 * int(start * sr))
            f.write(tone)
    return path


def truncated_wav(path: Path, seconds: float = 2.0, keep: float = 0.5, seed: int = 77) -> Path:
    """A WAV whose header declares ``seconds`` but whose file ends after ``keep`` of it."""
    write_wav(path, clip(seed, seconds))
    data = path.read_bytes()
    path.write_bytes(data[: 44 + int(keep * (len(data) - 44))])
    return path


# name -> expected skip kind (None: a good file that must be indexed)
BAD_INPUTS: dict[str, str | None] = {
    "bad/truncated.wav": "truncated",
    "bad/zero_bytes.wav": "empty",
    "bad/notes.wav": "unreadable",  # a text file renamed .wav
    "bad/all_zero.wav": "silent",
    "bad/nan.wav": "non_finite",
    "bad/two_hours.wav": "too_long",  # refused by the length cap before decoding
    "bad/pipe.wav": "unreadable",  # a FIFO: must not block the scan or the decoder
    "edge/one_sample.wav": None,  # accepted: one (padded) window, a finite unit vector
    "edge/eight_channels_96k.wav": None,  # mixed to mono, resampled once to the encoder's rate
    "edge/thirty_minutes.wav": None,  # accepted and segmented (sparse file, 1800 s)
    "edge/ünï cødé  and spaces ♫.wav": None,
}
LOOP = "edge/loop"  # a symlink to the corpus root: reported as symlink_loop, not followed


def write_bad_inputs(root: Path, long_ok: bool = True) -> dict[str, str | None]:
    """Every hostile case of :data:`BAD_INPUTS` under ``root`` (plus the symlink loop).
    ``long_ok=False`` leaves out the 30-minute file (to keep an audit short)."""
    rng = np.random.default_rng(5)
    truncated_wav(root / "bad/truncated.wav")
    (root / "bad/zero_bytes.wav").write_bytes(b"")
    (root / "bad/notes.wav").write_text("these are my notes, not audio\n" * 20)
    write_wav(root / "bad/all_zero.wav", np.zeros(SR, np.float32))
    nan = clip(8, 1.0)
    nan[[100, 2000]] = np.nan
    write_wav(root / "bad/nan.wav", nan, subtype="FLOAT")
    sparse_wav(root / "bad/two_hours.wav", 7200.0)
    os.mkfifo(root / "bad/pipe.wav")
    write_wav(root / "edge/one_sample.wav", np.array([0.5], np.float32))
    multi = 0.05 * rng.standard_normal((96000, 8)).astype(np.float32)
    multi[:, 3] += np.sin(2 * np.pi * 1000 * np.arange(96000) / 96000).astype(np.float32) * 0.5
    write_wav(root / "edge/eight_channels_96k.wav", multi, 96000, subtype="PCM_24")
    if long_ok:
        sparse_wav(root / "edge/thirty_minutes.wav", 1800.0, bursts=(0.0, 600.0, 1795.0))
    write_wav(root / "edge/ünï cødé  and spaces ♫.wav", clip(9, 1.2))
    os.symlink(root.resolve(), root / LOOP)
    return {k: v for k, v in BAD_INPUTS.items() if long_ok or "thirty" not in k}


# ------------------------------------------------------------------ hostile pickles
EVIL_CHILD = """
import sys, torch
class Payload:
    def __reduce__(self):  # unpickling this calls exec(...), which writes the marker file
        return (exec, ("open(%r, 'w').write('code ran')" % sys.argv[2],))
obj = {"state_dict": {"audio_branch.w": torch.zeros(2), "payload": Payload()}, "payload": Payload()}
torch.save(obj, sys.argv[1])
"""

UNSAFE_LOAD = "import sys, torch; torch.load(sys.argv[1], weights_only=False)"


def evil_pickle(path: Path, marker: Path) -> Path:
    """A torch pickle whose loading with ``weights_only=False`` writes ``marker``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", EVIL_CHILD, str(path), str(marker)], check=True, env=cli_env(), timeout=120)
    return path


def prove_payload_runs(path: Path, marker: Path) -> None:
    """Sanity: an unsafe load (in a child process) really runs the payload; then reset."""
    subprocess.run([sys.executable, "-c", UNSAFE_LOAD, str(path)], check=True, env=cli_env(), timeout=120)
    assert marker.exists(), "the payload did not run under an unsafe load: the test would prove nothing"
    marker.unlink()


# ------------------------------------------------------------------ reading outputs
def index_vectors(index_dir: Path) -> np.ndarray:
    import faiss

    ix = faiss.read_index(str(Path(index_dir) / "index.faiss"))
    return ix.reconstruct_n(0, ix.ntotal)


def items(index_dir: Path):
    import pandas as pd

    return pd.read_parquet(Path(index_dir) / "items.parquet")


def this_run(stdout: str) -> dict[str, int]:
    """Counts from `index build`'s 'this run:' line."""
    m = re.search(r"this run: (\d+) files decoded, (\d+) reused from finished shards; "
                  r"(\d+) shards written, (\d+) reused", stdout)
    assert m, f"no 'this run' line in:\n{stdout}"
    return dict(zip(("decoded", "reused", "shards_written", "shards_reused"), map(int, m.groups())))


REPORT_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?")


def mask_times(html: str) -> tuple[str, int]:
    """The page with every date-time stamp replaced (and how many there were)."""
    return REPORT_TIME.subn("<TIME>", html)


# ------------------------------------------------------------------ readers beside a writer
class AuditLoop:
    """`audit` of one index run back to back, each its own process, in a thread, until
    :meth:`stop`; every run is kept as ``(out folder, returncode, stderr, started, ended)``
    (``time.monotonic()`` stamps) to check afterwards which index each one saw."""

    def __init__(self, generated: Path, index_dir: Path, out_root: Path):
        import threading

        self.generated, self.index_dir, self.out_root = generated, index_dir, out_root
        self.runs: list[tuple[Path, int, str, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            out = self.out_root / f"run_{len(self.runs):03d}"
            t0 = time.monotonic()
            r = cli("audit", self.generated, "--index", self.index_dir, "--out", out, "--workers", "0",
                    "--no-progress")
            self.runs.append((out, r.returncode, r.stderr, t0, time.monotonic()))

    def start(self) -> "AuditLoop":
        self._thread.start()
        return self

    def finished_after(self, t: float) -> int:
        """Runs that started after ``t`` and are done."""
        return sum(1 for run in list(self.runs) if run[3] > t)

    def stop(self) -> list[tuple[Path, int, str, float, float]]:
        self._stop.set()
        self._thread.join(timeout=CLI_TIMEOUT)
        return self.runs


def inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None
