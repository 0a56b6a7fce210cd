"""OCR for PDF pages without a text layer (scans), with RapidOCR (PP-OCR models in ONNX, shipped in
the wheel: no download) on onnxruntime. Pages are rendered with PDFium at `OCR_SCALE` x 72 dpi.

RapidOCR returns text lines with boxes in top-to-bottom order, which interleaves the lines of a
multi-column page; `reading_order` puts columns one after the other (a gutter is an x band no line
crosses; a line that spans a gutter, such as a title, ends the columns above it).
"""
from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache

from ingest.normalize import normalize_text

log = logging.getLogger(__name__)

OCR_SCALE = 2.0          # 144 dpi: word recall 0.99-1.0 in bench/ocr.py (72 dpi: 0.94-0.99)
OCR_NAME = "RapidOCR, PP-OCR models"
# What OCR reads on a page (its lines and their boxes) changes with it: one more whenever a change
# here (rendering, orientation) makes OCR read other lines, so pages read before are OCR'd again.
# Reading order and normalisation are applied to kept lines again (`OcrPage.text`): no bump for them.
OCR_VERSION = 1
_MIN_GUTTER = 0.01       # a gutter is at least 1% of the page width with no line crossing it
_lock = threading.Lock()


@dataclass(frozen=True)
class Line:
    text: str
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def height(self) -> float:
        return self.y1 - self.y0


@lru_cache(maxsize=1)
def ocr_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("rapidocr", "onnxruntime"))


@lru_cache(maxsize=2)
def _engine(threads: int):
    from rapidocr import RapidOCR
    return RapidOCR(params={"Global.log_level": "error", "EngineConfig.onnxruntime.intra_op_num_threads": threads})


_ONE_CORE: ContextVar[bool] = ContextVar("ocr_one_core", default=False)


@contextmanager
def one_core() -> Iterator[None]:
    """OCR in this context on one core: onnxruntime's work in the calling thread alone (for
    background work, so the other cores stay for questions; the lines read are the same)."""
    token = _ONE_CORE.set(True)
    try:
        yield
    finally:
        _ONE_CORE.reset(token)


def ocr_threads() -> int | None:
    """How many threads OCR uses here: 1 inside `one_core()`, else None (onnxruntime's default: a core each)."""
    return 1 if _ONE_CORE.get() else None


def _reader():
    return _engine(ocr_threads() or -1)


@lru_cache(maxsize=1)
def ocr_engine() -> str:
    """Who reads a page's lines: this module's OCR_VERSION and the OCR packages' versions (RapidOCR
    ships its models in its wheel). Lines kept from another engine are not reused."""
    from importlib.metadata import version
    return f"v{OCR_VERSION}, rapidocr {version('rapidocr')}, onnxruntime {version('onnxruntime')}"


@dataclass(frozen=True)
class OcrPage:
    """What OCR read on one page: its lines in the page's upright frame, that frame's width, and
    who read them from what image (`engine`). Kept with a stored page, so that reading the file
    again need not OCR the page again while the engine is the same, and the viewer marks a passage
    on these lines (`in_image`). `turns`: quarter turns clockwise from the image read to the upright
    frame (`upright_lines`); None in lines kept before it was recorded."""

    engine: str
    width: float
    lines: tuple[Line, ...]
    turns: int | None = None

    @property
    def text(self) -> str:
        return page_text(self.lines, self.width)

    def to_json(self) -> dict:
        return {"engine": self.engine, "width": self.width, "turns": self.turns,
                "lines": [[ln.text, ln.x0, ln.y0, ln.x1, ln.y1] for ln in self.lines]}

    @classmethod
    def from_json(cls, value: dict) -> "OcrPage":
        return cls(value["engine"], value["width"], tuple(Line(*line) for line in value["lines"]),
                   value.get("turns"))

    @classmethod
    def read(cls, image, engine: str) -> "OcrPage":
        """Recognise a page image (numpy [H, W, 3]) rendered as `engine` says."""
        lines, turns = upright_lines(image)
        return cls(engine, image.shape[1 if turns % 2 == 0 else 0], tuple(lines), turns)

    def rows_in(self, size: tuple[int, int]) -> list[list[Line]] | None:
        """The lines in reading order (as `text` has them), boxes in the pixels of the same page
        drawn upright-as-shown at `size` (width, height), at any scale; None when `turns` is unknown."""
        if self.turns is None or not self.width:
            return None
        scale = size[0 if self.turns % 2 == 0 else 1] / self.width
        return [[in_image(Line(ln.text, ln.x0 * scale, ln.y0 * scale, ln.x1 * scale, ln.y1 * scale),
                          self.turns, size) for ln in row] for row in reading_order(self.lines, self.width)]


