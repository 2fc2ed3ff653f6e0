"""Real Chromium (Debian's, from its installed path; Playwright downloads no browser) against a real
gateway on 127.0.0.1. Each test saves a screenshot under test-results/screenshots/.

Without Chromium the tests skip, and the run's summary says so in capitals; `make chromium` (which
.ci/run calls) installs it.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from app.config import GatewayConfig, Reliability
from app.http.auth import AuthSettings, GatewayKey
from app.main import create_app
from providers.catalog import ProviderSpec
from providers.router import ModelConfig
from tests.conftest import LiveServer, LiveServers
from tests.fake_vendor import FakeVendor

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-results" / "screenshots"
# As the machine's notes advise: without the background-networking flags Chromium keeps dialling
# Google's hosts, which this closed network refuses.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MISSING: set[str] = set()
ids = itertools.count()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for reason in sorted(MISSING):
        terminalreporter.write_sep("!", reason, red=True, bold=True)


# Module-scoped: while Playwright's sync API runs, it holds an event loop in the main thread, which
# the asyncio tests of other modules would then find already running.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if CHROMIUM is None:
        reason = "BROWSER TESTS NOT RUN: no Chromium found (run `make chromium`, or set CHROMIUM_PATH)"
        MISSING.add(reason)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=True)
    context.close()


@pytest.fixture(scope="session")
def vendor() -> Iterator[FakeVendor]:
    with FakeVendor() as fake:
        yield fake


@pytest.fixture
def endless_model() -> str:
    """The fake vendor's endless stream, under a name of this test's own (so its close time is its own)."""
    return f"endless:delay_ms=30,id={next(ids)}"


Start = Callable[..., LiveServer]


@pytest.fixture
def gateway(
    vendor: FakeVendor, endless_model: str, monkeypatch: pytest.MonkeyPatch, live_servers: LiveServers
) -> Start:
    """A gateway with slow and failing models beside the built-in ones, and a scratch conversation store."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tempfile.mkdtemp(prefix='gateway-page-')}/conversations.db")

    def start(keys: list[GatewayKey] | None = None, database_url: str | None = None) -> LiveServer:
        if database_url is not None:
            monkeypatch.setenv("DATABASE_URL", database_url)
        config = GatewayConfig(
            reliability=Reliability(retries=0),
            auth=AuthSettings(keys=keys or []),
            providers={"vendor": ProviderSpec("openai", vendor.url, "sk-fake")},
            models={
                "slow-echo": ModelConfig("simulated", "echo:delay_ms=150"),
                "endless": ModelConfig("vendor", endless_model),
                "broken": ModelConfig("vendor", "status:code=500,times=1000000"),
            },
        )
        return live_servers.start(create_app(config))

    return start
