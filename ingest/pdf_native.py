"""The per-object and per-character loops of PDF ingestion in C (ingest/csrc/pdf_scan.c): the
unseen-text check's scan of every text object (`unseen_candidates`, for ingest/pdf_hidden.py), the
page-edge check and the reading direction's votes (`chars_inside`, `angle_votes`, for ingest/pdf.py),
the count that lets most pages skip pdf_covered's walk (`cover_counts`), the pass over a page's
annotations (`shown_annots`, ingest/pdf_annotations.py) and the scan of a file's bytes for names
(`names_present`, ingest/pdf.py). In Python each PDFium call through ctypes costs ~1 us, more than
the call itself; these loops make one call per page.

The C file is compiled on first use with the machine's C compiler (`cc`, or $CC), as the engine's
kernels are (engine/cpu_kernels.py), into a per-user cache keyed by the source and the flags. It
calls PDFium through the function pointers pypdfium2 loaded. Without a compiler, or with
JAMBADOCS_PDF_C=0, `lib()` is None and the callers run their Python loops, the reference, which give
the same result (tests/ingest/test_pdf_native.py); without the name scan every page's annotations and
label are looked at, as before. Every call into PDFium holds PDFIUM_LOCK (the callers'), which also
guards the reused buffers here; `names_present` reads only bytes.
"""
from __future__ import annotations

import ctypes
import functools
import logging
import os
import subprocess
import threading
from pathlib import Path

import pypdfium2.raw as pdfium_c

from engine.cbuild import build_library

log = logging.getLogger(__name__)

SOURCE = Path(__file__).parent / "csrc" / "pdf_scan.c"
# no -march=native (nothing to vectorise), no FMA contraction: the arithmetic matches Python's
FLAGS = ["-O2", "-shared", "-fPIC", "-ffp-contract=off"]
CLEAR, TINY, PALE = 0, 1, 2            # Candidate.why


class Pdfium(ctypes.Structure):
    """The PDFium functions the C code calls (the order of `Pdfium` in pdf_scan.c)."""
    _fields_ = [(name, ctypes.c_void_p) for name in (
        "page_count_objects", "page_get_object", "form_count_objects", "form_get_object", "get_type",
        "get_fill", "font_size", "get_matrix", "count_chars", "char_box")] + [
        ("type_text", ctypes.c_int), ("type_form", ctypes.c_int),
        ("get_unicode", ctypes.c_void_p), ("char_origin", ctypes.c_void_p),
        ("get_draw_mode", ctypes.c_void_p), ("get_bounds", ctypes.c_void_p), ("type_path", ctypes.c_int)] + [
        (name, ctypes.c_void_p) for name in ("annot_count", "get_annot", "annot_subtype", "annot_flags", "close_annot")]


class Candidate(ctypes.Structure):
    _fields_ = [("obj", ctypes.c_void_p), ("why", ctypes.c_int), ("detail", ctypes.c_double * 3),
                ("outer", ctypes.c_double * 6)]


_lib: ctypes.CDLL | None = None
_pdfium: Pdfium | None = None
_tried = False
_lock = threading.Lock()


def build(compiler: str | None = None) -> Path:
    """Compile pdf_scan.c (once per source and flags) and return the library's path. Raises
    RuntimeError with the compiler's message when it cannot be built."""
    return build_library("jambadocs-pdf", [SOURCE], FLAGS, ["-lm"], compiler=compiler)


def _address(function) -> int:
    return ctypes.cast(function, ctypes.c_void_p).value


