"""The default report, laid out by a real browser (headless Chromium): nothing sticks out of the
page at a desktop or a narrow width, no Markdown marker shows, every figure loads, and the headline
table starts on the first screen (the default study on its first seed only, to keep the suite
short: the page is the same with one seed as with three). ``.ci/run`` installs Debian's ``chromium`` and sets
``OBLIVIATE_REQUIRE_BROWSER=1`` so that a missing browser fails there instead of skipping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from obliviate.report.browser import check_report, find_browser

pytestmark = pytest.mark.extended  # the default study, run once (minutes): CI runs it after the default suite


@pytest.fixture(scope="module")
def default_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if find_browser() is None:
        if os.environ.get("OBLIVIATE_REQUIRE_BROWSER") == "1":
            pytest.fail("no Chromium-family browser on PATH; .ci/run installs Debian's chromium")
        pytest.skip("no Chromium-family browser on PATH (apt-get install chromium)")
    from obliviate.api import run_study
    from obliviate.cli import PRESET_DIR
    from obliviate.study import load_study

    out = tmp_path_factory.mktemp("default-report")
    spec = load_study(PRESET_DIR / "default.yaml", seeds=[0])  # one seed of three: the same page, a third of the time
    run_study(spec, out)
    return out / "report.html"


@pytest.mark.parametrize("width", [1400, 500])  # 500 px: headless Chromium's narrowest window
def test_the_default_report_reads_in_a_real_browser(default_report: Path, width: int) -> None:
    r = check_report(default_report, width=width, height=900)
    assert r["scroll_width"] <= r["width"], f"the page is {r['scroll_width']} px wide in a {r['width']} px window"
    assert r["overflowing"] == [], "elements stick out of the page: " + ", ".join(r["overflowing"][:10])
    assert r["markers"] == [], f"Markdown markers in the visible text: {r['markers']}"
    assert r["images"] >= 3 and r["broken_images"] == [], f"{r['images']} images, broken: {r['broken_images']}"
    assert r["headline_top"] is not None, "no element with id 'headline'"
    if width == 1400:
        assert r["headline_top"] < r["window_height"], (
            f"the headline starts at {r['headline_top']:.0f} px, below the first screen ({r['window_height']} px)"
        )
