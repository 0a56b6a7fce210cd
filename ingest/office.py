"""Office, e-book and e-mail formats (.pptx, .odt, .epub, .xlsx, .eml, .rtf) to citable units.

- .pptx (python-pptx): one unit per slide, label "slide 3": its text frames, tables, charts (title
  and data), SmartArt text and grouped shapes in the slide's shape order (PowerPoint's reading
  order for screen readers), then the speaker notes ("Notes: ...").
- .odt (ElementTree, as .docx): sections at `text:h` headings (their outline level), tables (a row
  as "a | b") and lists included; the foot/endnotes, comments and page headers and footers as
  sections at the end.
- .epub (EbookLib): the spine's chapters in reading order (not its table-of-contents page), each
  cut at its <h1>..<h6> like HTML; a chapter that opens without a heading takes its
  table-of-contents title. A DRM-protected book (its chapters encrypted) is refused, saying so.
- .xlsx (openpyxl): one unit per worksheet, rows as "a | b | c" lines; a long sheet in ranges of rows.
- .eml (the standard library's email): headers and body (plain text, else the HTML's text).
- .mhtml / .mht (the same): a web page saved as one file, read as its HTML part.
- .rtf (striprtf): plain text, cut like a .txt file.

The ZIP formats are checked before a library opens them (`ingest.formats.check_zip`: a valid
archive that unpacks to at most `MAX_UNPACKED_BYTES`; a zip bomb is refused, not inflated).
"""
from __future__ import annotations

import datetime
import io
import posixpath
import re
import zipfile
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from itertools import islice
from pathlib import Path
from xml.etree import ElementTree

from ingest.errors import IngestError
from ingest.formats import (DGM, R, Section, TextContent, as_browsers_read, check_zip, decode_text, diagram_lines,
                             html_sections, math_text, parse_xml, units_from_sections)
from ingest.normalize import normalize_text

# ---------------------------------------------------------------- .pptx

_P = "{http://schemas.openxmlformats.org/presentationml/2006/main}"


def read_pptx(data: bytes, path: str | Path) -> TextContent:
    """One unit per slide ("slide 3"), its text in shape order, then its speaker notes; a hidden
    slide is read, its text starting with a line "(hidden slide)", and a shape off the slide (on
    the pasteboard) is read marked "(off the slide)"."""
    from pptx import Presentation
    from pptx.exc import PackageNotFoundError

    check_zip(data, path, ".pptx", parsed_whole=True)         # python-pptx parses its parts whole
    try:
        deck = Presentation(io.BytesIO(data))
        units, outline = [], []
        for number, slide in enumerate(deck.slides, start=1):
            lines = [f"(off the slide) {text}" if not isinstance(shape, str) and _off_slide(shape, deck) else text
                     for shape in _slide_shapes(slide) for text in _shape_texts(shape)]
            if slide.element.get("show") in ("0", "false"):     # skipped in the slide show, kept in the deck
                lines.insert(0, "(hidden slide)")
            if slide.has_notes_slide and (notes := slide.notes_slide.notes_text_frame) is not None:
                if notes.text.strip():
                    lines.append(f"Notes: {notes.text}")
            units.append((f"slide {number}", normalize_text("\n".join(lines))))
            title_shape = slide.shapes.title
            if title_shape is not None and title_shape.text_frame.text.strip():
                outline.append((normalize_text(title_shape.text_frame.text), 1, number))
        title = deck.core_properties.title
    except (PackageNotFoundError, KeyError, ValueError, AttributeError, SyntaxError) as err:
        raise IngestError("corrupt", path, f"damaged .pptx ({type(err).__name__}: {err})") from None
    title = normalize_text(title) if title and title.strip() else (outline[0][0] if outline else None)
    return TextContent(title, "slide", units, outline)


_MC = "{http://schemas.openxmlformats.org/markup-compatibility/2006}"
_A = "{http://schemas.openxmlformats.org/drawingml/2006/main}"
_A14_MATH = "{http://schemas.microsoft.com/office/drawing/2010/main}m"


def _slide_shapes(slide) -> list:
    """The slide's shapes in their order; a shape that PowerPoint writes as an alternative (a text
    box holding an equation, with a picture of it for older readers), which python-pptx does not
    list, as the text of the alternative PowerPoint shows."""
    listed = {shape.element: shape for shape in slide.shapes}
    out = []
    for el in slide.shapes._spTree.iterchildren():
        if el in listed:
            out.append(listed[el])
        elif el.tag == f"{_MC}AlternateContent" and (choice := el.find(f"{_MC}Choice")) is not None:
            out += [text for shape in choice if not _element_hidden(shape) and (text := _drawing_text(shape))]
    return out


def _element_hidden(el) -> bool:
    props = el.find(f".//{_P}cNvPr")
    return props is not None and props.get("hidden") in ("1", "true")


