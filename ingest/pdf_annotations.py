"""What people add to a PDF page on top of its content: filled-in form fields, text typed on the
page ("Fill & Sign", a viewer's text tool: FreeText annotations) and comments (sticky notes, and the
notes on highlights and other markup). None of it is page content, so PDFium's text extraction
does not see it; it is read from the page's annotations and added after the page text:

    Form fields:            one "Field name: value" line per filled field (text, list, combo, ticked
                            checkboxes, the chosen radio button)
    Text added on the page: each FreeText annotation's text, each stamp's name in words ("Stamp:
                            Not approved": a viewer draws a standard stamp from its name)
    Comments:               each comment's text

PDFIUM_LOCK is held by the callers (ingest/pdf.py).
"""
from __future__ import annotations

import ctypes
import re

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from ingest.pdf_native import shown_annots

FORM_HEADING = "Form fields:"
ADDED_HEADING = "Text added on the page:"
COMMENT_HEADING = "Comments:"
# markup whose /Contents is a person's comment (a link's or a widget's is not)
_COMMENTED = {pdfium_c.FPDF_ANNOT_TEXT, pdfium_c.FPDF_ANNOT_HIGHLIGHT, pdfium_c.FPDF_ANNOT_UNDERLINE,
              pdfium_c.FPDF_ANNOT_SQUIGGLY, pdfium_c.FPDF_ANNOT_STRIKEOUT, pdfium_c.FPDF_ANNOT_SQUARE,
              pdfium_c.FPDF_ANNOT_CIRCLE, pdfium_c.FPDF_ANNOT_STAMP, pdfium_c.FPDF_ANNOT_CARET,
              pdfium_c.FPDF_ANNOT_INK, pdfium_c.FPDF_ANNOT_LINE, pdfium_c.FPDF_ANNOT_POLYGON,
              pdfium_c.FPDF_ANNOT_POLYLINE}

# flagged Hidden (neither shown nor printed: a hidden form field, a retracted note) or NoView (print only)
_NOT_SHOWN = pdfium_c.FPDF_ANNOT_FLAG_HIDDEN | pdfium_c.FPDF_ANNOT_FLAG_NOVIEW
_READ = _COMMENTED | {pdfium_c.FPDF_ANNOT_WIDGET, pdfium_c.FPDF_ANNOT_FREETEXT}
# the /Subtype names of _READ's subtypes, as PDFium maps them (PDF 32000-1, table 169): a file with
# none of them has no annotation to read (pdf._may_read_annotations)
READ_NAMES = {b"Text": pdfium_c.FPDF_ANNOT_TEXT, b"Highlight": pdfium_c.FPDF_ANNOT_HIGHLIGHT,
              b"Underline": pdfium_c.FPDF_ANNOT_UNDERLINE, b"Squiggly": pdfium_c.FPDF_ANNOT_SQUIGGLY,
              b"StrikeOut": pdfium_c.FPDF_ANNOT_STRIKEOUT, b"Square": pdfium_c.FPDF_ANNOT_SQUARE,
              b"Circle": pdfium_c.FPDF_ANNOT_CIRCLE, b"Stamp": pdfium_c.FPDF_ANNOT_STAMP,
              b"Caret": pdfium_c.FPDF_ANNOT_CARET, b"Ink": pdfium_c.FPDF_ANNOT_INK, b"Line": pdfium_c.FPDF_ANNOT_LINE,
              b"Polygon": pdfium_c.FPDF_ANNOT_POLYGON, b"PolyLine": pdfium_c.FPDF_ANNOT_POLYLINE,
              b"Widget": pdfium_c.FPDF_ANNOT_WIDGET, b"FreeText": pdfium_c.FPDF_ANNOT_FREETEXT}


def init_forms(pdf: pdfium.PdfDocument) -> bool:
    """Set up PDFium's form environment when the document has a form (before any page is loaded)."""
    if pdfium_c.FPDF_GetFormType(pdf.raw) == pdfium_c.FORMTYPE_NONE:
        return False
    pdf.init_forms()
    return True


# PDFium here is built without XFA (pypdfium2's wheels are): the XFA part of a form is not read
XFA_NOTE = ("an XFA form (Adobe LiveCycle Designer, AEM Forms): its XFA content and field data are not read; its "
            "pages are read as a viewer without XFA shows them, with the fields it also has as an ordinary form. A "
            "form made only of XFA shows there just a message such as \"Please wait...\": to read it, open it in "
            "Adobe Acrobat or Reader, print it to PDF and add that file")


def form_notes(pdf: pdfium.PdfDocument) -> list[str]:
    """XFA_NOTE for a document whose form has an XFA part, else nothing."""
    xfa = (pdfium_c.FORMTYPE_XFA_FULL, pdfium_c.FORMTYPE_XFA_FOREGROUND)
    return [XFA_NOTE] if pdfium_c.FPDF_GetFormType(pdf.raw) in xfa else []


def shown_annotations(page: pdfium.PdfPage) -> list[tuple[int, int]]:
    """(index, subtype) of the page's annotations that `annotation_text` reads and that may cover
    text (ingest/pdf_covered.py), those of a subtype in _READ that a viewer shows (not flagged Hidden
    or NoView), in order: one pass over the annotations (a manual has thousands of links) for both,
    in C (ingest/pdf_native.py) when built. Under PDFIUM_LOCK."""
    found = shown_annots(page.raw, _READ, _NOT_SHOWN)
    return found if found is not None else _shown_annotations(page)


