"""Render one PDF page to an image with pypdfium2 (or one frame of an image document with Pillow),
optionally marking a passage on it.

Used by the source viewer: a citation names (document, page, supporting quote); this module draws
the page and paints translucent boxes over the characters of the quote. The quote is found in the
page's own text layer (exact match after whitespace/case folding, else the best fuzzy alignment
via rapidfuzz), so boxes land on the real glyphs whatever the layout (columns, tables, rotation).
A scanned page has no text layer (or a few words of one, a stamp, where the quote is not): there the
quote is found in the OCR lines ingest kept with the page (ingest.ocr.OcrPage, scaled to the
rendered image), or, for a page stored without them, in OCR lines of the rendered image (a few
seconds the first time, cached per file and page); whole lines are marked. A page scanned upside
down or sideways is read upright, as ingest reads it, and its lines are marked where they are on
the image as shown.
"""
from __future__ import annotations

import ctypes
import re
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image, ImageDraw
from rapidfuzz import fuzz

from ingest.images import render_scale
from ingest.normalize import unreadable
from ingest.pdf import (PDFIUM_LOCK, hidden_layers, hide_layers, looks_like_pdf,  # PDFium is not thread-safe:
                        open_document, upright_textpage)                          # one lock for every user
from ingest.pdf_covered import Covered, hide_covered_text
from ingest.pdf_hidden import hide_unseen_text

if TYPE_CHECKING:
    from ingest.ocr import OcrPage

HIGHLIGHT_FILL = (255, 214, 0, 96)      # RGBA, translucent yellow
HIGHLIGHT_OUTLINE = (230, 150, 0, 255)
MIN_FUZZY_SCORE = 80.0                  # 0..100, below this a quote is "not found on the page"


class PageImageError(ValueError):
    """The page cannot be rendered (bad file, page out of range, wrong password). `reason` is
    "encrypted" when a password is missing or wrong, else None."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason


@dataclass
class RenderedPage:
    image: Image.Image                  # RGB page image
    page_number: int                    # 1-based physical page
    page_count: int
    highlighted: bool = False           # True when the passage was found and marked
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # image px (l, t, r, b)
    match_score: float = 0.0            # 100 = exact match of the passage


@contextmanager
def _open_pdf(path: Path, password: str | None):
    """The PDF at `path`, opened and closed under the process-wide PDFium lock."""
    with PDFIUM_LOCK:
        try:
            pdf = open_document(str(path), password)
        except pdfium.PdfiumError as err:
            if getattr(err, "err_code", None) != pdfium_c.FPDF_ERR_PASSWORD:
                raise PageImageError(f"{path.name}: cannot open as PDF ({err})") from None
            why = ("cannot open as PDF (the password is wrong)" if password else
                   "the PDF is password-protected and no password was given")
            raise PageImageError(f"{path.name}: {why}", reason="encrypted") from None
        try:
            yield pdf
        finally:
            pdf.close()


def render_page(path: str | Path, page_number: int, highlight: str | None = None,
                scale: float = 1.5, password: str | None = None, kind: str | None = None,
                ocr: "OcrPage | None" = None) -> RenderedPage:
    """Render physical page `page_number` (1-based) of the PDF at `path`, or frame `page_number` of
    an image document (`kind="image"`; None: an image when the file has no PDF header and its name
    does not end in .pdf); mark `highlight` if given. `ocr`: what ingest's OCR read on this page,
    where the passage is looked for on a page without a (readable) text layer instead of OCR'ing it."""
    path = Path(path)
    if not path.is_file():
        raise PageImageError(f"{path.name}: file not found")
    if kind is None:
        with path.open("rb") as f:
            kind = "pdf" if looks_like_pdf(f.read(1024)) or path.suffix.lower() == ".pdf" else "image"
    if kind == "image":
        return _render_image(path, page_number, highlight, ocr)
    # The passage is looked for in the text a reader sees, as ingest read it: not in layers the
    # document's default view turns off (which PDFium does not render, but has in its text page),
    # nor in text drawn unseen (white on white, under 1 pt: ingest/pdf_hidden.py; under a box drawn
    # over it, black on black: ingest/pdf_covered.py).
    layers_off = hidden_layers(str(path), password) if highlight and highlight.strip() else frozenset()
    with _open_pdf(path, password) as pdf:
        count = len(pdf)
        if not 1 <= page_number <= count:
            raise PageImageError(f"{path.name}: page {page_number} is outside 1..{count}")
        page = pdf[page_number - 1]
        image = page.render(scale=render_scale(page, scale)).to_pil().convert("RGB")
        result = RenderedPage(image=image, page_number=page_number, page_count=count)
        if not (highlight and highlight.strip()):
            return result
        hide_layers(page, layers_off)
        hide_unseen_text(page)
        covered = hide_covered_text(page)
        chars = _page_chars(page, covered)
        if chars and not unreadable("".join(chars)):  # a text layer: mark the quote's own glyphs
            found = _match(chars, highlight)
            if found is not None:
                first, last, score = found
                boxes = _char_boxes(page, (first, last - first + 1), image.size)
                if boxes:
                    result.image = _paint(image, boxes)
                    result.boxes, result.highlighted, result.match_score = boxes, True, score
            if result.highlighted or ocr is None:
                return result
            # not in a text layer OCR was run over: a few words on a scan (a stamp), read as what OCR read
    # A scanned page has no text layer (or an unreadable one): find the passage in its kept OCR lines,
    # else in OCR lines of this very image (outside the PDFium lock; a few seconds the first time, then cached).
    boxes, score = _ocr_boxes(str(path), page_number, scale, image, highlight, ocr)
    if boxes:
        result.image = _paint(image, boxes)
        result.boxes, result.highlighted, result.match_score = boxes, True, score
    return result