def known_page(known: Mapping[int, OcrPage] | None, number: int, engine: str) -> OcrPage | None:
    """What `engine` read on page `number` before, if `known` has it."""
    page = (known or {}).get(number)
    return page if page is not None and page.engine == engine else None


def recognise(image) -> list[Line]:
    """Text lines of a rendered page (numpy [H, W, 3], as PDFium renders it) in RapidOCR's order,
    boxes in pixels."""
    with _lock:                                      # one recognition at a time (2 cores; shared engine)
        out = _reader()(image, use_det=True, use_cls=True, use_rec=True)   # (a call's flags persist)
    lines = []
    for text, box in zip(out.txts or (), out.boxes if out.boxes is not None else ()):
        xs, ys = [float(p[0]) for p in box], [float(p[1]) for p in box]
        if text and text.strip():
            lines.append(Line(text.strip(), min(xs), min(ys), max(xs), max(ys)))
    return lines


def upright_lines(image) -> tuple[list[Line], int]:
    """Text lines of a page image in the page's upright frame, and how many quarter turns clockwise
    that frame is from the image (0-3; `in_image` maps a line back). A page scanned sideways (most
    text in tall boxes) is turned a quarter and read again, kept if it reads more characters. On a
    page upside down RapidOCR lists the lines bottom to top, right to left, and garbles those its
    line classifier is unsure of: when most of the longest lines are classified as turned 180
    degrees, the page is turned and read again (a second pass only for such pages)."""
    import numpy as np

    lines, turns = recognise(image), 0
    if _tall_share(lines) > 0.5:
        turned = np.ascontiguousarray(np.rot90(image, -1))    # a quarter clockwise; upside down is next
        again = recognise(turned)
        if _chars(again) >= _chars(lines):                  # (vertical writing reads better as it is)
            image, lines, turns = turned, again, 1
    if _upside_down(image, lines):
        image = np.ascontiguousarray(image[::-1, ::-1])
        lines, turns = recognise(image), turns + 2
    return lines, turns


def in_image(line: Line, turns: int, size: tuple[int, int]) -> Line:
    """A line of `upright_lines` with its box in the frame of the image read, of `size` (width, height)."""
    w, h = size
    corners = [[(x, y), (y, h - x), (w - x, h - y), (w - y, x)][turns % 4]
               for x, y in ((line.x0, line.y0), (line.x1, line.y1))]
    (xa, ya), (xb, yb) = corners
    return Line(line.text, min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb))


def _tall_share(lines: Sequence[Line]) -> float:
    """The share of the text's box area in boxes at least twice as tall as wide (vertical lines)."""
    areas = [((ln.x1 - ln.x0) * ln.height, ln.height >= 2 * (ln.x1 - ln.x0)) for ln in lines]
    total = sum(area for area, _ in areas)
    return sum(area for area, tall in areas if tall) / total if total else 0.0


def _chars(lines: Sequence[Line]) -> int:
    return sum(len(ln.text) for ln in lines)


_ORIENTATION_SAMPLE = 15     # the longest lines the page's orientation is judged by


def _upside_down(image, lines: Sequence[Line]) -> bool:
    """Whether RapidOCR's line classifier finds most of the longest lines turned 180 degrees
    (score-weighted votes)."""
    longest = sorted(lines, key=lambda ln: ln.x0 - ln.x1)[:_ORIENTATION_SAMPLE]
    vote = 0.0
    with _lock:
        for ln in longest:
            crop = image[int(ln.y0):int(ln.y1) + 1, int(ln.x0):int(ln.x1) + 1]
            out = _reader()(crop, use_det=False, use_cls=True, use_rec=False)
            for label, score in getattr(out, "cls_res", None) or ():
                vote += float(score) if label == "180" else -float(score)
    return vote > 0