def _shown_annotations(page: pdfium.PdfPage) -> list[tuple[int, int]]:
    """`shown_annotations` in Python (the reference, and the way without a C compiler)."""
    found = []
    for index in range(pdfium_c.FPDFPage_GetAnnotCount(page.raw)):
        annot = pdfium_c.FPDFPage_GetAnnot(page.raw, index)
        try:
            kind = pdfium_c.FPDFAnnot_GetSubtype(annot)
            if kind in _READ and not pdfium_c.FPDFAnnot_GetFlags(annot) & _NOT_SHOWN:
                found.append((index, kind))               # a link (most annotations) is not asked for flags
        finally:
            pdfium_c.FPDFPage_CloseAnnot(annot)
    return found


def annotation_text(pdf: pdfium.PdfDocument, page: pdfium.PdfPage,
                    shown: list[tuple[int, int]] | None = None) -> str:
    """The page's filled fields, added text and comments as the blocks above ("" when none), each
    line once, in annotation order; not those a viewer does not show (flagged Hidden or NoView).
    `shown`: the page's `shown_annotations`, when the caller has them."""
    shown = shown_annotations(page) if shown is None else shown
    if not shown:
        return ""
    form = getattr(pdf, "formenv", None)
    blocks: dict[str, list[str]] = {FORM_HEADING: [], ADDED_HEADING: [], COMMENT_HEADING: []}
    for index, kind in shown:
        annot = pdfium_c.FPDFPage_GetAnnot(page.raw, index)
        try:
            if kind == pdfium_c.FPDF_ANNOT_WIDGET and form is not None:
                value = _field_value(form.raw, annot)
                name = _wide(pdfium_c.FPDFAnnot_GetFormFieldName, form.raw, annot).strip() if value else ""
                heading, line = FORM_HEADING, f"{name or '(unnamed field)'}: {value}" if value else ""
            elif kind == pdfium_c.FPDF_ANNOT_FREETEXT:
                heading, line = ADDED_HEADING, _contents(annot)
            elif kind in _COMMENTED:
                heading, line = COMMENT_HEADING, _contents(annot)
            else:
                continue
            found = [(heading, line)]
            if kind == pdfium_c.FPDF_ANNOT_STAMP and (words := _stamp_words(annot)):
                found.insert(0, (ADDED_HEADING, f"Stamp: {words}"))
            for heading, line in found:
                if line and line not in blocks[heading]:     # a field with several widgets shows once
                    blocks[heading].append(line)
        finally:
            pdfium_c.FPDFPage_CloseAnnot(annot)
    return "\n\n".join("\n".join([heading, *lines]) for heading, lines in blocks.items() if lines)


_STAMP_PREFIX = re.compile(r"^#?(?:SB|SH|D)(?=[A-Z][a-z])")     # Acrobat's "SBApproved", "#DApproved"
_STAMP_WORD = re.compile(r"[A-Z][a-z]+")


def _stamp_words(annot) -> str:
    """A stamp's /Name in words ("NotForPublicRelease" -> "Not for public release"), "" when it is not
    made of words (a custom stamp's generated name: its picture is all a viewer shows)."""
    name = _STAMP_PREFIX.sub("", _wide(pdfium_c.FPDFAnnot_GetStringValue, annot, b"Name").strip())
    words = _STAMP_WORD.findall(name)
    if not words or "".join(words) != name:
        return ""
    return " ".join([words[0], *(word.lower() for word in words[1:])])


def _contents(annot) -> str:
    return _wide(pdfium_c.FPDFAnnot_GetStringValue, annot, b"Contents").strip()


def _field_value(form, annot) -> str:
    kind = pdfium_c.FPDFAnnot_GetFormFieldType(form, annot)
    if kind in (pdfium_c.FPDF_FORMFIELD_CHECKBOX, pdfium_c.FPDF_FORMFIELD_RADIOBUTTON):
        if not pdfium_c.FPDFAnnot_IsChecked(form, annot):
            return ""
        if kind == pdfium_c.FPDF_FORMFIELD_CHECKBOX:
            return "yes"
        return _wide(pdfium_c.FPDFAnnot_GetFormFieldExportValue, form, annot).strip() or "yes"
    if kind in (pdfium_c.FPDF_FORMFIELD_COMBOBOX, pdfium_c.FPDF_FORMFIELD_LISTBOX):
        # what the reader sees chosen: every selected option (a list may have several), by its label,
        # not its export value ("Portugal", not "PT"); else the value (typed into an editable combo box)
        chosen = [_wide(pdfium_c.FPDFAnnot_GetOptionLabel, form, annot, i)
                  for i in range(pdfium_c.FPDFAnnot_GetOptionCount(form, annot))
                  if pdfium_c.FPDFAnnot_IsOptionSelected(form, annot, i)]
        if any(label.strip() for label in chosen):
            return ", ".join(" ".join(label.split()) for label in chosen if label.strip())
    if kind in (pdfium_c.FPDF_FORMFIELD_TEXTFIELD, pdfium_c.FPDF_FORMFIELD_COMBOBOX,
                pdfium_c.FPDF_FORMFIELD_LISTBOX):
        return " ".join(_wide(pdfium_c.FPDFAnnot_GetFormFieldValue, form, annot).split())
    return ""                                     # push buttons, signatures


def _wide(function, *args) -> str:
    """A PDFium UTF-16LE string getter's result (called once for the size, once for the text)."""
    size = function(*args, None, 0)
    if size <= 2:
        return ""
    buffer = ctypes.create_string_buffer(size)
    function(*args, ctypes.cast(buffer, ctypes.POINTER(pdfium_c.FPDF_WCHAR)), size)
    return buffer.raw[: size - 2].decode("utf-16-le", errors="replace")