def _render_image(path: Path, page_number: int, highlight: str | None, ocr: "OcrPage | None") -> RenderedPage:
    """Frame `page_number` of an image document, upright, at the size it was OCR'd at; the passage is
    found in OCR lines of the shown image, as on a scanned PDF page."""
    from ingest.errors import IngestError
    from ingest.images import MAX_OCR_SIDE, frame, frame_count, open_image

    try:
        picture = open_image(path.read_bytes(), path.name)
        count = frame_count(picture)
        if not 1 <= page_number <= count:
            raise PageImageError(f"{path.name}: page {page_number} is outside 1..{count}")
        image = frame(picture, page_number, path.name)
    except IngestError as err:
        raise PageImageError(str(err)) from None
    image.thumbnail((MAX_OCR_SIDE, MAX_OCR_SIDE))
    result = RenderedPage(image=image, page_number=page_number, page_count=count)
    if highlight and highlight.strip():
        boxes, score = _ocr_boxes(str(path), page_number, float(image.width), image, highlight, ocr)
        if boxes:
            result.image = _paint(image, boxes)
            result.boxes, result.highlighted, result.match_score = boxes, True, score
    return result


_OCR_ROWS: OrderedDict[tuple, tuple] = OrderedDict()     # (file, page, scale) -> OCR rows, LRU
_OCR_ROWS_MAX = 64
_OCR_ROWS_LOCK = threading.Lock()


def _ocr_rows(path: str, page_number: int, scale: float, image: Image.Image) -> tuple:
    """OCR lines of a rendered page in reading order, cached per (file, page, scale): stored files
    are named by their content hash, so a path names one content. A page scanned upside down or
    sideways is read upright, as ingest reads it; the boxes are in the shown image's pixels."""
    import numpy as np

    from ingest.ocr import in_image, reading_order, upright_lines
    key = (path, page_number, scale)
    with _OCR_ROWS_LOCK:
        if key in _OCR_ROWS:
            _OCR_ROWS.move_to_end(key)
            return _OCR_ROWS[key]
    lines, turns = upright_lines(np.asarray(image))
    width = image.size[0] if turns % 2 == 0 else image.size[1]
    rows = tuple(tuple(in_image(ln, turns, image.size) for ln in row) for row in reading_order(lines, width))
    with _OCR_ROWS_LOCK:
        _OCR_ROWS[key] = rows
        while len(_OCR_ROWS) > _OCR_ROWS_MAX:
            _OCR_ROWS.popitem(last=False)
    return rows


