"""A deck and an e-book dropped in the browser: read, asked over, and a chip opens the cited slide."""
from __future__ import annotations

from tests.ingest.office_files import write_epub, write_pptx
from tests.ui.live_server import start_server
from tests.ui.pages import open_app, report, text_input, wait_rows


def test_slides_and_chapters_are_cited_and_shown(chromium, tmp_path, screenshots):
    files = [write_pptx(tmp_path / "review.pptx"), write_epub(tmp_path / "voyage.epub")]
    server = start_server(tmp_path / "data", "--engine", "extractive")
    page = chromium.new_context(viewport={"width": 1600, "height": 1000}).new_page()
    try:
        open_app(page, server.url)
        page.set_input_files("#jd-upload input[type=file]", [str(f) for f in files])
        rows = wait_rows(page, 2)
        assert "review.pptx" in rows[0] and "3 slides" in rows[0], rows
        assert "voyage.epub" in rows[1] and "3 sections" in rows[1], rows

        text_input(page, "jd-question").fill("Which office opening should the speaker mention?")
        page.click("#jd-ask")
        chip = page.locator("#jd-chat .cite-chip.cite-verified").first
        chip.wait_for(timeout=120_000)
        assert chip.inner_text().strip().endswith("review.pptx, slide\u00a01"), chip.inner_text()
        chip.click()
        page.wait_for_selector("#jd-verdict", timeout=60_000)
        head = page.inner_text("#jd-source-head")
        assert "review.pptx" in head and "slide 1 of 3" in head and "page" not in head, head
        assert "Haifa office opening" in page.inner_text("#jd-passage")
        assert not page.locator("#jd-page-image img").is_visible()          # no page image for a slide
        page.screenshot(path=str(screenshots / "slide-source.png"))
    except Exception:
        report(page, server)
        raise
    finally:
        page.context.close()
        server.stop()