def _drawing_text(el) -> str:
    """The paragraphs of the text in a shape's XML, its equations (a14:m) in a linear form."""
    lines = []
    for para in el.iter(f"{_A}p"):
        parts = []
        for child in para:
            if child.tag in (f"{_A}r", f"{_A}fld"):
                parts.append("".join(t.text or "" for t in child.iter(f"{_A}t")))
            elif child.tag == f"{_A}br":
                parts.append("\n")
            elif child.tag == _A14_MATH:
                parts.append(" ".join(math_text(m) for m in child))
        lines.append("".join(parts))
    return "\n".join(lines).strip()


def _shape_texts(shape) -> list[str]:
    """Text of one shape: a text frame's paragraphs (read from its XML when it holds an equation),
    a table row by row, a group's shapes in order; an alternative's text (`_slide_shapes`) as it is."""
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    if isinstance(shape, str):
        return [shape]
    if _shape_hidden(shape):
        return []
    if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
        return [text for inner in shape.shapes for text in _shape_texts(inner)]
    if getattr(shape, "has_table", False) and shape.has_table:
        return [" | ".join(cell.text for cell in row.cells) for row in shape.table.rows]
    if getattr(shape, "has_chart", False) and shape.has_chart:
        return _chart_texts(shape.chart)
    if (diagram := shape.element.find(f".//{DGM}relIds")) is not None:
        return _diagram_texts(shape, diagram.get(f"{R}dm"))
    if shape.has_text_frame and shape.element.find(f".//{_A14_MATH}") is not None:
        return [text] if (text := _drawing_text(shape.element)) else []
    if shape.has_text_frame and shape.text_frame.text.strip():
        return [shape.text_frame.text]
    return []


def _off_slide(shape, deck) -> bool:
    """Whether the shape lies wholly outside the slide (on the editor's pasteboard: not in the slide
    show, nor in print or a PDF export)."""
    left, top, width, height = shape.left, shape.top, shape.width, shape.height
    if None in (left, top, width, height, deck.slide_width, deck.slide_height):
        return False                    # a placeholder placed by its layout: on the slide
    return left >= deck.slide_width or top >= deck.slide_height or left + width <= 0 or top + height <= 0


def _shape_hidden(shape) -> bool:
    """Whether the shape is hidden (the Selection Pane's eye: hidden="1" on its cNvPr): not shown on
    the slide, in the show or in print."""
    props = shape.element[0].find(f"{_P}cNvPr") if len(shape.element) else None
    return props is not None and props.get("hidden") in ("1", "true")


def _diagram_texts(shape, data_rid: str | None) -> list[str]:
    """A SmartArt diagram's text (`diagram_lines` of its data part); none when the part is missing or broken."""
    try:
        return diagram_lines(shape.part.related_part(data_rid).blob)
    except (KeyError, ElementTree.ParseError):
        return []


def _chart_texts(chart) -> list[str]:
    """A chart as its title and its data: "category | series 1 | series 2" rows under a header row
    (the numbers the chart draws, which a reader of the slide sees as bars or lines)."""
    lines: list[str] = []
    try:
        if chart.has_title and chart.chart_title.has_text_frame and chart.chart_title.text_frame.text.strip():
            lines.append(f"Chart: {chart.chart_title.text_frame.text}")
        for plot in chart.plots:
            series = list(plot.series)
            if not series:
                continue
            categories = [str(c) for c in plot.categories]
            lines.append(" | ".join(["", *(s.name or "" for s in series)]).strip())
            columns = [list(s.values) for s in series]
            for i, category in enumerate(categories):
                cells = [_cell_text(col[i]) if i < len(col) else "" for col in columns]
                lines.append(" | ".join([category, *cells]))
    except (AttributeError, KeyError, ValueError, TypeError, IndexError):
        pass                  # a chart kind python-pptx cannot read: what was read stays, the deck is read
    return lines


# ---------------------------------------------------------------- .odt

_TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
_OFFICE = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"
_DC_TITLE = "{http://purl.org/dc/elements/1.1/}title"
_DC_CREATOR = "{http://purl.org/dc/elements/1.1/}creator"
_ANNOTATION = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}annotation"
_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_STYLE = "{urn:oasis:names:tc:opendocument:xmlns:style:1.0}"


