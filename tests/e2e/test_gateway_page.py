"""The gateway's web page in a real headless browser (Debian's chromium driven by Playwright): a run
requested over HTTP shows up, and its beads turn COMPLETED live, without reloading the page. The
gateway runs the pipeline services itself (no cluster), on the test's NATS and Postgres."""

from __future__ import annotations

import asyncio
import shutil

import pytest

try:
    import httpx2 as httpx
except ImportError:  # the upstream name, where that is what is installed
    import httpx

from shared.app.gateway import create_app
from tests.conftest import make_git_repo

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TOKEN = "page-test-token"


@pytest.fixture
async def served(settings):
    """The whole gateway (its own relay, projector and services) on a free port."""
    import uvicorn

    app = create_app(settings.model_copy(update={"api_token": TOKEN, "gateway_local_repos": True}))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(60):
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.05)
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    server.should_exit = True
    await task


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (Debian: apt-get install chromium)")
async def test_a_run_requested_over_http_completes_live_on_the_page(served, tmp_path):
    from playwright.async_api import async_playwright

    repo = make_git_repo(tmp_path / "target", {"app.py": "def add(a, b):\n    return a + b\n",
                                               "tests/test_app.py": "from app import add\n\n\ndef test_add():\n"
                                                                    "    assert add(1, 2) == 3\n"})
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = await browser.new_page()
            prompts = []

            async def give_token(dialog):
                prompts.append(dialog.message)
                await dialog.accept(TOKEN)

            page.on("dialog", give_token)
            await page.goto(served + "/")
            await page.evaluate("window.loadedOnce = true")  # gone if the page ever reloads

            async with httpx.AsyncClient(base_url=served, timeout=30) as c:
                created = await c.post("/runs", json={"repo": str(repo), "categories": ["compliance"],
                                                      "engine": "rules"},
                                       headers={"Authorization": f"Bearer {TOKEN}"})
            assert created.status_code == 201, created.text
            run_id = created.json()["run_id"]
            assert created.json()["runner"].startswith("this gateway")

            row = page.locator(f'#runs tr[data-run="{run_id}"]')
            await row.wait_for(timeout=30_000)  # listed by the page's own polling
            await row.click()
            await page.locator("#run-title.RUNNING, #run-title.COMPLETED").wait_for(timeout=30_000)
            # The chain is updated from the event stream; wait (bounded) for the run to end.
            await page.locator("#run-title.COMPLETED").wait_for(timeout=240_000)
            await page.locator("#live", has_text="the run has ended").wait_for(timeout=30_000)
            statuses = dict(zip(await page.locator("#beads tbody tr").evaluate_all(
                                    "rows => rows.map(r => r.dataset.bead)"),
                                await page.locator("#beads tbody td.status").all_inner_texts(), strict=True))
            await page.screenshot(path=str(tmp_path / "page.png"), full_page=True)

            assert await page.evaluate("window.loadedOnce") is True  # never reloaded
            assert prompts and "API token" in prompts[0]  # asked once, kept for the session
            steps = {k: v for k, v in statuses.items() if ":" not in k}
            assert set(steps) == {"analyze", "suggest", "execute", "test", "review", "merge", "docs"}
            assert {"analyze", "suggest", "execute", "test", "review", "merge"} <= {
                k for k, v in steps.items() if v == "COMPLETED"}
            assert "score" in await page.locator("#review").inner_text()
            assert "passed" in await page.locator("#tests").inner_text()
            assert run_id in (await page.locator("#trace-link").get_attribute("href"))
            assert (tmp_path / "page.png").stat().st_size > 10_000
        finally:
            await browser.close()
