"""Formats without pages (.txt, .md, .html, .docx): split into citable sections or fixed-size parts.

A file with headings is cut at its headings (unit "section", label "§3 Installation"); one without
is cut into parts of about `PART_CHARS` characters at paragraph or line ends (unit "part", label
"part 3"). A section longer than `MAX_SECTION_CHARS` is cut into pieces the same way, each labelled
"§4 Heading (cont.)". The number in a label always equals `Page.number`, so a citation `[doc 1, p. 4]`
resolves to the same unit whether it uses the number or the label's position.
"""
from __future__ import annotations

import codecs
import io
import posixpath
import re
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import charset_normalizer
from bs4 import BeautifulSoup, CData, NavigableString, Tag
from bs4.dammit import EncodingDetector
from markdown_it import MarkdownIt

from ingest.errors import IngestError, XmlTooLarge
from ingest.kinds import CONVERT_HINTS
from ingest.normalize import normalize_text

PART_CHARS = 3000            # about one printed page of prose (the corpus PDFs average ~2,800 chars/page)
MAX_SECTION_CHARS = 6000
MAX_UNPACKED_BYTES = 512 * 1024 * 1024   # zip-bomb guard for .docx, .pptx, .xlsx, .odt, .epub
# An XML part parsed whole (.docx, .odt) holds at most this many elements: ElementTree takes ~210
# bytes an element, so ~0.85 GB; a .docx of 1,000 full pages has ~1 M. Within MAX_UNPACKED_BYTES a
# few hundred KB zipped unpack to 400 MB of "<w:p/>": 67 M elements, 14 GB.
MAX_XML_ELEMENTS = 4_000_000
# An HTML page (.html, an e-book's chapter, an e-mail's HTML body) has at most this many "<": its
# tags cannot be more. BeautifulSoup takes ~600 bytes a tag (300,000 nested <div>s: 220 MB), so
# ~1.2 GB at most. A 350 KB .epub unpacked to 90 M tags and took 4 GB.
MAX_HTML_TAGS = 2_000_000


@dataclass
class Section:
    heading: str | None      # None for text before the first heading or for plain parts
    level: int
    text: str                # normalised, heading line included


@dataclass
class TextContent:
    title: str | None
    unit: str                          # "section" or "part"
    units: list[tuple[str, str]]       # (label, text) per citable unit
    outline: list[tuple[str, int, int]]


# ---------------------------------------------------------------- decoding

# When several charsets read the bytes with the same (lowest) chaos, charset-normalizer breaks the
# tie by its language guess, which on short Western European text can pick cp1250 ("crème" becomes
# "crčme") or even hp_roman8. Windows-1252, by far the most used legacy charset, wins such ties.
PREFERRED_ON_TIE = ("cp1252", "latin_1")
# A tie is a chaos within this much of the least: a line of French read with 0.042 as cp775 (DOS
# Baltic) and 0.043 as cp1252, and charset-normalizer took cp775 ("crème" became "crĶme").
TIE_CHAOS_MARGIN = 0.01
# With no language recognised (short text), charset-normalizer's pick among the charsets that decode
# the bytes is close to arbitrary: "Köln" came out as UTF-16, "It’s" as Big5, "– €" as cp437.
# Windows-1252 is taken then, unless it reads the bytes clearly worse (more chaos by this much).
CP1252_CHAOS_MARGIN = 0.15
UTF16_PROBE_BYTES = 1 << 16
ODD_SAMPLE_BYTES = 1 << 13     # the start of a reading, looked at for marks of a wrong charset


def decode_text(data: bytes, path: str | Path) -> str:
    """Bytes of a text file to str: UTF-8 (with or without BOM), UTF-16 without a BOM (ASCII-range
    text: every other byte 0), the charset an HTML or XML file declares, else the charset
    charset-normalizer finds, Windows-1252 where it has no better evidence; binary data is refused
    as `unsupported`."""
    head = data[:UTF16_PROBE_BYTES]          # a file is UTF-16 throughout: its start tells
    if len(data) >= 4 and data[:2] not in (b"\xff\xfe", b"\xfe\xff"):
        for encoding, zeros in (("utf-16-le", head[1::2]), ("utf-16-be", head[0::2])):
            if zeros.count(0) >= 0.9 * len(zeros):
                try:
                    return data.decode(encoding)
                except UnicodeDecodeError:
                    pass
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    if (declared := _declared_encoding(data, path)) is not None:
        return declared
    # UTF-16 or -32 text of any language has zero bytes (its newlines, spaces, digits): bytes without
    # one are no such reading, though charset-normalizer may rank it first on short text (a Big5 or
    # GB18030 list of names read as UTF-16 came out as Hangul noise)
    matches = [m for m in charset_normalizer.from_bytes(data)
               if b"\0" in data or not m.encoding.startswith(("utf_16", "utf_32"))]
    if not matches:
        raise IngestError("unsupported", path, "binary data, not text in any known encoding")
    least_chaos = min(m.chaos for m in matches)
    tied = [m for m in matches if m.chaos <= least_chaos + TIE_CHAOS_MARGIN]
    # Of readings alike in chaos, those that put the fewest signs against letters ("£ódŸ" is Polish
    # "Łódź" read as Windows-1252): charset-normalizer's measure misses them in short text
    odd = {m.encoding: _odd_in_words(data[:ODD_SAMPLE_BYTES].decode(m.encoding, errors="ignore")) for m in tied}
    fewest = min(odd.values())
    for encoding in PREFERRED_ON_TIE:
        for m in tied:                  # could_be_from_charset: charsets charset-normalizer grouped with m
            if encoding in m.could_be_from_charset:
                try:                    # str(m) is m.encoding's text, which may differ (utf_16_le on "Köln")
                    text = data.decode(encoding)
                except UnicodeDecodeError:
                    continue
                if _odd_in_words(text[:ODD_SAMPLE_BYTES]) == fewest:
                    return text
    best = next(m for m in tied if odd[m.encoding] == fewest)
    if best.coherence == 0:             # no language recognised in any reading
        western = charset_normalizer.from_bytes(data, cp_isolation=["cp1252"]).best()
        if (western is not None and western.chaos <= best.chaos + CP1252_CHAOS_MARGIN
                and _odd_in_words(str(western)[:ODD_SAMPLE_BYTES]) <= fewest):
            return str(western)
    return str(best)


