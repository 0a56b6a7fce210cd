"""PDF pages built at test time for what the corpus lacks: cropped and rotated pages, text off the
page, layers."""
from __future__ import annotations

from pathlib import Path

import pytest

from ingest import read_document
from tests.ingest.pdf_files import write_pdf_objects, write_text_pdf

_PRINT_SHEET = [(100, 700, "Body text a reader sees"), (10, 10, "SLUG job 4711 plate C"),
                (300, 780, "Cropped away header")]


def test_only_the_text_inside_a_cropped_page_is_read(tmp_path, pdf_checks):
    """A viewer shows the CropBox (within the MediaBox): a print sheet's slug and text cropped away
    are not on the page a reader sees, rotated or not; a missing, empty or oversized CropBox crops nothing."""
    pdf = write_text_pdf(tmp_path / "cropped.pdf", [
        (_PRINT_SHEET, "/CropBox [50 50 562 742]"),
        (_PRINT_SHEET, "/CropBox [50 50 562 742] /Rotate 90"),
        (_PRINT_SHEET, ""),
        (_PRINT_SHEET, "/CropBox [-100 -100 900 900]"),
        (_PRINT_SHEET, "/CropBox [0 0 0 0]"),
    ])
    doc = read_document(pdf)
    whole = "Body text a reader sees\nSLUG job 4711 plate C\nCropped away header"
    assert [p.text for p in doc.pages] == ["Body text a reader sees"] * 2 + [whole] * 3


def test_a_line_end_hyphen_is_kept_where_the_document_writes_the_word_with_one(tmp_path):
    """PDFium marks every letter-hyphen-letter line end as a hyphenated word, so a compound broken at
    its own hyphen read "wellknown": the hyphen stays when the document writes the word with it
    elsewhere and not (more often) without; a word hyphenated only to break the line is joined.
    Page 2 is cropped, so it is read by the bounded call (PDFium's other marker, U+0002)."""
    lines = [(72, 700, "The well-"), (72, 686, "known method reads the docu-"), (72, 672, "ment with a long-"),
             (72, 658, "term view of envi-"), (72, 644, "ronments.")]
    elsewhere = [(72, 600, "A well-known, long-term document; a well-known state-of-the-art tool.")]
    pdf = write_text_pdf(tmp_path / "hyphens.pdf", [
        (lines, ""), ([(72, 700, "It is state-"), (72, 686, "of-the-art. A docu-"), (72, 672, "ment.")] + elsewhere,
                      "/CropBox [0 0 600 792]")])
    doc = read_document(pdf)
    assert doc.page(1).text == "The well-known method reads the document with a long-term view of environments."
    assert doc.page(2).text.startswith("It is state-of-the-art. A document.\n")


def test_text_beyond_the_page_edge_is_not_read(tmp_path, read, pdf_checks):
    """Text set outside the MediaBox of a page without a CropBox is on no page a reader sees: a line
    right of the edge or below it is not read. gnuplot.pdf p. 290 has an overfull line whose last
    word ("(‘plot‘).") runs off the right edge; the rest of the line stays."""
    pdf = write_text_pdf(tmp_path / "edges.pdf", [
        ([(72, 700, "Kept on the page"), (700, 500, "Right of the edge"), (72, -40, "Below the page")], ""),
        ([(72, 700, "Second page")], ""),
    ])
    assert [p.text for p in read_document(pdf).pages] == ["Kept on the page", "Second page"]
    page = read("gnuplot.pdf").page(290).text
    assert "coordinates. It works only for 2-dimensional plotting\n" in page
    assert "coordinates. It works only for 2-dimensional plotting (‘plot‘)" not in page


def _layered_pdf(path, config: bytes, packed: tuple[int, ...] = ()):
    """Two pages; on page 1 text in layer "Draft", in layer "Final", in a form XObject drawn inside
    "Draft", and in a form whose own content marks a line "Draft"; page 2 a "Draft" line. `config` is
    the default view's settings (/OCProperties /D); `packed`: objects put in a compressed object stream."""
    resources = b"/Font << /F1 3 0 R >> /Properties << /d 8 0 R /f 9 0 R >>"

    def stream(body: bytes, entries: bytes = b"") -> bytes:
        return b"<< %s /Length %d >>\nstream\n%s\nendstream" % (entries, len(body), body)

    def page(contents: int) -> bytes:
        return (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << %s "
                b"/XObject << /X1 10 0 R /X2 11 0 R >> >> /Contents %d 0 R >>" % (resources, contents))

    form = b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << %s >>" % resources
    return write_pdf_objects(path, packed=packed, objects=[
        b"<< /Type /Catalog /Pages 2 0 R /OCProperties << /OCGs [8 0 R 9 0 R] /D << %s >> >> >>" % config,
        b"<< /Type /Pages /Kids [4 0 R 5 0 R] /Count 2 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        page(6), page(7),
        stream(b"BT /F1 12 Tf 72 700 Td (Rent is 1000 euros a month) Tj ET\n"
               b"/OC /d BDC BT /F1 12 Tf 72 680 Td (Landlord may accept 850) Tj ET EMC\n"
               b"/OC /f BDC BT /F1 12 Tf 72 660 Td (Final version) Tj ET EMC\n"
               b"/OC /d BDC /X1 Do EMC /X2 Do\n"),
        stream(b"BT /F1 12 Tf 72 700 Td (Page two) Tj ET /OC /d BDC BT /F1 12 Tf 72 680 Td (Draft on two) Tj ET EMC"),
        b"<< /Type /OCG /Name (Draft) >>", b"<< /Type /OCG /Name (Final) >>",
        stream(b"BT /F1 12 Tf 72 600 Td (Old clause 7) Tj ET", form),
        stream(b"/OC /d BDC BT /F1 12 Tf 72 560 Td (Rent is 900 euros a month) Tj ET EMC "
               b"BT /F1 12 Tf 72 540 Td (Signed in Porto) Tj ET", form),
    ])