def read_odt(data: bytes, path: str | Path) -> TextContent:
    """Paragraphs of an OpenDocument text in document order (lists and tables included), sections at
    its `text:h` headings. Read with ElementTree like .docx: odfpy, the library for ODF, prints a
    damaged content.xml whole to stdout and carries on with no text."""
    check_zip(data, path, ".odt")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            content = parse_xml(archive.read("content.xml"), "content.xml")
            body = content.find(f"{_OFFICE}body/{_OFFICE}text")
            names = archive.namelist()
            meta = parse_xml(archive.read("meta.xml"), "meta.xml") if "meta.xml" in names else None
            styles = parse_xml(archive.read("styles.xml"), "styles.xml") if "styles.xml" in names else None
            _odf_formulas(content, archive)
    except KeyError:
        raise IngestError("corrupt", path, "not a valid .odt (no content.xml)") from None
    except (ElementTree.ParseError, zipfile.BadZipFile, OSError, EOFError) as err:
        raise IngestError("corrupt", path, f"damaged .odt ({err})") from None
    if body is None:
        raise IngestError("corrupt", path, "not an OpenDocument text (no office:text in content.xml)")
    hidden = _odf_hidden_styles(content, styles)
    sections: list[Section] = [Section(None, 0, "")]
    lines: list[str] = []

    def close_section() -> None:
        sections[-1].text = normalize_text("\n".join(lines))
        lines.clear()

    def walk(node: ElementTree.Element) -> None:
        for child in node:
            if _odf_unseen(child, hidden):
                continue
            if child.tag == f"{_TEXT}h":
                heading = normalize_text(_odf_text(child, hidden))
                if heading:
                    close_section()
                    level = child.get(f"{_TEXT}outline-level", "1")
                    sections.append(Section(heading, int(level) if level.isdigit() else 1, ""))
                lines.append(heading)
            elif child.tag == f"{_TEXT}p":
                lines.append(_odf_text(child, hidden))
            elif child.tag == f"{_TABLE}table-row" and len(cells := child.findall(f"{_TABLE}table-cell")) > 1:
                lines.append(" | ".join(" ".join(_odf_text(p, hidden).strip() for p in _odf_paragraphs(cell, hidden))
                                        .strip() for cell in cells))     # a row as it is read across the page
            elif child.tag != f"{_TEXT}tracked-changes":     # (its deleted text is not the document's)
                walk(child)              # lists, tables, frames, sections: the paragraphs inside

    walk(body)
    close_section()
    for heading, notes in _odf_notes(body, hidden):
        sections.append(Section(heading, 1, normalize_text("\n".join([heading, *notes]))))
    if comments := _odf_comments(body, hidden):
        sections.append(Section("Comments", 1, normalize_text("\n".join(["Comments", *comments]))))
    if styles is not None and (margins := _odf_headers_footers(styles, hidden)):
        sections.append(Section("Headers and footers", 1, normalize_text("\n".join(["Headers and footers", *margins]))))
    title_el = meta.find(f".//{_DC_TITLE}") if meta is not None else None
    title = normalize_text(title_el.text) if title_el is not None and title_el.text and title_el.text.strip() else None
    return units_from_sections(sections, title or next((s.heading for s in sections if s.heading), None))


_DRAW_OBJECT = "{urn:oasis:names:tc:opendocument:xmlns:drawing:1.0}object"
_XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
_MATHML = "{http://www.w3.org/1998/Math/MathML}"


def _odf_formulas(content: ElementTree.Element, archive: zipfile.ZipFile) -> None:
    """Put each formula (an embedded LibreOffice Math object, kept in its own folder) in the text
    where it stands, as its StarMath source ("E = m c^2"), else its MathML's characters."""
    names = set(archive.namelist())
    for obj in content.iter(_DRAW_OBJECT):
        part = posixpath.normpath(obj.get(_XLINK_HREF, "").removeprefix("./")) + "/content.xml"
        if part not in names:
            continue
        try:
            math = parse_xml(archive.read(part), part)
        except ElementTree.ParseError:
            continue                       # a damaged formula: the text around it is still read
        if math.tag != f"{_MATHML}math":
            continue                       # a chart or another document, not a formula
        source = math.find(f".//{_MATHML}annotation")
        text = source.text if source is not None and source.text else " ".join(math.itertext())
        obj.text = f" {' '.join(text.split())} "


def _odf_notes(body: ElementTree.Element, hidden: set[str]) -> list[tuple[str, list[str]]]:
    """("Footnotes" / "Endnotes", "[1] text" lines) for the notes the document has, as for .docx: a
    reader finds them at the page's or the document's end, not inside the sentence."""
    out = []
    for kind, heading in (("footnote", "Footnotes"), ("endnote", "Endnotes")):
        lines = []
        for note in body.iter(f"{_TEXT}note"):
            if note.get(f"{_TEXT}note-class") != kind or (note_body := note.find(f"{_TEXT}note-body")) is None:
                continue
            text = " ".join(" ".join(_odf_text(p, hidden).split()) for p in _odf_paragraphs(note_body, hidden)).strip()
            if text:
                lines.append(f"[{(note.findtext(f'{_TEXT}note-citation') or '?').strip()}] {text}")
        if lines:
            out.append((heading, lines))
    return out


def _odf_comments(body: ElementTree.Element, hidden: set[str]) -> list[str]:
    """The comments (office:annotation) as "Author: text" lines, as for .docx; a reader sees them in
    the margin, not in the sentence they are anchored in."""
    lines = []
    for note in body.iter(_ANNOTATION):
        text = " ".join(" ".join(_odf_text(p, hidden).split()) for p in _odf_paragraphs(note, hidden)).strip()
        author = (note.findtext(_DC_CREATOR) or "").strip()
        if text:
            lines.append(f"{author}: {text}" if author else text)
    return lines


def _odf_paragraphs(node: ElementTree.Element, hidden: set[str]):
    """The shown paragraphs and headings inside `node` (a table cell, a header), not those nested in them."""
    for child in node:
        if _odf_unseen(child, hidden):
            continue
        if child.tag in (f"{_TEXT}p", f"{_TEXT}h"):
            yield child
        else:
            yield from _odf_paragraphs(child, hidden)


