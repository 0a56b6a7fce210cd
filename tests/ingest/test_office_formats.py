""".pptx, .xlsx, .odt, .epub, .rtf and plain-text suffixes: written at test time by the libraries that
produce such files (python-pptx, openpyxl, odfpy, EbookLib), read back into citable units; damaged ones are
refused with the file's name and the reason."""
from __future__ import annotations

import zipfile

import pytest

from ingest import IngestError, read_document
from ingest import formats, office
from tests.ingest.office_files import write_compound_file, write_epub, write_odt, write_pptx


def test_pptx_one_unit_per_slide_with_tables_groups_and_notes(tmp_path):
    doc = read_document(write_pptx(tmp_path / "review.pptx"))
    assert doc.kind == "pptx" and doc.unit == "slide" and doc.title == "Quarterly review"
    assert [p.label for p in doc.pages] == ["slide 1", "slide 2", "slide 3"]
    first, blank, third = (p.text for p in doc.pages)
    assert first.splitlines() == ["Revenue grew", "Revenue rose 12% to 4.2 M€", "המכירות עלו בחיפה",
                                  "Notes: Mention the Haifa office opening."]
    assert blank == ""
    assert third.splitlines() == ["Costs", "item | cost", "rent | 300", "Chart: Revenue by city (M€)",
                                  "| Lisboa | Porto", "Q1 | 1.5 | 0.75", "Q2 | 2.25 | 1", "grouped remark"]
    assert doc.outline == [("Revenue grew", 1, 1), ("Costs", 1, 3)]


def test_odt_sections_at_headings_with_lists_tables_and_line_breaks(tmp_path):
    doc = read_document(write_odt(tmp_path / "rapport.odt"))
    assert doc.kind == "odt" and doc.unit == "section" and doc.title == "Rapport annuel"
    assert [p.label for p in doc.pages] == ["§1 (untitled)", "§2 Introduction", "§3 Détails"]
    assert doc.page(1).text == "Préambule avant le premier titre."
    assert doc.page(2).text.splitlines() == ["Introduction", "Le chiffre d'affaires",
                                             "a augmenté de 7 %.", "premier point"]
    assert doc.page(3).text.splitlines() == ["Détails", "cellule 42"]
    assert doc.outline == [("Introduction", 1, 2), ("Détails", 2, 3)]


def test_epub_chapters_in_spine_order_without_the_contents_page(tmp_path):
    doc = read_document(write_epub(tmp_path / "voyage.epub"))
    assert doc.kind == "epub" and doc.unit == "section" and doc.title == "A Small Voyage"
    # the first chapter opens without a heading: it takes its table-of-contents title
    assert [p.label for p in doc.pages] == ["§1 The Harbour", "§2 Morning", "§3 At Sea"]
    assert doc.page(1).text == "It was a dark night in Lisbon."
    assert "The sun rose over the Tagus." in doc.page(2).text
    assert "The ship sailed at six." in doc.page(3).text
    assert not any("Chapter" in p.text or "Contents" in p.text for p in doc.pages)


def test_rtf_escapes_are_decoded(tmp_path):
    rtf = tmp_path / "memo.rtf"
    rtf.write_bytes(rb"{\rtf1\ansi\ansicpg1252\deff0{\fonttbl{\f0 Times;}}\f0 Memo to staff\par"
                    rb" The caf\'e9 opens at 9.\par Shalom: \u1513?\u1500?\u1493?\u1501?.\par}")
    doc = read_document(rtf)
    assert doc.kind == "rtf" and doc.unit == "part" and doc.title == "Memo to staff"
    assert doc.page(1).text.splitlines() == ["Memo to staff", "The café opens at 9.", "Shalom: שלום."]


@pytest.mark.parametrize("name,body", [("data.csv", "city,population\nLisboa,545923\n"),
                                       ("analysis.py", "def mean(xs):\n    return sum(xs) / len(xs)\n"),
                                       ("paper.tex", "\\section{Results}\nThe effect was 0.4.\n")])
def test_plain_text_suffixes_are_read_as_text(tmp_path, name, body):
    """Read as text, and titled by the file's name: their first line is no title (it was: the
    documents panel and the prompt called data.csv "city,population", analysis.py "def mean(xs):")."""
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    doc = read_document(path)
    assert doc.kind == "txt" and doc.unit == "part" and doc.page(1).text == body.strip()
    assert doc.title == path.stem