@pytest.mark.parametrize("config,packed", [(b"/OFF [8 0 R]", ()), (b"/BaseState /OFF /ON [9 0 R]", ()),
                                           (b"/OFF [8 0 R]", (1, 8, 9))])
def test_layers_off_in_the_default_view_are_not_read(tmp_path, config, packed):
    """Optional content (layers) that the default view turns off is not shown by a viewer, nor by
    the source viewer's render: it is not read, wherever it is drawn, also when the catalog is in a
    compressed object stream; page numbers stay. The viewer looks for a passage only in what is
    shown: the hidden "900" line is not marked as the quote."""
    from app.page_images import render_page

    pdf = _layered_pdf(tmp_path / "lease.pdf", config, packed)
    doc = read_document(pdf)
    assert [p.text for p in doc.pages] == ["Rent is 1000 euros a month\nFinal version\nSigned in Porto", "Page two"]
    shown = render_page(pdf, 1, highlight="Rent is 1000 euros a month", scale=1)
    assert shown.highlighted and shown.match_score == 100 and shown.boxes[0][1] < 792 - 690
    hidden = render_page(pdf, 1, highlight="Rent is 900 euros a month", scale=1)
    assert hidden.match_score < 100 and all(box[1] < 792 - 690 for box in hidden.boxes)


def test_a_pdfium_without_object_switches_reads_layers_as_before(tmp_path, monkeypatch):
    """pyproject allows older pypdfium2 builds; one without FPDFPageObj_SetIsActive reads every layer
    (as before layers were hidden) rather than refusing the file as corrupt."""
    import pypdfium2.raw as pdfium_c

    monkeypatch.delattr(pdfium_c, "FPDFPageObj_SetIsActive")
    doc = read_document(_layered_pdf(tmp_path / "lease.pdf", b"/OFF [8 0 R]"))
    assert "Landlord may accept 850" in doc.page(1).text and doc.page(2).text == "Page two\nDraft on two"



_TURNED_LINES = [b"First line of the infor-", b"mation block here.", b"Third line ends it."]


@pytest.mark.parametrize("matrix,rotate", [("1 0 0 1 72 {y}", "/Rotate 90"),          # page turned clockwise
                                           ("0 -1 1 0 {y} 720", ""),                  # text set sideways clockwise
                                           ("1 0 0 1 72 {y}", "/Rotate 270"), ("0 1 -1 0 {y} 72", "/Rotate 90")])
def test_text_running_down_the_shown_page_is_read_first_line_first(tmp_path, matrix, rotate, pdf_checks):
    """PDFium read text that runs down the page as shown (a page turned clockwise in a viewer and
    saved, a table set sideways) last line first, a word hyphenated at a line end unjoined: it is read
    as a reader turns the page, and the viewer marks a quote on its own line where the page shows it
    (page 2 draws only the first line). Text that runs up the shown page, or a landscape page whose
    /Rotate shows its text upright, reads as before."""
    from PIL import ImageOps

    from app.page_images import render_page

    def page(lines: list[bytes]) -> bytes:
        stream = b"".join(b"BT /F1 12 Tf %s Tm (%s) Tj ET\n" % (matrix.format(y=700 - 14 * i).encode(), line)
                          for i, line in enumerate(lines))
        return b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)

    kid = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 792 792] /Resources << /Font << /F1 3 0 R >> >>"
           b" /Contents %d 0 R " + rotate.encode() + b" >>")
    pdf = write_pdf_objects(tmp_path / "turned.pdf", [
        b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [4 0 R 5 0 R] /Count 2 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>", kid % 6, kid % 7,
        page(_TURNED_LINES), page(_TURNED_LINES[:1])])
    assert read_document(pdf).page(1).text == "First line of the information block here.\nThird line ends it."

    shown = render_page(pdf, 1, highlight="First line of the information", scale=1)
    assert shown.highlighted and len(shown.boxes) == 2
    left, top, right, bottom = render_page(pdf, 1, highlight=_TURNED_LINES[0].decode(), scale=1).boxes[0]
    ink = ImageOps.invert(render_page(pdf, 2, scale=1).image.convert("L")).getbbox()     # the first line alone
    assert abs(left - ink[0]) < 6 and abs(top - ink[1]) < 6 and abs(right - ink[2]) < 6 and abs(bottom - ink[3]) < 6