_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _odd_in_words(text: str) -> int:
    """How many marks of a wrong charset a reading has in words: a sign before a letter ("£ódŸ",
    "Za¿ó³æ": Polish read as Windows-1252; not a unit, "25 °C", "©Acme"), ¿ or ¡ after one, a letter
    of another script than the letter beside it ("Аuro": Cyrillic А). A sign by a number ("€5"),
    after a word ("m²") or a quote ("It’s") is no such mark."""
    odd = 0
    for m in _NON_ASCII.finditer(text):
        i, c = m.start(), m.group()
        prev, next_ = text[i - 1:i], text[i + 1:i + 2]
        if c.isalpha():
            script = _script(c)
            odd += script is not None and any(n.isalpha() and _script(n) not in (None, script) for n in (prev, next_))
        elif c in "¿¡":
            odd += prev.isalpha()
        elif (unicodedata.category(c)[0] == "S" or unicodedata.category(c) == "No") and c not in _UNIT_SIGNS:
            odd += next_.isalpha() and not prev.isdigit()
    return odd


_UNIT_SIGNS = "°©®™§¶•€"                          # signs that stand before a word in any text


# Scripts by the first word of a letter's Unicode name; Japanese writes kana and kanji together
_SCRIPTS = {"LATIN": "LATIN", "CYRILLIC": "CYRILLIC", "GREEK": "GREEK", "ARMENIAN": "ARMENIAN",
            "HEBREW": "HEBREW", "ARABIC": "ARABIC", "THAI": "THAI", "HANGUL": "HANGUL",
            "CJK": "CJK", "HIRAGANA": "CJK", "KATAKANA": "CJK"}


def _script(letter: str) -> str | None:
    """A letter's script (LATIN, CYRILLIC, CJK, ...); None for a letter of no one script (µ)."""
    return _SCRIPTS.get(unicodedata.name(letter, "?").split(" ", 1)[0])


