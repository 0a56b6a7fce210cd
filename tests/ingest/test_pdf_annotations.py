"""What people add on a PDF page (not page content, so not in PDFium's text), read into the page
text: filled-in form fields (text, choice, checkbox, radio), typed text (FreeText) and comments
(sticky notes, a highlight's note); links, empty fields and annotations a viewer hides add nothing; the
page's own text stays."""
from __future__ import annotations

import pytest
from pypdf import PdfWriter
from pypdf.generic import (ArrayObject, BooleanObject, DictionaryObject, FloatObject, NameObject, NumberObject,
                           StreamObject, TextStringObject)

from ingest import read_document


def write_form(path, src, fields):
    """The first page of `src` with an AcroForm of `fields`: [(kind, name, value)], kind "tx" (text),
    "ch" (combo box), "cb" (checkbox, value True/False), "rb" (radio group, value (chosen, options))."""
    w = PdfWriter()
    w.append(src, pages=[0])
    page = w.pages[0]
    refs, y = [], 700
    def widget(extra, rect):
        d = DictionaryObject({NameObject("/Type"): NameObject("/Annot"), NameObject("/Subtype"): NameObject("/Widget"),
                              NameObject("/Rect"): ArrayObject([FloatObject(v) for v in rect]), NameObject("/F"): NumberObject(4)})
        d.update(extra)
        return d
    def ap(on):
        empty = w._add_object(StreamObject())
        return DictionaryObject({NameObject("/N"): DictionaryObject({NameObject(f"/{on}"): empty, NameObject("/Off"): empty})})
    annots = []
    for kind, name, value in fields:
        rect = [50, y, 300, y + 20]; y -= 30
        if kind in ("tx", "ch"):
            extra = {NameObject("/FT"): NameObject("/Tx" if kind == "tx" else "/Ch"), NameObject("/T"): TextStringObject(name),
                     NameObject("/V"): TextStringObject(value)}
            if kind == "ch":
                extra[NameObject("/Opt")] = ArrayObject([TextStringObject(value), TextStringObject("Other")])
                extra[NameObject("/Ff")] = NumberObject(1 << 17)          # combo box
            ref = w._add_object(widget(extra, rect)); refs.append(ref); annots.append(ref)
        elif kind == "cb":
            state = "/Yes" if value else "/Off"
            extra = {NameObject("/FT"): NameObject("/Btn"), NameObject("/T"): TextStringObject(name),
                     NameObject("/V"): NameObject(state), NameObject("/AS"): NameObject(state), NameObject("/AP"): ap("Yes")}
            ref = w._add_object(widget(extra, rect)); refs.append(ref); annots.append(ref)
        elif kind == "rb":
            chosen, options = value
            parent = DictionaryObject({NameObject("/FT"): NameObject("/Btn"), NameObject("/T"): TextStringObject(name),
                                       NameObject("/Ff"): NumberObject(1 << 15),
                                       NameObject("/V"): NameObject(f"/{chosen}" if chosen else "/Off")})
            pref = w._add_object(parent); kids = ArrayObject()
            for opt in options:
                kid = widget({NameObject("/Parent"): pref, NameObject("/AP"): ap(opt),
                              NameObject("/AS"): NameObject(f"/{opt}" if opt == chosen else "/Off")}, rect)
                rect = [rect[0] + 60, rect[1], rect[2] + 60, rect[3]]
                kref = w._add_object(kid); kids.append(kref); annots.append(kref)
            parent[NameObject("/Kids")] = kids; refs.append(pref)
    page[NameObject("/Annots")] = ArrayObject(annots)
    w._root_object[NameObject("/AcroForm")] = DictionaryObject({NameObject("/Fields"): ArrayObject(refs),
                                                                NameObject("/NeedAppearances"): BooleanObject(True)})
    w.write(path)
    return path


@pytest.fixture(scope="module")
def form_pdf(tmp_path_factory, corpus):
    """pari-refcard.pdf's first page with a filled-in form on it (pypdf writes the AcroForm)."""
    return write_form(tmp_path_factory.mktemp("form") / "application.pdf", corpus / "pari-refcard.pdf", [
        ("tx", "Applicant name", "Ana Ribeiro"), ("ch", "Country", "Portugal"), ("cb", "Smoker", False),
        ("cb", "Has a driving licence", True), ("rb", "Plan", ("Premium", ["Basic", "Premium"])),
        ("tx", "Comments", "")])


