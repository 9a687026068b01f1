"""The Chromium every browser test drives (Playwright's `executable_path`): the one the product's
PayShack sync uses, `PAYOPS_CHROMIUM_PATH` (default /usr/bin/chromium, which
scripts/ensure_chromium.sh installs when missing), so one setting runs them all. PAYOPS_CHROMIUM,
the name the console tests once read, still wins when set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.platform.settings import Settings

CHROMIUM = os.environ.get("PAYOPS_CHROMIUM") or Settings(_env_file=None).chromium_path
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
HAVE_CHROMIUM = os.access(CHROMIUM, os.X_OK)
SHOTS = Path(__file__).parent / "artifacts" / "screenshots"

needs_chromium = pytest.mark.skipif(
    not HAVE_CHROMIUM,
    reason=f"no Chromium at {CHROMIUM} (run scripts/ensure_chromium.sh, or set PAYOPS_CHROMIUM_PATH)")


async def launch(pw):
    """A headless Chromium from a started `async_playwright()`."""
    return await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
