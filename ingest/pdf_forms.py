"""Filled-in PDF form fields (AcroForm): their values are not page content, so PDFium's text
extraction does not see them; they are read from the page's widget annotations instead and added
to the page text as "Field name: value" lines (text, list and combo fields, ticked checkboxes, the
chosen radio button). PDFIUM_LOCK is held by the callers (ingest/pdf.py).
"""
from __future__ import annotations

import ctypes

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

FORM_HEADING = "Form fields:"


def init_forms(pdf: pdfium.PdfDocument) -> bool:
    """Set up PDFium's form environment when the document has a form (before any page is loaded)."""
    if pdfium_c.FPDF_GetFormType(pdf.raw) == pdfium_c.FORMTYPE_NONE:
        return False
    pdf.init_forms()
    return True


def form_lines(pdf: pdfium.PdfDocument, page: pdfium.PdfPage) -> list[str]:
    """ "Name: value" for each filled field on the page, in annotation order, each once."""
    form = getattr(pdf, "formenv", None)
    if form is None:
        return []
    lines: list[str] = []
    for index in range(pdfium_c.FPDFPage_GetAnnotCount(page.raw)):
        annot = pdfium_c.FPDFPage_GetAnnot(page.raw, index)
        try:
            if pdfium_c.FPDFAnnot_GetSubtype(annot) != pdfium_c.FPDF_ANNOT_WIDGET:
                continue
            value = _field_value(form.raw, annot)
            if value:
                name = _wide(pdfium_c.FPDFAnnot_GetFormFieldName, form.raw, annot).strip() or "(unnamed field)"
                line = f"{name}: {value}"
                if line not in lines:             # a field with several widgets shows once
                    lines.append(line)
        finally:
            pdfium_c.FPDFPage_CloseAnnot(annot)
    return lines


def _field_value(form, annot) -> str:
    kind = pdfium_c.FPDFAnnot_GetFormFieldType(form, annot)
    if kind in (pdfium_c.FPDF_FORMFIELD_CHECKBOX, pdfium_c.FPDF_FORMFIELD_RADIOBUTTON):
        if not pdfium_c.FPDFAnnot_IsChecked(form, annot):
            return ""
        if kind == pdfium_c.FPDF_FORMFIELD_CHECKBOX:
            return "yes"
        return _wide(pdfium_c.FPDFAnnot_GetFormFieldExportValue, form, annot).strip() or "yes"
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
