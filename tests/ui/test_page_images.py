"""app.page_images: real corpus pages rendered with pypdfium2, passages marked on the glyphs."""
from __future__ import annotations

import numpy as np
import pytest

from app.page_images import PageImageError, page_count, render_page

# r-intro.pdf physical page 8 (printed "2") opens section 1.1 with this sentence, over two lines.
R_INTRO_SENTENCE = ("R is an integrated suite of software facilities for data manipulation, calculation and "
                    "graphical display. Among other things it has")


def _highlight_share(image, box) -> float:
    """Share of pixels inside `box` tinted by the highlight (yellow: red high, blue low)."""
    left, top, right, bottom = box
    px = np.asarray(image.convert("RGB")).astype(int)[top:bottom, left:right]     # (h, w, 3)
    tinted = (px[..., 0] > 200) & (px[..., 2] < px[..., 0] - 60)
    return float(tinted.mean())


def test_exact_passage_is_marked_on_its_lines(corpus):
    page = render_page(corpus / "r-intro.pdf", 8, highlight=R_INTRO_SENTENCE, scale=1.0)
    assert page.page_count == 113 and page.page_number == 8
    assert page.highlighted and page.match_score == 100.0
    assert len(page.boxes) == 2                                   # the sentence spans two lines
    width, height = page.image.size
    first, second = sorted(page.boxes, key=lambda b: b[1])
    assert second[1] > first[1]                                   # second line below the first
    assert all(0 <= b[0] < b[2] <= width and 0 <= b[1] < b[3] <= height for b in page.boxes)
    assert first[1] < height / 3                                  # near the top of the page
    plain = render_page(corpus / "r-intro.pdf", 8, scale=1.0)
    assert not plain.highlighted and _highlight_share(plain.image, first) < 0.05
    for left, top, right, bottom in page.boxes:
        assert _highlight_share(page.image, (left, top, right, bottom)) > 0.5
        ink = [(np.asarray(img.convert("L"))[top:bottom, left:right] < 140).mean() for img in (page.image, plain.image)]
        assert ink[1] > 0 and ink[0] > 0.2 * ink[1]        # an opaque mark would hide them all


def test_passage_with_typos_and_other_line_breaks_is_found(corpus):
    sloppy = "R is an integrated suit of software facilties for data manipulation,\ncalculations and graphical"
    page = render_page(corpus / "r-intro.pdf", 8, highlight=sloppy, scale=1.0)
    assert page.highlighted and 80 <= page.match_score < 100


def test_text_that_is_not_on_the_page_is_not_marked(corpus):
    page = render_page(corpus / "r-intro.pdf", 8, highlight="Gnuplot draws surfaces with splot and pm3d palettes")
    assert not page.highlighted and page.boxes == []


def test_two_column_paper_marks_the_right_column_only(corpus):
    # acm-sigconf page 1: the abstract sits in the left column.
    page = render_page(corpus / "acm-sigconf.pdf", 1, highlight="Institute for Clarity in Documentation", scale=1.0)
    assert page.highlighted
    assert page.image.size == (612, 792)
    assert all(b[2] - b[0] < 612 / 2 for b in page.boxes)


def test_bad_inputs_name_the_file(corpus):
    with pytest.raises(PageImageError, match=r"r-intro\.pdf: page 114 is outside 1\.\.113"):
        render_page(corpus / "r-intro.pdf", 114)
    with pytest.raises(PageImageError, match=r"fake\.pdf: cannot open as PDF"):
        render_page(corpus / "fake.pdf", 1)
    with pytest.raises(PageImageError, match=r"encrypted\.pdf: the PDF is password-protected and no password"):
        render_page(corpus / "encrypted.pdf", 1)
    assert page_count(corpus / "encrypted.pdf", password="secret123") == 26
    with pytest.raises(PageImageError, match=r"encrypted\.pdf: cannot open as PDF \(the password is wrong\)"):
        render_page(corpus / "encrypted.pdf", 1, password="wrong")
    assert render_page(corpus / "encrypted-owner-only.pdf", 1, password="secret123").page_count == 4   # needs none
    with pytest.raises(PageImageError, match="missing.pdf: file not found"):
        render_page(corpus / "missing.pdf", 1)



