"""Scanned pages are read by OCR (RapidOCR): the corpus scan against the text it was made from, a
PDF mixing text pages and a scanned two-column page (only the scan is OCR'd, its columns in reading
order), the column ordering on its own, and the errors when there is nothing to read."""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace

import pypdfium2 as pdfium
import pytest

from ingest import IngestError, read_document
from ingest.ocr import Line, ocr_available, reading_order
from tests.ingest.pdf_files import write_garbled_pdf

pytestmark = pytest.mark.skipif(not ocr_available(), reason="rapidocr / onnxruntime not installed")


def _words(text: str) -> Counter:
    return Counter(re.findall(r"[a-zà-ÿ]{3,}", text.lower()))


def _recall(got: str, expected: str) -> float:
    want = _words(expected)
    return sum((want & _words(got)).values()) / sum(want.values())


def _text_layer(path, number: int) -> str:
    pdf = pdfium.PdfDocument(str(path))
    try:
        return pdf[number - 1].get_textpage().get_text_range()
    finally:
        pdf.close()


def test_the_corpus_scan_reads_as_the_pages_it_was_made_from(corpus):
    """image-only.pdf is r-intro.pdf's physical pages 7-9 as 150 dpi images (see the corpus MANIFEST)."""
    progress: list[tuple[int, int]] = []
    doc = read_document(corpus / "image-only.pdf", progress=lambda done, total: progress.append((done, total)))
    assert len(doc.pages) == 3 and doc.title == "Preface"
    assert any("OCR" in note and "no text layer on any page" in note for note in doc.notes), doc.notes
    for page, number in zip(doc.pages, (7, 8, 9)):
        assert _recall(page.text, _text_layer(corpus / "r-intro.pdf", number)) > 0.95, page.number
    assert "Bill Venables" in doc.pages[0].text and (3, 3) in progress


@pytest.fixture(scope="module")
def mixed_pdf(tmp_path_factory, corpus):
    """r-intro.pdf pages 10-11 (text layer), then acm-sigconf.pdf page 2 as a 144 dpi image (a scan of
    a two-column page)."""
    folder = tmp_path_factory.mktemp("ocr")
    src = pdfium.PdfDocument(str(corpus / "acm-sigconf.pdf"))
    src[1].render(scale=2.0).to_pil().save(folder / "scan.pdf", resolution=144.0)
    src.close()
    out = pdfium.PdfDocument.new()
    out.import_pages(pdfium.PdfDocument(str(corpus / "r-intro.pdf")), [9, 10])
    out.import_pages(pdfium.PdfDocument(str(folder / "scan.pdf")))
    out.save(folder / "mixed.pdf")
    return folder / "mixed.pdf"


def test_only_the_scanned_page_of_a_mixed_pdf_is_ocrd_and_its_columns_come_in_order(mixed_pdf, corpus):
    doc = read_document(mixed_pdf)
    original = read_document(corpus / "r-intro.pdf")
    assert [p.text for p in doc.pages[:2]] == [original.page(10).text, original.page(11).text]
    assert any("no text layer on p. 3:" in note and "OCR" in note for note in doc.notes), doc.notes
    scan = doc.pages[2].text
    assert _recall(scan, _text_layer(corpus / "acm-sigconf.pdf", 2)) > 0.95
    # the left column's heading, low on the page, comes before the right column's first lines
    left, right = scan.find("TEMPLATE OVERVIEW"), scan.find("Your document will be returned")
    assert 0 <= left < right, (left, right)
    assert scan.find("spacing between elements of your work") > scan.find("from review to final")


def test_ocr_stops_at_the_page_limit_and_says_so(corpus):
    doc = read_document(corpus / "image-only.pdf", max_ocr_pages=1)
    assert doc.pages[0].text and not doc.pages[1].text and not doc.pages[2].text
    assert any("pp. 2-3 not recognised" in note and "after 1 page of" in note for note in doc.notes), doc.notes


def _line(text: str, x0: float, y0: float, x1: float, h: float = 10) -> Line:
    return Line(text, x0, y0, x1, y0 + h)


def test_reading_order_puts_columns_one_after_the_other():
    W = 600
    lines = [_line("Title across the page", 100, 10, 500),
             *[_line(f"left {i}", 40, 40 + 20 * i, 280) for i in range(4)],
             *[_line(f"right {i}", 320, 41 + 20 * i, 560) for i in range(4)],
             _line("Figure caption spanning both columns", 60, 130, 540),
             _line("left after", 40, 150, 280), _line("more left", 40, 170, 280), _line("left end", 40, 190, 280),
             _line("right after", 320, 150, 560), _line("more right", 320, 170, 560), _line("right end", 320, 190, 560),
             _line("page 3", 290, 220, 310)]
    rows = [" ".join(ln.text for ln in row) for row in reading_order(lines, W)]
    assert rows == ["Title across the page", "left 0", "left 1", "left 2", "left 3", "right 0", "right 1",
                    "right 2", "right 3", "Figure caption spanning both columns", "left after", "more left",
                    "left end", "right after", "more right", "right end", "page 3"]


