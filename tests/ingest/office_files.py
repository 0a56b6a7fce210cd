"""Office and e-book files written by the libraries that produce them (python-pptx, odfpy, EbookLib),
with known text, for the ingest, app and CLI tests."""
from __future__ import annotations

from pathlib import Path


def write_pptx(path: Path) -> Path:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    deck.core_properties.title = "Quarterly review"
    first = deck.slides.add_slide(deck.slide_layouts[1])            # title and content
    first.shapes.title.text = "Revenue grew"
    first.placeholders[1].text = "Revenue rose 12% to 4.2 M€\nהמכירות עלו בחיפה"
    first.notes_slide.notes_text_frame.text = "Mention the Haifa office opening."
    deck.slides.add_slide(deck.slide_layouts[6])                     # blank: keeps its number
    third = deck.slides.add_slide(deck.slide_layouts[5])             # title only
    third.shapes.title.text = "Costs"
    table = third.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1)).table
    for (r, c), text in {(0, 0): "item", (0, 1): "cost", (1, 0): "rent", (1, 1): "300"}.items():
        table.cell(r, c).text = text
    from pptx.chart.data import CategoryChartData
    from pptx.enum.chart import XL_CHART_TYPE

    data = CategoryChartData()
    data.categories = ["Q1", "Q2"]
    data.add_series("Lisboa", (1.5, 2.25))
    data.add_series("Porto", (0.75, 1.0))
    chart = third.shapes.add_chart(XL_CHART_TYPE.COLUMN_CLUSTERED, Inches(5), Inches(2), Inches(4), Inches(3),
                                   data).chart
    chart.has_title = True
    chart.chart_title.text_frame.text = "Revenue by city (M€)"
    group = third.shapes.add_group_shape()
    group.shapes.add_textbox(Inches(1), Inches(4), Inches(2), Inches(1)).text_frame.text = "grouped remark"
    deck.save(path)
    return path


def write_odt(path: Path) -> Path:
    from odf import dc, table, text
    from odf.opendocument import OpenDocumentText

    odt = OpenDocumentText()
    odt.meta.addElement(dc.Title(text="Rapport annuel"))
    odt.text.addElement(text.P(text="Préambule avant le premier titre."))
    odt.text.addElement(text.H(outlinelevel=1, text="Introduction"))
    para = text.P(text="Le chiffre d'affaires")
    para.addElement(text.LineBreak())
    para.addElement(text.Span(text="a augmenté de 7 %."))
    odt.text.addElement(para)
    items = text.List()
    item = text.ListItem()
    item.addElement(text.P(text="premier point"))
    items.addElement(item)
    odt.text.addElement(items)
    odt.text.addElement(text.H(outlinelevel=2, text="Détails"))
    grid, row, cell = table.Table(), table.TableRow(), table.TableCell()
    cell.addElement(text.P(text="cellule 42"))
    row.addElement(cell)
    grid.addElement(row)
    odt.text.addElement(grid)
    odt.save(str(path))
    return path


def write_epub(path: Path) -> Path:
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("jambadocs-test-book")
    book.set_title("A Small Voyage")
    book.set_language("en")
    harbour = epub.EpubHtml(title="The Harbour", file_name="text/harbour.xhtml", lang="en")
    harbour.content = ("<html><body><p>It was a dark night in Lisbon.</p>"
                       "<h2>Morning</h2><p>The sun rose over the Tagus.</p></body></html>")
    sea = epub.EpubHtml(title="At Sea", file_name="text/sea.xhtml", lang="en")
    sea.content = "<html><body><h1>At Sea</h1><p>The ship sailed at six.</p></body></html>"
    for chapter in (sea, harbour):                    # manifest order differs from reading order
        book.add_item(chapter)
    book.toc = (epub.Link("text/harbour.xhtml", "The Harbour", "harbour"), epub.Link("text/sea.xhtml", "At Sea", "sea"))
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", harbour, sea]
    epub.write_epub(str(path), book)
    return path


def write_compound_file(path: Path, streams: dict[str, bytes]) -> Path:
    """A Compound File (CFB v3, [MS-CFB]) holding `streams`: the container of Office 97-2003 files
    ("WordDocument", ...) and of a password-protected .docx / .xlsx / .pptx ("EncryptionInfo",
    "EncryptedPackage"). Each stream is padded to 4096 bytes, so all live in regular sectors."""
    import struct

    end, free, fat_sect, none = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF
    fat, body, entries = [fat_sect, end], b"", []           # sector 0: the FAT, sector 1: the directory
    for i, (name, data) in enumerate(streams.items(), start=1):
        data = data.ljust(max(4096, -(-len(data) // 512) * 512), b"\0")
        first = len(fat)
        fat += list(range(first + 1, first + len(data) // 512)) + [end]
        body += data
        right = i + 1 if i < len(streams) else none         # the streams as a chain of right siblings
        entries.append((name, 2, none, right, none, first, len(data)))
    assert len(fat) <= 128 and len(entries) < 4
    entries.insert(0, ("Root Entry", 5, none, none, 1, end, 0))

    def entry(name: str, kind: int, left: int, right: int, child: int, start: int, size: int) -> bytes:
        encoded = (name + "\0").encode("utf-16-le")
        return struct.pack("<64sHBBIII16sIQQIQ", encoded, len(encoded), kind, 1, left, right, child,
                           b"", 0, 0, 0, start, size)

    directory = b"".join(entry(*e) for e in entries).ljust(512, b"\0")
    header = struct.pack("<8s16sHHHHH6sIIIIIIIII", bytes.fromhex("d0cf11e0a1b11ae1"), b"", 0x3E, 3, 0xFFFE,
                         9, 6, b"", 0, 1, 1, 0, 4096, end, 0, end, 0)
    header += struct.pack("<109I", 0, *[free] * 108)
    path.write_bytes(header + struct.pack("<128I", *fat, *[free] * (128 - len(fat))) + directory + body)
    return path