def test_a_passage_on_a_scanned_page_is_marked_on_the_ocr_lines(corpus):
    """image-only.pdf has no text layer: the passage is found in OCR lines of the rendered page."""
    from ingest.ocr import ocr_available
    if not ocr_available():
        pytest.skip("rapidocr / onnxruntime not installed")
    from app.page_images import _OCR_ROWS
    passage = "written in 1990–2 by Bill Venables and David M. Smith when at the University of Adelaide"
    page = render_page(corpus / "image-only.pdf", 1, highlight=passage, scale=1.5)
    assert page.highlighted and page.match_score >= 80
    assert len(page.boxes) == 2                                   # two OCR lines of the first paragraph
    width, height = page.image.size
    plain = render_page(corpus / "image-only.pdf", 1, scale=1.5)
    for left, top, right, bottom in page.boxes:
        assert 0 <= left < right <= width and 0 <= top < bottom < height / 3    # the Preface's top lines
        assert _highlight_share(page.image, (left, top, right, bottom)) > 0.5
        assert _highlight_share(plain.image, (left, top, right, bottom)) < 0.05
        assert (np.asarray(plain.image.convert("L"))[top:bottom, left:right] < 140).mean() > 0.03   # ink under it
    assert any(key[1] == 1 for key in _OCR_ROWS)                  # the next click on this page reuses it
    other = render_page(corpus / "image-only.pdf", 1, highlight="Gnuplot draws surfaces with splot", scale=1.5)
    assert not other.highlighted and other.boxes == []


def test_a_passage_on_a_page_with_an_unreadable_text_layer_is_marked_on_the_ocr_lines(corpus, tmp_path):
    """Its text layer is private-use noise: the passage is found in OCR lines, as on a scan."""
    from ingest.ocr import ocr_available
    if not ocr_available():
        pytest.skip("rapidocr / onnxruntime not installed")
    from tests.ingest.pdf_files import write_garbled_pdf
    garbled_pdf = write_garbled_pdf(tmp_path / "garbled.pdf", corpus)
    passage = "written in 1990–2 by Bill Venables and David M. Smith when at the University of Adelaide"
    page = render_page(garbled_pdf, 1, highlight=passage, scale=1.5)
    assert page.highlighted and page.match_score >= 80 and len(page.boxes) == 2


def _turned_box(box, angle, size):
    """`box` of an upright page image of `size` (width, height), on that image turned `angle` degrees
    counterclockwise (PIL's rotate, expanded)."""
    (w, h), (left, top, right, bottom) = size, box
    return (w - right, h - bottom, w - left, h - top) if angle == 180 else (top, w - right, bottom, w - left)


def test_a_passage_on_a_page_scanned_upside_down_or_sideways_is_marked_on_its_words(corpus, tmp_path):
    """Ingest reads such a page upright, so a citation's passage is in upright text; the viewer read
    the page as shown (lines bottom to top, or sideways) and marked nothing. It reads it upright too
    and marks the passage's lines where they are on the shown image."""
    import pypdfium2 as pdfium

    from ingest.ocr import ocr_available
    if not ocr_available():
        pytest.skip("rapidocr / onnxruntime not installed")
    passage = ("Readers wishing to get a feel for R at a computer before proceeding are strongly advised to\n"
               "work through the introductory session given in Appendix A [A sample session], page 88.")
    src = pdfium.PdfDocument(str(corpus / "r-intro.pdf"))
    upright = src[9].render(scale=2.0).to_pil()
    src.close()
    turned = [upright.rotate(angle, expand=True) for angle in (180, 90)]
    turned[0].save(tmp_path / "turned.pdf", resolution=144.0, save_all=True, append_images=turned[1:])
    truth = render_page(corpus / "r-intro.pdf", 10, highlight=passage, scale=1.5)     # its text layer
    assert truth.highlighted and len(truth.boxes) >= 2
    for number, angle in ((1, 180), (2, 90)):
        page = render_page(tmp_path / "turned.pdf", number, highlight=passage, scale=1.5)
        assert page.highlighted and page.match_score >= 80, angle
        want = [_turned_box(box, angle, truth.image.size) for box in truth.boxes]
        lo = [min(b[i] for b in want) - 10 for i in (0, 1)]
        hi = [max(b[i] for b in want) + 10 for i in (2, 3)]
        for left, top, right, bottom in page.boxes:             # every mark on the passage's words
            assert lo[0] <= (left + right) / 2 <= hi[0] and lo[1] <= (top + bottom) / 2 <= hi[1], angle
        for left, top, right, bottom in want:                   # and each of its words marked
            cx, cy = (left + right) / 2, (top + bottom) / 2
            assert any(b[0] <= cx <= b[2] and b[1] <= cy <= b[3] for b in page.boxes), (angle, page.boxes)