_VERTICAL_FONT = Path("/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf")


@pytest.mark.skipif(not _VERTICAL_FONT.is_file(), reason="needs a TrueType font to embed (fonts-liberation)")
def test_vertical_japanese_is_read_right_column_first(tmp_path, pdf_checks):
    """Vertical writing (Identity-V: upright glyphs, each column running down, columns read right to
    left) was read leftmost column first; it is read as a reader reads it, and the viewer marks a
    column where it is drawn. The embedded font's glyphs are Latin letters: only the ToUnicode map
    and the vertical metrics matter to the text."""
    from app.page_images import render_page

    columns = ["日本語の文章は縦に書きます。", "右から左へ読みます。", "三行目です。"]
    cid = {ch: 36 + i for i, ch in enumerate(sorted(set("".join(columns))))}
    content = b"".join(b"BT /F1 20 Tf 1 0 0 1 %d 700 Tm <%s> Tj ET\n" % (500 - 30 * i, b"".join(b"%04x" % cid[ch] for ch in col))
                       for i, col in enumerate(columns))
    to_unicode = (b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap /CMapName /U def 1 begincodespacerange"
                  b" <0000> <FFFF> endcodespacerange %d beginbfchar\n" % len(cid)
                  + b"".join(b"<%04x> <%s>\n" % (code, ch.encode("utf-16-be").hex().encode()) for ch, code in cid.items())
                  + b"endbfchar endcmap CMapName currentdict /CMap defineresource pop end end")
    font = _VERTICAL_FONT.read_bytes()

    def stream(body: bytes, entries: bytes = b"") -> bytes:
        return b"<< %s /Length %d >>\nstream\n%s\nendstream" % (entries, len(body), body)

    pdf = write_pdf_objects(tmp_path / "tategaki.pdf", [
        b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        stream(content),
        b"<< /Type /Font /Subtype /Type0 /BaseFont /F /Encoding /Identity-V /DescendantFonts [6 0 R] /ToUnicode 8 0 R >>",
        b"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /F /CIDSystemInfo << /Registry (Adobe) /Ordering (Identity)"
        b" /Supplement 0 >> /FontDescriptor 7 0 R /DW 1000 /CIDToGIDMap /Identity >>",
        b"<< /Type /FontDescriptor /FontName /F /Flags 4 /FontBBox [0 -200 1000 900] /ItalicAngle 0 /Ascent 900"
        b" /Descent -200 /CapHeight 700 /StemV 80 /FontFile2 9 0 R >>",
        stream(to_unicode), stream(font, b"/Length1 %d" % len(font))])
    assert read_document(pdf).page(1).text.splitlines() == columns
    shown = render_page(pdf, 1, highlight=columns[1], scale=1)
    assert shown.highlighted and shown.match_score == 100
    left, top, right, bottom = shown.boxes[0]                  # the middle column: x = 470, from y = 700 down
    assert left < 470 < right and right - left < 40 and top < 792 - 680 and bottom > 792 - 600


@pytest.mark.parametrize("key", [b"/PageLabels", b"/PageL#61bels"])
@pytest.mark.parametrize("packed", [(), (1,)])
def test_printed_labels_are_asked_for_only_in_a_file_that_has_them(tmp_path, read, corpus, key, packed):
    """PDFium is asked for each page's printed label only when the file may have /PageLabels (in its
    bytes or object streams, the name written plainly or with #xx escapes); a file without them reads
    None for every page, as PDFium's answer was, and the corpus labels are the same either way."""
    from ingest import pdf
    from tests.ingest.pdf_files import write_pdf_objects

    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R >>"
    content = b"<< /Length 0 >>\nstream\n\nendstream"
    path = write_pdf_objects(tmp_path / "labelled.pdf", [
        b"<< /Type /Catalog /Pages 2 0 R %s << /Nums [0 << /S /r >> 1 << /S /D /P (A-) >>] >> >>" % key,
        b"<< /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 >>", page % 5, page % 5, content], packed=packed)
    assert pdf.read_pdf(path.read_bytes(), "labelled.pdf").labels == ["i", "A-1"]
    if packed or b"#" in key:
        return
    assert not pdf._file_holds((corpus / "gnuplot.pdf").read_bytes(), [pdf._names_labels])[0]
    for name in ("gnuplot.pdf", "r-intro.pdf", "debian-history-fr.pdf"):
        data = (corpus / name).read_bytes()
        pdf._names_labels, kept = (lambda part: True), pdf._names_labels
        try:
            asked = pdf.read_pdf(data, name).labels
        finally:
            pdf._names_labels = kept
        assert pdf.read_pdf(data, name).labels == asked == [p.label for p in read(name).pages]
    assert read("r-intro.pdf").page(15).label == "9" and read("gnuplot.pdf").page(15).label is None