def test_a_table_under_prose_keeps_its_rows():
    """Two short-celled columns are a table, not two text columns: rows stay rows."""
    W = 600
    lines = [_line("A paragraph of prose that runs across most of the page width here.", 40, 10, 560),
             *[ln for i in range(5) for ln in (_line(f"key {i}", 40, 40 + 20 * i, 100),
                                               _line(f"value {i}", 330, 40 + 20 * i, 400))],
             _line("More prose after the table, again across most of the page.", 40, 150, 560)]
    rows = [" ".join(ln.text for ln in row) for row in reading_order(lines, W)]
    assert rows[1:6] == [f"key {i} value {i}" for i in range(5)]


def test_reading_order_keeps_a_single_column_and_joins_a_row():
    lines = [_line("Name", 40, 10, 90), _line("Value", 300, 11, 360), _line("alpha", 40, 30, 90),
             _line("1.0", 300, 30, 330), _line("A sentence that runs most of the way across.", 40, 50, 520)]
    rows = [" ".join(ln.text for ln in row) for row in reading_order(lines, 600)]
    assert rows == ["Name Value", "alpha 1.0", "A sentence that runs most of the way across."]


def test_without_ocr_a_scan_is_refused_and_a_blank_pdf_is_refused_either_way(corpus, tmp_path):
    with pytest.raises(IngestError, match="scanned images") as info:
        read_document(corpus / "image-only.pdf", ocr=False)
    assert info.value.reason == "no_text"
    pdf = pdfium.PdfDocument.new()
    pdf.new_page(612, 792)
    pdf.save(tmp_path / "blank.pdf")
    with pytest.raises(IngestError, match="no extractable text") as info:
        read_document(tmp_path / "blank.pdf")
    assert info.value.reason == "no_text" and "blank.pdf" in str(info.value)


@pytest.fixture(scope="module")
def garbled_pdf(tmp_path_factory, corpus):
    return write_garbled_pdf(tmp_path_factory.mktemp("garbled") / "garbled.pdf", corpus)


def test_an_unreadable_text_layer_is_read_by_ocr(garbled_pdf, corpus):
    assert all("\ue000" <= ch <= "\ue0ff" for ch in _text_layer(garbled_pdf, 1) if not ch.isspace())
    doc = read_document(garbled_pdf)
    for page, number in zip(doc.pages[:2], (7, 11)):
        assert _recall(page.text, _text_layer(corpus / "r-intro.pdf", number)) > 0.95, page.number
        assert not any("\ue000" <= ch <= "\uf8ff" for ch in page.text)
    assert doc.pages[2].text == read_document(corpus / "hsaur-inference.pdf").page(3).text   # not OCR'd
    assert doc.title == "Preface"
    assert any("unreadable text layer on pp. 1-2" in note and "OCR" in note for note in doc.notes), doc.notes
    assert not any("no text layer" in note for note in doc.notes), doc.notes


def test_without_ocr_an_unreadable_page_is_left_empty_and_said_so(garbled_pdf):
    doc = read_document(garbled_pdf, ocr=False)
    assert doc.pages[0].text == "" and doc.pages[1].text == "" and doc.pages[2].text
    assert any("unreadable text layer on pp. 1-2" in note and "left empty" in note for note in doc.notes)


def test_symbol_bullets_are_not_an_unreadable_layer():
    from ingest.normalize import unreadable

    prose = "The quick brown fox jumps over the lazy dog near the river bank. " * 3
    assert not unreadable("\uf0b7 " + prose + "\uf0b7 second item")
    assert unreadable("\ue031\ue050\ue072\ue065\ue066 " * 10)
    assert not unreadable("\ue031 \ue050")                           # too short to judge


def test_a_page_scanned_upside_down_or_sideways_is_read_upright(corpus, tmp_path):
    """r-intro.pdf page 10 as an image turned 180 and 90 degrees, no /Rotate: read top to bottom,
    every line legible, as the upright page."""
    src = pdfium.PdfDocument(str(corpus / "r-intro.pdf"))
    upright = src[9].render(scale=2.0).to_pil()
    src.close()
    turned = [upright.rotate(angle, expand=True) for angle in (180, 90)]
    turned[0].save(tmp_path / "turned.pdf", resolution=144.0, save_all=True, append_images=turned[1:])
    doc = read_document(tmp_path / "turned.pdf")
    expected = _text_layer(corpus / "r-intro.pdf", 10)
    for page in doc.pages:
        assert _recall(page.text, expected) > 0.95, page.number
        assert page.text.startswith("Chapter 1: Introduction and preliminaries"), page.text[:200]
        assert 0 < page.text.find("At this point you will be asked") < page.text.find("> ??solve"), page.number