def lib() -> ctypes.CDLL | None:
    """The built library, or None (no compiler, a failed build, JAMBADOCS_PDF_C=0): use Python."""
    global _lib, _pdfium, _tried
    if _tried:
        return _lib
    with _lock:
        if _tried:
            return _lib
        if os.environ.get("JAMBADOCS_PDF_C", "1") != "0":
            try:
                loaded = ctypes.CDLL(str(build()))
                p = ctypes.c_void_p
                loaded.jd_unseen_candidates.argtypes = [p, p, ctypes.c_uint, ctypes.c_double, p, ctypes.c_int]
                loaded.jd_unseen_candidates.restype = ctypes.c_int
                loaded.jd_chars_inside.argtypes = [p, p, p, p]
                loaded.jd_chars_inside.restype = ctypes.c_int
                loaded.jd_angle_votes.argtypes = [p, p, ctypes.c_int, ctypes.c_int, p, p, ctypes.c_char_p,
                                                  ctypes.c_uint]
                loaded.jd_angle_votes.restype = ctypes.c_int
                loaded.jd_cover_counts.argtypes = [p, p, ctypes.c_double, p]
                loaded.jd_cover_counts.restype = ctypes.c_int
                loaded.jd_shown_annots.argtypes = [p, p, ctypes.c_ulonglong, ctypes.c_int, p, p, ctypes.c_int]
                loaded.jd_shown_annots.restype = ctypes.c_int
                loaded.jd_names_present.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_char_p]
                loaded.jd_names_present.restype = ctypes.c_int
                c = pdfium_c
                _pdfium = Pdfium(*map(_address, (
                    c.FPDFPage_CountObjects, c.FPDFPage_GetObject, c.FPDFFormObj_CountObjects, c.FPDFFormObj_GetObject,
                    c.FPDFPageObj_GetType, c.FPDFPageObj_GetFillColor, c.FPDFTextObj_GetFontSize,
                    c.FPDFPageObj_GetMatrix, c.FPDFText_CountChars, c.FPDFText_GetCharBox)),
                    c.FPDF_PAGEOBJ_TEXT, c.FPDF_PAGEOBJ_FORM,
                    _address(c.FPDFText_GetUnicode), _address(c.FPDFText_GetCharOrigin),
                    _address(c.FPDFPath_GetDrawMode), _address(c.FPDFPageObj_GetBounds), c.FPDF_PAGEOBJ_PATH,
                    *map(_address, (c.FPDFPage_GetAnnotCount, c.FPDFPage_GetAnnot, c.FPDFAnnot_GetSubtype,
                                    c.FPDFAnnot_GetFlags, c.FPDFPage_CloseAnnot)))
                _lib = loaded
            except (RuntimeError, OSError, AttributeError, subprocess.SubprocessError) as err:
                log.warning("PDF ingestion runs its checks in Python (slower): %s", err)
        _tried = True
    return _lib


_CANDIDATES = (Candidate * 64)()


def unseen_candidates(page_raw, pale: int, min_squared: float) -> list[tuple] | None:
    """pdf_hidden._candidates(page) as a list (None without the library): (text object, matrix from
    its parent to the page, "clear" | "tiny" | "pale", None | size on the page | fill RGB)."""
    if lib() is None:
        return None
    page, buffer = ctypes.cast(page_raw, ctypes.c_void_p), _CANDIDATES       # reused: under PDFIUM_LOCK
    n = _lib.jd_unseen_candidates(ctypes.byref(_pdfium), page, pale, min_squared, buffer, len(buffer))
    if not n:
        return []
    if n > len(buffer):                                  # a page of many: room for all, once more
        buffer = (Candidate * n)()
        n = _lib.jd_unseen_candidates(ctypes.byref(_pdfium), page, pale, min_squared, buffer, n)
    found = []
    for c in buffer[:n]:
        obj = ctypes.cast(c.obj, pdfium_c.FPDF_PAGEOBJECT)
        if c.why == CLEAR:
            found.append((obj, tuple(c.outer), "clear", None))
        elif c.why == TINY:
            found.append((obj, tuple(c.outer), "tiny", c.detail[0] ** 0.5))
        else:
            found.append((obj, tuple(c.outer), "pale", tuple(int(v) for v in c.detail)))
    return found


_RECT_A, _RECT_B = (ctypes.c_double * 4)(), (ctypes.c_double * 4)()


def chars_inside(textpage_raw, rect_a: tuple, rect_b: tuple) -> bool | None:
    """Whether every character of the text page lies inside both rectangles (left, bottom, right,
    top), so that PDFium's bounded text of each is the same; None without the library."""
    if lib() is None:
        return None
    a, b = _RECT_A, _RECT_B                                  # reused: under PDFIUM_LOCK
    a[:], b[:] = rect_a, rect_b
    return bool(_lib.jd_chars_inside(ctypes.byref(_pdfium), ctypes.cast(textpage_raw, ctypes.c_void_p), a, b))


