"""PDF pages, printed labels, outline and title with pypdfium2 (PDFium).

Why PDFium for everything here (measured, see docs/ingest.md and bench/ingest.py):
- text: it found the evidence on the right page for all 47 held-out questions (pypdf's
  `extract_text()` missed the Arabic and some German) and runs ~20x faster;
- labels and outline: identical to pypdf's on every corpus PDF, from the same open document, while
  pypdf has to load its whole page tree first (as slow as PDFium's whole text extraction on
  gnuplot.pdf, which would break the 1.3x overhead target);
- encryption: PDFium opens AES-256 files itself; pypdf needs the `cryptography` package for them;
- damaged files: pypdf (strict=False) recovered nothing that PDFium did not.
pypdf reads only the catalog's optional content settings (`hidden_layers`), which PDFium has no API for.

PDFium is not thread-safe, so every call into it holds `PDFIUM_LOCK`; other packages that use
pypdfium2 in the same process should take the same lock.
"""
from __future__ import annotations

import ctypes
import io
import logging
import math
import re
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from ingest.errors import IngestError
from ingest.normalize import HYPHEN_MARK, normalize_text, resolve_hyphens
from ingest.pdf_annotations import READ_NAMES, annotation_text, form_notes, init_forms, shown_annotations
from ingest.pdf_covered import hide_covered_text
from ingest.pdf_hidden import hide_unseen_text
from ingest.pdf_native import angle_votes, chars_inside, names_present

PDFIUM_LOCK = threading.RLock()
log = logging.getLogger(__name__)

_PERM_COPY = 1 << 4          # PDF permission bit 5: copy or otherwise extract text and graphics
Progress = Callable[[int, int], None]


@dataclass
class PdfContent:
    texts: list[str]                                   # normalised text per physical page
    labels: list[str | None]                           # printed label per physical page
    outline: list[tuple[str, int, int]]                # (title, level, 1-based page)
    metadata_title: str | None
    notes: list[str] = field(default_factory=list)
    # share of the page under images (`image_cover`), for the pages read with text that may end up
    # shorter than read_pdf's `cover_under` characters (1-based page -> share): measured while the page
    # was open, so ingest/ocr.stamped_scans need not open the PDF again to rule them out
    image_covers: dict[int, float] = field(default_factory=dict)


def looks_like_pdf(head: bytes) -> bool:
    """True when the PDF header appears in the first 1024 bytes (where readers accept it)."""
    return b"%PDF-" in head[:1024]


def read_pdf(data: bytes, path: str | Path, *, password: str | None = None,
             progress: Progress | None = None, max_pages: int | None = None,
             timeout_s: float | None = None, cover_under: int = 0) -> PdfContent:
    """Extract a PDF held in `data` (the bytes of `path`, which only names the file in errors);
    the pages whose text may be shorter than `cover_under` characters get their `image_cover`.

    PDFium is entered page by page under `PDFIUM_LOCK`, so a page render elsewhere in the app waits
    at most one page. Raises IngestError: `encrypted` (password missing or wrong), `corrupt`
    (PDFium cannot parse it, or extraction took more than `timeout_s` of CPU time), `too_large` (over `max_pages`).
    """
    # The bound is on this thread's CPU time: the work a PDF costs. Wall time also counts a busy
    # machine and waits for PDFIUM_LOCK (a page drawn for the UI), which refused a sound 4000-page
    # PDF as "malformed" after 120 s of which 36 were reading (load 11 on 2 cores).
    deadline = None if timeout_s is None else time.thread_time() + timeout_s
    with PDFIUM_LOCK:
        pdf = _open(data, path, password)
    try:
        may_name_layers, annotated, labelled = _file_holds(data, [_names_layers, _names_annotation, _names_labels])
        return _extract(pdf, path, progress, max_pages, deadline, timeout_s,
                        hidden_layers(data, password, may_name_layers), cover_under, annotated, labelled)
    finally:
        with PDFIUM_LOCK:
            pdf.close()


