"""Text a reader cannot see because of what is drawn with it: under an opaque box drawn over it (a
redaction done by drawing a black box over the text, in the content or as a rectangle comment, which
a viewer shows as a box while the text stays in the file) or in the colour of a box drawn under it
(black on black). PDFium's text page reads it all the same. ingest/pdf_hidden.py does white on
white, tiny and transparent text; this module the rest, by the same kind of render check:

- cheap first: only a page with a filled box (or a shape, stamp or typed-text annotation) at least a
  line tall is looked at further, and only a text object that such a box overlaps, drawn after it,
  or covers by half, under it in nearly its colour, is a candidate;
- the page is rendered with and without the candidates, with and without the boxes (`_changes`); a
  candidate that draws pixels but shows none is not seen and is marked inactive (no text page made
  after this reads it);
- a candidate that stays partly seen (a box over a few words of a line) loses the characters
  centred under a box drawn over it that draw but do not show (and a space after one):
  `Covered.hidden_chars`, which the callers leave out of the text page's text.

Text under an image is read: a scan's OCR layer is often drawn in plain text under the page's
picture (which shows the same words). PDFIUM_LOCK is held by the callers (ingest/pdf.py,
app/page_images.py).
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from ingest.images import render_scale
from ingest.pdf_annotations import shown_annotations
from ingest.pdf_native import cover_counts

MIN_BOX_PT = 4.0         # a box narrower or lower than this (a rule, an underline) covers no line
COVERED_SHARE = 0.5      # share of a text object's box that a box under it must cover (same colour)
SAME_COLOUR = 40         # largest channel difference of colours a reader does not tell apart
RENDER_SCALE = 1.0       # 72 dpi: a comma shows (only a page with a candidate is rendered)
MIN_CHANGED = 2          # pixels that must change for a text object to count as seen

_TEXT, _PATH, _FORM = pdfium_c.FPDF_PAGEOBJ_TEXT, pdfium_c.FPDF_PAGEOBJ_PATH, pdfium_c.FPDF_PAGEOBJ_FORM


def _bare(fn, restype):
    """The same PDFium function without ctypes' per-argument conversion (a third of the cost of this
    module's walk over every object): callers pass only PDFium handles, ints and the prebuilt
    pointers below."""
    return ctypes.CFUNCTYPE(restype)(ctypes.cast(fn, ctypes.c_void_p).value)


_GET_TYPE = _bare(pdfium_c.FPDFPageObj_GetType, ctypes.c_int)
_PAGE_OBJECT = _bare(pdfium_c.FPDFPage_GetObject, pdfium_c.FPDF_PAGEOBJECT)
_FORM_OBJECT = _bare(pdfium_c.FPDFFormObj_GetObject, pdfium_c.FPDF_PAGEOBJECT)
_KEPT_MODES = {pdfium_c.FPDF_TEXTRENDERMODE_INVISIBLE, pdfium_c.FPDF_TEXTRENDERMODE_CLIP}


@dataclass
class Covered:
    """What `hide_covered_text` found on a page: `hidden` text objects marked inactive, and for text
    objects only partly hidden, the boxes drawn over them and which pixels their drawing changes."""
    hidden: int = 0
    parts: dict[int, list[tuple]] = field(default_factory=dict)   # object address -> page boxes over it
    seen: np.ndarray | None = None       # pixels drawing the candidates changes, as the page is shown
    ink: np.ndarray | None = None        # ... with the boxes and annotations not drawn

    def hidden_chars(self, page: pdfium.PdfPage, textpage: pdfium.PdfTextPage) -> set[int]:
        """Indices (into `textpage`) of the characters of partly hidden objects that a reader
        cannot see: centred under a box drawn over them, drawing pixels of their own where nothing
        of them shows. Under PDFIUM_LOCK."""
        if not self.parts:
            return set()
        hidden = set()
        for index in range(textpage.count_chars()):
            if index - 1 in hidden and pdfium_c.FPDFText_GetUnicode(textpage.raw, index) == 0x20:
                hidden.add(index)                 # a space (no ink) goes with the word before it
                continue
            boxes = self.parts.get(ctypes.cast(pdfium_c.FPDFText_GetTextObject(textpage.raw, index), ctypes.c_void_p).value)
            if not boxes or chr(pdfium_c.FPDFText_GetUnicode(textpage.raw, index)).isspace():
                continue
            left, bottom, right, top = textpage.get_charbox(index)
            x, y = (left + right) / 2, (bottom + top) / 2
            if not any(b[0] <= x <= b[2] and b[1] <= y <= b[3] for b in boxes):
                continue
            x0, y0, x1, y1 = _pixel_box(page, self.seen.shape, (left, bottom, right, top), grow=0)
            if self.ink[y0:y1, x0:x1].any() and not self.seen[y0:y1, x0:x1].any():    # its own box only:
                hidden.add(index)                                                     # a line above may show
        return hidden


def hide_covered_text(page: pdfium.PdfPage, shown: list[tuple[int, int]] | None = None) -> Covered:
    """Mark the page's text objects hidden under a box drawn over them, or drawn in the colour of
    the box under them, inactive; what was found, with the characters of objects only partly
    hidden to leave out of the text (`Covered.hidden_chars`). `shown`: the page's
    pdf_annotations.shown_annotations, when the caller has them. Under PDFIUM_LOCK."""
    if not hasattr(pdfium_c, "FPDFPageObj_SetIsActive"):
        return Covered()
    counts = cover_counts(page.raw, MIN_BOX_PT - 1e-3)      # in C (pdf_native): most pages end here
    if counts is not None and not counts[0]:
        return Covered()
    annotated = _annotation_boxes(page, shown_annotations(page) if shown is None else shown)
    if counts is not None and not counts[1] and not annotated:
        return Covered()
    texts: list = []                               # (drawing order, text object, its parent's matrix to the page)
    boxes: list = []                   # (drawing order, page box, fill RGB or None, path object or None)
    _collect(page.raw, pdfium_c.FPDFPage_CountObjects, _PAGE_OBJECT, None, texts, boxes)
    if not texts:
        return Covered()
    boxes += [(len(texts) + len(boxes), box, None, None) for box in annotated]     # drawn last
    if not boxes:
        return Covered()
    candidates = _candidates(texts, boxes)
    if not candidates:
        return Covered()
    seen, ink = _changes(page, [obj for obj, _, _ in candidates], [b[3] for b in boxes if _active(b[3])])
    found = Covered(seen=seen, ink=ink)
    for obj, box, over in candidates:
        x0, y0, x1, y1 = _pixel_box(page, seen.shape, box)
        if ink[y0:y1, x0:x1].sum() >= MIN_CHANGED and seen[y0:y1, x0:x1].sum() < MIN_CHANGED:
            found.hidden += 1                     # it draws, but nothing of it shows
            continue
        pdfium_c.FPDFPageObj_SetIsActive(obj, True)
        if over:
            found.parts[ctypes.cast(obj, ctypes.c_void_p).value] = over
    return found


def _changes(page: pdfium.PdfPage, candidates: list, paths: list) -> tuple[np.ndarray, np.ndarray]:
    """Which pixels drawing the candidate text objects changes: as the page is shown (`seen`), and
    with the big boxes (`paths`) and annotations not drawn (`ink`: where the text draws at all, so a
    glyph too small for the render is not taken for hidden). The candidates are left inactive."""
    def off(objects: list, active: bool = False) -> None:
        for obj in objects:
            pdfium_c.FPDFPageObj_SetIsActive(obj, active)

    shown = _render(page)
    off(paths)
    bare = _render(page, annotations=False)
    off(candidates)
    ink = np.abs(bare - _render(page, annotations=False)).max(axis=2) > SAME_COLOUR
    off(paths, active=True)
    seen = np.abs(shown - _render(page)).max(axis=2) > SAME_COLOUR
    return seen, ink


def _collect(parent, count, get, outer: pdfium.PdfMatrix | None, texts: list, boxes: list) -> None:
    """Add the text objects and the big boxes under `parent` (a page: `outer` None, or a form XObject
    whose matrix to the page is `outer`) to `texts` and `boxes`, numbered in drawing order, into nested forms.
    One raw call per object (this runs for every object of every page)."""
    get_type = _GET_TYPE
    for i in range(count(parent)):
        obj = get(parent, i)
        kind = get_type(obj)
        if kind == _TEXT:
            texts.append((len(texts) + len(boxes), obj, outer))
        elif kind == _FORM:
            matrix = pdfium_c.FS_MATRIX()
            pdfium_c.FPDFPageObj_GetMatrix(obj, matrix)
            inner = pdfium.PdfMatrix(matrix.a, matrix.b, matrix.c, matrix.d, matrix.e, matrix.f)
            inner = inner if outer is None else inner.multiply(outer)
            _collect(obj, pdfium_c.FPDFFormObj_CountObjects, _FORM_OBJECT, inner, texts, boxes)
        elif kind == _PATH and (box := _big_box(obj, outer)) is not None:
            boxes.append((len(texts) + len(boxes), box, _fill(obj), obj))


# out-parameters, reused (every call holds PDFIUM_LOCK), as pointers for the bare functions
_BOX = [ctypes.c_float() for _ in range(4)]
_BOX_REFS = [ctypes.pointer(v) for v in _BOX]
_RGBA = [ctypes.c_uint() for _ in range(4)]
_RGBA_REFS = [ctypes.pointer(v) for v in _RGBA]
_GET_BOUNDS = _bare(pdfium_c.FPDFPageObj_GetBounds, ctypes.c_int)
_GET_FILL = _bare(pdfium_c.FPDFPageObj_GetFillColor, ctypes.c_int)


def _bounds(obj, outer: pdfium.PdfMatrix | None) -> tuple[float, float, float, float]:
    """The object's box (left, bottom, right, top) on the page (`outer`: its parent's matrix to the
    page, None on the page itself)."""
    _GET_BOUNDS(obj, *_BOX_REFS)
    box = (_BOX[0].value, _BOX[1].value, _BOX[2].value, _BOX[3].value)
    return box if outer is None else outer.on_rect(*box)


def _big_box(obj, outer: pdfium.PdfMatrix | None):
    """The page box of a filled path at least MIN_BOX_PT both ways, else None."""
    fill_mode, stroke = ctypes.c_int(), ctypes.c_int()
    if not pdfium_c.FPDFPath_GetDrawMode(obj, ctypes.byref(fill_mode), ctypes.byref(stroke)) or not fill_mode.value:
        return None
    box = _bounds(obj, outer)
    return box if box[2] - box[0] >= MIN_BOX_PT and box[3] - box[1] >= MIN_BOX_PT else None


def _fill(obj) -> tuple[int, int, int] | None:
    """The object's fill colour (RGB), None when it has none (a pattern)."""
    if not _GET_FILL(obj, *_RGBA_REFS):
        return None
    return _RGBA[0].value, _RGBA[1].value, _RGBA[2].value