def _odf_headers_footers(styles: ElementTree.Element, hidden: set[str]) -> list[str]:
    """The distinct lines of the master pages' headers, then footers (styles.xml): what a reader
    sees on every page, as for .docx."""
    lines: list[str] = []
    for kind in ("header", "footer"):
        for margin in styles.iter():
            if margin.tag.startswith(f"{_STYLE}{kind}") and not margin.tag.endswith("-style"):
                for para in _odf_paragraphs(margin, hidden):
                    if (text := " ".join(_odf_text(para, hidden).split())) and text not in lines:
                        lines.append(text)
    return lines


def _odf_text(el: ElementTree.Element, hidden: set[str] = frozenset()) -> str:
    """The text of a paragraph or heading: spans and links inline, `text:s` spaces, tabs, line breaks;
    not spans in a hidden style (`hidden`) nor hidden text fields, a shown one's text."""
    out = [el.text or ""]
    for child in el:
        if child.tag == f"{_TEXT}hidden-text":
            if child.get(f"{_TEXT}is-hidden") != "true":
                out.append(child.get(f"{_TEXT}string-value", ""))
        elif _odf_unseen(child, hidden) or child.tag in (_ANNOTATION, f"{_TEXT}note"):
            pass                # a comment (in the margin) or a foot/endnote (at the page's end): read apart
        elif child.tag == f"{_TEXT}s":
            count = child.get(f"{_TEXT}c", "1")
            out.append(" " * (int(count) if count.isdigit() else 1))
        elif child.tag == f"{_TEXT}tab":
            out.append("\t")
        elif child.tag == f"{_TEXT}line-break":
            out.append("\n")
        else:
            out.append(_odf_text(child, hidden))
        out.append(child.tail or "")
    return "".join(out)


def _odf_unseen(el: ElementTree.Element, hidden: set[str]) -> bool:
    """Whether LibreOffice hides this element: a paragraph, heading or span in a style with the
    Hidden effect, a section set not to display, a paragraph whose hidden-paragraph field held."""
    if el.get(f"{_TEXT}style-name") in hidden:
        return True
    if el.tag == f"{_TEXT}section":
        return el.get(f"{_TEXT}display") == "none"
    return el.tag in (f"{_TEXT}p", f"{_TEXT}h") and any(
        field.get(f"{_TEXT}is-hidden") == "true" for field in el.iter(f"{_TEXT}hidden-paragraph"))


def _odf_hidden_styles(*roots: ElementTree.Element | None) -> set[str]:
    """Names of the text and paragraph styles (content.xml's automatic ones, styles.xml's) whose
    text properties hide their text (text:display="none"), also through their parent styles."""
    own: dict[str, bool | None] = {}
    parent: dict[str, str | None] = {}
    for root in (r for r in roots if r is not None):
        for st in root.iter(f"{_STYLE}style"):
            name = st.get(f"{_STYLE}name")
            props = st.find(f"{_STYLE}text-properties")
            display = props.get(f"{_TEXT}display") if props is not None else None
            own[name] = display == "none" if display in ("none", "true") else None
            parent[name] = st.get(f"{_STYLE}parent-style-name")
    hidden = set()
    for name in own:
        seen, current = set(), name
        while current in own and current not in seen and own[current] is None:
            seen.add(current)
            current = parent[current]
        if own.get(current):
            hidden.add(name)
    return hidden


# ---------------------------------------------------------------- .epub

def read_epub(data: bytes, path: str | Path) -> TextContent:
    """The chapters of the spine, in reading order, as sections at their headings."""
    from ebooklib import ITEM_DOCUMENT, epub

    check_zip(data, path, ".epub", parsed_whole=True)         # EbookLib parses its parts whole
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        if (scheme := _epub_drm(archive)) is not None:
            raise IngestError("unsupported", path, f"a DRM-protected e-book ({scheme}): its text is encrypted "
                              "and cannot be read; add a copy without DRM")
    try:
        book = epub.read_epub(io.BytesIO(data), options={"ignore_ncx": False})
    except (epub.EpubException, KeyError, ValueError, AttributeError, SyntaxError,
            zipfile.BadZipFile) as err:
        raise IngestError("corrupt", path, f"damaged .epub ({type(err).__name__}: {err})") from None
    toc_titles = _toc_titles(book.toc)
    sections: list[Section] = []
    for idref, _linear in book.spine:
        item = book.get_item_with_id(idref)
        if item is None or item.get_type() != ITEM_DOCUMENT or isinstance(item, epub.EpubNav):
            continue                     # images, styles, and the table of contents page itself
        _, chapter = html_sections(item.get_content())
        chapter = [s for s in chapter if s.text.strip()]
        if chapter and chapter[0].heading is None and (name := toc_titles.get(item.get_name())):
            chapter[0] = Section(name, 1, chapter[0].text)
        sections.extend(chapter)
    titles = book.get_metadata("DC", "title")
    title = normalize_text(titles[0][0]) if titles and titles[0][0] else None
    return units_from_sections(sections, title or next((s.heading for s in sections if s.heading), None))