def _declared_encoding(data: bytes, path: str | Path) -> str | None:
    """An HTML or XML file's text in the charset it declares (`<meta charset>`, `<?xml encoding>`),
    as a browser reads it; None when it declares none (or a UTF-16 one, which ASCII markup cannot
    be) or the bytes do not decode so."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".html", ".htm", ".xhtml", ".xml"):
        return None
    declared = EncodingDetector.find_declared_encoding(data, is_html=suffix != ".xml")
    try:
        codec = as_browsers_read(declared or "")
        return None if codec.startswith(("utf-16", "utf-32")) else data.decode(codec)
    except (LookupError, UnicodeDecodeError):
        return None


# Declared charsets that browsers and mail clients read as the Windows code page that extends them
# (WHATWG Encoding): a page or e-mail saying "iso-8859-1" has its curly quotes, dashes and € at
# 0x80-0x9f, as Windows wrote it.
_AS_BROWSERS_READ = {"ascii": "cp1252", "iso8859-1": "cp1252", "iso8859-9": "cp1254", "iso8859-11": "cp874",
                     "tis-620": "cp874"}


def as_browsers_read(charset: str) -> str:
    """The Python codec for a declared charset, as browsers and mail clients read it (LookupError
    for an unknown one)."""
    codec = codecs.lookup(charset).name
    return _AS_BROWSERS_READ.get(codec, codec)


# ---------------------------------------------------------------- splitting

def split_parts(text: str, size: int = PART_CHARS) -> list[str]:
    """Cut `text` into pieces of at most ~`size` chars, preferring paragraph, then line, then word
    ends (linear in the length of `text`)."""
    text = text.strip()
    parts: list[str] = []
    start, end = 0, len(text)
    while end - start > size:
        cut = -1
        for sep in ("\n\n", "\n", " "):
            cut = text.rfind(sep, start + size // 2, start + size + 1)
            if cut > start:
                break
        if cut <= start:
            cut = start + size
        parts.append(text[start:cut].strip())
        start = cut
    if text[start:].strip():
        parts.append(text[start:].strip())
    return [p for p in parts if p]


def units_from_sections(sections: list[Section], title: str | None) -> TextContent:
    """Sections (or, when there is no heading, the whole text) to labelled units and an outline."""
    sections = [s for s in sections if s.text.strip()]
    if not any(s.heading for s in sections):
        whole = "\n\n".join(s.text for s in sections)
        units = [(f"part {i}", t) for i, t in enumerate(split_parts(whole), start=1)]
        return TextContent(title, "part", units, [])
    units: list[tuple[str, str]] = []
    outline: list[tuple[str, int, int]] = []
    for s in sections:
        heading = s.heading or "(untitled)"
        pieces = split_parts(s.text, MAX_SECTION_CHARS) if len(s.text) > MAX_SECTION_CHARS else [s.text]
        if s.heading:
            outline.append((s.heading, s.level, len(units) + 1))
        for k, piece in enumerate(pieces):
            number = len(units) + 1
            label = f"§{number} {heading}" + (" (cont.)" if k else "")
            units.append((label, piece))
    return TextContent(title, "section", units, outline)


def _first_line_title(text: str) -> str | None:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if len(re.findall(r"[^\W\d_]", line)) >= 3:
            return line[:150]
    return None


# ---------------------------------------------------------------- formats

# Plain text whose first line is a title; the first line of data or code (a CSV's header row,
# "import os", "\documentclass{article}") is not, and such a file is titled by its name
PROSE_SUFFIXES = (".txt", ".text", ".rst", ".org", ".adoc")


def read_txt(data: bytes, path: str | Path) -> TextContent:
    text = decode_text(data, path)
    prose = Path(path).suffix.lower() in PROSE_SUFFIXES
    if _tab_separated(text, path):
        text = "\n".join(" | ".join(cell.strip() for cell in line.split("\t")) for line in text.splitlines())
        prose = False
    text = normalize_text(text)
    return units_from_sections([Section(None, 0, text)], _first_line_title(text) if prose else None)


def _tab_separated(text: str, path: str | Path) -> bool:
    """Tab-separated values: a .tsv file, or a .txt whose lines (two or more) all hold the same
    number of tabs between their first and last cell, as a spreadsheet exports a sheet. Its rows
    are then read as `a | b | c`, like a table's in the other formats: normalising makes each tab
    one space, and the cells ("São Paulo", "12 million") ran together."""
    suffix = Path(path).suffix.lower()
    if suffix == ".tsv":
        return True
    counts = [line.strip().count("\t") for line in text.splitlines() if line.strip()]
    return suffix in (".txt", ".text") and len(counts) >= 2 and counts[0] > 0 and len(set(counts)) == 1


def _one_line(heading: str) -> str:
    """A heading as one normalised line (it becomes a unit's label; some are written over lines)."""
    return " ".join(normalize_text(heading).split())


_FRONT_MATTER = re.compile(r"\A(---|\+\+\+)[ \t]*\n(.*?\n)?\1[ \t]*(?:\n|\Z)", re.S)


def read_markdown(data: bytes, path: str | Path) -> TextContent:
    """Sections at ATX/setext headings as markdown-it parses them (so '# ' inside code is no heading)."""
    source = decode_text(data, path).replace("\r\n", "\n").replace("\r", "\n")
    lines = source.split("\n")
    parsed, meta_title = source, None
    if (fm := _FRONT_MATTER.match(source)) is not None:   # YAML/TOML front matter: text, not a setext heading
        parsed = "\n" * fm.group(0).count("\n") + source[fm.end():]
        if (t := re.search(r"(?m)^title\s*[:=]\s*[\"']?(.+?)[\"']?\s*$", fm.group(2) or "")) is not None:
            meta_title = normalize_text(t.group(1)) or None
    tokens = MarkdownIt("commonmark").parse(parsed)
    _drop_comments(lines, tokens)
    starts: list[tuple[int, int, str]] = []       # (line, level, heading text)
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open" and tok.map and tok.level == 0:
            starts.append((tok.map[0], int(tok.tag[1]), _one_line(_HTML_COMMENT.sub("", tokens[i + 1].content))))
    sections: list[Section] = []
    bounds = [s[0] for s in starts] + [len(lines)]
    if not starts or starts[0][0] > 0:
        sections.append(Section(None, 0, normalize_text("\n".join(lines[: bounds[0]]))))
    for (line, level, heading), end in zip(starts, bounds[1:]):
        sections.append(Section(heading, level, normalize_text("\n".join(lines[line:end]))))
    h1 = next((h for _, lvl, h in starts if lvl == 1), None)
    body = "\n".join(lines[fm.group(0).count("\n"):] if fm is not None else lines)
    return units_from_sections(sections, meta_title or h1 or _first_line_title(normalize_text(body)))


_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)


def _drop_comments(lines: list[str], tokens) -> None:
    """Blank out the HTML comments of Markdown source `lines` (a rendered page does not show them:
    drafts' notes, TODOs), as markdown-it found them: a comment block's lines, an inline comment's
    text; in code they are text and stay. The line count is kept, so the token maps still hold."""
    for tok in tokens:
        if not tok.map:
            continue
        first, end = tok.map
        if tok.type == "html_block" and not _HTML_COMMENT.sub("", tok.content).strip():
            lines[first:end] = [""] * (end - first)
            continue
        comments = [c.content for c in tok.children or [] if c.type == "html_inline" and c.content.startswith("<!--")]
        if comments:
            chunk = "\n".join(lines[first:end])
            for comment in comments:
                chunk = chunk.replace(comment, "\n" * comment.count("\n"), 1)
            lines[first:end] = chunk.split("\n")


_HTML_BLOCKS = ["p", "div", "li", "tr", "br", "pre", "blockquote", "section", "article", "table",
                "ul", "ol", "dl", "dt", "dd", "header", "footer", "figure", "figcaption", "hr",
                "main", "nav", "aside", "address", "details", "summary", "caption", "fieldset", "legend"]
# lxml (a dependency): Python's html.parser builder rescans its list of open void tags at every
# closing tag, quadratic on pages with thousands of <wbr>/<br> (the Rust reference's 4.3 MB
# print.html: 17.3 s vs 5.9 s whole, bench/html_reading.py --file, 2026-11-29 03:10 UTC); the text
# of 40 real HTML pages is the same with either.
HTML_PARSER = "lxml"
_HTML_DROP = ["script", "style", "noscript", "template", "svg", "head"]
_HEADING_MARK = "\x1e"       # record separator: taken out of the page's own text first (a control character)


_HIDDEN_STYLE = re.compile(r"(?:^|;)\s*(?:display\s*:\s*none|visibility\s*:\s*(?:hidden|collapse)"
                           r"|font-size\s*:\s*0*\.?0+[a-z%]*|opacity\s*:\s*0*\.?0+%?)"
                           r"\s*(?:!important\s*)?(?:;|$)", re.I)


