"""Page weight and headless load time of the listening report for 1,000 generated clips.

Builds a synthetic audit run (tests/helpers_report.py: the documented run-directory files,
1,000 generated clips, a few hundred training clips, top-3 matches with varied spans),
renders it, and prints: render time, bytes of index.html / audio / images / figures, and in
headless Debian chromium (Playwright, executable_path): time to the first page of cards,
time until every audio element of that page has its metadata and every visible image is
decoded, the time a filter change takes, and the JS heap.

    .venv/bin/python benchmarks/report_weight.py [--clips 1000] [--train 300] [--seconds 5]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def folder_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def mib(n: int) -> str:
    return f"{n / 2**20:8.2f} MiB"


def chromium() -> str:
    for p in ("/usr/bin/chromium", "/usr/lib/chromium/chromium"):
        if Path(p).exists():
            return p
    sys.exit("Debian chromium not found: make browser")


# Every audio element of the shown page has its metadata; every image in the viewport is
# decoded (lazy images below the fold are not loaded until scrolled to, by design).
FIRST_PAGE = """async () => {
  document.getElementById('listen').scrollIntoView();
  const t0 = performance.now();
  const late = (ms) => new Promise(ok => setTimeout(() => ok('timeout'), ms));
  const audios = Array.from(document.querySelectorAll('#cards audio'));
  const meta = await Promise.race([Promise.all(audios.map(a => a.readyState >= 1 ? 0 : new Promise(ok => {
    a.addEventListener('loadedmetadata', ok, {once: true}); a.addEventListener('error', ok, {once: true}); }))),
    late(30000)]);
  const imgs = Array.from(document.querySelectorAll('#cards img'))
    .filter(i => i.getBoundingClientRect().top < window.innerHeight);
  await Promise.race([Promise.all(imgs.map(i => i.decode().catch(() => 0))), late(30000)]);
  return {audios: audios.length, images: imgs.length, waited_ms: performance.now() - t0,
          with_metadata: audios.filter(a => a.readyState >= 1).length, timed_out: meta === 'timeout',
          nav_ms: performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd,
          heap_mb: performance.memory ? performance.memory.usedJSHeapSize / 2**20 : null};
}"""


def browse(index: Path) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium(), args=ARGS)
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        t0 = time.perf_counter()
        page.goto(index.as_uri())
        page.wait_for_selector("body[data-ready='1']")
        ready = time.perf_counter() - t0
        first = page.evaluate(FIRST_PAGE)
        loaded = time.perf_counter() - t0
        t1 = time.perf_counter()
        page.select_option("#f-flag", "flagged")
        page.wait_for_function("document.getElementById('cards').dataset.matching !== undefined")
        flt = time.perf_counter() - t1
        t2 = time.perf_counter()
        page.click("#next")
        page.evaluate(FIRST_PAGE)
        nxt = time.perf_counter() - t2
        b.close()
    return dict(ready=ready, loaded=loaded, filter=flt, next_page=nxt, errors=errors, **first)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=1000)
    ap.add_argument("--train", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--top-k", type=int, default=3)
    ap.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    ap.add_argument("--format", default="mp3")
    ap.add_argument("--keep", type=Path, help="keep the work folder here instead of a temp dir")
    a = ap.parse_args()

    from helpers_report import make_run

    from audioaudit.report import ReportOptions, render_report

    work = a.keep or Path(tempfile.mkdtemp(prefix="report-bench-"))
    try:
        t = time.perf_counter()
        run = make_run(work, "bench", n_queries=a.clips, n_train=a.train, top_k=a.top_k, seconds=a.seconds,
                       jitter_spans=True)
        print(f"synthetic run: {a.clips} generated clips (~{a.seconds:g} s, one 40 s), {a.train} training clips, "
              f"top-{a.top_k} matches, built in {time.perf_counter() - t:.1f} s")
        out = work / "report"
        t = time.perf_counter()
        index = render_report([run.run_dir], out, ReportOptions(top_k=a.top_k, audio_format=a.format, workers=a.workers),
                              progress=False)
        render_s = time.perf_counter() - t
        t = time.perf_counter()
        render_report([run.run_dir], out, ReportOptions(top_k=a.top_k, audio_format=a.format, workers=a.workers),
                      progress=False)
        rerender_s = time.perf_counter() - t
        total = folder_bytes(out)
        parts = {k: folder_bytes(out / k) for k in ("media", "img", "fig")}
        n_media, n_img = len(list((out / "media").iterdir())), len(list((out / "img").iterdir()))
        print(f"render ({a.workers} workers): {render_s:.1f} s; re-render reusing media: {rerender_s:.1f} s")
        print(f"index.html   {mib(index.stat().st_size)}")
        print(f"audio        {mib(parts['media'])}  ({n_media} files, {a.format})")
        print(f"spectrograms {mib(parts['img'])}  ({n_img} PNGs)")
        print(f"figures      {mib(parts['fig'])}")
        print(f"total        {mib(total)}  = {total / a.clips / 1024:.0f} KiB per generated clip")
        r = browse(index)
        print(f"headless chromium: cards ready {r['ready'] * 1000:.0f} ms after navigation "
              f"(DOMContentLoaded {r['nav_ms']:.0f} ms); first page ({r['audios']} audio, {r['images']} images) "
              f"metadata + images {r['loaded'] * 1000:.0f} ms; filter change {r['filter'] * 1000:.0f} ms; "
              f"next page loaded {r['next_page'] * 1000:.0f} ms; JS heap {r['heap_mb'] or 0:.1f} MiB; "
              f"{r['with_metadata']}/{r['audios']} audio with metadata; console errors: {len(r['errors'])}")
    finally:
        if a.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
