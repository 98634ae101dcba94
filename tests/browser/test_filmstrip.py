"""The speaker view's filmstrip with six people at 1280x800 (issue 14): every tile can be
reached. A strip wider than the room used to be centred, which pushed its first tiles
out to the left where scrolling cannot go. Checked on the real stylesheet in Chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from classroom_kit import ARTIFACTS, browser_fixture  # noqa: F401

from tests.support.chromium import needs_chromium

pytestmark = [pytest.mark.browser, needs_chromium, pytest.mark.asyncio(loop_scope="module")]

CSS = Path(__file__).resolve().parents[2] / "static" / "app" / "vtp.css"


async def test_six_tiles_in_speaker_view_are_all_reachable(browser: Any) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    tiles = "".join(
        f'<figure class="tile"><figcaption>P{i}</figcaption></figure>' for i in range(6)
    )
    await page.set_content(
        f"<style>{CSS.read_text()}</style>"
        '<body class="page-classroom"><main><section class="room has-stage">'
        '<div class="room-main"><div class="stage"><figure class="tile featured"></figure></div>'
        f'<div class="tiles" tabindex="0">{tiles}</div></div>'
        '<aside class="side"></aside><div class="controls"></div></section></main></body>'
    )
    geometry = """() => {
        const strip = document.querySelector(".tiles").getBoundingClientRect();
        const all = [...document.querySelectorAll(".tiles .tile")]
            .map((t) => t.getBoundingClientRect());
        return {strip: [strip.left, strip.right, strip.top, strip.bottom],
                first: [all[0].left, all[0].top, all[0].bottom],
                last: [all[5].right, all[5].bottom]};
    }"""
    start = await page.evaluate(geometry)
    left, right, top, bottom = start["strip"]
    assert await page.evaluate(
        "() => { const s = document.querySelector('.tiles');"
        " return s.scrollWidth > s.clientWidth; }"
    ), "six tiles should overflow the strip at this width (else the test shows nothing)"
    assert start["first"][0] >= left - 1, start  # the first tile is in view, not cut off
    assert top - 1 <= start["first"][1] and start["first"][2] <= bottom + 1, start
    await page.screenshot(path=str(ARTIFACTS / "filmstrip-six.png"))
    # Scrolled to the end, the last tile is in view too.
    await page.evaluate(
        "() => { const s = document.querySelector('.tiles'); s.scrollLeft = s.scrollWidth; }"
    )
    end = await page.evaluate(geometry)
    assert end["last"][0] <= right + 1, end
    await page.close()