# PDFium's reasons for not opening a file, in words (its own text reads "Failed to load document
# (PDFium: Data format error).")
_OPEN_ERRORS = {pdfium_c.FPDF_ERR_FORMAT: "its structure is broken (the end of the file may be missing)",
                pdfium_c.FPDF_ERR_FILE: "the file cannot be read", pdfium_c.FPDF_ERR_PAGE: "its pages cannot be found",
                # what PDFium says of a PDF whose page tree is empty (/Count 0: pypdf writes one)
                pdfium_c.FPDF_ERR_SUCCESS: "it has no pages (or its page tree cannot be read)"}


def open_document(source: bytes | str, password: str | None = None) -> pdfium.PdfDocument:
    """PDFium's document for `source` (bytes or a path) opened with `password`; one that opens
    without a password is opened whatever the password (a password given for several files must not
    lock out those that need none). Raises PDFium's error for `password` when neither opens. Call
    under PDFIUM_LOCK."""
    try:
        return pdfium.PdfDocument(source, password=password)
    except pdfium.PdfiumError as err:
        if not password or getattr(err, "err_code", None) != pdfium_c.FPDF_ERR_PASSWORD:
            raise
        try:
            return pdfium.PdfDocument(source)
        except pdfium.PdfiumError:
            raise err from None


def _open(data: bytes, path: str | Path, password: str | None) -> pdfium.PdfDocument:
    try:
        pdf = open_document(data, password)
    except pdfium.PdfiumError as err:
        code = getattr(err, "err_code", None)
        if code in _STALE_PRONE and not _names_encryption(data):
            code = pdfium_c.FPDF_ERR_SUCCESS
        raise _open_error(code, path, password) from None
    init_forms(pdf)                           # filled-in fields are read with the pages (pdf_annotations.py)
    return pdf


# PDFium's last error is process-wide and only set by some failures: a PDF it refuses without
# setting one (no pages) read as the previous failure's reason, e.g. "it is encrypted" after
# encrypted.pdf. A password reason is believed only when the file's trailer names /Encrypt.
_STALE_PRONE = (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY)


def _names_encryption(data: bytes) -> bool:
    """Whether pypdf finds an /Encrypt entry in the trailer (True when it cannot tell)."""
    import io

    from pypdf import PdfReader
    try:
        return PdfReader(io.BytesIO(data), strict=False).is_encrypted
    except Exception:  # noqa: BLE001 -- pypdf cannot read it either: keep PDFium's reason
        return True


def _open_error(code: int | None, path: str | Path, password: str | None) -> IngestError:
    if code == pdfium_c.FPDF_ERR_PASSWORD:
        why = "the password is wrong" if password else "it is encrypted and needs a password to open"
        return IngestError("encrypted", path, why)
    if code == pdfium_c.FPDF_ERR_SECURITY:
        return IngestError("encrypted", path, "it uses an encryption scheme that is not supported")
    return IngestError("corrupt", path, f"damaged or truncated PDF: {_OPEN_ERRORS.get(code, 'it cannot be opened')}")


def _extract(pdf: pdfium.PdfDocument, path: str | Path, progress: Progress | None, max_pages: int | None,
             deadline: float | None, timeout_s: float | None, layers_off: frozenset[str],
             cover_under: int = 0, annotated: bool = True, labelled: bool = True) -> PdfContent:
    """The document's content; `annotated` False when it has no annotation to read
    (`_may_read_annotations`): its pages' annotations are not looked at; `labelled` False when its
    catalog has no /PageLabels (`_names_labels`): PDFium is not asked for each page's label."""
    with PDFIUM_LOCK:
        n_pages = len(pdf)
        notes = _permission_notes(pdf) + form_notes(pdf)
    if max_pages is not None and n_pages > max_pages:
        raise IngestError("too_large", path, f"{n_pages} pages, more than the limit of {max_pages}")
    texts: list[str] = []
    labels: list[str | None] = []
    covers: dict[int, float] = {}
    if progress:
        progress(0, n_pages)
    for index in range(n_pages):
        if deadline is not None and time.thread_time() > deadline:
            raise IngestError("corrupt", path, f"reading stopped after {timeout_s:g} s of work at page {index + 1} "
                              f"of {n_pages} (malformed or pathologically complex PDF)")
        with PDFIUM_LOCK:
            try:
                text, cover = _page_text(pdf, index, layers_off, cover_under, annotated)
            except pdfium.PdfiumError as err:
                text, cover = "", None
                notes.append(f"page {index + 1} could not be read ({err}); kept empty")
            labels.append(pdf.get_page_label(index) or None if labelled else None)
        texts.append(text)
        if cover is not None:
            covers[index + 1] = cover
        if progress:
            progress(index + 1, n_pages)
    with PDFIUM_LOCK:
        metadata_title = (pdf.get_metadata_dict(skip_empty=True).get("Title") or "").strip() or None
        outline = _outline(pdf, n_pages)
    return PdfContent(resolve_hyphens(texts), labels, outline, metadata_title, notes, covers)