def test_filled_fields_are_read_into_the_page_text(form_pdf, corpus):
    page = read_document(form_pdf).pages[0].text
    plain = read_document(corpus / "pari-refcard.pdf").pages[0].text
    assert page.startswith(plain)                                  # the page's own text first, unchanged
    assert page[len(plain):].strip().splitlines() == [
        "Form fields:", "Applicant name: Ana Ribeiro", "Country: Portugal", "Has a driving licence: yes",
        "Plan: Premium"]                                           # unticked and empty fields are left out


def test_the_answer_can_cite_a_field(form_pdf, tmp_path):
    from app.config import Settings
    from app.services import Services

    with Services(Settings(data_dir=tmp_path / "data", engine="extractive")) as svc:
        ws = svc.workspaces.create("forms")
        svc.documents.add(ws.id, form_pdf)
        top = svc.qa.answer(ws.id, "What is the applicant name and the policy plan?").citations[0]
        assert top.filename == "application.pdf" and top.verified and "Ana Ribeiro" in top.passage


def test_typed_text_and_comments_are_read_links_are_not(tmp_path, corpus, pdf_checks):
    from pypdf import PdfReader
    from pypdf.annotations import FreeText, Highlight, Link, Text
    from pypdf.generic import ArrayObject, FloatObject

    writer = PdfWriter()
    writer.append(corpus / "pari-refcard.pdf", pages=[0])
    for annotation in (
            # no background: pypdf's default, opaque white, hides the page lines under the box (not read)
            FreeText(text="Signed: Ana Ribeiro, Lisboa, 3 March 2026", rect=(50, 50, 400, 70), background_color=None),
            Text(text="Check the factor() example with Bruno", rect=(500, 700, 520, 720)),
            Highlight(rect=(50, 600, 300, 620), quad_points=ArrayObject([FloatObject(v) for v in
                                                                         (50, 620, 300, 620, 50, 600, 300, 600)])),
            Link(rect=(50, 500, 100, 520), url="https://pari.math.u-bordeaux.fr/")):
        writer.add_annotation(page_number=0, annotation=annotation)
    highlight = writer.pages[0]["/Annots"][2].get_object()
    highlight[NameObject("/Contents")] = TextStringObject("this is the key command")
    writer.write(tmp_path / "signed.pdf")
    assert len(PdfReader(tmp_path / "signed.pdf").pages[0]["/Annots"]) == 4

    page = read_document(tmp_path / "signed.pdf").pages[0].text
    plain = read_document(corpus / "pari-refcard.pdf").pages[0].text
    assert page.startswith(plain) and page[len(plain):].strip().splitlines() == [
        "Text added on the page:", "Signed: Ana Ribeiro, Lisboa, 3 March 2026", "",
        "Comments:", "Check the factor() example with Bruno", "this is the key command"]


def test_annotations_a_viewer_does_not_show_are_not_read(tmp_path, corpus, pdf_checks):
    """Typed text, a comment or a filled field flagged Hidden (neither shown nor printed) or NoView
    (printed only) is on no page a reader sees: not read; the shown ones are."""
    from pypdf.annotations import FreeText, Text

    form = write_form(tmp_path / "form.pdf", corpus / "pari-refcard.pdf",
                      [("tx", "Name", "Ana Ribeiro"), ("tx", "Internal score", "12")])
    writer = PdfWriter(clone_from=form)
    for annotation, flags in ((FreeText(text="Approved by Ana", rect=(50, 50, 400, 70)), 4),
                              (FreeText(text="Draft signature, remove", rect=(50, 80, 400, 100)), 2),
                              (FreeText(text="Print-only stamp", rect=(50, 110, 400, 130)), 32 | 4),
                              (Text(text="Retracted note", rect=(500, 700, 520, 720)), 2)):
        writer.add_annotation(page_number=0, annotation=annotation)
        writer.pages[0]["/Annots"][-1].get_object()[NameObject("/F")] = NumberObject(flags)
    for annot in writer.pages[0]["/Annots"]:
        if annot.get_object().get("/T") == "Internal score":
            annot.get_object()[NameObject("/F")] = NumberObject(2)
    writer.write(tmp_path / "flags.pdf")

    page = read_document(tmp_path / "flags.pdf").pages[0].text
    plain = read_document(corpus / "pari-refcard.pdf").pages[0].text
    assert page.startswith(plain) and page[len(plain):].strip().splitlines() == [
        "Form fields:", "Name: Ana Ribeiro", "", "Text added on the page:", "Approved by Ana"]


