"""PDF pages built at test time for what the corpus lacks: cropped and rotated pages, text off the
page."""
from __future__ import annotations

from ingest import read_document
from tests.ingest.pdf_files import write_text_pdf

_PRINT_SHEET = [(100, 700, "Body text a reader sees"), (10, 10, "SLUG job 4711 plate C"),
                (300, 780, "Cropped away header")]


def test_only_the_text_inside_a_cropped_page_is_read(tmp_path):
    """A viewer shows the CropBox (within the MediaBox): a print sheet's slug and text cropped away
    are not on the page a reader sees, rotated or not; a missing, empty or oversized CropBox crops nothing."""
    pdf = write_text_pdf(tmp_path / "cropped.pdf", [
        (_PRINT_SHEET, "/CropBox [50 50 562 742]"),
        (_PRINT_SHEET, "/CropBox [50 50 562 742] /Rotate 90"),
        (_PRINT_SHEET, ""),
        (_PRINT_SHEET, "/CropBox [-100 -100 900 900]"),
        (_PRINT_SHEET, "/CropBox [0 0 0 0]"),
    ])
    doc = read_document(pdf)
    whole = "Body text a reader sees\nSLUG job 4711 plate C\nCropped away header"
    assert [p.text for p in doc.pages] == ["Body text a reader sees"] * 2 + [whole] * 3


def test_a_line_end_hyphen_is_kept_where_the_document_writes_the_word_with_one(tmp_path):
    """PDFium marks every letter-hyphen-letter line end as a hyphenated word, so a compound broken at
    its own hyphen read "wellknown": the hyphen stays when the document writes the word with it
    elsewhere and not (more often) without; a word hyphenated only to break the line is joined.
    Page 2 is cropped, so it is read by the bounded call (PDFium's other marker, U+0002)."""
    lines = [(72, 700, "The well-"), (72, 686, "known method reads the docu-"), (72, 672, "ment with a long-"),
             (72, 658, "term view of envi-"), (72, 644, "ronments.")]
    elsewhere = [(72, 600, "A well-known, long-term document; a well-known state-of-the-art tool.")]
    pdf = write_text_pdf(tmp_path / "hyphens.pdf", [
        (lines, ""), ([(72, 700, "It is state-"), (72, 686, "of-the-art. A docu-"), (72, 672, "ment.")] + elsewhere,
                      "/CropBox [0 0 600 792]")])
    doc = read_document(pdf)
    assert doc.page(1).text == "The well-known method reads the document with a long-term view of environments."
    assert doc.page(2).text.startswith("It is state-of-the-art. A document.\n")


def test_text_beyond_the_page_edge_is_not_read(tmp_path, read):
    """Text set outside the MediaBox of a page without a CropBox is on no page a reader sees: a line
    right of the edge or below it is not read. gnuplot.pdf p. 290 has an overfull line whose last
    word ("(‘plot‘).") runs off the right edge; the rest of the line stays."""
    pdf = write_text_pdf(tmp_path / "edges.pdf", [
        ([(72, 700, "Kept on the page"), (700, 500, "Right of the edge"), (72, -40, "Below the page")], ""),
        ([(72, 700, "Second page")], ""),
    ])
    assert [p.text for p in read_document(pdf).pages] == ["Kept on the page", "Second page"]
    page = read("gnuplot.pdf").page(290).text
    assert "coordinates. It works only for 2-dimensional plotting\n" in page
    assert "coordinates. It works only for 2-dimensional plotting (‘plot‘)" not in page