_XMLENC = "{http://www.w3.org/2001/04/xmlenc#}"
# What META-INF/encryption.xml also lists in a book without DRM: its embedded fonts, obfuscated
# (IDPF's and Adobe's algorithms) so they cannot be reused outside it.
_FONT_OBFUSCATION = ("http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC")
_DRM_FILES = (("META-INF/rights.xml", "Adobe ADEPT"), ("META-INF/license.lcpl", "Readium LCP"),
              ("META-INF/sinf.xml", "Apple FairPlay"))


def _epub_drm(archive: zipfile.ZipFile) -> str | None:
    """The DRM scheme of an e-book whose files are encrypted (encryption.xml lists a file under an
    algorithm other than font obfuscation), None for a readable one. A store's DRM leaves the
    chapters ciphertext, which read as no text or as noise."""
    if "META-INF/encryption.xml" not in archive.namelist():
        return None
    try:
        root = parse_xml(archive.read("META-INF/encryption.xml"), "META-INF/encryption.xml")
    except ElementTree.ParseError:
        return None
    for entry in root.iter(f"{_XMLENC}EncryptedData"):
        method = entry.find(f"{_XMLENC}EncryptionMethod")
        if method is None or method.get("Algorithm") not in _FONT_OBFUSCATION:
            names = set(archive.namelist())
            return next((scheme for name, scheme in _DRM_FILES if name in names), "encrypted files")
    return None


def _toc_titles(toc) -> dict[str, str]:
    """Chapter file name -> the first table-of-contents entry that points into it."""
    out: dict[str, str] = {}
    for entry in toc:
        head, children = entry if isinstance(entry, tuple) else (entry, [])   # (Section, [children])
        if getattr(head, "href", None) and getattr(head, "title", None):
            out.setdefault(posixpath.normpath(head.href.split("#")[0]), normalize_text(head.title))
        for name, title in _toc_titles(children).items():
            out.setdefault(name, title)
    return out


# ---------------------------------------------------------------- .xlsx

SHEET_UNIT_CHARS = 6000       # a longer sheet is cut into row ranges of about this size, header repeated


def read_xlsx(data: bytes, path: str | Path) -> TextContent:
    """Each worksheet's rows as "cell | cell | ..." lines (formulas as the values the spreadsheet
    last computed and saved), one unit per sheet ("Sales"), or per range of rows ("Log (rows
    128-249)") for a long sheet, each range after the first starting with the sheet's first row (its
    header, usually). The unit is "sheet" when no sheet was cut, else "part".

    What the workbook tucks away is read but marked, so an answer can say so: each unit of a hidden
    sheet starts with a line "(hidden sheet)", a hidden row with "(hidden row)", a cell of a hidden
    column with "(hidden)". A formula saved without its value (a workbook written by a program,
    never opened in a spreadsheet) reads as its formula, "=SUM(B2:B3) (formula, value not saved)",
    not as nothing."""
    from openpyxl import load_workbook

    check_zip(data, path, ".xlsx")
    units: list[tuple[str, str]] = []
    outline: list[tuple[str, int, int]] = []
    formula_book = None
    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        try:
            for sheet in book.worksheets:
                with sheet._get_source() as source:      # the sheet's XML: what openpyxl's read-only mode skips
                    xml = source.read()
                if next(islice(_ROW_TAG.finditer(xml), MAX_SHEET_ROWS, None), None) is not None:
                    raise IngestError("too_large", path, f"sheet {sheet.title!r} has more than {MAX_SHEET_ROWS:,} "
                                      "rows, more than a spreadsheet holds")
                hidden_rows, hidden_columns = _hidden_rows_columns(xml) if _HIDDEN.search(xml) else (set(), set())
                formulas = None
                if _UNSAVED_VALUE.search(xml):
                    formula_book = formula_book or load_workbook(io.BytesIO(data), read_only=True, data_only=False)
                    formula_sheet = formula_book[sheet.title]
                    formula_sheet.reset_dimensions()
                    formulas = formula_sheet.iter_rows()
                sheet.reset_dimensions()     # a sheet's stated size ("A1" from some writers) would cut its rows
                rows = []
                for number, row in enumerate(sheet.iter_rows(), start=1):
                    line = _row_text(row, next(formulas, ()) if formulas else (), hidden_columns)
                    if line:
                        rows.append((number, f"(hidden row) {line}" if number in hidden_rows else line))
                outline.append((sheet.title, 1, len(units) + 1))
                mark = "" if sheet.sheet_state == "visible" else "(hidden sheet)\n"   # (the label stays citable)
                units.extend((label, mark + text if text else text)
                             for label, text in _sheet_units(sheet.title, rows))
            title = book.properties.title
        finally:
            book.close()
            if formula_book is not None:
                formula_book.close()
    except IngestError:
        raise
    except (KeyError, ValueError, TypeError, AttributeError, SyntaxError, zipfile.BadZipFile,
            ElementTree.ParseError) as err:
        raise IngestError("corrupt", path, f"damaged .xlsx ({type(err).__name__}: {err})") from None
    if not units:
        raise IngestError("no_text", path, "the workbook has no cells with values")
    unit = "sheet" if len(units) == len(outline) else "part"      # "3 sheets", or "7 parts" when one was cut
    return TextContent(normalize_text(title) if title and title.strip() else None, unit, units, outline)


