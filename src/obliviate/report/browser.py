"""Checks an HTML report in a real browser: headless Chromium lays the page out at a given window
size and a script measures what a reader would see.

:func:`check_report` copies the report with a measuring script appended, lets Chromium load it
(``--dump-dom`` after a virtual-time budget, so every image has decoded) and reads the script's
JSON back from the dumped DOM: the page's width against the window's, the elements that stick out
of the page (outside an element that scrolls on its own), Markdown markers in the visible prose
(code blocks and code spans excluded: they show text as it is),
images that did not load, the page's height, and where the headline starts. :func:`screenshot`
writes a PNG of the first screen.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_MARK = "obliviate-browser-check"
_SCRIPT = """
<script>
window.addEventListener('load', function () {
  var W = window.__obliviateWidth || document.documentElement.clientWidth, out = {width: W,
    scroll_width: window.__obliviateWidth ? document.body.scrollWidth : document.documentElement.scrollWidth,
    height: document.documentElement.scrollHeight, window_height: window.innerHeight, overflowing: [], images: 0,
    broken_images: [], markers: [], headline_top: null};
  function scrolls(el) {
    for (var p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      var o = getComputedStyle(p).overflowX; if (o === 'auto' || o === 'scroll' || o === 'hidden') return true;
    }
    return false;
  }
  document.querySelectorAll('body *').forEach(function (el) {
    if (el.id === '__MARK__' || el.closest('script')) return;
    var r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > W + 1 && !scrolls(el))
      out.overflowing.push(el.tagName.toLowerCase() + ' ' + Math.round(r.right - W) + 'px');
  });
  document.querySelectorAll('img').forEach(function (im) {
    out.images++; if (!im.complete || im.naturalWidth === 0) out.broken_images.push(im.alt || im.src.slice(0, 40));
  });
  var clone = document.body.cloneNode(true);  // the visible prose: code blocks and spans show text as it is
  clone.querySelectorAll('pre, code, script').forEach(function (n) { n.remove(); });
  clone.style.position = 'absolute'; clone.style.left = '-99999px'; document.documentElement.appendChild(clone);
  var text = clone.innerText; clone.remove();
  [[/\\*\\*/, '**'], [/`/, 'backtick'], [/^\\s*- /m, 'list dash'], [/^\\s*\\|/m, 'table pipe'],
   [/\\|---/, 'table rule'],
   [/^#{1,6} /m, 'heading hash'], [/^\\s*> /m, 'quote mark']].forEach(function (m) {
    var hit = text.match(m[0]); if (hit) out.markers.push(m[1] + ': ' + text.substr(Math.max(0, hit.index - 30), 80));
  });
  var h = document.getElementById('headline');
  if (h) out.headline_top = h.getBoundingClientRect().top + window.scrollY;
  var pre = document.createElement('pre'); pre.id = '__MARK__'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
""".replace("__MARK__", _MARK)


class BrowserError(RuntimeError):
    """No browser, or the browser did not return a measurement."""


def find_browser() -> str | None:
    """The first Chromium-family browser on ``PATH`` (Debian's package is ``chromium``)."""
    return next((p for p in (shutil.which(b) for b in BROWSERS) if p), None)


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    browser = find_browser()
    if browser is None:
        raise BrowserError(
            f"no Chromium-family browser on PATH (tried {', '.join(BROWSERS)}); on Debian: apt-get install chromium"
        )
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            *args,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def check_report(
    html_path: str | Path,
    *,
    width: int = 1400,
    height: int = 900,
    timeout: float = 120.0,
    page_width: int | None = None,
) -> dict[str, Any]:
    """Lay ``html_path`` out at ``width`` × ``height`` in headless Chromium and measure it (see the
    module docstring for the keys). ``page_width``: lay the page out that narrow inside the window
    (the root element's width) and measure against it — a phone's 390 px, narrower than the
    500 px headless Chromium's window can be."""
    src = Path(html_path).read_text(encoding="utf-8")
    if page_width is not None:
        narrow = (
            f"<style>html{{width:{int(page_width)}px}}</style>"
            f"<script>window.__obliviateWidth={int(page_width)}</script>"
        )
        src = src.replace("</head>", narrow + "</head>") if "</head>" in src else narrow + src
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(
            src.replace("</body>", _SCRIPT + "</body>") if "</body>" in src else src + _SCRIPT, encoding="utf-8"
        )
        res = _run(
            [f"--window-size={width},{height}", "--virtual-time-budget=15000", "--dump-dom", page.as_uri()], timeout
        )
    m = re.search(rf'<pre id="{_MARK}">(.*?)</pre>', res.stdout, re.S)
    if m is None:
        raise BrowserError(f"the browser returned no measurement (exit {res.returncode}): {res.stderr[-500:]}")
    import html

    return dict(json.loads(html.unescape(m.group(1))))


def screenshot(
    html_path: str | Path, png_path: str | Path, *, width: int = 1400, height: int = 900, timeout: float = 120.0
) -> Path:
    """A PNG of the first screen of ``html_path`` at ``width`` × ``height``."""
    out = Path(png_path).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    res = _run(
        [
            f"--window-size={width},{height}",
            "--virtual-time-budget=15000",
            f"--screenshot={out}",
            Path(html_path).resolve().as_uri(),
        ],
        timeout,
    )
    if not out.is_file():
        raise BrowserError(f"the browser wrote no screenshot (exit {res.returncode}): {res.stderr[-500:]}")
    return out


__all__ = ["BrowserError", "check_report", "find_browser", "screenshot"]