def _page_text(pdf: pdfium.PdfDocument, index: int, layers_off: frozenset[str],
               cover_under: int = 0, annotated: bool = True) -> tuple[str, float | None]:
    """PDFium's text of one page (without its layers in `layers_off`, nor text drawn unseen:
    ingest/pdf_hidden.py, ingest/pdf_covered.py), then what was added on it: filled-in fields, typed
    text, comments (ingest/pdf_annotations.py), normalised with its hyphen marks; and the page's
    `image_cover` when that text, its marks resolved, may be shorter than `cover_under` (a mark
    becomes a hyphen or nothing), else None. `annotated` False: the document has no annotation to
    read (`_may_read_annotations`). PDFIUM_LOCK held by the caller."""
    page = pdf[index]
    try:
        hide_layers(page, layers_off)
        hide_unseen_text(page)
        shown = shown_annotations(page) if annotated else []     # one pass over the annotations, for both uses
        covered = hide_covered_text(page, shown)
        textpage = upright_textpage(page)
        try:
            text = _visible_text(page, textpage, covered.hidden_chars(page, textpage))
        finally:
            textpage.close()
        added = annotation_text(pdf, page, shown)
        text = normalize_text(f"{text}\n\n{added}" if added else text, hyphen_marks=True)
        short = text.strip() and len(text) - text.count(HYPHEN_MARK) < cover_under
        return text, image_cover(page) if short else None
    finally:
        page.close()


def image_cover(page: pdfium.PdfPage) -> float:
    """The share of the page's visible area under its images (their bounds clipped to it, summed, at
    most 1); 0 without images. Under PDFIUM_LOCK."""
    images = list(page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE]))
    if not images:
        return 0.0
    left, bottom, right, top = page.get_bbox()
    area = (right - left) * (top - bottom)
    covered = 0.0
    for image in images:
        x0, y0, x1, y1 = image.get_bounds()
        covered += max(0.0, min(x1, right) - max(x0, left)) * max(0.0, min(y1, top) - max(y0, bottom))
    return min(1.0, covered / area) if area > 0 else 0.0


def upright_textpage(page: pdfium.PdfPage) -> pdfium.PdfTextPage:
    """PDFium's text page of `page`, read the way a reader turns the page to read it. PDFium orders
    lines by how they lie on the page as shown (after /Rotate), and text that runs down the screen (a
    page turned clockwise in a viewer and saved, a table set sideways clockwise, vertical Chinese or
    Japanese) came out last line (or leftmost column) first, its line-end hyphens not joined. When
    most of the page's text runs down, the page is read with the /Rotate that shows it running left
    to right, then given back its own (the file, a render and the text's boxes, which are in page
    space, do not change). Under PDFIUM_LOCK."""
    textpage = page.get_textpage()
    rotation = page.get_rotation()
    angle = _text_angle(textpage)
    if angle is None or (angle - rotation) % 360 != 270:
        return textpage
    textpage.close()
    page.set_rotation(angle)
    try:
        return page.get_textpage()
    finally:
        page.set_rotation(rotation)


_ANGLE_SAMPLE = 64


def _text_angle(textpage: pdfium.PdfTextPage) -> int | None:
    """The direction (0, 90, 180 or 270 degrees, counterclockwise in page space) in which most of up
    to `_ANGLE_SAMPLE` pairs of neighbouring characters, taken evenly over the page, run (from one
    origin to the next: vertical writing runs down with upright glyphs); None for a page without text."""
    votes = _angle_votes(textpage)
    return 90 * votes.index(max(votes)) if any(votes) else None


