"""Write the listening report: a self-contained static folder (index.html + media).

The folder opens from disk (file://) with no server and nothing fetched from elsewhere.
A Content-Security-Policy allows only our own inline script and style (by hash), local
images and audio: even if some user-supplied name slipped past escaping, an injected
``onerror=`` handler could not run.
"""
from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from audioaudit.errors import UserError
from audioaudit.util.atomic import write_text

if TYPE_CHECKING:
    from markupsafe import Markup

MARKER = ".audioaudit-report"
TEMPLATES = Path(__file__).with_name("templates")
_OWNED = re.compile(r"^[0-9a-f]{20}\.(mp3|ogg|opus|wav|png)$")


def _sha256_b64(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def csp(js: str, css: str) -> str:
    return (
        "default-src 'none'; "
        f"script-src 'sha256-{_sha256_b64(js)}'; style-src 'sha256-{_sha256_b64(css)}'; "
        # 'self' for a served folder; file: because some browsers give each local file its own origin
        "img-src 'self' file: data:; media-src 'self' file:; base-uri 'none'; form-action 'none'"
    )


_JSON_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026", ord("'"): "\\u0027"}


def json_island(value) -> "Markup":
    """Compact JSON safe inside <script type="application/json">: no '<', '>', '&' or "'"
    survives, so no user string can close the element (what jinja's |tojson does, minus spaces)."""
    import json

    from markupsafe import Markup

    return Markup(json.dumps(value, ensure_ascii=False, separators=(",", ":")).translate(_JSON_ESCAPES))


def environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every {{ value }} is HTML-escaped; data goes through |json_island
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["json_island"] = json_island
    return env


def prepare_out(out: Path) -> Path:
    """Create the report folder; refuse to write into a folder that is not a report."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; pass another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise UserError(f"{out}: folder is not empty and was not written by `audioaudit report`; pass another --out")
    for sub in ("media", "img", "fig"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    write_text(out / MARKER, "written by audioaudit report; files here may be replaced\n")
    return out


def prune(out: Path, keep: set[str]) -> int:
    """Remove media this report no longer references (only files named like ours)."""
    removed = 0
    for sub in ("media", "img", "fig"):
        for p in (out / sub).iterdir():
            rel = f"{sub}/{p.name}"
            if p.is_file() and rel not in keep and (_OWNED.match(p.name) or sub == "fig"):
                p.unlink()
                removed += 1
    return removed


def referenced(cards: list[dict]) -> set[str]:
    keep = set()
    for c in cards:
        for clip in c["clips"]:
            keep.update(v for v in (clip.get("audio"), clip.get("img")) if v)
    return keep


def page(template: str, context: dict, out: Path) -> Path:
    """Render ``template`` with the shared page parts (CSS, JS, CSP) into out/index.html."""
    import audioaudit

    js = (TEMPLATES / "report.js").read_text(encoding="utf-8")
    css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    html = environment().get_template(template).render(
        js=js, css=css, csp=csp(js, css), version=audioaudit.__version__,
        created=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"), **context,
    )
    index = out / "index.html"
    write_text(index, html)
    return index


def default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 1)))


def scale_context(settings) -> dict:
    """Template values describing the spectrograms' shared colour scale."""
    return {"colorbar": "fig/colorbar.png", "db_floor": f"{settings.db_floor:g}", "db_ceil": f"{settings.db_ceil:g}",
            "spec_khz": f"{settings.spec_rate / 2000:g}"}
