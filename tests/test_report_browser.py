"""The report in a real browser: Debian's chromium, headless, driven by Playwright.

`make test` installs chromium (`make browser`); Playwright comes with the `browser` extra.
We never run `playwright install`: the system chromium is used through executable_path.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers_report import HOSTILE_CLASS, HOSTILE_FILE, HOSTILE_PROMPT, make_duplicates_index, make_run

from audioaudit.report import PageOptions, ReportOptions, render_duplicates, render_report

pytestmark = pytest.mark.slow

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def chromium_path() -> str:
    for p in ("/usr/bin/chromium", "/usr/lib/chromium/chromium", shutil.which("chromium") or ""):
        if p and Path(p).exists():
            return p
    pytest.fail("Debian chromium is not installed: run `make browser` (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def browser():
    from audioaudit.errors import require

    sync_api = require("playwright.sync_api", "browser")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


class Watched:
    """A page with every console error, page error and dialog recorded."""

    def __init__(self, browser, url: str):
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page = browser.new_page(viewport={"width": 1400, "height": 1200})
        self.page.on("console", lambda m: m.type in ("error", "warning") and self.errors.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url}"))
        self.page.goto(url)
        self.page.wait_for_selector("body[data-ready='1']", timeout=15000)

    def audio_metadata(self) -> list[dict]:
        """Wait for loadedmetadata on every <audio> shown; their src and durations."""
        return self.page.evaluate("""async () => {
          const list = Array.from(document.querySelectorAll('#cards audio'));
          await Promise.all(list.map(a => a.readyState >= 1 ? null : new Promise((ok, bad) => {
            a.addEventListener('loadedmetadata', ok, {once: true});
            a.addEventListener('error', () => bad(new Error('audio error ' + a.src)), {once: true});
            setTimeout(() => bad(new Error('timeout ' + a.src)), 10000);
          })));
          return list.map(a => ({src: a.getAttribute('src'), duration: a.duration, preload: a.preload}));
        }""")

    def select(self, sel: str, value: str) -> int:
        self.page.select_option(sel, value)
        return int(self.page.get_attribute("#cards", "data-shown"))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    base = tmp_path_factory.mktemp("browser")
    a = make_run(base, "run-a", n_queries=8)
    b = make_run(base, "run-b", n_queries=4, seed=3, hostile=False, corpus=(a.corpus_root, None), missing_train=False)
    index = render_report([a.run_dir, b.run_dir], base / "report", ReportOptions(workers=0, page_size=10),
                          progress=False)
    data = json.loads(index.read_text(encoding="utf-8").split('id="report-data">', 1)[1].split("</script>", 1)[0])
    return a, b, index, data


def test_page_loads_plays_filters_and_is_screenshotted(browser, report):
    a, b, index, data = report
    w = Watched(browser, index.as_uri())
    page = w.page
    assert int(page.get_attribute("#cards", "data-shown")) == 10  # paginated: 10 of 12
    assert "12 of 12 clips" in page.inner_text("#page-info")

    expected = {c["audio"]: c["win"][1] - c["win"][0] for card in data["cards"] for c in card["clips"] if c.get("audio")}
    shown = w.audio_metadata()
    assert len(shown) >= 10 and all(s["preload"] == "metadata" for s in shown)
    for s in shown:
        assert s["duration"] == pytest.approx(expected[s["src"]], abs=0.06), s
    # generated clips shorter than the trim limit play whole: their length as written to disk
    for art in page.locator("#cards article").all():
        card = data["cards"][int(art.get_attribute("data-card"))]
        true = (a, b)[card["run"]].durations[card["title"]]
        played = art.locator("figure.clip audio").first.evaluate("a => a.duration")
        assert played == pytest.approx(true, abs=0.06) if true <= 20 else played < true
    assert page.evaluate("Array.from(document.images).filter(i => i.complete && i.naturalWidth === 0).length") == 0
    # the matched span is highlighted over the spectrogram where the card data puts it
    first = page.locator("#cards figure.clip").first
    box, hl = first.locator(".spec").bounding_box(), first.locator(".spec .hl").bounding_box()
    want = data["cards"][int(page.locator("#cards article").first.get_attribute("data-card"))]["clips"][0]["hl"]
    assert (hl["x"] - box["x"]) / box["width"] == pytest.approx(want[0], abs=0.01)
    assert hl["width"] / box["width"] == pytest.approx(want[1] - want[0], abs=0.01)

    flagged = int(a.queries["flag"].sum() + b.queries["flag"].sum())
    assert w.select("#f-flag", "flagged") == flagged
    assert page.eval_on_selector_all("#cards article", "l => l.every(e => e.dataset.flag === '1')")
    assert w.select("#f-flag", "unflagged") == 12 - flagged
    w.select("#f-flag", "all")
    n_hostile = int((a.queries["label"] == HOSTILE_CLASS).sum())
    assert w.select("#f-cls", HOSTILE_CLASS) == n_hostile
    assert page.eval_on_selector_all("#cards article", f"l => l.every(e => e.dataset.cls === {json.dumps(HOSTILE_CLASS)})")
    w.select("#f-cls", "")
    assert w.select("#f-run", "1") == 4
    w.select("#f-run", "")
    w.select("#f-sort", "score-asc")
    scores = page.eval_on_selector_all("#cards .scores", "l => l.map(e => parseFloat(e.textContent.split('score ')[1]))")
    assert scores == sorted(scores)
    page.click("#next")
    assert int(page.get_attribute("#cards", "data-shown")) == 2

    # hostile names are text: visible literally, no element or dialog made from them
    w.select("#f-sort", "score-desc")
    page.fill("#f-search", "onerror")
    assert int(page.get_attribute("#cards", "data-shown")) == 1
    assert page.locator("#cards .title").first.inner_text().endswith(HOSTILE_FILE)
    page.fill("#f-search", "")
    assert page.get_by_text(HOSTILE_PROMPT, exact=True).count() == 1
    assert page.evaluate("document.querySelectorAll('img[src=\"x\"], svg, #cards script').length") == 0

    shot = index.parent / "screenshot.png"
    page.evaluate("document.getElementById('listen').scrollIntoView()")
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 20000
    assert w.dialogs == [] and w.errors == []
    page.close()


def test_duplicates_page_in_browser(browser, tmp_path):
    index_dir, _ = make_duplicates_index(tmp_path)
    index = render_duplicates(index_dir, tmp_path / "dups", PageOptions(workers=0), progress=False)
    w = Watched(browser, index.as_uri())
    shown = w.audio_metadata()
    assert len(shown) == 5 and all(s["duration"] > 1.9 for s in shown)  # 1 exact + 4 near members
    assert w.page.get_by_text(f"pack3/{HOSTILE_FILE}").count() == 1
    assert w.select("#f-cls", "near") == 1
    assert w.dialogs == [] and w.errors == []
    w.page.close()