def test_an_xfa_form_is_read_as_shown_with_a_note_saying_so(tmp_path, form_pdf):
    """An XFA-only form (LiveCycle) keeps its fields in XFA data, which this PDFium cannot read; a
    viewer without XFA shows a "Please wait..." page. That page is read, and the document's notes say
    why its content is missing and what to do; an ordinary form gets no such note."""
    from tests.ingest.pdf_files import write_pdf_objects

    def stream(body: bytes) -> bytes:
        return b"<< /Length %d >>\nstream\n%s\nendstream" % (len(body), body)

    wait = b"Please wait... If this message is not eventually replaced by the proper contents of the document"
    pdf = write_pdf_objects(tmp_path / "xfa.pdf", [
        b"<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields [] /XFA [(template) 6 0 R (datasets) 7 0 R]"
        b" /NeedsRendering true >> >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >>"
        b" /Contents 5 0 R >>",
        stream(b"BT /F1 10 Tf 40 700 Td (%s) Tj ET" % wait),
        stream(b'<template xmlns="http://www.xfa.org/schema/xfa-template/3.3/"><subform name="form1">'
               b'<field name="Name"/></subform></template>'),
        stream(b'<xfa:datasets xmlns:xfa="http://www.xfa.org/schema/xfa-data/1.0/"><xfa:data><form1>'
               b'<Name>Ana Ribeiro</Name></form1></xfa:data></xfa:datasets>')])
    doc = read_document(pdf)
    xfa_notes = [note for note in doc.notes if "XFA" in note]
    assert doc.page(1).text == wait.decode() and len(xfa_notes) == 1 and "print it to PDF" in xfa_notes[0]
    assert not any("XFA" in note for note in read_document(form_pdf).notes)


def test_a_stamp_is_read_by_its_name(tmp_path, corpus):
    """A viewer draws a standard stamp ("Approved", Acrobat's "SBConfidential") from its /Name: the
    name is read in words, with the stamp's note as a comment; a custom stamp's generated name (its
    picture is all a reader sees) is not."""
    writer = PdfWriter()
    writer.append(corpus / "pari-refcard.pdf", pages=[0])
    for name, note in (("/Approved", ""), ("/SBConfidential", "Sent to legal on Monday"),
                       ("/3KNqbrZKtBEpOT3bEfuJHD", ""), ("/NotForPublicRelease", "")):
        stamp = DictionaryObject({NameObject("/Type"): NameObject("/Annot"), NameObject("/Subtype"): NameObject("/Stamp"),
                                  NameObject("/Rect"): ArrayObject([FloatObject(v) for v in (300, 300, 450, 350)]),
                                  NameObject("/Name"): NameObject(name), NameObject("/F"): NumberObject(4)})
        if note:
            stamp[NameObject("/Contents")] = TextStringObject(note)
        writer.add_annotation(page_number=0, annotation=stamp)
    writer.write(tmp_path / "stamped.pdf")

    page = read_document(tmp_path / "stamped.pdf").pages[0].text
    plain = read_document(corpus / "pari-refcard.pdf").pages[0].text
    assert page.startswith(plain) and page[len(plain):].strip().splitlines() == [
        "Text added on the page:", "Stamp: Approved", "Stamp: Confidential", "Stamp: Not for public release", "",
        "Comments:", "Sent to legal on Monday"]


