"""UI-test fixtures: Debian's chromium driven by Playwright, the screenshots folder, and handlers
over real Services for in-process tests."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("JAMBADOCS_CHROMIUM", "/usr/bin/chromium"))
# Written on every run (git-ignored); the README shows copies kept in docs/screenshots/.
SCREENSHOTS = Path(__file__).resolve().parents[1] / "_artifacts" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def chromium():
    """A headless Debian chromium driven by Playwright; skips when /usr/bin/chromium is absent."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: install it with `apt-get install -y chromium` to run browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


# Every component the handlers update, each bound to its own name, so an in-process test reads a
# handler's {component: value} result by name.
HANDLER_COMPONENTS = ("ws_dd", "docs_html", "budget_html", "doc_dd", "chat_dd", "chatbot", "export_btn",
                      "stats_html", "ws_id", "chat_id", "prefs", "question", "prefill_html", "uploads", "files",
                      "password", "password_box", "confirm_box", "chat_confirm", "source_head", "page_image",
                      "nav_row", "page_text", "viewer", "engine_line", "ws_name", "create_btn", "delete_btn",
                      "new_chat_btn", "delete_chat_btn", "prev_btn", "next_btn",
                      "doc_confirm", "ask_btn", "failed_box", "failed_html", "failed_seen", "shown")


@pytest.fixture
def services_and_handlers(tmp_path):
    """(Services with the extractive engine in a fresh data folder, ui.handlers.Handlers over it)."""
    from app.config import Settings
    from app.services import Services
    from ui.handlers import Handlers

    svc = Services(Settings.from_env(data_dir=tmp_path / "data", engine="extractive"))
    h = Handlers(svc)
    h.bind(**{name: name for name in HANDLER_COMPONENTS})
    yield svc, h
    svc.close()
