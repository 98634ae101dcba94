"""Headless Chromium for the browser tests (and bench/uplink.py): Debian's build driven by
Playwright, with a fake camera and microphone, no permission prompts, and screen sharing
without a picker. Tests that need other flags (a network namespace, certificates) pass
their own to :func:`launch`."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

CHROMIUM = os.environ.get("VTP_CHROMIUM") or shutil.which("chromium") or ""
# what every test browser needs: fake media, autoplay, host candidates on loopback
MEDIA_FLAGS = [
    "--use-fake-device-for-media-stream=fps=30",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    *MEDIA_FLAGS,
    # getDisplayMedia without a picker: the fake UI accepts, this picks the screen.
    "--auto-select-desktop-capture-source=Entire screen",
]

needs_chromium = pytest.mark.skipif(
    not CHROMIUM, reason="needs Debian's chromium (or VTP_CHROMIUM=/path/to/chromium)"
)


async def launch(
    playwright: Any, *extra: str, executable: str = CHROMIUM, flags: Sequence[str] = FLAGS
) -> Any:
    """A headless Chromium (``executable`` may be a wrapper that runs it elsewhere, e.g.
    in a network namespace) with ``flags`` and ``extra``."""
    return await playwright.chromium.launch(
        executable_path=executable, headless=True, args=[*flags, *extra]
    )


@contextlib.asynccontextmanager
async def chromium(*extra: str, flags: Sequence[str] = FLAGS) -> AsyncIterator[Any]:
    """One browser for the block: ``async with chromium() as browser: ...``."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await launch(playwright, *extra, flags=flags)
        try:
            yield browser
        finally:
            await browser.close()