def _angle_votes(textpage: pdfium.PdfTextPage) -> list[int]:
    """How many of the sampled pairs of letters or digits run at 0, 90, 180 and 270 degrees: in C
    (`pdf_native.angle_votes`, one call) but for the pairs it leaves to Python (a code point from
    pdf_native.ALNUM_LIMIT on: Chinese, Japanese), else all in Python (`_char_runs`, the reference)."""
    count = textpage.count_chars()
    step = max(1, count // _ANGLE_SAMPLE)
    cap = len(range(0, count - 1, step))
    found = angle_votes(textpage.raw, step, cap)
    if found is None:
        votes, samples = [0, 0, 0, 0], _char_runs(textpage, count, step)
    else:
        votes, deferred = found
        samples = [_char_run(textpage, index) for index in deferred]
    for first, second, dx, dy in samples:
        if not (chr(first).isalnum() and chr(second).isalnum()):
            continue                                     # a space, line break or mark: not a run
        if (dx or dy) and not math.isnan(dx):
            votes[round(math.degrees(math.atan2(dy, dx)) / 90) % 4] += 1
    return votes


def _char_runs(textpage: pdfium.PdfTextPage, count: int, step: int) -> list[tuple[int, int, float, float]]:
    """The samples for index 0, step, ... below count - 1: code points of the character and the next,
    and the move from the first's origin to the second's (NaN when an origin cannot be read)."""
    return [_char_run(textpage, index) for index in range(0, count - 1, step)]


_HERE, _THERE = (ctypes.c_double(), ctypes.c_double()), (ctypes.c_double(), ctypes.c_double())


def _char_run(textpage: pdfium.PdfTextPage, index: int) -> tuple[int, int, float, float]:
    raw, here, there = textpage.raw, _HERE, _THERE                # reused: under PDFIUM_LOCK
    codes = pdfium_c.FPDFText_GetUnicode(raw, index), pdfium_c.FPDFText_GetUnicode(raw, index + 1)
    if pdfium_c.FPDFText_GetCharOrigin(raw, index, *here) and pdfium_c.FPDFText_GetCharOrigin(raw, index + 1, *there):
        return (*codes, there[0].value - here[0].value, there[1].value - here[1].value)
    return (*codes, math.nan, math.nan)


_EVERYWHERE = (-1e7, -1e7, 1e7, 1e7)


def _visible_text(page: pdfium.PdfPage, textpage: pdfium.PdfTextPage, hidden: set[int] | None = None) -> str:
    """The text a viewer shows: only what lies in the CropBox (within the MediaBox), so a print PDF's
    crop marks and slug, text cropped away, and text set beyond the page's edge (an overfull line)
    are not read, nor the characters `hidden` (ingest/pdf_covered.py). A page with no text outside its
    box is read whole, by the faster range call: known when every character's box lies inside
    (`chars_inside`, one C call), else when the text inside is as long as all of it. Both boxes are
    in unrotated page space, as the text is, so /Rotate needs nothing."""
    box = page.get_bbox()                               # CropBox ∩ MediaBox, inherited from the page tree
    if hidden:
        return _text_without(textpage, hidden, box)
    uncropped = box == page.get_mediabox(fallback_ok=False)     # None when inherited: bounded then
    if uncropped and (chars_inside(textpage.raw, box, _EVERYWHERE)           # in C, no text copied
                      or _bounded_len(textpage, box) == _bounded_len(textpage, _EVERYWHERE)):
        return textpage.get_text_range()
    return textpage.get_text_bounded(*box)


def _text_without(textpage: pdfium.PdfTextPage, hidden: set[int], box: tuple[float, float, float, float]) -> str:
    """The page's text without the characters `hidden` nor those centred outside `box`, read by
    runs of the characters kept (a line break or space PDFium adds is kept)."""
    left, bottom, right, top = box
    keep = []
    for index in range(textpage.count_chars()):
        if index in hidden:
            keep.append(False)
        elif pdfium_c.FPDFText_IsGenerated(textpage.raw, index) == 1:
            keep.append(True)
        else:
            char_left, char_bottom, char_right, char_top = textpage.get_charbox(index)
            keep.append(left <= (char_left + char_right) / 2 <= right and bottom <= (char_bottom + char_top) / 2 <= top)
    runs, start = [], None
    for index, kept in enumerate([*keep, False]):
        if kept and start is None:
            start = index
        elif not kept and start is not None:
            runs.append(textpage.get_text_range(start, index - start))
            start = None
    return "".join(runs)


def _bounded_len(textpage: pdfium.PdfTextPage, box: tuple[float, float, float, float]) -> int:
    """How long the text inside `box` (left, bottom, right, top) is, without copying it."""
    left, bottom, right, top = box
    return pdfium_c.FPDFText_GetBoundedText(textpage.raw, left, top, right, bottom, None, 0)


def hidden_layers(source: bytes | str | Path, password: str | None = None,
                  may_name: bool | None = None) -> frozenset[str]:
    """Names of the optional content groups (layers) that the document's default view turns off:
    a viewer does not show them (a draft's notes, an alternative language, a print-only watermark),
    PDFium's text extraction reads them all the same. Read with pypdf (PDFium has no API for the
    catalog); a group named like one that is on is not hidden; a file pypdf cannot read has none.
    pypdf reads only files that may have layers (`_may_name_layers`): its parse of the cross-reference
    table costs about as much as the text of a short file (bench/pdf_visibility.py); `may_name`:
    that answer when the caller has it."""
    from pypdf import PdfReader

    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if not (_may_name_layers(data) if may_name is None else may_name):
        return frozenset()
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(password or ""):
            return frozenset()
        props = reader.trailer["/Root"].get("/OCProperties")
        if props is None:
            return frozenset()
        props = props.get_object()
        config = props.get("/D").get_object() if props.get("/D") is not None else {}
        off = {ref.idnum for ref in config.get("/OFF") or []}
        on = {ref.idnum for ref in config.get("/ON") or []}
        names: dict[bool, set[str]] = {True: set(), False: set()}           # off? -> group names
        for ref in props.get("/OCGs") or []:
            group_off = ref.idnum not in on if config.get("/BaseState") == "/OFF" else ref.idnum in off
            names[group_off].add(str(ref.get_object().get("/Name", "")))
        return frozenset(names[True] - names[False])
    except Exception as err:        # pypdf's many errors on a file PDFium reads: its layers stay unknown
        log.info("optional content of a PDF not read (%s: %s); all its layers are read", type(err).__name__, err)
        return frozenset()


_OBJECT_STREAM = re.compile(rb"/Type\s*/ObjStm\b")
_INFLATE_CHUNK = 1 << 16
_OVERLAP = 64                       # bytes of one inflated piece seen again with the next: a name cut between them


def _may_name_layers(data: bytes) -> bool:
    """False only when the catalog cannot have optional content: "/OCProperties" is neither in the
    file's bytes nor in its object streams (where a compressed catalog is), inflated here with zlib.
    An object stream that is not plain Flate (another filter, a predictor, encrypted) counts as a
    maybe, and pypdf reads the catalog."""
    return _file_holds(data, [_names_layers])[0]


def _names_layers(part: bytes) -> bool:
    return b"/OCProperties" in part


def _names_labels(part: bytes) -> bool:
    """Whether `part` may hold the catalog's /PageLabels (#xx escapes decoded; True without the C
    library): without it PDFium gives every page an empty label."""
    found = names_present(part, [b"PageLabels"], [])
    return True if found is None else found


def _may_read_annotations(data: bytes) -> bool:
    """False only when no annotation of the file can be one that pdf_annotations reads or
    pdf_covered takes as a box (a subtype in READ_NAMES): none of those names is in the file's bytes
    or its object streams, with #xx escapes decoded, /Subtype is followed by no /Text (/Text is also
    in every /ProcSet) and by nothing but a name (PDFium takes only a direct name), and every object
    stream could be inflated. Then each page's annotation pass is skipped: PDFium parsing every
    annotation to learn its subtype is most of that pass on a manual of links. True without the C
    library (`pdf_native.names_present`)."""
    return _file_holds(data, [_names_annotation])[0]


_ANNOTATION_NAMES = [name for name in READ_NAMES if name != b"Text"]


def _names_annotation(part: bytes) -> bool:
    found = names_present(part, _ANNOTATION_NAMES, [b"Text"])
    return True if found is None else found


def _file_holds(data: bytes, tests: list[Callable[[bytes], bool]]) -> list[bool]:
    """Which `tests` hold for some part of the file: its bytes, or a piece of one of its object
    streams (inflated with zlib in pieces that overlap by _OVERLAP bytes). All hold when an object
    stream is not plain Flate (another filter, a predictor, encrypted) or cannot be inflated."""
    found = [test(data) for test in tests]
    view = memoryview(data)
    for match in _OBJECT_STREAM.finditer(data):
        if all(found):
            break
        start = data.find(b"stream", match.end())
        head = data[data.rfind(b"obj", 0, match.start()) + 3:start]         # the stream's dictionary
        if start < 0 or b"/FlateDecode" not in head or b"/DecodeParms" in head or b"[" in head:
            return [True] * len(tests)
        start += 6
        start += 2 if data[start:start + 2] == b"\r\n" else 1
        inflate, tail = zlib.decompressobj(), b""
        try:
            while not inflate.eof and start < len(data) and not all(found):
                part = tail + inflate.decompress(view[start:start + _INFLATE_CHUNK])
                found = [done or test(part) for done, test in zip(found, tests)]
                tail = part[-_OVERLAP:]
                start += _INFLATE_CHUNK
        except zlib.error:
            return [True] * len(tests)
    return found


def hide_layers(page: pdfium.PdfPage, names: frozenset[str]) -> None:
    """Leave the page's objects in an optional content group named in `names` out of its text (and
    out of a render, which PDFium already does): marked inactive, so no text page sees them. The
    file is not changed (an older PDFium build, without FPDFPageObj_SetIsActive, still
    reads them). Under PDFIUM_LOCK."""
    if not names or not hasattr(pdfium_c, "FPDFPageObj_SetIsActive"):
        return
    for obj in page.get_objects():                      # into form XObjects too
        for i in range(pdfium_c.FPDFPageObj_CountMarks(obj.raw)):
            mark = pdfium_c.FPDFPageObj_GetMark(obj.raw, i)
            if _mark_string(pdfium_c.FPDFPageObjMark_GetName, mark) == "OC" and _mark_string(
                    pdfium_c.FPDFPageObjMark_GetParamStringValue, mark, b"Name") in names:
                pdfium_c.FPDFPageObj_SetIsActive(obj.raw, False)
                break


def _mark_string(getter, mark, *key: bytes) -> str | None:
    """A content mark's name or string parameter (`getter`: PDFium's function for it), None if absent."""
    size = ctypes.c_ulong()
    if not getter(mark, *key, None, 0, ctypes.byref(size)) or size.value < 2:
        return None
    buffer = ctypes.create_string_buffer(size.value)
    getter(mark, *key, ctypes.cast(buffer, ctypes.POINTER(pdfium_c.FPDF_WCHAR)), size.value, ctypes.byref(size))
    return buffer.raw[:size.value - 2].decode("utf-16-le", errors="replace")


def _outline(pdf: pdfium.PdfDocument, n_pages: int) -> list[tuple[str, int, int]]:
    """Bookmarks that point at a page, in document order; `get_toc` guards against cycles."""
    entries = []
    for bookmark in pdf.get_toc():
        dest = bookmark.get_dest()
        index = dest.get_index() if dest is not None else None
        title = normalize_text(bookmark.get_title() or "")
        if index is not None and 0 <= index < n_pages and title:
            entries.append((title, bookmark.level, index + 1))
    return entries


def _permission_notes(pdf: pdfium.PdfDocument) -> list[str]:
    """Owner-password-only files open without a password but may forbid copying text. We read them
    anyway (for private question answering, as pdftotext and most viewers do) and say so."""
    if pdfium_c.FPDF_GetSecurityHandlerRevision(pdf.raw) < 0:
        return []
    if pdfium_c.FPDF_GetDocPermissions(pdf.raw) & _PERM_COPY:
        return []
    return ["the PDF's owner restrictions forbid copying text; its text was read anyway for "
            "private question answering (the file opens without a password)"]