def _html_hidden(tag) -> bool:
    """An element a browser does not show: the `hidden` attribute (not "until-found", which the
    page's find reveals), an inline style `display: none`, `visibility: hidden`, `font-size: 0` or
    `opacity: 0` (e-mails hide text so), a closed <dialog>.
    (aria-hidden hides from screen readers only: seen, so read. Stylesheet rules are not applied.)"""
    hidden = tag.get("hidden")
    if hidden is not None and str(hidden).lower() != "until-found":
        return True
    if tag.name == "dialog" and not tag.has_attr("open"):
        return True
    return bool(_HIDDEN_STYLE.search(str(tag.get("style") or "")))


def read_html(data: bytes, path: str | Path) -> TextContent:
    """Visible text of an HTML file, cut into sections at <h1>..<h6>."""
    title, sections = html_sections(decode_text(data, path))
    if not title:
        title = next((s.heading for s in sections if s.heading), None) or ""
    return units_from_sections(sections, title or None)


def html_sections(markup: str | bytes) -> tuple[str, list[Section]]:
    """The <title> and the visible text of an HTML page (not its scripts, styles, templates, nor
    elements hidden by attribute or inline style) as sections cut at <h1>..<h6> (the text before
    the first heading is a section without one). XmlTooLarge for a page of more than MAX_HTML_TAGS
    "<" (tags)."""
    if markup.count(b"<" if isinstance(markup, bytes) else "<") > MAX_HTML_TAGS:
        raise XmlTooLarge(f"an HTML page of more than {MAX_HTML_TAGS:,} tags, too many to read in bounded memory")
    soup = BeautifulSoup(markup, HTML_PARSER)
    title_tag = soup.find("title")
    title = normalize_text(title_tag.get_text(" ")) if title_tag else ""
    for tag in soup.find_all(_HTML_DROP) + soup.find_all(_html_hidden):
        tag.decompose()
    # A frame shows its srcdoc page, never what is written inside the tag ("Your browser does not
    # support iframes"); a frame of another file (src) is that file's, not this page's
    for frame in soup.find_all("iframe"):
        inner = "\n\n".join(s.text for s in html_sections(frame["srcdoc"])[1]) if frame.get("srcdoc") else ""
        frame.clear()
        frame.append(f"\n{inner}\n")
    # The page's own U+001E (an export of records) would read as a heading mark: a space, as
    # normalising makes it anyway (a comment stays a comment)
    for text in soup.find_all(string=re.compile(_HEADING_MARK)):
        text.replace_with(type(text)(text.replace(_HEADING_MARK, " ")))
    # Tag.insert_after / replace_with look the tag up among its siblings (linear), which made a page
    # of many sibling blocks (<p> or <br> lines in one <body>) quadratic; appending inside is not.
    for heading in soup.find_all(re.compile(r"^h[1-6]$")):
        text = _one_line(heading.get_text(" "))           # one line: the mark is split off at "\n"
        heading.clear()
        heading.append(f"\n{_HEADING_MARK}{heading.name[1]}{text}\n")
    sections: list[Section] = []
    for chunk in re.split(f"(?={_HEADING_MARK})", _html_text(soup)):
        if chunk.startswith(_HEADING_MARK):
            first, _, rest = chunk[1:].partition("\n")
            level, heading = int(first[0]), first[1:].strip()
            sections.append(Section(heading or None, level, normalize_text(f"{heading}\n{rest}")))
        else:
            sections.append(Section(None, 0, normalize_text(chunk)))
    return title, sections


_BLOCK_SET = frozenset(_HTML_BLOCKS)


def _html_text(root) -> str:
    """The page's text (its NavigableString and CData strings, as get_text() gives it), with a
    line break at the start and end of each block (a block starts a line: "text<table>" was glued;
    <br> and <hr> end one) and a space after each table cell. One walk with a stack of its own,
    the tree unchanged: appending a string inside a tag walks the subtree of the tag's last child,
    so marking each block so took hours on a page of 300,000 nested <div>s (200 KB)."""
    out: list[str] = []
    stack: list = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if type(node) in (str, NavigableString, CData):       # a mark pushed below, or page text
                out.append(node)
            continue
        if not isinstance(node, Tag):
            continue
        if node.name in _BLOCK_SET:
            if node.name not in ("br", "hr"):
                out.append("\n")
            stack.append("\n")
        elif node.name in ("td", "th"):
            stack.append(" ")
        stack.extend(reversed(node.contents))
    return "".join(out)


# A Compound File (CFB): what Office 97-2003 saved, and what a password-protected .docx, .xlsx or
# .pptx is (its ZIP encrypted in an "EncryptedPackage" stream). Streams by their UTF-16 names.
_CFB_MAGIC = bytes.fromhex("d0cf11e0a1b11ae1")
_CFB_STREAMS = (("EncryptedPackage", None), ("WordDocument", ".doc"), ("Workbook", ".xls"), ("Book", ".xls"),
                ("PowerPoint Document", ".ppt"))


def parse_xml(data: bytes, part: str) -> ElementTree.Element:
    """ElementTree.fromstring(data), counting the elements as it parses: a part of more than
    MAX_XML_ELEMENTS raises XmlTooLarge before it is built whole (ParseError when not XML)."""
    parser = ElementTree.XMLPullParser(events=("start",))
    root, count, step = None, 0, 1 << 20
    for offset in range(0, len(data), step):
        parser.feed(data[offset:offset + step])
        for _, element in parser.read_events():
            root = element if root is None else root
            count += 1
        if count > MAX_XML_ELEMENTS:
            raise XmlTooLarge(f"{part} has more than {MAX_XML_ELEMENTS:,} XML elements, too many to read "
                              "in bounded memory")
    parser.close()
    if root is None:
        raise ElementTree.ParseError(f"{part}: no element found")
    return root


_MARKUP_SUFFIXES = (".xml", ".rels", ".xhtml", ".html", ".htm", ".opf", ".ncx")