_SHEET_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
# Excel's last row: a sheet of more rows is no workbook a spreadsheet wrote (60 M empty rows zip to
# 530 KB within the zip-bomb limit, and kept the reader busy for minutes)
MAX_SHEET_ROWS = 1_048_576
_ROW_TAG = re.compile(rb"<(?:\w+:)?row\b")
_HIDDEN = re.compile(rb"""\bhidden=["'](?:1|true)["']""")   # a hidden row or column somewhere: look closer
_MAX_COLUMNS = 16384          # XFD, a sheet's last column (a damaged <col max> stays within it)
# A formula cell with no value after it: <f>SUM(B2:B3)</f></c>, <f t="shared" si="0"/><v></v></c>
_UNSAVED_VALUE = re.compile(rb"(?:</(?:\w+:)?f>|<(?:\w+:)?f\b[^>]*/>)\s*"
                            rb"(?:<(?:\w+:)?v\s*/>|<(?:\w+:)?v>\s*</(?:\w+:)?v>)?\s*</(?:\w+:)?c>")


def _hidden_rows_columns(xml: bytes) -> tuple[set[int], set[int]]:
    """The hidden rows' numbers and hidden columns' indices (1-based) of a sheet's XML: rows hidden
    by hand, by a filter or in a collapsed group, and <col> ranges marked hidden."""
    rows, columns, row = set(), set(), 0
    for _, el in ElementTree.iterparse(io.BytesIO(xml)):
        if el.tag == f"{_SHEET_NS}col" and _xml_true(el.get("hidden")):
            first = int(el.get("min", 0))
            columns.update(range(first, min(int(el.get("max", first)), _MAX_COLUMNS) + 1))
        elif el.tag == f"{_SHEET_NS}row":
            row = int(el.get("r") or row + 1)
            if _xml_true(el.get("hidden")):
                rows.add(row)
            el.clear()
    return rows, columns


def _xml_true(value: str | None) -> bool:
    return value in ("1", "true")


def _row_text(row: tuple, formulas: tuple = (), hidden_columns: set[int] = frozenset()) -> str:
    """One row's cells with values, " | " between them (empty cells inside the row kept as ""); a
    cell whose formula's value was not saved as its formula (from `formulas`, the same row read
    without values); a cell in a hidden column, or whose number format shows nothing, marked."""
    cells = []
    for column, cell in enumerate(row, start=1):
        text = (_percent(cell.value, cell.number_format) or _money(cell.value, cell.number_format)
                or _cell_text(cell.value))
        if (not text and cell.data_type not in ("s", "str") and column <= len(formulas)   # (a saved empty text)
                and (formula := _formula(formulas[column - 1].value))):
            text = f"{formula} (formula, value not saved)"
        hidden = column in hidden_columns or _format_hides(cell.value, cell.number_format)
        cells.append(f"(hidden) {text}" if text and hidden else text)
    while cells and not cells[-1]:
        cells.pop()
    return normalize_text(" | ".join(cells)) if any(cells) else ""


def _format_hides(value, number_format: str | None) -> bool:
    """Whether the cell's number format shows nothing for this value: the format's section for it
    (positive;negative;zero;text) is empty, as in ";;;", the usual way to hide a cell's content."""
    if value is None or not number_format or ";" not in number_format:
        return False
    sections = re.sub(r'"[^"]*"|\\.', "x", number_format).split(";")     # (a quoted or escaped ";" is text)
    if isinstance(value, str):
        index = 3 if len(sections) > 3 else None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        index = 0 if value > 0 or len(sections) < 2 else 1 if value < 0 else 2 if len(sections) > 2 else 0
    else:
        index = 0
    return index is not None and not sections[index].strip()


def _formula(value) -> str | None:
    """A cell's formula as openpyxl reads it without values ("=SUM(B2:B3)", or an array formula's)."""
    text = getattr(value, "text", value)              # ArrayFormula keeps its formula in .text
    return text if isinstance(text, str) and text.startswith("=") else None


_PERCENT = re.compile(r'^[^"\\]*?0(?:\.(0+))?%')       # "0%", "0.00%", "#,##0.0%" (not a quoted "%")


