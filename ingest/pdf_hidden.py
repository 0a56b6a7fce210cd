"""Text drawn so that a reader cannot see it: in the colour of what lies under it (white on a white
page) or too small to read. PDFium's text page reads it all the same; it is how instructions to a
model are slipped into a résumé or a paper. See docs/ingest.md ("Unseen text").

Cheap first: the page's text objects are checked by their fill colour and size (no render; the scan
of every text object runs in C, ingest/pdf_native.py, with `_candidates` its Python reference). Only a
page with near-white text is rendered, small, to compare that colour with the pixels under it, so
white text on a dark box or slide stays read. Render mode 3 (invisible: a scan's OCR layer) is read.
"""
from __future__ import annotations

import ctypes

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from ingest.images import render_scale
from ingest.pdf_native import unseen_candidates

MIN_SIZE_PT = 1.0        # effective font size (both axes) under which text cannot be read
PALE = 230               # every RGB channel at least this: near white, a candidate for the render check
SAME_COLOUR = 40         # largest channel difference of a pixel that does not stand out from the text
SEEN_SHARE = 0.1         # the text is visible when this share of the pixels under its box differ from it
RENDER_SCALE = 0.5       # 36 dpi: enough to tell the background under a line of text

_KEPT_MODES = {pdfium_c.FPDF_TEXTRENDERMODE_INVISIBLE, pdfium_c.FPDF_TEXTRENDERMODE_CLIP}
_STROKED = {1, 2, 5, 6}  # render modes that stroke the glyphs' outline (its colour is not checked)


def hide_unseen_text(page: pdfium.PdfPage) -> int:
    """Mark the page's text objects that a reader cannot see inactive, so no text page made after
    this reads them (the file is not changed); return how many. Under PDFIUM_LOCK."""
    if not hasattr(pdfium_c, "FPDFPageObj_SetIsActive"):
        return 0
    hidden, pale = [], []
    found = unseen_candidates(page.raw, PALE, MIN_SIZE_PT * MIN_SIZE_PT)      # in C (ingest/pdf_native.py)
    if found is None:
        found = _candidates(page.raw, pdfium_c.FPDFPage_CountObjects, pdfium_c.FPDFPage_GetObject, _IDENTITY)
    for obj, outer, why, detail in found:
        mode = pdfium_c.FPDFTextObj_GetTextRenderMode(obj)
        if mode in _KEPT_MODES or (why != "tiny" and mode in _STROKED):    # its outline shows
            continue
        if why == "tiny" and detail * _em_height(obj) >= MIN_SIZE_PT:
            continue                             # glyphs drawn larger than the size says (a Type 3 font's matrix)
        if why == "pale":
            pale.append((obj, detail, outer))
        else:
            hidden.append(obj)
    for obj in hidden + [obj for obj, _, _ in pale]:
        pdfium_c.FPDFPageObj_SetIsActive(obj, False)
    if pale:                                     # the page as drawn without them: what lies under each
        pixels = np.asarray(page.render(scale=render_scale(page, RENDER_SCALE), may_draw_forms=False).to_pil().convert("RGB"))
        for obj, colour, outer in pale:
            if _stands_out(page, pixels, colour, _page_box(obj, outer)):
                pdfium_c.FPDFPageObj_SetIsActive(obj, True)
            else:
                hidden.append(obj)
    return len(hidden)


_IDENTITY = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
# Out-parameters, reused (every call holds PDFIUM_LOCK): new ctypes objects per text object cost
# more than the PDFium calls themselves on a long manual.
_RGBA = [ctypes.c_uint() for _ in range(4)]
_RGBA_REFS = [ctypes.pointer(v) for v in _RGBA]
_MATRIX = pdfium_c.FS_MATRIX()
_MATRIX_REF = ctypes.pointer(_MATRIX)
_FONT_SIZE = ctypes.c_float()
_FONT_SIZE_REF = ctypes.pointer(_FONT_SIZE)


def _bare(fn):
    """The same PDFium function, returning an int, without ctypes' per-argument conversion (half the
    cost of a call: this runs for every text object). Callers pass only PDFium object handles as
    PDFium returned them and the prebuilt pointers above, as the function's argtypes say."""
    return ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.cast(fn, ctypes.c_void_p).value)


_GET_TYPE, _GET_FILL, _GET_FONT_SIZE, _GET_MATRIX = (
    _bare(f) for f in (pdfium_c.FPDFPageObj_GetType, pdfium_c.FPDFPageObj_GetFillColor,
                       pdfium_c.FPDFTextObj_GetFontSize, pdfium_c.FPDFPageObj_GetMatrix))