def check_zip(data: bytes, path: str | Path, what: str, parsed_whole: bool = False) -> None:
    """Refuse bytes that are not a ZIP archive, or one that unpacks to more than MAX_UNPACKED_BYTES;
    a password-protected Office file, or an old binary one under a new name, is named as such.
    `parsed_whole` (for a library that parses every part whole): also refuse (XmlTooLarge) an archive
    whose XML and HTML parts hold more than MAX_XML_ELEMENTS "<" (tags), counted unpacking in chunks."""
    if data.startswith(_CFB_MAGIC):
        stream = next(((name, old) for name, old in _CFB_STREAMS if name.encode("utf-16-le") in data), None)
        if stream is not None and stream[1] is None:
            raise IngestError("unsupported", path, f"a password-protected {what} (encrypted): open it with its "
                              "password, save a copy without one and add that")
        if stream is not None:
            raise IngestError("unsupported", path, f"{CONVERT_HINTS[stream[1]]} (it is a {stream[1]} file named {what})")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, EOFError, ValueError):
        raise IngestError("corrupt", path, f"not a valid {what} (not a ZIP archive)") from None
    if unpacked > MAX_UNPACKED_BYTES:
        raise IngestError("too_large", path, f"unpacks to {unpacked} bytes, more than {MAX_UNPACKED_BYTES}")
    if parsed_whole and _tags(data) > MAX_XML_ELEMENTS:
        raise XmlTooLarge(f"its XML parts hold more than {MAX_XML_ELEMENTS:,} tags, too many to read in "
                          "bounded memory")


def _tags(data: bytes) -> int:
    """The "<" in the archive's XML and HTML parts (an upper bound of their elements)."""
    count = 0
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            if info.filename.lower().endswith(_MARKUP_SUFFIXES):
                with archive.open(info) as part:
                    while chunk := part.read(1 << 20):
                        count += chunk.count(b"<")
    return count


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def read_docx(data: bytes, path: str | Path) -> TextContent:
    """Paragraph text of word/document.xml (tables included), sections at heading-styled paragraphs;
    then the footnotes, endnotes, comments and page headers/footers, a section each."""
    check_zip(data, path, ".docx")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        try:
            info = archive.getinfo("word/document.xml")
        except KeyError:
            raise IngestError("corrupt", path, "not a valid .docx (no word/document.xml)") from None
        try:
            body = parse_xml(archive.read(info), info.filename)
            hidden = _docx_hidden_styles(archive)
            _drop_unseen(body, hidden)
            _inline_diagrams(body, archive)
            styles = _docx_heading_styles(archive)
            title = _docx_core_title(archive)
            notes = _docx_notes(archive, hidden)
        except (ElementTree.ParseError, zipfile.BadZipFile, OSError, EOFError) as err:
            raise IngestError("corrupt", path, f"damaged .docx ({err})") from None
    sections: list[Section] = [Section(None, 0, "")]
    lines: list[str] = []

    def close_section() -> None:
        sections[-1].text = normalize_text("\n".join(lines))
        lines.clear()

    for para, row in _docx_blocks(body):
        if para is None:                    # a table row, one line
            lines.append(row)
            continue
        text = _docx_paragraph_text(para)
        style = para.find(f"{_W}pPr/{_W}pStyle")
        level = styles.get(style.get(f"{_W}val")) if style is not None else None
        if level is not None and text.strip():
            close_section()
            heading = normalize_text(text)
            if level == 0:          # "Title" style: the document title, level-1 section
                title = title or heading
                level = 1
            sections.append(Section(heading, level, ""))
        lines.append(text)
    close_section()
    for heading, note_lines in notes:      # footnotes, endnotes, comments: sections at the end
        sections.append(Section(heading, 1, normalize_text("\n".join([heading, *note_lines]))))
    if not title:
        title = next((s.heading for s in sections if s.heading), None)
    return units_from_sections(sections, title)


_DOCX_NOTES = (("word/footnotes.xml", "footnote", "Footnotes"), ("word/endnotes.xml", "endnote", "Endnotes"),
               ("word/comments.xml", "comment", "Comments"))


def _docx_notes(archive: zipfile.ZipFile, hidden: set[str]) -> list[tuple[str, list[str]]]:
    """(heading, lines) for the footnotes, endnotes, comments and page headers/footers the file has:
    "[3] text" for a note (its number in the text), "Author: text" for a comment. Word's separator
    notes are skipped."""
    out = []
    names = set(archive.namelist())
    for part, tag, heading in _DOCX_NOTES:
        if part not in names:
            continue
        lines = []
        root = parse_xml(archive.read(part), part)
        _drop_unseen(root, hidden)
        for note in root.iter(f"{_W}{tag}"):
            if note.get(f"{_W}type") in ("separator", "continuationSeparator", "continuationNotice"):
                continue
            text = " ".join(t for t in (_docx_paragraph_text(p).strip() for p in note.iter(f"{_W}p")) if t)
            if not text:
                continue
            if tag == "comment":
                author = note.get(f"{_W}author")
                lines.append(f"{author}: {text}" if author else text)
            else:
                lines.append(f"[{note.get(f'{_W}id', '?')}] {text}")
        if lines:
            out.append((heading, lines))
    if lines := _docx_headers_footers(archive, hidden):
        out.append(("Headers and footers", lines))
    return out


_HEADER_FOOTER = re.compile(r"word/(header|footer)(\d*)\.xml")