def _percent(value, number_format: str | None) -> str | None:
    """A number under a percent format as the spreadsheet shows it: 0.25 as "25%" (its stored value
    is a hundredth of what the reader sees); None for any other cell."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not number_format:
        return None
    if (m := _PERCENT.match(number_format)) is None:
        return None
    return f"{value * 100:.{len(m.group(1) or '')}f}%"


# What a number format writes beside the number: a currency of a locale ("[$€-407]", "[$USD]"),
# quoted text ('"$"', '" kg"') or a bare currency sign; and the number's digits ("#,##0.00").
_FORMAT_TEXT = re.compile(r'\[\$([^\]\-]+)[^\]]*\]|"([^"]+)"|([$€£¥₹₽₩₪₫₴₦₱฿¢])')
_DIGITS = re.compile(r"[0#?][0#?,]*(?:\.([0#?]+))?")


def _money(value, number_format: str | None) -> str | None:
    """A number under a format that writes a currency or a unit beside it, as the spreadsheet shows
    it: 1234.5 under '"$"#,##0.00' as "$1,234.50", under '#,##0.00 [$€-407]' as "1,234.50 €", under
    '0.0 "kg"' as "12.3 kg" (the stored value has neither); None for any other cell."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not number_format:
        return None
    section = number_format.split(";")[0]               # the positive numbers' section
    text = _FORMAT_TEXT.search(section)
    digits = _DIGITS.search(_FORMAT_TEXT.sub(lambda m: "\0" * len(m.group()), section))
    if text is None or digits is None or "%" in section:
        return None
    written = next(g for g in text.groups() if g).strip()
    places = Decimal(1).scaleb(-len(digits.group(1) or ""))
    try:
        rounded = Decimal(repr(abs(value))).quantize(places, ROUND_HALF_UP)   # half up, as a spreadsheet rounds
    except InvalidOperation:                            # more digits than a Decimal holds (1e300)
        return None
    number = f"{rounded:{',' if ',' in digits.group() else ''}f}"
    if text.start() < digits.start():
        shown = written + (" " if " " in section[text.end():digits.start()] else "") + number
    else:
        shown = number + (" " if " " in section[digits.end():text.start()] else "") + written
    return f"-{shown}" if value < 0 else shown


def _cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, ".15g")          # 0.1 + 0.2 shows as 0.3, as a spreadsheet shows it
    if isinstance(value, datetime.datetime):  # a date cell comes back as a datetime at midnight
        return value.date().isoformat() if value.time() == datetime.time() else value.isoformat(sep=" ")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return str(value).replace("\n", " ")


def _sheet_units(name: str, rows: list[tuple[int, str]]) -> list[tuple[str, str]]:
    """A sheet's (label, text) units: the whole sheet, or ranges of rows of ~SHEET_UNIT_CHARS."""
    if not rows:
        return [(name, "")]
    if sum(len(line) + 1 for _, line in rows) <= SHEET_UNIT_CHARS:
        return [(name, "\n".join(line for _, line in rows))]
    header, units, chunk, size = rows[0][1], [], [], 0
    for number, line in rows:
        if chunk and size + len(line) > SHEET_UNIT_CHARS:
            units.append(chunk)
            chunk, size = [], len(header)
        chunk.append((number, line))
        size += len(line) + 1
    units.append(chunk)
    return [(f"{name} (rows {part[0][0]}-{part[-1][0]})",
             "\n".join(([header] if k else []) + [line for _, line in part])) for k, part in enumerate(units)]


# ---------------------------------------------------------------- .eml

def read_eml(data: bytes, path: str | Path) -> TextContent:
    """An e-mail (RFC 822, as mail clients save it): its subject as the title, then From / To / Cc /
    Date lines and the body (the plain-text part, else the HTML part's visible text), cut like plain
    text; an attached e-mail (forwarded as an attachment) follows, read the same way; other
    attachments are named, not read (add them as documents of their own)."""
    from email import policy
    from email.parser import BytesParser

    try:
        message = BytesParser(policy=policy.default).parsebytes(data)
    except (ValueError, TypeError, LookupError) as err:
        raise IngestError("corrupt", path, f"not a readable e-mail ({err})") from None
    if not any(message.get(h) for h in ("From", "To", "Subject", "Date")):
        raise IngestError("corrupt", path, "not an e-mail (no From, To, Subject or Date header)")
    try:
        text = normalize_text(_message_text(message, path))
    except (LookupError, ValueError, KeyError, AttributeError) as err:
        raise IngestError("corrupt", path, f"damaged e-mail ({err})") from None
    subject = normalize_text(str(message.get("Subject") or "")) or None
    return units_from_sections([Section(None, 0, text)], subject)


def read_mhtml(data: bytes, path: str | Path) -> TextContent:
    """A web page saved as one file (.mhtml / .mht: "Web Page, Single File" in Chrome, Edge, Word):
    a MIME package whose first HTML part is the page, read as an .html file is (its pictures,
    styles and frames are the other parts)."""
    from email import policy
    from email.parser import BytesParser

    try:
        package = BytesParser(policy=policy.default).parsebytes(data)
        page = next((part for part in package.walk() if part.get_content_type() == "text/html"), None)
        markup = _part_text(page, path) if page is not None else None
    except (ValueError, TypeError, LookupError) as err:
        raise IngestError("corrupt", path, f"not a readable saved web page ({err})") from None
    if markup is None:
        raise IngestError("corrupt", path, "not a web page saved as one file (no HTML part in it)")
    title, sections = html_sections(markup)
    subject = normalize_text(str(package.get("Subject") or ""))
    return units_from_sections(sections, title or subject or next((s.heading for s in sections if s.heading), None))


_MAX_ATTACHED_DEPTH = 5       # e-mails attached inside attached e-mails: read this deep


