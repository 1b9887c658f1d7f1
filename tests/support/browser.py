"""Chromium for the browser tests: Debian's, driven by Playwright through its path.

The fixtures are imported into tests/conftest.py, for every module that drives a page."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright, expect

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's Chromium (never a downloaded one). Without it these tests skip on a
    developer's machine, and fail in CI, which promises to run them."""
    if not CHROMIUM.exists():
        message = "no Chromium at /usr/bin/chromium (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the browser tests, but there is {message}")
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    expect.set_options(timeout=20_000)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS
        )
        yield launched
        await launched.close()
