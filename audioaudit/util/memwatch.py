"""Resident memory of this process: the current value from /proc and a sampled peak.

Used by the large-index build (:mod:`audioaudit.index.faiss.streaming`) and its benchmark to report
what streaming a corpus really costs. Linux reads /proc/self/status (VmRSS, RssAnon);
elsewhere ``ru_maxrss`` stands in.
"""

from __future__ import annotations

import resource
import threading


def proc_rss() -> tuple[int, int]:
    """(resident, anonymous resident) bytes of this process, from /proc (psutil-free)."""
    try:
        vals = {}
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "RssAnon:")):
                    k, v = line.split(":", 1)
                    vals[k] = int(v.split()[0]) * 1024
        return vals.get("VmRSS", 0), vals.get("RssAnon", vals.get("VmRSS", 0))
    except OSError:
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return r, r


class PeakMemory:
    """Samples this process' RSS in a thread while a block runs (faiss releases the GIL).

    ``peak`` / ``peak_anon``: highest resident / anonymous-resident bytes seen;
    ``start``: RSS on entry; ``maxrss``: the kernel's lifetime ``ru_maxrss`` at exit.
    """

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.start = self.peak = self.peak_anon = self.maxrss = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        rss, anon = proc_rss()
        self.peak, self.peak_anon = max(self.peak, rss), max(self.peak_anon, anon)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> "PeakMemory":
        self.start, _ = proc_rss()
        self.sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()
        self.maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