def _docx_headers_footers(archive: zipfile.ZipFile, hidden: set[str]) -> list[str]:
    """The distinct lines of the page headers, then footers: a reader sees them on every page (a
    document number, "Confidential", the company). First-page, even-page and default ones are
    separate parts, often alike, so a line is kept once."""
    parts = sorted((m.group(1) == "footer", int(m.group(2) or 0), m.group(0))
                   for name in archive.namelist() if (m := _HEADER_FOOTER.fullmatch(name)))
    lines: list[str] = []
    for *_, name in parts:
        root = parse_xml(archive.read(name), name)
        _drop_unseen(root, hidden)
        for para in root.iter(f"{_W}p"):
            text = " ".join(_docx_paragraph_text(para).split())
            if text and text not in lines:
                lines.append(text)
    return lines


_MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
# Not on the page: a text box's VML copy, and text deleted or moved away under track changes (Word
# writes moved-away text as w:t, and some tools deleted text too, not w:delText).
_UNSEEN = {_MC_FALLBACK, f"{_W}del", f"{_W}moveFrom"}
# Hidden text (Font > Hidden): not shown, nor printed, unless the reader turns on "show hidden text".
# w:webHidden is not among them: it hides only in Web Layout view (a contents' page numbers).
_VANISH = (f"{_W}vanish", f"{_W}specVanish")
# A drawing (text box, shape) hidden in the Selection Pane: <wp:docPr hidden="1">
_DOC_PR = "{http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing}docPr"


def _drop_unseen(root: ElementTree.Element, hidden_styles: set[str] = frozenset()) -> None:
    """Remove what a reader of the document does not see: Word writes a text box twice, as a
    DrawingML shape (mc:Choice) and as a VML copy for old readers (mc:Fallback), so the copy goes or
    its text is read twice; tracked deletions and moved-away text go (insertions stay); and so do
    runs of hidden text, set on the run or by its character or paragraph style (`hidden_styles`),
    and drawings (a text box) hidden in the Selection Pane."""
    stack = [(root, False)]                 # (element, its paragraph's style hides text), no recursion
    hidden_marks = []                       # (parent, paragraph) whose paragraph mark is hidden
    while stack:
        parent, para_hidden = stack.pop()
        for child in list(parent):
            if (child.tag in _UNSEEN or (child.tag == f"{_W}r" and _run_hidden(child, para_hidden, hidden_styles))
                    or (child.tag == f"{_W}drawing" and _drawing_hidden(child))):
                parent.remove(child)
            elif child.tag == f"{_W}p":
                style = child.find(f"{_W}pPr/{_W}pStyle")
                styled = style is not None and style.get(f"{_W}val") in hidden_styles
                props = child.find(f"{_W}pPr")      # its w:rPr is the paragraph mark's
                if _run_hidden(props, styled, hidden_styles) if props is not None else styled:
                    hidden_marks.append((parent, child))
                stack.append((child, styled))
            else:
                stack.append((child, para_hidden))
    for parent, para in hidden_marks:       # all its text hidden too: the paragraph is not there at all
        if not any(t.text for t in para.iter(f"{_W}t")):
            parent.remove(para)


def _toggle(el: ElementTree.Element) -> bool:
    """An on/off property's value: on unless w:val says 0, false or off."""
    return el.get(f"{_W}val", "true").lower() not in ("0", "false", "off")


def _drawing_hidden(drawing: ElementTree.Element) -> bool:
    return any((p.get("hidden") or "").lower() in ("1", "true", "on") for p in drawing.iter(_DOC_PR))


def _run_hidden(run: ElementTree.Element, para_hidden: bool, hidden_styles: set[str]) -> bool:
    """Whether a run (or a paragraph mark: w:pPr) is hidden: its own w:vanish (on or off) wins, then
    its character style, then its paragraph's style."""
    props = run.find(f"{_W}rPr")
    if props is not None:
        for tag in _VANISH:
            if (mark := props.find(tag)) is not None:
                return _toggle(mark)
        style = props.find(f"{_W}rStyle")
        if style is not None and style.get(f"{_W}val") in hidden_styles:
            return True
    return para_hidden


def _docx_hidden_styles(archive: zipfile.ZipFile) -> set[str]:
    """The ids of styles.xml styles whose text is hidden (w:vanish in their run properties, or
    inherited through w:basedOn)."""
    if "word/styles.xml" not in archive.namelist():
        return set()
    own: dict[str, bool | None] = {}
    parent: dict[str, str] = {}
    for style in parse_xml(archive.read("word/styles.xml"), "word/styles.xml").iter(f"{_W}style"):
        sid = style.get(f"{_W}styleId")
        mark = style.find(f"{_W}rPr/{_W}vanish")
        own[sid] = _toggle(mark) if mark is not None else None
        if (based := style.find(f"{_W}basedOn")) is not None:
            parent[sid] = based.get(f"{_W}val")

    def hidden(sid: str | None, seen: frozenset = frozenset()) -> bool:
        if sid is None or sid in seen or sid not in own:
            return False
        return own[sid] if own[sid] is not None else hidden(parent.get(sid), seen | {sid})

    return {sid for sid in own if hidden(sid)}


DGM = "{http://schemas.openxmlformats.org/drawingml/2006/diagram}"
_A = "{http://schemas.openxmlformats.org/drawingml/2006/main}"
R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_RELS = "{http://schemas.openxmlformats.org/package/2006/relationships}"


def diagram_lines(data_part: bytes) -> list[str]:
    """A SmartArt diagram's text from its data part (Word and PowerPoint keep it apart from the page,
    and python-docx / python-pptx do not read it): its points in order, a line per paragraph (the
    connection and layout points carry none)."""
    lines = []
    for text in parse_xml(data_part, "a diagram").iter(f"{DGM}t"):
        for para in text.iter(f"{_A}p"):
            if (line := "".join(t.text or "" for t in para.iter(f"{_A}t"))).strip():
                lines.append(line)
    return lines