def _ocr_boxes(path: str, page_number: int, scale: float, image: Image.Image, passage: str,
               kept: "OcrPage | None" = None) -> tuple[list[tuple[int, int, int, int]], float]:
    """Image-pixel boxes of the OCR lines the passage falls on, and the match score ([] if not found):
    the lines `kept` with the page when they can be placed on the image, else those OCR reads on it."""
    from ingest.ocr import ocr_available
    rows = kept.rows_in(image.size) if kept is not None else None
    if rows is None:
        if not ocr_available():
            return [], 0.0
        rows = _ocr_rows(path, page_number, scale, image)
    chars: list[str] = []
    owner: list = []                                   # the OCR line of each char
    for row in rows:
        for line in row:
            for ch in line.text + " ":
                chars.append(ch)
                owner.append(line)
    found = _match(chars, passage)
    if found is None:
        return [], 0.0
    first, last, score = found
    hit = {id(ln): ln for ln in owner[first:last + 1]}.values()
    return [(int(ln.x0) - 2, int(ln.y0) - 2, int(ln.x1) + 2, int(ln.y1) + 2) for ln in hit], score


def page_count(path: str | Path, password: str | None = None) -> int:
    """Number of pages of the PDF at `path`."""
    with _open_pdf(Path(path), password) as pdf:
        return len(pdf)


def _page_chars(page: pdfium.PdfPage, covered: Covered) -> list[str]:
    """The characters of the page's text layer, one str per pdfium char index ([] for a scan); a
    character under a box drawn over it (ingest/pdf_covered.py) as a space."""
    textpage = upright_textpage(page)         # in ingest's order (a page turned clockwise)
    try:
        chars = [chr(pdfium_c.FPDFText_GetUnicode(textpage.raw, i) or 32) for i in range(textpage.count_chars())]
        for index in covered.hidden_chars(page, textpage):
            chars[index] = " "
        return chars
    finally:
        textpage.close()


def _fold(chars: list[str]) -> tuple[str, list[int]]:
    """Casefold and collapse whitespace/hyphen line breaks; return text and its map to char indices."""
    out: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(chars):
        if ch.isspace() or ch in "\x00\ufffe\u00ad" or ch == "\u0002":
            if out and out[-1] != " ":
                out.append(" ")
                index.append(i)
            continue
        for c in ch.casefold():
            out.append(c)
            index.append(i)
    return "".join(out), index


def _fold_query(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\u00ad", "")).casefold().strip()


def _match(chars: list[str], passage: str) -> tuple[int, int, float] | None:
    """(first, last) indices into `chars` of `passage` and the score 0..100: exact after folding,
    else the best fuzzy alignment (words split by a line break or hyphenation still score high)."""
    haystack, index = _fold(chars)
    needle = _fold_query(passage)
    if not needle or not haystack:
        return None
    at = haystack.find(needle)
    if at >= 0:
        start, end, score = at, at + len(needle), 100.0
    else:
        alignment = fuzz.partial_ratio_alignment(needle, haystack, score_cutoff=MIN_FUZZY_SCORE)
        if alignment is None:
            return None
        start, end, score = alignment.dest_start, alignment.dest_end, alignment.score
    return index[start], index[max(start, end - 1)], score


def _char_boxes(page: pdfium.PdfPage, span: tuple[int, int],
                image_size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Image-pixel boxes covering chars span=(first, count), one per text run/line."""
    textpage = upright_textpage(page)         # in ingest's order (a page turned clockwise)
    try:
        first, count = span
        n_rects = textpage.count_rects(first, count)
        rects = [textpage.get_rect(i) for i in range(n_rects)]   # PDF units (l, b, r, t)
    finally:
        textpage.close()
    width, height = image_size
    boxes = []
    for left, bottom, right, top in rects:
        x0, y0 = _to_device(page, width, height, left, top)
        x1, y1 = _to_device(page, width, height, right, bottom)
        box = (min(x0, x1) - 2, min(y0, y1) - 2, max(x0, x1) + 2, max(y0, y1) + 2)
        if box[2] - box[0] > 2 and box[3] - box[1] > 2:
            boxes.append(box)
    return boxes


def _to_device(page: pdfium.PdfPage, width: int, height: int, x: float, y: float) -> tuple[int, int]:
    """PDF page coordinates -> pixel of the rendered image (handles crop box and rotation)."""
    dx, dy = ctypes.c_int(), ctypes.c_int()
    pdfium_c.FPDF_PageToDevice(page.raw, 0, 0, width, height, 0, x, y, dx, dy)
    return dx.value, dy.value


def _paint(image: Image.Image, boxes: list[tuple[int, int, int, int]]) -> Image.Image:
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for box in boxes:
        draw.rectangle(box, fill=HIGHLIGHT_FILL, outline=HIGHLIGHT_OUTLINE, width=2)
    return Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")