def reading_order(lines: Sequence[Line], width: float) -> list[list[Line]]:
    """Group lines into text rows in reading order: column by column inside each band of the page
    between lines that cross or sit in a gutter (titles, captions, a centred page number); each row
    is the lines side by side on one baseline, left to right."""
    if not lines:
        return []
    middles = [(start + end) / 2 for start, end in _gutters(lines, width)]

    def column(line: Line) -> int | None:            # None: the line crosses the middle of a gutter
        if any(line.x0 < m < line.x1 for m in middles):
            return None
        return sum(1 for m in middles if m <= line.x0)

    rows: list[list[Line]] = []
    band: dict[int, list[Line]] = {}

    def flush() -> None:
        for col in sorted(band):
            rows.extend(_rows(band[col]))
        band.clear()

    for line in sorted(lines, key=lambda ln: (ln.y0, ln.x0)):
        col = column(line)
        if col is None:
            flush()
            rows.append([line])
        else:
            band.setdefault(col, []).append(line)
    flush()
    return rows


def _gutters(lines: Sequence[Line], width: float) -> list[tuple[float, float]]:
    """(start, end) x intervals between 10% and 90% of the width, at least 1% wide, that (almost) no
    narrow line covers and that split the page into columns of text (see `_is_text_column`)."""
    narrow = [ln for ln in lines if ln.x1 - ln.x0 < 0.6 * width]
    if len(narrow) < 6:
        return []
    bins = 200
    covered = [0] * bins
    for ln in narrow:
        for b in range(max(0, int(ln.x0 / width * bins)), min(bins, int(ln.x1 / width * bins) + 1)):
            covered[b] += 1
    stray = max(1, len(narrow) // 20)                # a centred page number may sit in a gutter
    candidates, run_start = [], None
    lo, hi = int(0.1 * bins), int(0.9 * bins)
    for b in range(lo, hi + 1):                      # b == hi closes a run still open
        clear = b < hi and covered[b] <= stray
        if clear and run_start is None:
            run_start = b
        elif not clear and run_start is not None:
            if b - run_start >= _MIN_GUTTER * bins:
                candidates.append((run_start / bins * width, b / bins * width))
            run_start = None
    def centre(gutter: tuple[float, float]) -> float:
        return (gutter[0] + gutter[1]) / 2

    kept: list[tuple[float, float]] = []
    for i, gutter in enumerate(candidates):          # a real gutter has a column of text on each side
        left = centre(kept[-1]) if kept else 0.0
        right = centre(candidates[i + 1]) if i + 1 < len(candidates) else width
        if _is_text_column(narrow, left, centre(gutter)) and _is_text_column(narrow, centre(gutter), right):
            kept.append(gutter)
    return kept


def _is_text_column(lines: Sequence[Line], left: float, right: float) -> bool:
    """At least 3 lines lie within [left, right] (page edge or gutter centre on each side) and they
    fill it (median width over half of it): prose in a column does, a table's short cells do not."""
    widths = sorted(ln.x1 - ln.x0 for ln in lines if left <= ln.x0 and ln.x1 <= right)
    return len(widths) >= 3 and widths[len(widths) // 2] > 0.5 * (right - left)


def _rows(lines: list[Line]) -> list[list[Line]]:
    """Lines of one column, top to bottom, those whose vertical spans overlap by half joined in a row."""
    rows: list[list[Line]] = []
    for line in sorted(lines, key=lambda ln: (ln.y0, ln.x0)):
        last = rows[-1][-1] if rows else None
        if last is not None and min(last.y1, line.y1) - max(last.y0, line.y0) > 0.5 * min(last.height, line.height):
            rows[-1].append(line)
        else:
            rows.append([line])
    return [sorted(row, key=lambda ln: ln.x0) for row in rows]


def page_text(lines: Sequence[Line], width: float) -> str:
    """The page's text in reading order: one text row per line, a blank line between columns'
    paragraphs is not guessed."""
    return normalize_text("\n".join(" ".join(ln.text for ln in row) for row in reading_order(lines, width)))


def ocr_pages(data: bytes, numbers: Sequence[int], password: str | None = None,
              progress: Callable[[int, int], None] | None = None,
              text_pages: Collection[int] = (), known: Mapping[int, OcrPage] | None = None) -> dict[int, OcrPage]:
    """What OCR reads on the given 1-based physical pages ({} when OCR is unavailable). A page
    without an image is blank and skipped, unless it is in `text_pages` (text drawn with fonts). A
    page that this engine read before (`known`: page number -> OcrPage) is not rendered nor read again."""
    if not ocr_available() or not numbers:
        return {}
    import pypdfium2 as pdfium

    from ingest.images import render_scale
    from ingest.pdf import PDFIUM_LOCK

    import pypdfium2.raw as pdfium_c

    engine = pdf_ocr_engine()
    found: dict[int, OcrPage] = {}
    for done, number in enumerate(numbers, start=1):
        before = known_page(known, number, engine)
        with PDFIUM_LOCK:                            # PDFium is not thread-safe: render under the lock
            pdf = pdfium.PdfDocument(data, password=password)
            try:
                page = pdf[number - 1]
                has_image = any(True for _ in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE]))
                drawn = has_image or number in text_pages
                render = drawn and before is None
                image = page.render(scale=render_scale(page, OCR_SCALE)).to_numpy() if render else None   # [H, W, 3]
            finally:
                pdf.close()
        if drawn:                                    # a blank page has no image: nothing to read
            found[number] = before or OcrPage.read(image, engine)
        if progress is not None:
            progress(done, len(numbers))
    return found


