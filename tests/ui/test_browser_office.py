"""A deck, an e-book and a photo of a page dropped in the browser: read (the photo by OCR), asked
over, and a chip opens the cited slide, or the photo with the passage marked."""
from __future__ import annotations

import pypdfium2 as pdfium

from tests.ingest.office_files import write_epub, write_pptx
from tests.ui.live_server import start_server
from tests.ui.pages import ask_and_open_first_chip, open_app, report, text_input, wait_rows, yellow_pixels


def test_slides_chapters_and_photos_are_cited_and_shown(chromium, corpus, tmp_path, screenshots):
    scan = pdfium.PdfDocument(str(corpus / "image-only.pdf"))      # r-intro's Preface, scanned
    scan[0].render(scale=150 / 72).to_pil().convert("L").save(tmp_path / "preface.png")
    scan.close()
    files = [write_pptx(tmp_path / "review.pptx"), write_epub(tmp_path / "voyage.epub"), tmp_path / "preface.png"]
    server = start_server(tmp_path / "data", "--engine", "extractive")
    page = chromium.new_context(viewport={"width": 1600, "height": 1000},
                                permissions=["clipboard-read", "clipboard-write"]).new_page()
    try:
        open_app(page, server.url)
        page.set_input_files("#jd-upload input[type=file]", [str(f) for f in files])
        rows = wait_rows(page, 3)
        assert "review.pptx" in rows[0] and "3 slides" in rows[0], rows
        assert "voyage.epub" in rows[1] and "3 sections" in rows[1], rows
        assert "preface.png" in rows[2] and "1 page" in rows[2] and "OCR" in rows[2], rows

        text_input(page, "jd-question").fill("Which office opening should the speaker mention?")
        page.click("#jd-ask")
        chip = page.locator("#jd-chat .cite-chip.cite-verified").first
        chip.wait_for(timeout=120_000)
        assert chip.inner_text().strip().endswith("review.pptx, slide\u00a01"), chip.inner_text()
        # a message's copy button copies the text it shows: Gradio's own copied its source, the answer's
        # HTML (<button class="cite-chip ...">, &quot;) and the question's escaped Markdown
        copy = page.locator("#jd-chat button[aria-label='Copy message']")
        copy.first.click()
        page.wait_for_timeout(300)
        assert page.evaluate("navigator.clipboard.readText()") == "Which office opening should the speaker mention?"
        copy.last.click()
        page.wait_for_timeout(300)
        copied = page.evaluate("navigator.clipboard.readText()")
        assert "Haifa office opening.\u201d [review.pptx, slide 1]" in copied, copied
        assert "<" not in copied and "&" not in copied and "\u2713" not in copied, copied
        chip.click()
        page.wait_for_selector("#jd-verdict", timeout=60_000)
        head = page.inner_text("#jd-source-head")
        assert "review.pptx" in head and "slide 1 of 3" in head and "page" not in head, head
        assert "Haifa office opening" in page.inner_text("#jd-passage")
        assert not page.locator("#jd-page-image img").is_visible()          # no page image for a slide
        page.screenshot(path=str(screenshots / "slide-source.png"))

        image = ask_and_open_first_chip(page, "Who wrote the original notes that the introduction to R is derived from?",
                                        "preface.png")
        assert "page 1 of 1" in page.inner_text("#jd-source-head")
        assert yellow_pixels(image.screenshot()) > 300, "the passage is not marked on the photo"
        page.evaluate("() => window.scrollTo(0, 0)")
        page.screenshot(path=str(screenshots / "photo-source.png"))
    except Exception:
        report(page, server)
        raise
    finally:
        page.context.close()
        server.stop()
