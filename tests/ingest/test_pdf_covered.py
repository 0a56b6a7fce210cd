"""Text a reader cannot see because of what is drawn with it (ingest/pdf_covered.py): under a box
drawn over it (a redaction done by drawing a black box) or in the colour of the box under it is not
read, nor looked for by the viewer, nor the words of a line that a box covers; text on a box in
another colour, under a transparent box or underlined, and a scan's text layer under its page
picture, are read."""
from __future__ import annotations

from ingest import read_document
from tests.ingest.pdf_files import write_pdf_objects, write_stream_pdf


def _line(y: int, text: bytes, state: bytes = b"") -> bytes:
    """One line of 12 pt Helvetica at (72, y), with graphics/text state operators `state`, in q ... Q."""
    return b"q %s BT /F1 12 Tf 72 %d Td (%s) Tj ET Q\n" % (state, y, text)


def _box(y: int, colour: bytes, width: int = 300, state: bytes = b"") -> bytes:
    """A filled box a line tall from x = 70 under the line at `y`."""
    return b"q %s %s 70 %d %d 16 re f Q\n" % (state, colour, y - 4, width)


_SECRET = b"Settlement amount 4.2 million euros"
_CONTRACT = b"".join([
    _line(700, b"Contract between Acme and the supplier"),
    _line(680, _SECRET), _box(680, b"0 g"),                              # a black box drawn over the line
    _line(660, b"Red text under the black box", b"1 0 0 rg"), _box(660, b"0 g"),
    _line(640, b"Whited out clause 7"), _box(640, b"1 g"),               # a white box over it
    _box(620, b"0 0 0.1 rg"), _line(620, b"Navy on navy note", b"0 0 0.15 rg"),       # dark on dark
    _box(600, b"0 0 0.1 rg"), _line(600, b"White on navy heading", b"1 1 1 rg"),
    _box(580, b"0.85 g"), _line(580, b"Black on a grey panel"),
    _line(560, b"Under a transparent box"), _box(560, b"0 g", state=b"/GS0 gs"),
    _line(520, b"Underlined text"), b"q 0 g 72 518 100 0.5 re f Q\n",
    b"q /Fm0 Do Q\n",
])
# in the form (drawn at half size at (300, 100)): a line under a black box, a line beside it
_FORM = _line(300, b"Form line under a box") + b"q 0 g 60 290 400 30 re f Q\n" + _line(200, b"Form line shown")
# a scan whose text layer is plain text drawn under the page's picture (as some OCR programs write it)
_SCAN = _line(700, b"Scanned invoice number 4711") + b"q 612 0 0 792 0 0 cm BI /W 2 /H 2 /CS /G /BPC 8 ID " \
    b"\xc0\xc8\xd0\xd8 EI Q\n"


def test_text_under_a_box_or_in_its_colour_is_not_read(tmp_path, pdf_checks):
    doc = read_document(write_stream_pdf(tmp_path / "contract.pdf", [_CONTRACT, _SCAN], form=_FORM))
    assert doc.page(1).text.splitlines() == [
        "Contract between Acme and the supplier", "White on navy heading", "Black on a grey panel",
        "Under a transparent box", "Underlined text",
        "Form line shown"]
    assert doc.page(2).text == "Scanned invoice number 4711"


def test_the_viewer_does_not_mark_covered_text_as_the_quote(tmp_path):
    """The redacted line is not found under its box (only a weak fuzzy match elsewhere); a line
    shown is marked where it is drawn."""
    from app.page_images import render_page

    pdf = write_stream_pdf(tmp_path / "contract.pdf", [_CONTRACT], form=_FORM)
    covered = render_page(pdf, 1, highlight=_SECRET.decode(), scale=1)
    assert covered.match_score < 90 and all(not 792 - 696 < box[1] < 792 - 676 for box in covered.boxes)
    shown = render_page(pdf, 1, highlight="White on navy heading", scale=1)
    assert shown.highlighted and shown.match_score == 100
    assert 792 - 620 < shown.boxes[0][1] < shown.boxes[0][3] < 792 - 590