def pdf_ocr_engine() -> str:
    """`ocr_engine()` reading PDF pages rendered at OCR_SCALE."""
    return f"{ocr_engine()}, PDF page at {OCR_SCALE * 72:g} dpi"


_SCAN_COVER = 0.5        # a page is a scan when images cover at least half of it
_DETECT_SCALE = 1.0      # 72 dpi for the text-detection check (RapidOCR resizes the input itself)


def stamped_scans(data: bytes, texts: Mapping[int, str], password: str | None = None,
                  covers: Mapping[int, float] | None = None, known: Mapping[int, OcrPage] | None = None) -> list[int]:
    """Of the given pages that have a few words of text (1-based number -> text), the scans that carry
    them (a Bates number, "Page 2 of 9"): images cover half the page or more, and text detection finds
    more lines on it than the text layer has (a slide's background picture under its title does not
    qualify). Detection only: about a third of the time of a full recognition. `covers`: the pages'
    image cover as read_pdf measured it (PdfContent.image_covers); a page it has under half covered
    is ruled out without opening the PDF again. A page that this engine OCR'd before (`known`, as in
    `ocr_pages`) was found a scan then: it is one without a detection."""
    covers = covers or {}
    texts = {n: text for n, text in texts.items() if covers.get(n, _SCAN_COVER) >= _SCAN_COVER}
    if not texts or not ocr_available():
        return []
    engine = pdf_ocr_engine()
    seen = [n for n in texts if known_page(known, n, engine) is not None]
    texts = {n: text for n, text in texts.items() if n not in seen}
    return sorted(seen + _detected_scans(data, texts, password)) if texts else seen


def _detected_scans(data: bytes, texts: Mapping[int, str], password: str | None) -> list[int]:
    """Of the given pages (number -> text), those images cover half of, on which text detection finds
    more lines than the text has."""
    import pypdfium2 as pdfium

    from ingest.images import render_scale
    from ingest.pdf import PDFIUM_LOCK, image_cover

    with PDFIUM_LOCK:
        pdf = pdfium.PdfDocument(data, password=password)
    try:
        scans = []
        for number, text in texts.items():
            with PDFIUM_LOCK:                        # page by page: a render elsewhere waits one page
                page = pdf[number - 1]
                try:
                    covered = image_cover(page) >= _SCAN_COVER
                    image = page.render(scale=render_scale(page, _DETECT_SCALE)).to_numpy() if covered else None
                finally:
                    page.close()
            if image is not None and _detected_lines(image) > 2 * len(text.splitlines()) + 2:
                scans.append(number)
        return scans
    finally:
        with PDFIUM_LOCK:
            pdf.close()


def _detected_lines(image) -> int:
    """How many text lines RapidOCR's detector finds on an image (no recognition)."""
    with _lock:
        out = _reader()(image, use_det=True, use_cls=False, use_rec=False)
    boxes = getattr(out, "boxes", None)
    return 0 if boxes is None else len(boxes)