_VOTES, _DEFERRED = (ctypes.c_int * 4)(), (ctypes.c_int * 256)()
# code points whose str.isalnum C is given (alphabets up to Hangul Jamo and Indic scripts: a few ms
# once); Chinese and Japanese characters are judged in Python
ALNUM_LIMIT = 0x3000


@functools.lru_cache(maxsize=1)
def _alnum_bits() -> bytes:
    """str.isalnum of every code point below ALNUM_LIMIT, one bit each (bit c % 8 of byte c // 8)."""
    bits = bytearray(ALNUM_LIMIT // 8)
    for code in range(ALNUM_LIMIT):
        if chr(code).isalnum():
            bits[code >> 3] |= 1 << (code & 7)
    return bytes(bits)


def angle_votes(textpage_raw, step: int, cap: int) -> tuple[list[int], list[int]] | None:
    """pdf._angle_votes in one call (None without the library): the votes of the sampled pairs of
    letters and digits (for index 0, step, ... below the character count - 1, at most `cap`), and the
    indices of the pairs left to Python (a code point beyond ALNUM_LIMIT, a move that is not finite)."""
    if lib() is None:
        return None
    votes, deferred = _VOTES, _DEFERRED if cap <= len(_DEFERRED) else (ctypes.c_int * cap)()  # reused: under the lock
    votes[:] = [0, 0, 0, 0]
    n = _lib.jd_angle_votes(ctypes.byref(_pdfium), ctypes.cast(textpage_raw, ctypes.c_void_p), step, cap, votes,
                            deferred, _alnum_bits(), ALNUM_LIMIT)
    return votes[:], deferred[:n]


def cover_counts(page_raw, min_box: float) -> tuple[int, int] | None:
    """(text objects, filled paths at least `min_box` pt both ways on the page) of the page, into
    its forms, in one call (None without the library): pdf_covered walks the page in Python only
    when both are there."""
    if lib() is None:
        return None
    boxes = ctypes.c_int()
    texts = _lib.jd_cover_counts(ctypes.byref(_pdfium), ctypes.cast(page_raw, ctypes.c_void_p), min_box,
                                 ctypes.byref(boxes))
    return texts, boxes.value


_ANNOT_ROOM = 256
_annot_indices, _annot_kinds = (ctypes.c_int * _ANNOT_ROOM)(), (ctypes.c_int * _ANNOT_ROOM)()


def shown_annots(page_raw, wanted: frozenset[int] | set[int], not_shown: int) -> list[tuple[int, int]] | None:
    """pdf_annotations._shown_annotations in one call (None without the library): (index, subtype)
    of the page's annotations of a subtype in `wanted` whose flags have none of `not_shown`."""
    if lib() is None:
        return None
    mask = sum(1 << kind for kind in wanted if 0 <= kind < 64)
    page = ctypes.cast(page_raw, ctypes.c_void_p)
    indices, kinds = _annot_indices, _annot_kinds              # reused: every call holds PDFIUM_LOCK
    n = _lib.jd_shown_annots(ctypes.byref(_pdfium), page, mask, not_shown, indices, kinds, _ANNOT_ROOM)
    if n > _ANNOT_ROOM:                                         # a page of many: room for all, once more
        indices, kinds = (ctypes.c_int * n)(), (ctypes.c_int * n)()
        n = _lib.jd_shown_annots(ctypes.byref(_pdfium), page, mask, not_shown, indices, kinds, n)
    return list(zip(indices[:n], kinds[:n]))


def names_present(part: bytes, names: list[bytes], after_subtype: list[bytes]) -> bool | None:
    """Whether a name token of the PDF bytes `part` is one of `names` (#xx escapes decoded), or (when
    `after_subtype` is not empty) the name Subtype is followed by one of `after_subtype`, by anything
    but a name, or by the end of `part`; in one pass in C (None without the library)."""
    if lib() is None:
        return None
    return bool(_lib.jd_names_present(part, len(part), _name_list(tuple(names)), _name_list(tuple(after_subtype))))


@functools.lru_cache(maxsize=8)
def _name_list(names: tuple[bytes, ...]) -> bytes:
    """`names` as jd_names_present takes them: each as its length (one byte) and its bytes, then 0."""
    assert all(0 < len(name) < 40 for name in names)
    return b"".join(bytes([len(name)]) + name for name in names) + b"\0"