def _inline_diagrams(body: ElementTree.Element, archive: zipfile.ZipFile) -> None:
    """Put the text of each SmartArt diagram (kept in its own data part, not in document.xml) where
    the diagram stands, a line per paragraph, as line breaks and text the paragraph reader reads."""
    anchors = list(body.iter(f"{DGM}relIds"))
    if not anchors or "word/_rels/document.xml.rels" not in archive.namelist():
        return
    rels = parse_xml(archive.read("word/_rels/document.xml.rels"), "word/_rels/document.xml.rels").iter(f"{_RELS}Relationship")
    targets = {rel.get("Id"): posixpath.normpath(posixpath.join("/word", rel.get("Target", "")))[1:] for rel in rels}
    for anchor in anchors:
        part = targets.get(anchor.get(f"{R}dm"))
        if part is None or part not in archive.namelist():
            continue
        for line in diagram_lines(archive.read(part)):
            ElementTree.SubElement(anchor, f"{_W}br")
            ElementTree.SubElement(anchor, f"{_W}t").text = line
        ElementTree.SubElement(anchor, f"{_W}br")


def _docx_blocks(body: ElementTree.Element) -> Iterator[tuple[ElementTree.Element | None, str]]:
    """The paragraphs (para, "") in document order, a table row as one line (None, "a | b | c") as
    it is read across the page. A row of one cell (a layout table, a boxed note) is read as its
    paragraphs, so its headings and lines stay."""
    stack = [body]
    while stack:
        el = stack.pop()
        if el.tag == f"{_W}p":
            yield el, ""
        elif el.tag == f"{_W}tr" and len(cells := _docx_row_cells(el)) > 1:
            yield None, " | ".join(" ".join(_docx_paragraph_text(p).strip() for p in cell.iter(f"{_W}p")).strip()
                                   for cell in cells)
            continue
        stack.extend(reversed(el))          # (a paragraph's text boxes hold paragraphs of their own)


def _docx_row_cells(row: ElementTree.Element) -> list[ElementTree.Element]:
    """The cells of a table row, also those inside content controls (w:sdt)."""
    cells = []
    for child in row:
        if child.tag == f"{_W}tc":
            cells.append(child)
        elif child.tag == f"{_W}sdt":
            cells.extend(child.iterfind(f"{_W}sdtContent/{_W}tc"))
    return cells


def _docx_paragraph_text(para: ElementTree.Element) -> str:
    """The runs of this paragraph, its equations in a linear form (`math_text`); a text box inside
    it (w:txbxContent) holds paragraphs of its own, which body.iter() reaches by themselves."""
    out = []
    stack = list(reversed(para))                 # document order, without recursion
    while stack:
        el = stack.pop()
        if el.tag == f"{_W}txbxContent":
            continue
        if el.tag in (f"{_M}oMath", f"{_M}oMathPara"):
            out.append(math_text(el))
            continue
        if el.tag == f"{_W}t" and el.text:
            out.append(el.text)
        elif el.tag == f"{_W}tab":
            out.append("\t")
        elif el.tag in (f"{_W}br", f"{_W}cr"):
            out.append("\n")
        elif el.tag == f"{_W}noBreakHyphen":
            out.append("-")
        elif el.tag in (f"{_W}checkBox", f"{_W}ddList"):
            out.append(_form_field_value(el))
        elif el.tag == f"{_W}sym":
            out.append(_symbol(el.get(f"{_W}font", ""), el.get(f"{_W}char", "")))
        stack.extend(reversed(el))
    return "".join(out)


# Insert > Symbol in a symbol font writes w:sym, no text: the font's code (in the private-use F0xx
# range for these fonts) is mapped to the character shown. Symbol is Adobe's Symbol encoding (Greek
# letters and mathematics, "α = 0.05"); Wingdings and Wingdings 2, their check marks and boxes.
_SYMBOL_FONT = dict(zip(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "αβχδεφγηιϕκλμνοπθρστυϖωξψζΑΒΧΔΕΦΓΗΙϑΚΛΜΝΟΠΘΡΣΤΥςΩΞΨΖ"))
_SYMBOL_FONT.update({chr(code): char for code, char in (
    (0x22, "∀"), (0x24, "∃"), (0x27, "∋"), (0x2A, "∗"), (0x2D, "−"), (0x40, "≅"), (0x5C, "∴"), (0x5E, "⊥"),
    (0x7E, "∼"), (0xA2, "′"), (0xA3, "≤"), (0xA5, "∞"), (0xAB, "↔"), (0xAC, "←"), (0xAD, "↑"), (0xAE, "→"),
    (0xAF, "↓"), (0xB0, "°"), (0xB1, "±"), (0xB2, "″"), (0xB3, "≥"), (0xB4, "×"), (0xB5, "∝"), (0xB6, "∂"),
    (0xB7, "•"), (0xB8, "÷"), (0xB9, "≠"), (0xBA, "≡"), (0xBB, "≈"), (0xBC, "…"), (0xC4, "⊗"), (0xC5, "⊕"),
    (0xC6, "∅"), (0xC7, "∩"), (0xC8, "∪"), (0xC9, "⊃"), (0xCA, "⊇"), (0xCB, "⊄"), (0xCC, "⊂"), (0xCD, "⊆"),
    (0xCE, "∈"), (0xCF, "∉"), (0xD0, "∠"), (0xD1, "∇"), (0xD5, "∏"), (0xD6, "√"), (0xD7, "⋅"), (0xD8, "¬"),
    (0xD9, "∧"), (0xDA, "∨"), (0xDB, "⇔"), (0xDC, "⇐"), (0xDD, "⇑"), (0xDE, "⇒"), (0xDF, "⇓"), (0xE5, "∑"),
    (0xF2, "∫"))})