# annotations a viewer draws as a shape over the page: a filled rectangle comment over text is a
# common redaction done wrong, typed text on an opaque box ("whiteout") another
_COVERING = {pdfium_c.FPDF_ANNOT_SQUARE, pdfium_c.FPDF_ANNOT_CIRCLE, pdfium_c.FPDF_ANNOT_POLYGON,
             pdfium_c.FPDF_ANNOT_FREETEXT, pdfium_c.FPDF_ANNOT_STAMP}


def _annotation_boxes(page: pdfium.PdfPage, shown: list[tuple[int, int]]) -> list[tuple]:
    """The page boxes of the shapes and stamps annotated on the page (drawn over its content) at least
    MIN_BOX_PT both ways, of its `shown` annotations (pdf_annotations.shown_annotations: no links, none
    a viewer hides); whether they hide anything is for the render to say."""
    found = []
    for index, kind in shown:
        if kind not in _COVERING:
            continue
        annot = pdfium_c.FPDFPage_GetAnnot(page.raw, index)
        try:
            rect = pdfium_c.FS_RECTF()
            if pdfium_c.FPDFAnnot_GetRect(annot, rect):
                left, right = sorted((rect.left, rect.right))
                bottom, top = sorted((rect.bottom, rect.top))
                if right - left >= MIN_BOX_PT and top - bottom >= MIN_BOX_PT:
                    found.append((left, bottom, right, top))
        finally:
            pdfium_c.FPDFPage_CloseAnnot(annot)
    return found