def _message_text(message, path: str | Path, depth: int = 0) -> str:
    """Headers, body and attachment names of one message, then the messages attached to it."""
    head = [f"{h}: {message[h]}" for h in ("Subject", "From", "To", "Cc", "Date") if message.get(h)]
    body = _inline_text(message, path)
    names, attached = [], []
    for attachment in message.iter_attachments():
        inner = attachment.get_content() if attachment.get_content_type() == "message/rfc822" else None
        if inner is not None and depth < _MAX_ATTACHED_DEPTH:
            attached.append("Attached e-mail:\n" + _message_text(inner, path, depth + 1))
        else:
            names.append(attachment.get_filename() or "(unnamed)")
    if names:
        body += "\n\nAttachments (not read): " + ", ".join(names)
    return "\n\n".join(["\n".join(head) + "\n\n" + body, *attached])


def _inline_text(part, path: str | Path) -> str:
    """The text a mail client shows in the message, in order: of an alternative, the plain text (else
    the HTML's visible text); of a mixed or related multipart, every text part (text around an inline
    picture comes in several), skipping attachments, pictures and attached e-mails (read apart)."""
    if part.get_content_type() == "message/rfc822" or part.is_attachment():
        return ""
    if part.get_content_type() == "multipart/alternative":
        best = part.get_body(preferencelist=("plain", "html"))
        return _inline_text(best, path) if best is not None and best is not part else ""
    if part.is_multipart():
        return "\n\n".join(text for sub in part.iter_parts() if (text := _inline_text(sub, path)))
    if part.get_content_type() == "text/html":
        return "\n\n".join(s.text for s in html_sections(_part_text(part, path))[1])
    return _part_text(part, path) if part.get_content_type() == "text/plain" else ""


def _part_text(part, path: str | Path) -> str:
    """A text part decoded by its declared charset, as mail clients read it ("iso-8859-1" as
    Windows-1252, whose quotes, dashes and € Outlook writes under that name). Without one (the standard's us-ascii default,
    which 8-bit UTF-8 or Latin-1 bodies ignore), or with one Python does not know, it is decoded like
    a text file (UTF-8, else the charset found), not with a U+FFFD per byte, nor refused."""
    payload = part.get_payload(decode=True) or b""
    charset = part.get_content_charset()
    if charset and charset not in ("us-ascii", "ascii"):
        try:
            return payload.decode(as_browsers_read(charset), errors="replace")
        except LookupError:
            pass
    try:
        return decode_text(payload, path)
    except IngestError:                     # bytes no charset reads: what can be read of them
        return payload.decode("utf-8", errors="replace")


# ---------------------------------------------------------------- .rtf

def read_rtf(data: bytes, path: str | Path) -> TextContent:
    """The text of an RTF file (its \\'xx escapes decoded by striprtf), cut like plain text; hidden
    text (\\v) left out."""
    from striprtf.striprtf import rtf_to_text

    source = decode_text(data, path)
    if not source.lstrip().startswith("{\\rtf"):
        raise IngestError("corrupt", path, "not an RTF file (no {\\rtf header)")
    if _RTF_HIDDEN.search(source):
        source = _drop_rtf_hidden(source)
    text = normalize_text(rtf_to_text(source, errors="replace"))
    first = next((line.strip() for line in text.splitlines() if line.strip()), None)
    return units_from_sections([Section(None, 0, text)], first[:150] if first else None)


_RTF_HIDDEN = re.compile(r"\\v(?![a-z])")                 # the \v control word (hidden text), not \viewkind
_RTF_TOKEN = re.compile(r"\\([a-z]+)(-?\d+)? ?|\\'[0-9a-f]{2}|\\.|[{}]|[^\\{}]+", re.I | re.S)
# control words that write text (striprtf turns them into characters), dropped while text is hidden
_RTF_TEXT_WORDS = {"par", "line", "tab", "u", "emdash", "endash", "bullet", "lquote", "rquote", "ldblquote",
                   "rdblquote", "emspace", "enspace", "qmspace", "sect", "page"}


def _drop_rtf_hidden(source: str) -> str:
    """The RTF without its hidden text (\\v ... \\v0, or to the end of its group; \\plain ends it
    too), which striprtf reads as text: formatting and groups stay, characters go."""
    out, stack, hidden = [], [], False
    for m in _RTF_TOKEN.finditer(source):
        token, word = m.group(0), (m.group(1) or "").lower()
        if token == "{":
            stack.append(hidden)
        elif token == "}":
            hidden = stack.pop() if stack else False
        elif word == "v":
            hidden = m.group(2) != "0"
        elif word == "plain":
            hidden = False
        if not (hidden and _rtf_writes_text(token, word)):
            out.append(token)
    return "".join(out)


def _rtf_writes_text(token: str, word: str) -> bool:
    """Whether an RTF token is text: characters, a \\'hh or \\uN character, an escaped \\ { },
    a non-breaking space or hyphen, or a control word that writes one (\\par, \\tab, ...)."""
    if token in "{}":
        return False
    if not token.startswith("\\"):
        return True
    return token.startswith("\\'") or (not word and token[1:2] in "\\{}~-_") or word in _RTF_TEXT_WORDS


READERS = {"pptx": read_pptx, "odt": read_odt, "epub": read_epub, "rtf": read_rtf, "xlsx": read_xlsx,
           "eml": read_eml, "mhtml": read_mhtml}
