"""Arabic in the browser: an answer quoting an Arabic passage, the passage in the source viewer and the
quote above it read right to left, with the citation chip at the end of the line (its left), while
English stays left to right; an Arabic PDF's cited passage is marked on its page image."""
from __future__ import annotations

from tests.ingest.test_formats import write_docx
from tests.ui.live_server import start_server
from tests.ui.pages import ask_and_open_first_chip, open_app, report, text_input, wait_rows, yellow_pixels

# The box of the first occurrence of a word inside an element (a Range over its text node).
WORD_BOX = """(element, word) => {
  const walk = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
  for (let node; (node = walk.nextNode());) {
    const at = node.data.indexOf(word);
    if (at < 0) continue;
    const range = document.createRange();
    range.setStart(node, at);
    range.setEnd(node, at + word.length);
    const box = range.getBoundingClientRect();
    return {left: box.left, right: box.right};
  }
  return null;
}"""
FIRST, LAST = "يدعم", "العربية"       # first and last word of the cited paragraph


def side(element, word: str) -> str:
    """Which half of the element's box (a Playwright locator) the word is drawn in: "left" or "right"."""
    box = element.bounding_box()
    got = element.evaluate(WORD_BOX, word)
    assert got is not None, f"{word} not in {element}"
    return "right" if (got["left"] + got["right"]) / 2 > box["x"] + box["width"] / 2 else "left"


def test_arabic_answers_and_passages_read_right_to_left(chromium, corpus, tmp_path, screenshots):
    docx = write_docx(tmp_path / "formats.docx", [
        ("Heading1", "الصيغ"),
        (None, f"{FIRST} البرنامج ملفات PDF و DOCX وكذلك صفحات HTML باللغة {LAST}.")])
    server = start_server(tmp_path / "data", "--engine", "extractive")
    page = chromium.new_context(viewport={"width": 1600, "height": 1000}).new_page()
    try:
        open_app(page, server.url)
        page.set_input_files("#jd-upload input[type=file]", [str(docx), str(corpus / "sexam-ar.pdf")])
        wait_rows(page, 2)
        text_input(page, "jd-question").fill("ما هي ملفات PDF و DOCX التي يقرأها البرنامج")
        page.click("#jd-ask")
        chip = page.locator("#jd-chat .cite-chip.cite-verified").first
        chip.wait_for(timeout=120_000)
        answer = page.locator("#jd-chat .message-row").last
        item = answer.locator("li").first
        assert FIRST in item.inner_text()
        # the quoted paragraph starts at the right; its chip, after its last word, ends the line on the left
        assert side(item, FIRST) == "right"
        assert chip.bounding_box()["x"] + chip.bounding_box()["width"] <= item.evaluate(WORD_BOX, LAST)["left"]
        assert side(answer.locator("p").first, "Extractive") == "left"                   # English stays LTR
        page.locator("#jd-chat").screenshot(path=str(screenshots / "rtl-answer.png"))

        chip.click()
        page.wait_for_selector("#jd-verdict", timeout=60_000)
        text = page.locator("#jd-page-text")
        assert side(text, FIRST) == "right" and side(text, LAST) == "left"
        assert side(page.locator("#jd-source-head .jd-quote"), FIRST) == "right"

        image = ask_and_open_first_chip(page, "كيف نغير نوع الخط الرئيسي", "sexam-ar.pdf")
        assert yellow_pixels(image.screenshot()) > 300, "the Arabic passage is not marked on the page image"
        page.screenshot(path=str(screenshots / "rtl-source.png"))
    except Exception:
        report(page, server)
        raise
    finally:
        page.context.close()
        server.stop()