def test_a_scan_with_a_stamped_number_is_read_by_ocr(corpus, tmp_path, monkeypatch):
    """A scanned page that carries a few words of real text (a Bates number, "Page 2 of 9", a scanner
    app's line) has a text layer, but its content is in the image: OCR reads it, stamp included. A
    page of short text without a scan, or over a picture without text (a slide's background), keeps
    its text layer, and is not recognised (a text detection says there is no more text to read)."""
    from PIL import Image
    from pypdf import PdfReader, PdfWriter

    from ingest import ocr
    from tests.ingest.pdf_files import write_text_pdf

    stamps = write_text_pdf(tmp_path / "stamps.pdf", [([(400, 20, "ACME-0001234")], ""),
                                                      ([(72, 700, "Exhibit B: a title page")], ""),
                                                      ([(72, 700, "Our team in Porto")], "")])
    Image.linear_gradient("L").resize((1224, 1584)).convert("RGB").save(tmp_path / "picture.pdf", resolution=144.0)
    writer = PdfWriter()
    writer.append(corpus / "image-only.pdf", pages=[0])
    writer.append(stamps, pages=[1])
    writer.append(tmp_path / "picture.pdf")
    for page, stamp in zip((writer.pages[0], writer.pages[2]), (PdfReader(stamps).pages[0], PdfReader(stamps).pages[2])):
        page.merge_page(stamp)
    writer.write(tmp_path / "stamped.pdf")
    recognised, recognise = [], ocr.recognise
    monkeypatch.setattr(ocr, "recognise", lambda image: recognised.append(image.shape) or recognise(image))
    doc = read_document(tmp_path / "stamped.pdf")
    assert len(recognised) == 1                                 # the scan, once (it is upright)
    assert _recall(doc.page(1).text, _text_layer(corpus / "r-intro.pdf", 7)) > 0.95
    assert "ACME-0001234" in doc.page(1).text
    assert [p.text for p in doc.pages[1:]] == ["Exhibit B: a title page", "Our team in Porto"]
    assert [note for note in doc.notes if "OCR" in note] == [
        "only a few words of text over a scanned image on p. 1: text recognised by OCR (RapidOCR, PP-OCR models)"]


def test_short_pages_without_a_scan_are_ruled_out_without_opening_the_pdf_again(corpus, monkeypatch):
    """Pages of a few words are checked for a scan under them (the test above): their image cover is
    measured while the page is read, the same as on the page opened afresh, so a document whose short
    pages have no picture under half of them (r-intro's title page and p. 13, sexam-ar's last pages with
    screenshots) is opened once."""
    import pypdfium2 as pdfium

    from ingest import ocr
    from ingest.pdf import image_cover, read_pdf

    for name, short in (("r-intro.pdf", {1, 13}), ("sexam-ar.pdf", {6, 7, 8})):
        data = (corpus / name).read_bytes()
        covers = read_pdf(data, name, cover_under=200).image_covers
        assert set(covers) == short
        pdf = pdfium.PdfDocument(data)
        assert covers == {n: image_cover(pdf[n - 1]) for n in short}
        assert any(covers.values()) == (name == "sexam-ar.pdf")
        pdf.close()

        opened = []
        monkeypatch.setattr(pdfium, "PdfDocument",
                            lambda *a, _open=pdfium.PdfDocument, **k: opened.append(a) or _open(*a, **k))
        doc = read_document(corpus / name)
        monkeypatch.undo()
        assert len(opened) == 1 and ocr.ocr_available()
        assert [p.number for p in doc.pages if 0 < len(p.text) < 200] == sorted(short)


def test_a_reread_of_a_stamped_scan_does_not_detect_its_text_again(corpus, tmp_path, monkeypatch):
    """A scan carrying a few words of text is found by a text detection on its image (the test above);
    its OCR is kept with the page, and a re-read (`known_ocr`) reused that but detected text on the
    page again. The kept OCR says it was a scan: no detection, nothing recognised, the same text."""
    from pypdf import PdfReader, PdfWriter

    from ingest import ocr
    from tests.ingest.pdf_files import write_text_pdf

    stamps = write_text_pdf(tmp_path / "stamps.pdf", [([(400, 20, "ACME-0001234")], "")])
    writer = PdfWriter()
    writer.append(corpus / "image-only.pdf", pages=[0])
    writer.pages[0].merge_page(PdfReader(stamps).pages[0])
    writer.write(tmp_path / "stamped.pdf")
    first = read_document(tmp_path / "stamped.pdf")
    assert "ACME-0001234" in first.page(1).text and set(first.ocr) == {1}
    detected, detect = [], ocr._detected_lines
    monkeypatch.setattr(ocr, "_detected_lines", lambda image: detected.append(image.shape) or detect(image))
    recognised, recognise = [], ocr.recognise
    monkeypatch.setattr(ocr, "recognise", lambda image: recognised.append(image.shape) or recognise(image))
    again = read_document(tmp_path / "stamped.pdf", known_ocr=first.ocr)
    assert detected == [] and recognised == []
    assert [p.text for p in again.pages] == [p.text for p in first.pages] and again.notes == first.notes
    other = read_document(tmp_path / "stamped.pdf", known_ocr={1: replace(first.ocr[1], engine="another")})
    assert len(detected) == 1 and recognised and other.page(1).text == first.page(1).text
