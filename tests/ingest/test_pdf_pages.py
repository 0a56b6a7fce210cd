"""PDF pages built at test time for what the corpus lacks: cropped and rotated pages."""
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