def test_the_words_of_a_line_under_a_box_are_not_read(tmp_path):
    """A redaction box over a name inside a line (the line is one text object, as most programs
    write it) hides those words only: they are left out, the rest of the line is read, and the viewer
    does not find them. Courier 12 pt: 7.2 pt a character, the name at x = 129.6-201.6. A character
    only partly under a box, its centre outside (the "r" of "Ward", at 86.4-93.6 under a box to 89),
    is read; white text drawn on the box after it is read."""
    from app.page_images import render_page

    content = (b"BT /F1 12 Tf 72 700 Td (Patient John Smith was admitted on 3 May) Tj ET\n"
               b"q 0 g 128 696 74 14 re f Q\n"                                       # over "John Smith"
               b"BT /F1 12 Tf 72 680 Td (Ward 7, bed 12, since 2 a.m.) Tj ET\n"
               b"q 0 g 70 676 19 14 re f Q\n"                                        # "Wa" and a third of the "r"
               b"BT 1 g /F1 8 Tf 140 700 Td (REDACTED) Tj ET\n")                    # on the box, after it
    pdf = write_pdf_objects(tmp_path / "redacted.pdf", [
        b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Courier >>"])
    assert read_document(pdf).page(1).text.splitlines() == [
        "Patient was admitted on 3 May", "rd 7, bed 12, since 2 a.m.", "REDACTED"]
    hidden = render_page(pdf, 1, highlight="Patient John Smith was admitted", scale=1)
    assert hidden.match_score < 90
    shown = render_page(pdf, 1, highlight="was admitted on 3 May", scale=1)
    assert shown.highlighted and shown.match_score == 100 and shown.boxes[0][0] > 201


def test_a_word_boxed_over_in_a_real_paper_is_the_only_change(tmp_path, corpus):
    """acm-sigconf.pdf p. 2 with a black box drawn (as a new content stream, the way an editor adds
    it) over the characters of "double-blind" in "a double-blind initial submission": the page reads
    as before without that word; the lines above and below, whose boxes the black box touches, keep
    every character."""
    import pypdfium2 as pdfium
    from pypdf import PdfWriter
    from pypdf.generic import ArrayObject, DecodedStreamObject, NameObject

    source = corpus / "acm-sigconf.pdf"
    with pdfium.PdfDocument(source) as pdf:
        textpage = pdf[1].get_textpage()
        at = textpage.get_text_range().index("double-blind initial submission")
        chars = [textpage.get_charbox(i) for i in range(at, at + len("double-blind"))]
    left, bottom = min(c[0] for c in chars) - 0.5, min(c[1] for c in chars) - 1
    right, top = max(c[2] for c in chars) + 0.5, max(c[3] for c in chars) + 1
    writer = PdfWriter()
    writer.append(source, pages=[1])
    box = DecodedStreamObject()
    box.set_data(b"q 0 g %.2f %.2f %.2f %.2f re f Q" % (left, bottom, right - left, top - bottom))
    page = writer.pages[0]
    contents = page.raw_get("/Contents")                   # a stream, or an array of them
    streams = list(contents.get_object()) if isinstance(contents.get_object(), ArrayObject) else [contents]
    page[NameObject("/Contents")] = ArrayObject([*streams, writer._add_object(box)])
    writer.write(tmp_path / "boxed.pdf")

    before = read_document(source).page(2).text
    assert "a\ndouble-blind initial submission" in before
    assert read_document(tmp_path / "boxed.pdf").page(1).text == before.replace(
        "a\ndouble-blind initial submission", "a\ninitial submission")


def test_text_under_a_filled_rectangle_comment_is_not_read(tmp_path, pdf_checks):
    """A viewer's rectangle comment filled black over a line (a redaction done with the comment
    tools) and a typed-text box on an opaque white background over a line ("whiteout", the typed
    text read as added text) hide those lines; a rectangle comment only outlining a line does not."""
    from pypdf import PdfWriter
    from pypdf.annotations import FreeText, Rectangle

    from tests.ingest.pdf_files import write_text_pdf

    source = write_text_pdf(tmp_path / "letter.pdf", [([
        (72, 700, "Salary of Ana Ribeiro: 84000 euros"), (72, 680, "Start date: 1 March"),
        (72, 660, "Old address: Rua Augusta 12"), (72, 640, "Signed in Lisboa")], "")])
    writer = PdfWriter(clone_from=source)
    writer.add_annotation(0, Rectangle(rect=(70, 676, 300, 694), interior_color="000000"))
    writer.add_annotation(0, FreeText(text="New address: Rua do Ouro 5", rect=(70, 656, 300, 674),
                                      background_color="ffffff", border_color=None))
    writer.add_annotation(0, Rectangle(rect=(70, 636, 300, 654)))
    writer.write(tmp_path / "commented.pdf")
    assert read_document(tmp_path / "commented.pdf").page(1).text.splitlines() == [
        "Salary of Ana Ribeiro: 84000 euros", "Signed in Lisboa", "", "Text added on the page:",
        "New address: Rua do Ouro 5"]


def test_a_box_only_inside_a_form_still_hides_its_line(tmp_path, pdf_checks):
    """The page's own content has no box (the C count that lets most pages skip the walk must look
    into form XObjects, scaled): the form's box still hides the form's line under it."""
    doc = read_document(write_stream_pdf(tmp_path / "form.pdf", [_line(700, b"Page line") + b"q /Fm0 Do Q\n"],
                                         form=_FORM))
    assert doc.page(1).text.splitlines() == ["Page line", "Form line shown"]