_SYMBOL_FONTS = {"symbol": _SYMBOL_FONT,
                 "wingdings": {"\xa8": "☐", "\xfb": "✗", "\xfc": "✓", "\xfd": "☒", "\xfe": "☑"},
                 "wingdings 2": {"\xa3": "☐", "\x4f": "✗", "\x50": "✓", "\x52": "☑", "\x53": "☒"}}


def _symbol(font: str, code: str) -> str:
    """The character a w:sym shows: its code itself when that is no private-use code, else the
    symbol font's character for it ("" for a font or code not known)."""
    try:
        value = int(code, 16)
    except ValueError:
        return ""
    if not 0xE000 <= value <= 0xF8FF:
        return chr(value) if 0 < value <= 0x10FFFF else ""
    return _SYMBOL_FONTS.get(font.strip().lower(), {}).get(chr(value & 0xFF), "")


def _form_field_value(field: ElementTree.Element) -> str:
    """What a legacy form field (Developer > Legacy Forms) shows, which is no text in the file: a
    check box as ☒ or ☐, a drop-down list as its chosen entry."""
    if field.tag == f"{_W}checkBox":
        state = field.find(f"{_W}checked")
        if state is None:
            state = field.find(f"{_W}default")
        return "☒" if state is not None and _toggle(state) else "☐"
    entries = [e.get(f"{_W}val", "") for e in field.findall(f"{_W}listEntry")]
    chosen = field.find(f"{_W}result")
    index = int(chosen.get(f"{_W}val", "0")) if chosen is not None and chosen.get(f"{_W}val", "0").isdigit() else 0
    return entries[index] if index < len(entries) else ""


def math_text(root) -> str:
    """An equation (Office Math, m:oMath or m:oMathPara, in Word or PowerPoint) in Word's linear form:
    its text with the marks of `_math_marks`, one line per equation of a group."""
    out: list[str] = []
    stack: list = list(reversed(root))
    while stack:
        el = stack.pop()
        if isinstance(el, str):                 # the end of an equation's part: its closing mark
            if el and out and out[-1] == " ":   # (a one-character superscript's space: "x_i|", not "x_i |")
                out.pop()
            out.append(el)
            continue
        if not isinstance(el.tag, str) or el.tag == f"{_M}deg":      # (a comment; a degree, read with its root)
            continue
        if el.tag == f"{_M}oMath" and out:
            out.append("\n")
        if el.tag == f"{_M}t" and el.text:
            out.append(el.text)
        elif (marks := _math_marks(el)) is not None:
            out.append(marks[0])
            stack.append(marks[1])
        stack.extend(reversed(el))
    return "".join(out)


_M = "{http://schemas.openxmlformats.org/officeDocument/2006/math}"


def _math_text(el: ElementTree.Element) -> str:
    return "".join(t.text or "" for t in el.iter(f"{_M}t"))


def _math_marks(el: ElementTree.Element) -> tuple[str, str] | None:
    """What an equation's (Office Math) part is read between, as it is typed in Word's linear form:
    a superscript ^(n+1) (^2 and a space for one character), a subscript _(i), a fraction (a)/(b), a root
    √(x) or √[3](x), a sum's or integral's sign, brackets, a function's name and a space (sin x).
    None for the rest, whose text is read as it stands."""
    tag = el.tag[len(_M):]
    if tag in ("sup", "sub", "lim", "num", "den"):
        text = _math_text(el)
        if not text:
            return None
        lead = {"sup": "^", "sub": "_", "lim": "_", "den": "/"}.get(tag, "")
        return (lead, " ") if len(text) == 1 else (f"{lead}(", ")")
    if tag == "rad":
        degree = el.find(f"{_M}deg")
        degree = _math_text(degree) if degree is not None else ""
        return (f"√[{degree}](" if degree else "√("), ")"
    if tag == "naryPr":
        sign = el.find(f"{_M}chr")
        return (sign.get(f"{_M}val") if sign is not None else "∫") or "∫", ""
    if tag == "d":
        props = el.find(f"{_M}dPr")
        begin = props.find(f"{_M}begChr") if props is not None else None
        end = props.find(f"{_M}endChr") if props is not None else None
        return (begin.get(f"{_M}val", "(") if begin is not None else "(",
                end.get(f"{_M}val", ")") if end is not None else ")")
    if tag == "fName":
        return "", " "
    return None


def _docx_heading_styles(archive: zipfile.ZipFile) -> dict[str, int]:
    """styleId -> heading level (0 for the Title style), from styles.xml names ("heading 2") or
    outline levels, so localised style ids ("berschrift2") work too."""
    levels: dict[str, int] = {"Title": 0}
    levels.update({f"Heading{n}": n for n in range(1, 10)})
    if "word/styles.xml" not in archive.namelist():
        return levels
    root = parse_xml(archive.read("word/styles.xml"), "word/styles.xml")
    for style in root.iter(f"{_W}style"):
        sid = style.get(f"{_W}styleId")
        name_el = style.find(f"{_W}name")
        name = (name_el.get(f"{_W}val") or "").lower() if name_el is not None else ""
        outline = style.find(f"{_W}pPr/{_W}outlineLvl")
        if m := re.fullmatch(r"heading\s*(\d)", name):
            levels[sid] = int(m.group(1))
        elif name == "title":
            levels[sid] = 0
        elif outline is not None and (val := outline.get(f"{_W}val", "")).isdigit() and int(val) < 9:
            levels[sid] = int(val) + 1
    return levels


def _docx_core_title(archive: zipfile.ZipFile) -> str | None:
    if "docProps/core.xml" not in archive.namelist():
        return None
    root = parse_xml(archive.read("docProps/core.xml"), "docProps/core.xml")
    el = root.find("{http://purl.org/dc/elements/1.1/}title")
    return normalize_text(el.text) if el is not None and el.text and el.text.strip() else None


READERS = {"txt": read_txt, "md": read_markdown, "html": read_html, "docx": read_docx}