def test_choice_fields_read_what_the_reader_sees_chosen_on_its_page(tmp_path, corpus):
    """A list box shows every option selected (not only the first) and a combo box its option's
    label, not the export value written in /V ("Portugal", not "PT"); a field whose widgets are on
    pages 1 and 2 is read on both, each field only on its own pages."""
    writer = PdfWriter()
    writer.append(corpus / "pari-refcard.pdf", pages=[0, 1])

    def widget(page: int, entries: dict, y: float):
        annot = DictionaryObject({NameObject("/Type"): NameObject("/Annot"), NameObject("/Subtype"): NameObject("/Widget"),
                                  NameObject("/Rect"): ArrayObject([FloatObject(v) for v in (50, y, 200, y + 20)]),
                                  NameObject("/F"): NumberObject(4)})
        annot.update({NameObject(k): v for k, v in entries.items()})
        ref = writer._add_object(annot)
        writer.pages[page].setdefault(NameObject("/Annots"), ArrayObject()).append(ref)
        return ref

    def texts(*values):
        return ArrayObject([TextStringObject(v) for v in values])

    languages = widget(1, {"/FT": NameObject("/Ch"), "/T": TextStringObject("Languages"), "/Ff": NumberObject(1 << 21),
                           "/Opt": texts("English", "French", "German"), "/V": texts("English", "German")}, 500)
    country = widget(1, {"/FT": NameObject("/Ch"), "/T": TextStringObject("Country"), "/Ff": NumberObject(1 << 17),
                         "/Opt": ArrayObject([texts("PT", "Portugal"), texts("ES", "Spain")]),
                         "/V": TextStringObject("PT")}, 400)
    case = writer._add_object(DictionaryObject({NameObject("/FT"): NameObject("/Tx"),
                                                NameObject("/T"): TextStringObject("Case number"),
                                                NameObject("/V"): TextStringObject("CN-2026-77")}))
    case.get_object()[NameObject("/Kids")] = ArrayObject([widget(page, {"/Parent": case}, 50) for page in (0, 1)])
    writer._root_object[NameObject("/AcroForm")] = DictionaryObject({
        NameObject("/Fields"): ArrayObject([languages, country, case]), NameObject("/NeedAppearances"): BooleanObject(True)})
    writer.write(tmp_path / "choices.pdf")

    doc, plain = read_document(tmp_path / "choices.pdf"), read_document(corpus / "pari-refcard.pdf")
    added = [doc.pages[i].text[len(plain.pages[i].text):].strip().splitlines() for i in (0, 1)]
    assert added == [["Form fields:", "Case number: CN-2026-77"],
                     ["Form fields:", "Languages: English, German", "Country: Portugal", "Case number: CN-2026-77"]]


def _annotated_pdf(path, annotation: bytes, packed: bool = False):
    """A one-page PDF (the line "Plain line") with one annotation dictionary written as given, in
    the file or in a compressed object stream."""
    from tests.ingest.pdf_files import write_pdf_objects

    content = b"BT /F1 12 Tf 72 700 Td (Plain line) Tj ET"
    return write_pdf_objects(path, [
        b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> "
        b"/ProcSet [/PDF /Text] >> /Contents 5 0 R /Annots [6 0 R] >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content), annotation],
        packed=(1, 2, 3, 4, 6) if packed else ())


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("annotation", [
    b"<< /Type /Annot /Subtype /Text /Rect [500 700 520 720] /Contents (A note) /F 4 >>",
    b"<< /Type /Annot /Subtype/Text /Rect [500 700 520 720] /Contents (A note) /F 4 >>",
    b"<< /Type /Annot /Subtype %% a comment\n /Text /Rect [500 700 520 720] /Contents (A note) /F 4 >>",
    b"<< /Type /Annot /Sub#74ype /T#65xt /Rect [500 700 520 720] /Contents (A note) /F 4 >>",
    b"<< /Type /Annot /Subtype /Free#54ext /Rect [50 50 400 70] /Contents (A note) /F 4 >>",
    b"<< /Type /Annot /Subtype /Highlight /Rect [50 600 300 620] /Contents (A note) /F 4 >>"])
def test_a_file_is_let_skip_its_annotations_only_when_none_can_be_read(tmp_path, corpus, annotation, packed):
    """The annotation pass, PDFium parsing every annotation (a manual's thousands of links) to learn
    its subtype, is skipped for a file none of whose annotations can be read: one whose bytes and
    object streams name no subtype it reads. A comment written however PDF allows (/Subtype/Text, a
    comment before the name, #xx escapes in the key or the name, in an object stream) is still read;
    the corpus PDFs, with only links, skip the pass and read the same text as with it."""
    from ingest import pdf

    path = _annotated_pdf(tmp_path / "note.pdf", annotation, packed)
    assert pdf._may_read_annotations(path.read_bytes())
    assert read_document(path).pages[0].text.splitlines()[-2:] in (["Comments:", "A note"],
                                                                   ["Text added on the page:", "A note"])
    if packed or b"Highlight" not in annotation:
        return
    for name in ("gnuplot.pdf", "r-intro.pdf", "acm-sigconf.pdf"):
        data = (corpus / name).read_bytes()
        assert not pdf._may_read_annotations(data)
        skipped = pdf.read_pdf(data, name).texts
        pdf._names_annotation, kept = (lambda part: True), pdf._names_annotation
        try:
            assert pdf.read_pdf(data, name).texts == skipped
        finally:
            pdf._names_annotation = kept


def test_without_the_c_scan_the_annotations_are_always_looked_at(corpus, pdf_checks):
    from ingest import pdf

    assert pdf._may_read_annotations((corpus / "gnuplot.pdf").read_bytes()) == (pdf_checks == "Python")