def test_a_page_box_too_large_to_render_is_rendered_smaller(tmp_path, monkeypatch):
    """A PDF page may be 200 x 200 inches (a few hundred bytes of PDF): at the viewer's 1.5x that
    was 466 M pixels, 5 GB when its chip was clicked. The page is rendered at most MAX_RENDER_PIXELS
    (lowered here to 4 M for a 3,000 pt page, 20 M pixels at 1.5x), and the passage is still marked."""
    import ingest.images
    from tests.ingest.pdf_files import write_pdf_objects

    monkeypatch.setattr(ingest.images, "MAX_RENDER_PIXELS", 4_000_000, raising=False)
    content = b"BT /F1 40 Tf 200 2600 Td (The poster announces the spring lecture series) Tj ET\n"
    path = write_pdf_objects(tmp_path / "poster.pdf", [
        b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 3000 3000] /Resources << /Font << /F1 3 0 R >> >>"
        b" /Contents 5 0 R >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content)])
    page = render_page(path, 1, highlight="announces the spring lecture series", scale=1.5)
    width, height = page.image.size
    assert width * height <= 4_000_000 and width == height >= 1_900
    assert page.highlighted and len(page.boxes) == 1
    left, top, right, bottom = page.boxes[0]
    assert top < height * 0.2 and _highlight_share(page.image, page.boxes[0]) > 0.5


def test_kept_ocr_lines_of_a_page_scanned_upside_down_or_sideways_are_marked_where_shown(corpus, tmp_path,
                                                                                       monkeypatch):
    """The lines ingest's OCR kept with a turned page are in its upright frame, at OCR's scale: the
    viewer places them on its own image as shown (OcrPage.turns), on the passage's words, reading nothing."""
    import pypdfium2 as pdfium

    from ingest import ocr, read_document
    if not ocr.ocr_available():
        pytest.skip("rapidocr / onnxruntime not installed")
    passage = ("Readers wishing to get a feel for R at a computer before proceeding are strongly advised to\n"
               "work through the introductory session given in Appendix A [A sample session], page 88.")
    src = pdfium.PdfDocument(str(corpus / "r-intro.pdf"))
    upright = src[9].render(scale=2.0).to_pil()
    src.close()
    turned = [upright.rotate(angle, expand=True) for angle in (180, 90)]
    turned[0].save(tmp_path / "turned.pdf", resolution=144.0, save_all=True, append_images=turned[1:])
    kept = read_document(tmp_path / "turned.pdf").ocr
    assert [kept[n].turns for n in (1, 2)] == [2, 1]
    truth = render_page(corpus / "r-intro.pdf", 10, highlight=passage, scale=1.5)     # its text layer
    monkeypatch.setattr(ocr, "recognise", lambda image: pytest.fail("OCR'd again"))
    for number, angle in ((1, 180), (2, 90)):
        page = render_page(tmp_path / "turned.pdf", number, highlight=passage, scale=1.5, ocr=kept[number])
        assert page.highlighted and len(page.boxes) == 2, angle                  # its two lines
        for left, top, right, bottom in (_turned_box(box, angle, truth.image.size) for box in truth.boxes):
            cx, cy = (left + right) / 2, (top + bottom) / 2
            assert any(b[0] <= cx <= b[2] and b[1] <= cy <= b[3] for b in page.boxes), (angle, page.boxes)