def test_damaged_office_files_are_refused_by_name(tmp_path, monkeypatch):
    cases = {}
    for name in ("slides.pptx", "report.odt", "novel.epub", "numbers.xlsx", "letter.docx"):
        (tmp_path / f"text-{name}").write_text("not a zip at all")
        cases[f"text-{name}"] = ("corrupt", "not a ZIP archive")
        with zipfile.ZipFile(tmp_path / f"other-{name}", "w") as z:   # a ZIP, but not of that format
            z.writestr("readme.txt", "hello")
        cases[f"other-{name}"] = ("corrupt", "")
    good = {"slides.pptx": write_pptx(tmp_path / "ok.pptx"), "report.odt": write_odt(tmp_path / "ok.odt"),
            "novel.epub": write_epub(tmp_path / "ok.epub")}
    for name, path in good.items():                  # the first half of a real file
        data = path.read_bytes()
        (tmp_path / f"cut-{name}").write_bytes(data[: len(data) // 2])
        cases[f"cut-{name}"] = ("corrupt", "not a ZIP archive")
    (tmp_path / "memo.rtf").write_text("Dear all, this is plain text named .rtf")
    cases["memo.rtf"] = ("corrupt", "not an RTF file")
    for name, (reason, words) in cases.items():
        with pytest.raises(IngestError) as info:
            read_document(tmp_path / name)
        assert info.value.reason == reason and name in str(info.value) and words in str(info.value), name

    # a damaged part inside a valid archive: the library's parse error becomes `corrupt`
    for name, part in (("ok.pptx", "ppt/slides/slide1.xml"), ("ok.odt", "content.xml")):
        damaged = tmp_path / f"damaged-{name}"
        with zipfile.ZipFile(tmp_path / name) as src, zipfile.ZipFile(damaged, "w") as out:
            for info in src.infolist():
                data = src.read(info)
                out.writestr(info, data[:90] if info.filename == part else data)
        with pytest.raises(IngestError) as err:
            read_document(damaged)
        assert err.value.reason == "corrupt" and damaged.name in str(err.value)

    # a zip bomb is refused before any library inflates it
    monkeypatch.setattr(formats, "MAX_UNPACKED_BYTES", 10_000)
    with zipfile.ZipFile(tmp_path / "bomb.pptx", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("ppt/slides/slide1.xml", b"<a/>" + b" " * 50_000)
    with pytest.raises(IngestError) as err:
        read_document(tmp_path / "bomb.pptx")
    assert err.value.reason == "too_large" and "bomb.pptx" in str(err.value)


def test_xlsx_sheets_rows_values_and_long_sheets_in_row_ranges(tmp_path, monkeypatch):
    import datetime

    from openpyxl import Workbook

    book = Workbook()
    sales = book.active
    sales.title = "Sales"
    sales.append(["region", "month", "revenue", "note"])
    sales.append(["Lisboa", datetime.date(2026, 3, 1), 1234567.5, None])
    sales.append(["Porto", datetime.datetime(2026, 3, 1, 14, 30), 0.1 + 0.2, "two\nlines"])
    log = book.create_sheet("Log")
    log.append(["id", "event"])
    for i in range(1, 60):
        log.append([i, f"event {i} in the warehouse"])
    book.properties.title = "Numbers 2026"
    book.save(tmp_path / "numbers.xlsx")

    doc = read_document(tmp_path / "numbers.xlsx")
    assert (doc.kind, doc.unit, doc.title) == ("xlsx", "sheet", "Numbers 2026")
    assert [p.label for p in doc.pages] == ["Sales", "Log"]
    assert doc.page(1).text.splitlines() == ["region | month | revenue | note", "Lisboa | 2026-03-01 | 1234567.5",
                                             "Porto | 2026-03-01 14:30:00 | 0.3 | two lines"]

    monkeypatch.setattr(office, "SHEET_UNIT_CHARS", 400)                 # now the log is cut into ranges
    doc = read_document(tmp_path / "numbers.xlsx")
    assert doc.unit == "part" and doc.outline == [("Sales", 1, 1), ("Log", 1, 2)]
    ranges = doc.pages[1:]
    assert len(ranges) > 2 and ranges[0].label.startswith("Log (rows 1-")
    assert ranges[-1].label.endswith("-60)")                            # the spreadsheet's own row numbers
    seen = []
    for part in ranges:
        lines = part.text.splitlines()
        assert lines[0] == "id | event" and len(part.text) <= 400 + 40
        seen += [line for line in lines if line != "id | event"]
    assert seen == [f"{i} | event {i} in the warehouse" for i in range(1, 60)]  # every row once, in order


def test_odt_leaves_out_text_deleted_under_track_changes(tmp_path):
    import re

    from odf import text
    from odf.opendocument import OpenDocumentText

    odt = OpenDocumentText()
    odt.text.addElement(text.P(text="The budget was kept."))
    odt.save(str(tmp_path / "plain.odt"))
    # what LibreOffice writes for a deleted paragraph while changes are tracked (kept for undo)
    deleted = ('<text:tracked-changes><text:changed-region xml:id="ct1" text:id="ct1"><text:deletion>'
               '<office:change-info><dc:creator>Ana</dc:creator></office:change-info>'
               '<text:p>The budget was cut by half.</text:p></text:deletion></text:changed-region>'
               '</text:tracked-changes>')
    with zipfile.ZipFile(tmp_path / "plain.odt") as src, zipfile.ZipFile(tmp_path / "draft.odt", "w") as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "content.xml":
                data = re.sub(rb"(<office:text[^>]*>)", lambda m: m.group(1) + deleted.encode(), data, count=1)
                assert b"cut by half" in data
            out.writestr(info, data)
    doc = read_document(tmp_path / "draft.odt")
    assert [p.text for p in doc.pages] == ["The budget was kept."]


def test_eml_headers_body_and_attachment_names(tmp_path):
    from email.message import EmailMessage

    mail = EmailMessage()
    mail["Subject"] = "Contrato de arrendamento — versão final"
    mail["From"] = "Ana Ribeiro <ana@example.pt>"
    mail["To"] = "bruno@example.pt"
    mail["Date"] = "Tue, 03 Mar 2026 10:15:00 +0000"
    mail.set_content("Olá Bruno,\n\nA renda passa a 950 € a partir de abril.\n\nAna")
    mail.add_alternative("<html><body><p>Olá Bruno,</p><p>A renda passa a <b>950 €</b>.</p></body></html>",
                         subtype="html")
    mail.add_attachment(b"%PDF-1.4 ...", maintype="application", subtype="pdf", filename="contrato.pdf")
    (tmp_path / "contrato.eml").write_bytes(bytes(mail))
    doc = read_document(tmp_path / "contrato.eml")
    assert doc.kind == "eml" and doc.unit == "part" and doc.title == "Contrato de arrendamento — versão final"
    lines = doc.page(1).text.splitlines()
    assert lines[:5] == ["Subject: Contrato de arrendamento — versão final", "From: Ana Ribeiro <ana@example.pt>",
                         "To: bruno@example.pt", "Date: Tue, 03 Mar 2026 10:15:00 +0000", ""]
    assert "A renda passa a 950 € a partir de abril." in lines                   # the plain-text part
    assert lines[-1] == "Attachments (not read): contrato.pdf"

    html_only = EmailMessage()
    html_only["Subject"] = "Newsletter"
    html_only["From"] = "news@example.org"
    html_only.set_content("<html><body><h1>March</h1><p>We moved to Porto.</p><script>x()</script></body></html>",
                          subtype="html")
    (tmp_path / "news.eml").write_bytes(bytes(html_only))
    text = read_document(tmp_path / "news.eml").page(1).text
    assert "We moved to Porto." in text and "x()" not in text and "<p>" not in text

    (tmp_path / "notes.eml").write_text("just some words, no headers at all\n")
    with pytest.raises(IngestError) as err:
        read_document(tmp_path / "notes.eml")
    assert err.value.reason == "corrupt" and "notes.eml" in str(err.value)
    (tmp_path / "backup.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    with pytest.raises(IngestError, match="backup.zip: an archive: unpack it"):
        read_document(tmp_path / "backup.zip")


@pytest.mark.parametrize("content_type,body", [
    ("text/plain", "Olá, a renda é 950 €.".encode()),                       # 8-bit UTF-8, no charset named
    ("text/plain", "Olá, a renda é 950 €.".encode("cp1252")),                # 8-bit Windows-1252, none named
    ("text/plain; charset=x-unknown", "Olá, a renda é 950 €.".encode()),     # a charset Python does not know
])
def test_eml_body_without_a_usable_charset_is_read_as_written(tmp_path, content_type, body):
    raw = (b"From: ana@example.pt\r\nSubject: Renda\r\nMIME-Version: 1.0\r\nContent-Type: "
           + content_type.encode() + b"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body + b"\r\n")
    (tmp_path / "renda.eml").write_bytes(raw)
    assert read_document(tmp_path / "renda.eml").page(1).text.endswith("\n\nOlá, a renda é 950 €.")


def test_xlsx_whose_stated_dimension_is_wrong_is_read_whole(tmp_path):
    """Some writers state a sheet's used range as "A1" whatever it holds; openpyxl's read-only mode
    trusts it, and the rest of the sheet was lost. Every row is read, numbered as in the sheet."""
    import re

    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet["B3"], sheet["C3"] = "name", "city"
    sheet.append([None, "Ana", "Porto"])
    sheet.append([None, "Rui", "Faro"])
    book.save(tmp_path / "export.xlsx")
    with zipfile.ZipFile(tmp_path / "export.xlsx") as z:
        files = {n: z.read(n) for n in z.namelist()}
    files["xl/worksheets/sheet1.xml"], count = re.subn(rb'<dimension ref="[^"]*"/>', b'<dimension ref="A1"/>',
                                                       files["xl/worksheets/sheet1.xml"])
    assert count == 1
    with zipfile.ZipFile(tmp_path / "export.xlsx", "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    assert read_document(tmp_path / "export.xlsx").page(1).text == "| name | city\n| Ana | Porto\n| Rui | Faro"


def test_xlsx_percentages_read_as_shown(tmp_path):
    """A cell showing 25% stores 0.25: read as the reader sees it, with the format's decimals."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["region", "growth", "margin", "units", "share"])
    sheet.append(["Lisboa", 0.25, 0.0834, 12, None])
    sheet.append(["Porto", -0.031, 1.5, 0.5, True])
    for row in sheet.iter_rows(min_row=2, min_col=2, max_col=3):
        row[0].number_format, row[1].number_format = "0%", "0.00%;[Red]-0.00%"
    book.save(tmp_path / "growth.xlsx")
    assert read_document(tmp_path / "growth.xlsx").page(1).text.splitlines() == [
        "region | growth | margin | units | share", "Lisboa | 25% | 8.34% | 12", "Porto | -3% | 150.00% | 0.5 | True"]


def test_eml_forwarded_as_attachment_is_read(tmp_path):
    """"Forward as attachment" puts the whole message a reader opens inside the e-mail: it is read
    after the body; other attachments are still only named."""
    from email.message import EmailMessage

    inner = EmailMessage()
    inner["Subject"] = "Orçamento 2026"
    inner["From"] = "rui@example.pt"
    inner.set_content("O orçamento aprovado é de 48 000 €.")
    inner.add_attachment(b"%PDF-1.4 ...", maintype="application", subtype="pdf", filename="orcamento.pdf")
    outer = EmailMessage()
    outer["Subject"] = "Fwd: Orçamento 2026"
    outer["From"] = "ana@example.pt"
    outer.set_content("Ver abaixo.")
    outer.add_attachment(inner)
    (tmp_path / "fwd.eml").write_bytes(bytes(outer))
    text = read_document(tmp_path / "fwd.eml").page(1).text
    assert text.endswith("Ver abaixo.\n\nAttached e-mail:\nSubject: Orçamento 2026\nFrom: rui@example.pt\n\n"
                         "O orçamento aprovado é de 48 000 €.\n\nAttachments (not read): orcamento.pdf"), text
    assert "(unnamed)" not in text


def test_pptx_smartart_text_is_read(tmp_path):
    """SmartArt (a process, a cycle, an org chart) is a graphic frame whose text lives in a diagram
    data part python-pptx does not read: a slide of steps read as its title only."""
    from lxml import etree
    from pptx import Presentation
    from pptx.opc.constants import CONTENT_TYPE, RELATIONSHIP_TYPE
    from pptx.opc.package import Part
    from pptx.opc.packuri import PackURI

    ns = ('xmlns:dgm="http://schemas.openxmlformats.org/drawingml/2006/diagram" '
          'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main"')
    points = "".join(f'<dgm:pt modelId="{i}"><dgm:prSet/><dgm:t><a:bodyPr/><a:p><a:r><a:t>{step}</a:t></a:r></a:p>'
                     "</dgm:t></dgm:pt>" for i, step in enumerate(["Plan", "Build", "Ship"], start=1))
    data = f'<dgm:dataModel {ns}><dgm:ptLst><dgm:pt modelId="0" type="doc"/>{points}</dgm:ptLst></dgm:dataModel>'
    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[5])
    slide.shapes.title.text = "Process"
    part = Part(PackURI("/ppt/diagrams/data1.xml"), CONTENT_TYPE.DML_DIAGRAM_DATA, deck.part.package, data.encode())
    rid = slide.part.relate_to(part, RELATIONSHIP_TYPE.DIAGRAM_DATA)
    slide.shapes._spTree.append(etree.fromstring(
        f'<p:graphicFrame xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main" {ns} '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        '<p:nvGraphicFramePr><p:cNvPr id="9" name="Diagram 1"/><p:cNvGraphicFramePr/><p:nvPr/></p:nvGraphicFramePr>'
        '<p:xfrm><a:off x="0" y="0"/><a:ext cx="8000000" cy="3000000"/></p:xfrm><a:graphic>'
        '<a:graphicData uri="http://schemas.openxmlformats.org/drawingml/2006/diagram">'
        f'<dgm:relIds r:dm="{rid}" r:lo="" r:qs="" r:cs=""/></a:graphicData></a:graphic></p:graphicFrame>'))
    deck.save(tmp_path / "process.pptx")
    assert read_document(tmp_path / "process.pptx").page(1).text == "Process\nPlan\nBuild\nShip"



def test_odt_table_rows_read_across(tmp_path):
    """As for .docx: a table row is one line "a | b" (each cell was a line of its own)."""
    from odf import table, text
    from odf.opendocument import OpenDocumentText

    odt = OpenDocumentText()
    odt.text.addElement(text.H(outlinelevel=1, text="Custos"))
    grid = table.Table()
    for values in (("item", "custo"), ("renda", "300")):
        row = table.TableRow()
        for value in values:
            cell = table.TableCell()
            cell.addElement(text.P(text=value))
            row.addElement(cell)
        grid.addElement(row)
    odt.text.addElement(grid)
    odt.save(str(tmp_path / "custos.odt"))
    assert [p.text for p in read_document(tmp_path / "custos.odt").pages] == ["Custos\nitem | custo\nrenda | 300"]


def test_odt_page_headers_and_footers_are_read(tmp_path):
    """As for .docx: the header and footer a reader sees on every page (styles.xml's master pages)
    are a section at the end."""
    from odf import style, text
    from odf.opendocument import OpenDocumentText

    odt = OpenDocumentText()
    layout = style.PageLayout(name="pm1")
    odt.automaticstyles.addElement(layout)
    master = style.MasterPage(name="Standard", pagelayoutname=layout)
    header, footer = style.Header(), style.Footer()
    header.addElement(text.P(text="Relatório R-77 — confidencial"))
    footer.addElement(text.P(text="Acme Lda, Porto"))
    master.addElement(header)
    master.addElement(footer)
    odt.masterstyles.addElement(master)
    odt.text.addElement(text.H(outlinelevel=1, text="Custos"))
    odt.save(str(tmp_path / "custos.odt"))
    doc = read_document(tmp_path / "custos.odt")
    assert [p.text for p in doc.pages] == ["Custos", "Headers and footers\nRelatório R-77 — confidencial\nAcme Lda, Porto"]


def test_eml_text_around_an_inline_picture_is_all_read(tmp_path):
    """A mail client that puts a picture between paragraphs (Apple Mail) sends the text in several
    parts of a multipart/mixed: every one is read, in order (only the first was)."""
    raw = (b"From: ana@example.pt\r\nSubject: Obra\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
           b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nA fachada ficou assim:\r\n"
           b"--b\r\nContent-Type: image/jpeg; name=fachada.jpg\r\nContent-Disposition: inline; filename=fachada.jpg\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n/9j/4AAQ\r\n"
           b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nO custo final foi 12 400 \xe2\x82\xac.\r\n--b--\r\n")
    (tmp_path / "obra.eml").write_bytes(raw)
    text = read_document(tmp_path / "obra.eml").page(1).text
    assert "A fachada ficou assim:\n\nO custo final foi 12 400 €." in text, text


def test_xlsx_hidden_sheets_rows_and_columns_are_read_marked(tmp_path):
    """What a workbook tucks away is read but marked: a hidden (or very hidden) sheet, a hidden row,
    the cells of hidden columns."""
    from openpyxl import Workbook

    book = Workbook()
    budget = book.active
    budget.title = "Budget"
    for row in (["item", "cost", "vat", "note", "owner"], ["rent", 900, 0.23, "monthly", "Ana"],
                ["bonus", 5000, 0, "one-off", "Rui"]):
        budget.append(row)
    budget.row_dimensions[3].hidden = True
    budget.column_dimensions.group("C", "D", hidden=True)
    book.create_sheet("Workings").append(["internal rate", 0.07])
    book["Workings"].sheet_state = "hidden"
    book.create_sheet("Keys").append(["key", 42])
    book["Keys"].sheet_state = "veryHidden"
    book.save(tmp_path / "budget.xlsx")

    doc = read_document(tmp_path / "budget.xlsx")
    assert [p.label for p in doc.pages] == ["Budget", "Workings", "Keys"]
    assert doc.page(1).text.splitlines() == [
        "item | cost | (hidden) vat | (hidden) note | owner",
        "rent | 900 | (hidden) 0.23 | (hidden) monthly | Ana",
        "(hidden row) bonus | 5000 | (hidden) 0 | (hidden) one-off | Rui"]
    assert [doc.page(2).text, doc.page(3).text] == ["(hidden sheet)\ninternal rate | 0.07", "(hidden sheet)\nkey | 42"]


def test_xlsx_formula_without_a_saved_value_reads_as_its_formula(tmp_path):
    """A workbook written by a program (openpyxl here) saves formulas without values: such a cell
    read as nothing ("total |"); it now reads as its formula, marked. A value a spreadsheet saved,
    or a saved empty text (a formula that shows ""), stays as it is."""
    import re

    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    for row in (["item", "cost", "note"], ["rent", 900, "monthly"], ["fees", 50, ""],
                ["total", "=SUM(B2:B3)", "=C3"], ["check", "=B4*2", None]):
        sheet.append(row)
    book.save(tmp_path / "costs.xlsx")
    with zipfile.ZipFile(tmp_path / "costs.xlsx") as z:
        files = {n: z.read(n) for n in z.namelist()}
    xml = files["xl/worksheets/sheet1.xml"]        # as a spreadsheet saves them: B5 computed, C4 an empty text
    xml, found = re.subn(rb'<c r="B5"><f>B4\*2</f><v\s*/?>(</v>)?', b'<c r="B5"><f>B4*2</f><v>1900</v>', xml)
    xml, found_too = re.subn(rb'<c r="C4"><f>C3</f><v\s*/?>(</v>)?', b'<c r="C4" t="str"><f>C3</f><v></v>', xml)
    assert found == found_too == 1
    files["xl/worksheets/sheet1.xml"] = xml
    with zipfile.ZipFile(tmp_path / "costs.xlsx", "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    assert read_document(tmp_path / "costs.xlsx").page(1).text.splitlines() == [
        "item | cost | note", "rent | 900 | monthly", "fees | 50",
        "total | =SUM(B2:B3) (formula, value not saved)", "check | 1900"]


def test_pptx_hidden_slide_is_read_marked(tmp_path):
    """A hidden slide (show="0": skipped in the slide show, still in the deck) is read, marked, and
    keeps its number, so slide 3 is still "slide 3"."""
    from pptx import Presentation

    deck = Presentation()
    for title in ("Plan", "Backup figures", "Next steps"):
        deck.slides.add_slide(deck.slide_layouts[5]).shapes.title.text = title
    deck.slides[1].element.set("show", "0")
    deck.save(tmp_path / "talk.pptx")
    doc = read_document(tmp_path / "talk.pptx")
    assert [(p.label, p.text) for p in doc.pages] == [
        ("slide 1", "Plan"), ("slide 2", "(hidden slide)\nBackup figures"), ("slide 3", "Next steps")]


def test_odt_hidden_text_is_not_read(tmp_path):
    """What LibreOffice hides is not read: characters or a paragraph whose style has the Hidden
    effect (text:display="none", also through a parent style), a hidden section, hidden text and a
    hidden paragraph fields whose condition held when the file was saved. Their visible
    neighbours, and a field whose condition did not hold, are read."""
    from odf import style, text
    from odf.opendocument import OpenDocumentText

    odt = OpenDocumentText()
    hush = style.Style(name="Hush", family="text")
    hush.addElement(style.TextProperties(display="none"))
    odt.styles.addElement(hush)
    odt.styles.addElement(style.Style(name="Whisper", family="text", parentstylename="Hush"))
    note = style.Style(name="DraftNote", family="paragraph")
    note.addElement(style.TextProperties(display="none"))
    odt.automaticstyles.addElement(note)
    para = text.P(text="Rent is ")
    para.addElement(text.Span(stylename="Whisper", text="900 or "))
    para.addElement(text.Span(text="1000 euros"))
    para.addElement(text.HiddenText(condition="ooow:1", stringvalue=" (floor 850)", ishidden="true"))
    para.addElement(text.HiddenText(condition="ooow:0", stringvalue=" a month"))
    odt.text.addElement(para)
    odt.text.addElement(text.P(stylename=note, text="Internal: walk away below 800."))
    gone = text.P(text="Old clause 7.")
    gone.addElement(text.HiddenParagraph(condition="ooow:1", ishidden="true"))
    odt.text.addElement(gone)
    section = text.Section(name="Drafts", display="none")
    section.addElement(text.P(text="Draft wording."))
    odt.text.addElement(section)
    odt.text.addElement(text.P(text="Payment in 30 days."))
    odt.save(str(tmp_path / "lease.odt"))
    assert read_document(tmp_path / "lease.odt").page(1).text == "Rent is 1000 euros a month\nPayment in 30 days."


def test_pptx_hidden_shapes_are_not_read(tmp_path):
    """A shape hidden in the Selection Pane (hidden="1") is not on the slide, in the show or in
    print: not read, nor the shapes of a hidden group; its visible neighbours are."""
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[5])
    slide.shapes.title.text = "Offer"
    slide.shapes.add_textbox(Inches(1), Inches(2), Inches(4), Inches(1)).text_frame.text = "Price 1000 euros"
    floor = slide.shapes.add_textbox(Inches(1), Inches(3), Inches(4), Inches(1))
    floor.text_frame.text = "Floor 850, do not show"
    group = slide.shapes.add_group_shape()
    group.shapes.add_textbox(Inches(1), Inches(4), Inches(4), Inches(1)).text_frame.text = "Old price 900"
    for shape in (floor, group):
        shape.element[0][0].set("hidden", "1")          # nvSpPr/cNvPr, nvGrpSpPr/cNvPr
    deck.save(tmp_path / "offer.pptx")
    assert read_document(tmp_path / "offer.pptx").page(1).text == "Offer\nPrice 1000 euros"


def test_xlsx_cells_a_number_format_hides_are_marked(tmp_path):
    """A number format whose section for the value is empty shows nothing: ";;;" hides any value,
    "0;-0;;@" hides zeros. Such a cell is read, marked "(hidden)"; a quoted ";" is text, not a section."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["item", "cost", "margin", "label"])
    sheet.append(["rent", 900, 0, "ok"])
    sheet.append(["bonus", -50, 12, "internal"])
    for row in sheet.iter_rows(min_row=2):
        row[1].number_format, row[2].number_format, row[3].number_format = ";;;", "0;-0;;@", '0;-0;";;"'
    book.save(tmp_path / "costs.xlsx")
    assert read_document(tmp_path / "costs.xlsx").page(1).text.splitlines() == [
        "item | cost | margin | label", "rent | (hidden) 900 | (hidden) 0 | ok", "bonus | (hidden) -50 | 12 | internal"]


def test_rtf_hidden_text_is_not_read(tmp_path):
    """RTF hidden text (\\v, as Word saves its hidden text) is neither shown nor printed: not read,
    to \\v0, \\plain or the end of its group, escapes and special characters in it included."""
    rtf = tmp_path / "offer.rtf"
    rtf.write_bytes(rb"{\rtf1\ansi\deff0{\fonttbl{\f0 Times;}}\f0 Offer\par"
                    rb" Rent is {\v 900 or \'e9\u1513? \{x\} }1000 euros\v  (floor 850)\v0  a month.\par"
                    rb"{\v\b Internal: walk away below 800.\par}"
                    rb"Payment in 30 days\v hidden\plain .\par}")
    assert read_document(rtf).page(1).text.splitlines() == ["Offer", "Rent is 1000 euros a month.",
                                                            "Payment in 30 days."]


def test_odt_comments_are_a_section_not_part_of_the_sentence(tmp_path):
    """A comment (office:annotation) sits in the margin; its author, date and text were read into
    the sentence it is anchored in ("Rent is 1000Ana2026-01-05T10:00:00check with Rui euros"). The
    sentence reads as written and the comments are a section at the end, "Author: text", as for .docx."""
    from odf import dc, office, text
    from odf.opendocument import OpenDocumentText

    odt = OpenDocumentText()
    para = text.P(text="Rent is 1000")
    note = office.Annotation()
    note.addElement(dc.Creator(text="Ana"))
    note.addElement(dc.Date(text="2026-01-05T10:00:00"))
    note.addElement(text.P(text="check with Rui"))
    para.addElement(note)
    para.addText(" euros a month.")
    odt.text.addElement(para)
    odt.save(str(tmp_path / "lease.odt"))
    assert [p.text for p in read_document(tmp_path / "lease.odt").pages] == [
        "Rent is 1000 euros a month.", "Comments\nAna: check with Rui"]


def test_odt_footnotes_and_endnotes_are_sections_not_part_of_the_sentence(tmp_path):
    """A footnote's text is at the foot of the page (an endnote's at the end), not in the sentence:
    it was read into it ("Rent is 1000 euros1Before tax. a month."). The sentence reads as written
    and the notes are sections at the end, "[1] text", as for .docx."""
    from odf import text
    from odf.opendocument import OpenDocumentText

    odt = OpenDocumentText()
    para = text.P(text="Rent is 1000 euros")
    for note_class, mark, body_text in (("footnote", "1", "Before tax."), ("endnote", "i", "See annex B.")):
        note = text.Note(id=f"n{mark}", noteclass=note_class)
        note.addElement(text.NoteCitation(text=mark))
        body = text.NoteBody()
        body.addElement(text.P(text=body_text))
        note.addElement(body)
        para.addElement(note)
    para.addText(" a month.")
    odt.text.addElement(para)
    odt.save(str(tmp_path / "lease.odt"))
    assert [p.text for p in read_document(tmp_path / "lease.odt").pages] == [
        "Rent is 1000 euros a month.", "Footnotes\n[1] Before tax.", "Endnotes\n[i] See annex B."]


def test_pptx_shape_off_the_slide_is_read_marked(tmp_path):
    """A shape left on the pasteboard, wholly outside the slide, is not in the slide show, nor in
    print: read, marked "(off the slide)". One that only overlaps the edge is on the slide."""
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[5])
    slide.shapes.title.text = "Offer"
    width = deck.slide_width
    slide.shapes.add_textbox(width - Inches(1), Inches(2), Inches(3), Inches(1)).text_frame.text = "Overlaps the edge"
    slide.shapes.add_textbox(width + Inches(1), Inches(2), Inches(3), Inches(1)).text_frame.text = "Floor 850"
    slide.shapes.add_textbox(Inches(1), -Inches(2), Inches(3), Inches(1)).text_frame.text = "Above the slide"
    deck.save(tmp_path / "offer.pptx")
    assert read_document(tmp_path / "offer.pptx").page(1).text.splitlines() == [
        "Offer", "Overlaps the edge", "(off the slide) Floor 850", "(off the slide) Above the slide"]


def _encrypt_epub(path, algorithm: str, which: str, extra: dict[str, str] | None = None) -> None:
    """Rewrite an e-book as a store's DRM leaves it: the files ending in `which` replaced by
    ciphertext (random bytes) and listed in META-INF/encryption.xml under `algorithm`."""
    import random

    rng = random.Random(7)
    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    entries = ""
    for name in [n for n in files if n.endswith(which)]:
        files[name] = bytes(rng.getrandbits(8) for _ in range(len(files[name]) // 16 * 16 + 16))
        entries += (f'<enc:EncryptedData><enc:EncryptionMethod Algorithm="{algorithm}"/><enc:CipherData>'
                    f'<enc:CipherReference URI="{name}"/></enc:CipherData></enc:EncryptedData>')
    files["META-INF/encryption.xml"] = ('<?xml version="1.0"?><encryption xmlns="urn:oasis:names:tc:opendocument:'
                                        'xmlns:container" xmlns:enc="http://www.w3.org/2001/04/xmlenc#">'
                                        f"{entries}</encryption>").encode()
    files.update({name: text.encode() for name, text in (extra or {}).items()})
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data, zipfile.ZIP_STORED if name == "mimetype" else zipfile.ZIP_DEFLATED)


def test_drm_protected_epub_is_refused_as_such(tmp_path):
    """A bookshop's e-book (Adobe ADEPT) has its chapters encrypted: it was refused as "contains no
    text" (or read as noise); now the reason says DRM. An e-book whose fonts alone are obfuscated
    (encryption.xml, IDPF's algorithm) is no DRM and is read."""
    book = write_epub(tmp_path / "novel.epub")
    _encrypt_epub(book, "http://www.w3.org/2001/04/xmlenc#aes128-cbc", "sea.xhtml",
                  {"META-INF/rights.xml": '<adept:rights xmlns:adept="http://ns.adobe.com/adept"/>'})
    with pytest.raises(IngestError) as err:
        read_document(book)
    assert err.value.reason == "unsupported"
    assert str(err.value).startswith("novel.epub: a DRM-protected e-book (Adobe ADEPT)"), err.value
    fonts = write_epub(tmp_path / "fonts.epub")
    with zipfile.ZipFile(fonts, "a") as z:
        z.writestr("EPUB/fonts/serif.otf", b"OTTO" + bytes(60))
    _encrypt_epub(fonts, "http://www.idpf.org/2008/embedding", ".otf")
    assert "The ship sailed at six." in [p.text.splitlines()[-1] for p in read_document(fonts).pages]


@pytest.mark.parametrize("name,streams,message", [
    ("salaries.xlsx", {"EncryptionInfo": b"\x04\x00\x04\x00\x40\x00\x00\x00", "EncryptedPackage": bytes(5000)},
     "salaries.xlsx: a password-protected .xlsx (encrypted): open it with its password, save a copy without one"),
    ("minutes.docx", {"WordDocument": bytes(5000), "1Table": bytes(600)},
     "minutes.docx: an old binary Word file: save it as .docx or PDF and add that (it is a .doc file named .docx)"),
])
def test_password_protected_or_old_binary_office_file_says_so(tmp_path, name, streams, message):
    """A password-protected .docx/.xlsx/.pptx is a Compound File holding the encrypted package, as is a
    Word 97-2003 file renamed .docx: both were refused as "not a valid .xlsx (not a ZIP archive)",
    which reads as a damaged file."""
    with pytest.raises(IngestError) as err:
        read_document(write_compound_file(tmp_path / name, streams))
    assert err.value.reason == "unsupported" and str(err.value).startswith(message), err.value


def test_a_file_under_a_wrong_or_missing_extension_is_read_as_what_it_is(tmp_path):
    """What the content shows wins over the name, as a PDF header always did: a deck saved as .docx
    was "not a valid .docx (no word/document.xml)", an e-book or OpenDocument file under .zip / .doc /
    no extension was refused as that type, and RTF named .txt was read as its markup."""
    import shutil

    deck, book, report = write_pptx(tmp_path / "d.pptx"), write_epub(tmp_path / "b.epub"), write_odt(tmp_path / "r.odt")
    cases = {"minutes.docx": (deck, "pptx", "slide"), "voyage.zip": (book, "epub", "section"),
             "rapport.doc": (report, "odt", "section"), "attachment": (report, "odt", "section")}
    for name, (source, kind, unit) in cases.items():
        doc = read_document(shutil.copyfile(source, tmp_path / name))
        assert (doc.filename, doc.kind, doc.unit) == (name, kind, unit)
    assert "Mention the Haifa office opening." in read_document(tmp_path / "minutes.docx").page(1).text
    letter = tmp_path / "letter.txt"
    letter.write_text(r"{\rtf1\ansi{\fonttbl\f0 Times;}\f0 Dear Ann,\par the keys are under the mat.\par}")
    doc = read_document(letter)
    assert doc.kind == "rtf" and doc.page(1).text == "Dear Ann,\nthe keys are under the mat."


def test_eml_declared_latin1_is_read_as_windows_1252_as_mail_clients_do(tmp_path):
    """Outlook labels its Windows-1252 text "iso-8859-1": its ’, – and € (0x92, 0x96, 0x80, here in
    quoted-printable) were read as Latin-1 control characters and came out as spaces."""
    mail = (b'From: Ann <ann@example.com>\r\nTo: bob@example.com\r\nSubject: Price\r\n'
            b'Date: Mon, 02 Mar 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n'
            b'Content-Type: text/plain; charset="iso-8859-1"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
            b'We don=92t sell it for less than =80 500 =96 final.\r\n')
    (tmp_path / "price.eml").write_bytes(mail)
    assert read_document(tmp_path / "price.eml").page(1).text.splitlines()[-1] == \
        "We don’t sell it for less than € 500 – final."


def test_xlsx_currencies_and_units_read_as_shown(tmp_path):
    """A price showing "$1,234.50" stores 1234.5: the currency (or unit) its format writes was lost,
    so a sheet of dollars and euros read as bare numbers. Read as the spreadsheet shows it, rounded
    half up to the format's decimals; a plain number is read as before."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    cells = [("rent", 1234.5, '"$"#,##0.00'), ("fees", 1234.5, "#,##0.00 [$€-407]"),
             ("refund", -99, "[$£-809]#,##0"), ("tax", 1234.5, '_("$"* #,##0.00_);_("$"* (#,##0.00);_("$"* "-"??_);_(@_)'),
             ("ticket", 5000, "[$¥-411]#,##0"), ("weight", 12.25, '0.0 "kg"'), ("visits", 1234.5, "General"),
             ("ratio", 0.25, "0%")]
    for name, value, number_format in cells:
        sheet.append([name, value])
        sheet.cell(sheet.max_row, 2).number_format = number_format
    book.save(tmp_path / "costs.xlsx")
    assert read_document(tmp_path / "costs.xlsx").page(1).text.splitlines() == [
        "rent | $1,234.50", "fees | 1,234.50 €", "refund | -£99", "tax | $ 1,234.50", "ticket | ¥5,000",
        "weight | 12.3 kg", "visits | 1234.5", "ratio | 25%"]


def test_a_web_page_saved_as_one_file_is_read_as_its_page(tmp_path):
    """A page saved as "Web Page, Single File" (.mhtml, as Chrome and Edge write it: a MIME package
    of the page, its styles and pictures, the HTML in quoted-printable) was refused as an unknown
    type; it is read as the page's visible text, cut at its headings."""
    boundary = "----MultipartBoundary--Q3tYpRhZ8----"
    page = ('<!DOCTYPE html><html><head><meta charset="utf-8"><title>Café opening hours</title>'
            '<script>track()</script></head><body><h1>Opening hours</h1><p>Open daily from 8 to 18 \u2013 '
            'closed on 25 December.</p><h2>Prices</h2><p>Espresso costs 1,20 \u20ac.</p></body></html>')
    import quopri

    mhtml = (f"From: <Saved by Blink>\r\nSnapshot-Content-Location: https://cafe.example/hours\r\n"
             f"Subject: =?utf-8?Q?Caf=C3=A9_opening_hours?=\r\nDate: Sun, 29 Nov 2026 09:00:00 -0000\r\n"
             f'MIME-Version: 1.0\r\nContent-Type: multipart/related;\r\n\ttype="text/html";\r\n\tboundary="{boundary}"\r\n\r\n\r\n'
             f"--{boundary}\r\nContent-Type: text/html\r\nContent-ID: <frame-1@mhtml.blink>\r\n"
             f"Content-Transfer-Encoding: quoted-printable\r\nContent-Location: https://cafe.example/hours\r\n\r\n"
             + quopri.encodestring(page.encode()).decode().replace("\n", "\r\n")
             + f"\r\n--{boundary}\r\nContent-Type: text/css\r\nContent-Transfer-Encoding: quoted-printable\r\n"
             f"Content-Location: cid:css-1@mhtml.blink\r\n\r\nbody {{ color: red }}\r\n"
             f"--{boundary}\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n"
             f"Content-Location: https://cafe.example/logo.png\r\n\r\niVBORw0KGgo=\r\n--{boundary}--\r\n")
    (tmp_path / "hours.mhtml").write_bytes(mhtml.encode())
    doc = read_document(tmp_path / "hours.mhtml")
    assert (doc.kind, doc.unit, doc.title) == ("mhtml", "section", "Café opening hours")
    assert [p.text for p in doc.pages] == ["Opening hours\n\nOpen daily from 8 to 18 \u2013 closed on 25 December.",
                                           "Prices\n\nEspresso costs 1,20 \u20ac."]


def test_pptx_text_box_with_an_equation_is_read(tmp_path):
    """PowerPoint writes a text box holding an equation as an alternative (mc:AlternateContent: the
    box with its a14:m equation, and a picture of it for older readers), which python-pptx does not
    list: the whole box was left out. It is read, the equation in Word's linear form."""
    import copy

    from lxml import etree
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[5])
    slide.shapes.title.text = "Physics"
    box = slide.shapes.add_textbox(Inches(1), Inches(2), Inches(6), Inches(1))
    box.text_frame.text = "The energy is "
    slide.shapes.add_textbox(Inches(1), Inches(4), Inches(6), Inches(1)).text_frame.text = "Next box."
    a14, m = "http://schemas.microsoft.com/office/drawing/2010/main", "http://schemas.openxmlformats.org/officeDocument/2006/math"
    box.text_frame.paragraphs[0]._p.append(etree.fromstring(
        f'<a14:m xmlns:a14="{a14}"><m:oMathPara xmlns:m="{m}"><m:oMath><m:r><m:t>E=m</m:t></m:r><m:sSup><m:e><m:r>'
        f"<m:t>c</m:t></m:r></m:e><m:sup><m:r><m:t>2</m:t></m:r></m:sup></m:sSup></m:oMath></m:oMathPara></a14:m>"))
    mc = "http://schemas.openxmlformats.org/markup-compatibility/2006"
    alternative = etree.fromstring(f'<mc:AlternateContent xmlns:mc="{mc}"><mc:Choice xmlns:a14="{a14}" Requires="a14"/>'
                                   "<mc:Fallback/></mc:AlternateContent>")
    tree, shape = box._element.getparent(), box._element
    tree.insert(tree.index(shape), alternative)
    picture = copy.deepcopy(shape)                                  # the fallback: the box drawn as a picture
    for para in picture.iter("{http://schemas.openxmlformats.org/drawingml/2006/main}p"):
        para.getparent().remove(para)
    alternative[0].append(shape)
    alternative[1].append(picture)
    deck.save(tmp_path / "physics.pptx")
    assert read_document(tmp_path / "physics.pptx").page(1).text.splitlines() == [
        "Physics", "The energy is E=mc^2", "Next box."]


def test_odt_formula_is_read_where_it_stands(tmp_path):
    """A LibreOffice Math formula is an object in its own folder ("Object 1/content.xml", MathML with
    its StarMath source), drawn in the text by a frame: it was left out ("The energy is  in joules.")."""
    path = write_odt(tmp_path / "physics.odt")
    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    frame = ('The energy is <draw:frame xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
             'xmlns:xlink="http://www.w3.org/1999/xlink" draw:name="Object1" text:anchor-type="as-char">'
             '<draw:object xlink:href="./Object 1" xlink:type="simple" xlink:show="embed" xlink:actuate="onLoad"/>'
             '<draw:image xlink:href="./ObjectReplacements/Object 1" xlink:type="simple"/></draw:frame> in joules.')
    files["content.xml"] = files["content.xml"].replace(b"cellule 42", frame.encode())
    files["Object 1/content.xml"] = (
        b'<math xmlns="http://www.w3.org/1998/Math/MathML" display="block"><semantics><mrow><mi>E</mi><mo>=</mo>'
        b'<mi>m</mi><msup><mi>c</mi><mn>2</mn></msup></mrow><annotation encoding="StarMath 5.0">E = m c^2'
        b"</annotation></semantics></math>")
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    assert read_document(path).page(3).text.splitlines() == ["Détails", "The energy is E = m c^2 in joules."]


def test_xlsx_sheet_of_more_rows_than_a_spreadsheet_holds_is_refused_by_name(tmp_path, monkeypatch):
    """60 M empty rows zip to 530 KB within the zip-bomb limit and kept the reader busy for minutes;
    a sheet of more rows than Excel's last (1,048,576; lowered here to 50) is too_large, naming the
    file and the sheet, while one of that many rows is read."""
    from openpyxl import Workbook

    monkeypatch.setattr(office, "MAX_SHEET_ROWS", 50, raising=False)
    for rows in (50, 51):
        book = Workbook()
        book.active.title = "Log"
        for i in range(1, rows + 1):
            book.active.append([i, f"event {i}"])
        book.save(tmp_path / f"log{rows}.xlsx")
    assert "50 | event 50" in read_document(tmp_path / "log50.xlsx").pages[-1].text
    with pytest.raises(IngestError) as err:
        read_document(tmp_path / "log51.xlsx")
    assert err.value.reason == "too_large" and "log51.xlsx" in str(err.value) and "'Log'" in str(err.value)