def _candidates(parent, count, get, outer: tuple):
    """(text object, the matrix from its parent to the page, why: "clear" (fill opacity 0), "tiny"
    (under 1 pt: its size on the page) or "pale" (filled near white: its fill RGB)) for each text object under `parent` (a
    page, or a form XObject whose matrix to the page is `outer`) that may be unseen, into nested
    forms. Few raw PDFium calls and plain arithmetic: this runs for every text object of every page."""
    get_type, text, form = _GET_TYPE, pdfium_c.FPDF_PAGEOBJ_TEXT, pdfium_c.FPDF_PAGEOBJ_FORM
    fill, font_size, get_matrix = _GET_FILL, _GET_FONT_SIZE, _GET_MATRIX
    red, green, blue, alpha = _RGBA
    red_ref, green_ref, blue_ref, alpha_ref = _RGBA_REFS
    m, size = _MATRIX, _FONT_SIZE
    for i in range(count(parent)):
        obj = get(parent, i)
        kind = get_type(obj)
        if kind == text:
            if not fill(obj, red_ref, green_ref, blue_ref, alpha_ref):
                continue                         # a pattern or shading: colour unknown
            if alpha.value == 0:
                yield obj, outer, "clear", None
                continue
            font_size(obj, _FONT_SIZE_REF)
            get_matrix(obj, _MATRIX_REF)
            a, b, c, d = (m.a, m.b, m.c, m.d) if outer is _IDENTITY else _matrix(obj, outer)[:4]
            # font size on the page along its narrower axis (Tz squashes only the width) under 1 pt
            squared = min(a * a + b * b, c * c + d * d) * size.value * size.value
            if squared < MIN_SIZE_PT * MIN_SIZE_PT:
                yield obj, outer, "tiny", squared ** 0.5
            elif red.value >= PALE and green.value >= PALE and blue.value >= PALE:
                yield obj, outer, "pale", (red.value, green.value, blue.value)
        elif kind == form:
            yield from _candidates(obj, pdfium_c.FPDFFormObj_CountObjects, pdfium_c.FPDFFormObj_GetObject,
                                   _matrix(obj, outer))


def _matrix(obj, outer: tuple) -> tuple:
    """The object's matrix followed by `outer` (a, b, c, d, e, f)."""
    m = _MATRIX
    pdfium_c.FPDFPageObj_GetMatrix(obj, _MATRIX_REF)
    a, b, c, d, e, f = outer
    return (m.a * a + m.b * c, m.a * b + m.b * d, m.c * a + m.d * c, m.c * b + m.d * d,
            m.e * a + m.f * c + e, m.e * b + m.f * d + f)


def _em_height(obj) -> float:
    """How tall the font draws at size 1 (ascent - descent) when that is over 2, else 1: a Type 3
    font whose matrix draws glyphs 10 units tall at 1 Tf is judged by what it draws."""
    font, ascent, descent = pdfium_c.FPDFTextObj_GetFont(obj), ctypes.c_float(), ctypes.c_float()
    if not (pdfium_c.FPDFFont_GetAscent(font, 1.0, ctypes.byref(ascent))
            and pdfium_c.FPDFFont_GetDescent(font, 1.0, ctypes.byref(descent))):
        return 1.0
    height = ascent.value - descent.value
    return height if height > 2 else 1.0


def _page_box(obj, outer: tuple) -> tuple[float, float, float, float]:
    """The text object's box (left, bottom, right, top) on the page: its box in its parent's space
    taken through `outer`."""
    box = [ctypes.c_float() for _ in range(4)]
    pdfium_c.FPDFPageObj_GetBounds(obj, *(ctypes.byref(v) for v in box))
    return pdfium.PdfMatrix(*outer).on_rect(*(v.value for v in box))


def _stands_out(page: pdfium.PdfPage, pixels: np.ndarray, colour: tuple, box: tuple) -> bool:
    """Whether text of `colour` differs from enough of the rendered pixels under its `box`."""
    height, width = pixels.shape[:2]
    corners = [_to_device(page, width, height, x, y) for x, y in ((box[0], box[1]), (box[2], box[3]))]
    (x0, x1), (y0, y1) = (sorted(v) for v in zip(*corners))
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(max(x1, x0 + 1), width), min(max(y1, y0 + 1), height)
    under = pixels[y0:y1, x0:x1].astype(int)
    if under.size == 0:                          # outside the rendered box: not seen
        return False
    differ = np.abs(under - np.array(colour)).max(axis=2) > SAME_COLOUR
    return differ.mean() >= SEEN_SHARE


def _to_device(page: pdfium.PdfPage, width: int, height: int, x: float, y: float) -> tuple[int, int]:
    dx, dy = ctypes.c_int(), ctypes.c_int()
    pdfium_c.FPDF_PageToDevice(page.raw, 0, 0, width, height, 0, x, y, ctypes.byref(dx), ctypes.byref(dy))
    return dx.value, dy.value
