"""Optional OCR for PDFs without a text layer: used only when pytesseract and the tesseract binary
are both installed (neither is a dependency). Pages are rendered with PDFium at 200 dpi."""
from __future__ import annotations

import importlib.util
import shutil
from functools import lru_cache

from ingest.normalize import normalize_text

OCR_DPI = 200


@lru_cache(maxsize=1)
def ocr_available() -> bool:
    return importlib.util.find_spec("pytesseract") is not None and shutil.which("tesseract") is not None


def ocr_pdf(data: bytes, password: str | None = None) -> list[str]:
    """Normalised OCR text per physical page ([] when OCR is unavailable)."""
    if not ocr_available():
        return []
    import pypdfium2 as pdfium
    import pytesseract

    from ingest.pdf import PDFIUM_LOCK

    texts = []
    with PDFIUM_LOCK:
        pdf = pdfium.PdfDocument(data, password=password)
        try:
            images = [pdf[i].render(scale=OCR_DPI / 72).to_pil() for i in range(len(pdf))]
        finally:
            pdf.close()
    for image in images:
        texts.append(normalize_text(pytesseract.image_to_string(image)))
    return texts