def _candidates(texts: list, boxes: list) -> list:
    """(text object, its page box, the boxes drawn over it) for each text object that a big box
    overlaps, drawn after it, or covers by COVERED_SHARE, under it in nearly its colour, so the render
    decides; not render mode 3 (a scan's OCR layer) or 7. Overlaps first with numpy (a chart has
    thousands of boxes)."""
    text_box = np.array([_bounds(obj, outer) for _, obj, outer in texts])
    box = np.array([b[1] for b in boxes])
    found = []
    for start in range(0, len(texts), _CHUNK):
        t = text_box[start:start + _CHUNK, None, :]
        overlap = (box[:, 0] < t[..., 2]) & (t[..., 0] < box[:, 2]) & (box[:, 1] < t[..., 3]) & (t[..., 1] < box[:, 3])
        for row in np.flatnonzero(overlap.any(axis=1)):
            order, obj, _ = texts[start + row]
            text, colour = tuple(text_box[start + row]), False        # its fill, read when first needed
            over, under = [], False
            for b in np.flatnonzero(overlap[row]):
                box_order, page_box = boxes[b][:2]
                if box_order > order:
                    over.append(page_box)
                elif not under and _covered(text, page_box) >= COVERED_SHARE:
                    colour = _fill(obj) if colour is False else colour
                    under = _same_colour(colour, boxes[b])
            if (over or under) and pdfium_c.FPDFTextObj_GetTextRenderMode(obj) not in _KEPT_MODES and _active(obj):
                found.append((obj, text, over))
    return found


