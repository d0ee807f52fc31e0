"""The landing page in a real browser: Debian's Chromium driven by Playwright (never a downloaded
browser). Skipped, with the reason, where either is missing."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.referrals.support import member, mine

pytestmark = pytest.mark.usefixtures("no_quests")

CHROMIUM = (
    os.environ.get("ENGAGE_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
)
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser():
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine (Debian package `chromium`; .ci/run installs it)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (the `dev` dependency group has it: uv sync)")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield b
        finally:
            await b.close()


async def test_landing_page_preview_tags_and_visible_text(ctx, http, as_brand, as_member, served, browser):
    anna = await member(http, as_brand, name="Anna Lind")
    code = (await mine(http, as_member(anna)))["code"]
    page = await browser.new_page(user_agent="Mozilla/5.0 (Linux; Android 14) Mobile")
    response = await page.goto(f"{served.base_url}/r/{code}")
    assert response is not None and response.status == 200

    async def meta(attr: str, key: str) -> str | None:
        return await page.locator(f'meta[{attr}="{key}"]').get_attribute("content")

    assert await page.title() == "Anna Lind invited you to Acme Rewards"
    assert await meta("property", "og:title") == "Anna Lind invited you to Acme Rewards"
    assert await meta("property", "og:description") == (
        f"Join with Anna Lind's code {code} and you both get points after your first order."
    )
    assert await meta("property", "og:image") == "https://static.example.com/referral-card.png"
    assert await meta("property", "og:url") == f"{ctx.settings.public_base_url}/r/{code}"
    assert await meta("name", "twitter:card") == "summary_large_image"
    assert await meta("name", "twitter:title") == "Anna Lind invited you to Acme Rewards"
    assert await meta("name", "twitter:image") == "https://static.example.com/referral-card.png"

    assert await page.locator("h1").inner_text() == "Anna Lind invited you"
    assert await page.locator("#code").inner_text() == code
    assert await page.locator("#code").is_visible()
    button = page.locator("a#open")
    assert await button.is_visible() and await button.inner_text() == "Open the Acme app"
    assert await button.get_attribute("href") == f"acme://referral/{code}"
    stores = page.locator(".stores a")
    assert await stores.all_inner_texts() == ["App Store", "Google Play"]

    missing = await page.goto(f"{served.base_url}/r/NOSUCH99")
    assert missing is not None and missing.status == 404
    assert await page.locator("h1").inner_text() == "This invitation link does not work"
    assert await page.locator('meta[property="og:title"]').count() == 0
    await page.close()