_CHUNK = 1000                                    # text rows per numpy step: bounded memory


def _active(obj) -> bool:
    """Whether the object is drawn (not already left out: a layer turned off, unseen text)."""
    active = pdfium_c.FPDF_BOOL()
    return obj is not None and bool(pdfium_c.FPDFPageObj_GetIsActive(obj, ctypes.byref(active))) and bool(active.value)


def _same_colour(colour: tuple[int, int, int] | None, box: tuple) -> bool:
    """Whether a text object filled in `colour` (its `_fill`) is nearly the colour of the box."""
    box_colour = box[2]
    return colour is not None and box_colour is not None and \
        max(abs(p - q) for p, q in zip(colour, box_colour)) <= SAME_COLOUR


def _covered(text: tuple, box: tuple) -> float:
    """The share of `text`'s area inside `box` (both left, bottom, right, top)."""
    width = min(text[2], box[2]) - max(text[0], box[0])
    height = min(text[3], box[3]) - max(text[1], box[1])
    area = (text[2] - text[0]) * (text[3] - text[1])
    return width * height / area if width > 0 and height > 0 and area > 0 else 0.0


def _render(page: pdfium.PdfPage, annotations: bool = True) -> np.ndarray:
    bitmap = page.render(scale=render_scale(page, RENDER_SCALE), may_draw_forms=False, draw_annots=annotations)
    return np.asarray(bitmap.to_pil().convert("RGB"), dtype=np.int16)


def _pixel_box(page: pdfium.PdfPage, shape: tuple, box: tuple, grow: int = 1) -> tuple[int, int, int, int]:
    """The rendered image's pixels (x0, y0, x1, y1) of a page box, `grow` pixels wider each way (at
    least one pixel)."""
    height, width = shape[:2]
    xs, ys = [], []
    for x, y in ((box[0], box[1]), (box[2], box[3])):
        dx, dy = ctypes.c_int(), ctypes.c_int()
        pdfium_c.FPDF_PageToDevice(page.raw, 0, 0, width, height, 0, x, y, ctypes.byref(dx), ctypes.byref(dy))
        xs.append(dx.value)
        ys.append(dy.value)
    return (max(min(xs) - grow, 0), max(min(ys) - grow, 0), min(max(xs) + grow + 1, width),
            min(max(ys) + grow + 1, height))
