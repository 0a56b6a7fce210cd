"""Parse the citations of an answer and verify each against the page it cites.

Forms understood:
  inline   "... claim [doc 2, p. 14]."  "[doc 1, pp. 3-5]"  "[doc 1, p. 2; doc 3, p. iv]"
           "[doc 1, p. 2, doc 2, p. 7]"  "[doc 1, pp. 2, 5]"  "[doc 1, pp. 3-5, 7]"  "[docs 1 and 2, p. 2]"
           "【doc 1, p. 2】"  "(doc 2, page 5)"  bare: "[1, p. 3]"  "[1 p3]"  "[doc 2][p. 5]"  "[p. 5]"
  block    "<citations> ... </citations>" after the answer (the checkpoint's grounded form):
           a JSON list of {"doc"|"document", "page"|"pages", "quote"|"text"} objects, or one
           line per citation: '[doc N, p. M] "quoted text"' / 'doc N, p. M: quoted text'.

What is verified: an explicit quotation ("..." / “...” / « ... ») in the cited sentence when
there is one, else the cited sentence itself. It is fuzzy-matched (rapidfuzz partial ratio on
normalized text) against the cited page; the best matching window, widened to whole
sentences, is the supporting passage with its character offsets in the page text. The quote's
words must be the page's words there, in the page's order (a stretch that differs only a few
letters apart: broken words, accents), and so must its relation and operator symbols ("≤", "<=" for
"≤", "±", "%": the word check cannot see them) and its figures, sign and decimal point included. A quote found on no page alone may run across a page
break (of a cited range, or next to a cited page): it is matched against the two pages joined
without their running header and footer.
"""
from __future__ import annotations

import difflib
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from rapidfuzz import fuzz
from rapidfuzz.distance import Indel

from app.records import CitationInfo
from app.textutil import collapse_ws, normalize, sentence_spans
from ingest.normalize import CJK

VERIFY_THRESHOLD = 80.0     # partial-ratio score (0..100) at or above which a quote counts as found
                            # (and only when quote and match agree on negation)
MIN_FUZZY_CHARS = 12        # shorter quotes must appear exactly (fuzzy scores mean nothing there)
PASSAGE_CONTEXT = 300       # widen the match to whole sentences, at most this far each side
MIN_SIDE_CHARS = 4          # a quote across a page break has at least this much on each page
EDGE_LINES = 2              # lines at a page's top (bottom) that may be a running header (footer)


class _Page(Protocol):
    number: int
    label: str | None
    text: str


class _Doc(Protocol):
    filename: str
    pages: Sequence[_Page]


@dataclass
class CitationRef:
    """One parsed reference: document N, the pages it names, and the claim it supports."""

    doc: int
    pages: list[str]             # page tokens as written ("14", "iv"); a range is expanded later
    page_range: tuple[str, str] | None
    quote: str
    start: int = 0               # the marker's span in the answer text
    end: int = 0
    own: bool = False            # the quote is the answer's own sentence (no quotation marks)


@dataclass
class ParsedAnswer:
    text: str                            # the answer without a <citations> block
    refs: list[CitationRef] = field(default_factory=list)


# [doc 1, p. 2]; also 【doc 1, p. 2】 and (doc 1, p. 2), which count only when they name a page
_BRACKET = re.compile(r"\[([^\[\]\n]{1,300})\]|\u3010([^\u3010\u3011\n]{1,300})\u3011|\uff3b([^\uff3b\uff3d\n]{1,300})\uff3d"
                      r"|\(([^()\[\]\n]{1,300})\)|\uff08([^\uff08\uff09\n]{1,300})\uff09")   # [] 【】 ［］, () （）


_NUM_SEP = r"\s*(?:,|\u060c|&|\band\b|\bund\b|\bet\b|(?<!\w)\u0648)\s*"        # also Arabic "،", "و" (and)
# "doc 2", "Document #2", "source 2"; a plural names a list: "docs 1 and 2", "documents 1, 3"
# (in an answer in German, French, Spanish: "Dok. 2, S. 5", "Dokument 2, Seite 5", "documento 2, pág. 5";
# in Arabic: "المستند 2، ص 5", "الوثيقة 2، الصفحة 5", "المصدر 2": document, source, page)
_DOC = re.compile(r"\b(?:(?:docs|documents|dokumente|documentos|sources|(?:ال)?(?:مستندات|وثائق|مصادر))\.?\s*"
                  r"(\d{1,4}(?:" + _NUM_SEP + r"\d{1,4})*)"
                  r"|(?:doc(?:ument[eo]?)?|dok(?:ument)?|source|(?:ال)?(?:مستند|وثيقة|مصدر))\.?\s*#?\s*(\d{1,4}))\b",
                  re.I)
_PAGE_WORD = r"(?:pages?|pgs?\.?|pp\.?|p\.?|s\.|seiten?|p[áa]g(?:inas?|s)?\.?|(?:ال)?صفح(?:ة|ات)|ص\.?)"
_NOT_LETTER = r"(?![^\W\d_])"          # a page word ends there ("p3", "pág. 5"; not "pdf", "pág" in "página")
_PAGES = re.compile(r"\b" + _PAGE_WORD + _NOT_LETTER + r"\s*(.+)$", re.I | re.S)
# the document number alone, at the start of a square bracket or after a ";": "[1, p. 3]", "[1: p. 3]",
# "[1 p3]", "[1, p. 3; 2, p. 5]" (never "[1]", "[1, 2]", "[2019, p. 3]" or "[1.2, p. 3]")
_BARE_DOC = re.compile(r"(?:^|;)\s*([1-9]\d{0,2})(?=\s*[,:\u060c]?\s*" + _PAGE_WORD + _NOT_LETTER + r"\s*[0-9ivxlcdm§])", re.I)
_PAGE_ONLY = re.compile(r"^\s*" + _PAGE_WORD + _NOT_LETTER + r"\s*[0-9ivxlcdm§]", re.I)    # "[p. 5]", the prompt's marker
_RANGE = re.compile(r"^\s*([0-9ivxlcdmIVXLCDM]+)\s*(?:-|–|—|to|through|bis|à|[إا]لى)\s*([0-9ivxlcdmIVXLCDM]+)\s*$")
_TOKEN = re.compile(r"^[\w.\-/§]{1,20}$")
# a unit named by its own word, as a slide deck, workbook or Markdown file cites it: "slide 3", "sheet
# "Q3 Plan"", "§2", "section 2", "part 4" (also German, Spanish: "Folie 3", "Blatt Budget", "hoja 2")
_UNITS = re.compile(r"(?<!\w)(?:(slides?|folien?|diapositivas?)|(sheets?|tabellenbl[äa]tt(?:er)?|bl[äa]tt(?:er)?|hojas?)"
                    r"|(sections?|sect\.|abschnitte?|secci[óo]n(?:es)?|§)|(parts?|teile?))"
                    + _NOT_LETTER + r"\.?\s*(.+)$", re.I | re.S)
MAX_LABEL_CHARS = 60    # a page spec of several words ("Q3 Plan", "Log (rows 2-40)") is one label up to this
_BLOCK = re.compile(r"<citations>(.*?)(?:</citations>|$)", re.S | re.I)
_QUOTED = re.compile(r"\"([^\"]{3,})\"|\u201c([^\u201d]{3,})\u201d|\u00ab\s*([^\u00bb]{3,}?)\s*\u00bb"
                     r"|\u201e([^\u201c\u201d]{3,})[\u201c\u201d]")
_CLAIM_END = re.compile(r"[.!?]\s+|\n")
_CELL_END = re.compile(r"[.!?]\s+|\n|\|")         # in a Markdown table row a cell ends at "|"


def _mid_sentence(text: str, m: re.Match[str]) -> bool:
    """Whether a ".", "!" or "?" matched by m is followed by a lower-case letter: an abbreviation
    ("e.g. a matrix", "approx. 5"), not a sentence end."""
    return m.group()[:1] in ".!?" and text[m.end():].lstrip()[:1].islower()


def _inside(m: re.Match[str]) -> tuple[str, bool]:
    """(what a bracket holds, whether it is a parenthesis)."""
    return next(g for g in m.groups() if g is not None), m.lastindex in (4, 5)


def _quotations(text: str) -> list[tuple[int, int, str]]:
    """(start, end, inside) of each explicit quotation, outermost only: a quotation that quotes
    a word itself (“... it “sees” that ... The “obvious” way ...”) is one quotation, not the
    inner words. Curly quotes are paired by nesting when they balance; otherwise (a German „…“
    uses “ to close) the plain pattern pairs them."""
    spans: list[tuple[int, int, str]] = []
    depth, start, balanced = 0, 0, True
    for i, ch in enumerate(text):
        if ch == "\u201c":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "\u201d" and depth:
            depth -= 1
            if depth == 0 and i - start - 1 >= 3:
                spans.append((start, i + 1, text[start + 1:i]))
    if depth:
        balanced, spans = False, []
    for m in _QUOTED.finditer(text):
        if balanced and m.group(2) is not None:
            continue                       # curly pairs come from the nesting scan above
        if any(a <= m.start() < b or a < m.end() <= b for a, b, _ in spans):
            continue                       # inside (or across) an outer quotation
        spans.append((m.start(), m.end(), next(g for g in m.groups() if g)))
    return sorted(spans)


def parse(answer: str) -> ParsedAnswer:
    """Inline references (with the sentence each supports) plus those of a <citations> block."""
    block = _BLOCK.search(answer)
    body = answer[: block.start()].rstrip() if block else answer
    refs = _inline_refs(body)
    if block:
        refs.extend(_block_refs(block.group(1)))
    return ParsedAnswer(text=body, refs=refs)


_UNIT_LABEL = re.compile(r"(?:§\s*|\bpart\s+)(\d{1,5})\b", re.I)   # "§3 Installation", "part 12"


_SPLIT = re.compile(r"\s*(?:[,;&\u060c\u3001\uff0c]|\band\b|\bund\b|\bet\b|(?<!\w)\u0648)\s*", re.I)   # also ، 、 ， و


def _ascii_digits(text: str) -> str:
    """Digits of any script as ASCII: an answer in Arabic may cite "[doc ٢, p. ٩]"."""
    return text if text.isascii() else re.sub(r"\d", lambda m: str(unicodedata.decimal(m.group())), text)
_LEAD = re.compile(r"^" + _PAGE_WORD + _NOT_LETTER + r"\s*", re.I)       # "p. 5" in "p. 3; p. 5"


def _split_pages(spec: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(single pages, ranges) a page spec names: "3", "iv", "3-5", "3, 5", "3-5, 7", "3 and 5",
    "p. 3; p. 5", "3 through 5", "§2"; a spec of several words that is no list is one label when
    quoted, capitalised or numbered ("Q3 Plan", "slide 3", "Log (rows 2-40)"; not "layout notes")."""
    spec = _ascii_digits(spec).strip().rstrip(".,;")
    bare = spec.strip(" \"'\u201c\u201d\u2018\u2019\u00ab\u00bb")
    named = bare != spec or bare[:1].isupper() or any(ch.isdigit() for ch in bare)   # a label, not prose
    spec = bare
    if units := _UNIT_LABEL.findall(spec):     # a section / part label: its number is Page.number
        return units, []
    pages: list[str] = []
    ranges: list[tuple[str, str]] = []
    parts = _SPLIT.split(spec)
    for part in parts:
        part = re.sub(r"(?<=\d)\s*ff?\.?$", "", _LEAD.sub("", part.strip(" ()[]")).rstrip("."))
        if (m := _RANGE.match(part)) is not None:
            ranges.append((m.group(1), m.group(2)))
        elif part and _TOKEN.match(part):
            pages.append(part)
    if len(parts) == 1 and not pages and not ranges and named and len(spec) <= MAX_LABEL_CHARS:
        pages = [" ".join(spec.split())]
    return pages, ranges


def _unit_pages(m: re.Match[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """(pages, ranges) of a unit named by its word (_UNITS): a section's number as "§N" (it names a
    section only in a document cut into sections)."""
    pages, ranges = _split_pages(m.group(5))
    if m.group(3):
        pages = [f"§{p}" for p in pages if p.isdigit()]
        ranges = [(f"§{a}", f"§{b}") for a, b in ranges if a.isdigit() and b.isdigit()]
    return pages, ranges


_Item = tuple[int | None, list[str], tuple[str, str] | None]


def _refs_in(inside: str, paren: bool = False) -> tuple[list[_Item], bool]:
    """(doc, pages, range) for each 'doc N, p. M' inside one bracket (a page list with several ranges
    gives an item per range), and whether the bracket used a bare form: "[1, p. 3]" (document number
    without "doc") or "[p. 5]" (page marker alone, doc None). A parenthesis counts only with "doc"
    and a page."""
    inside = _ascii_digits(inside)
    anchors = [(m, [int(n) for n in re.findall(r"\d+", m.group(1) or m.group(2))]) for m in _DOC.finditer(inside)]
    bare = not anchors and not paren
    if bare:
        anchors = [(m, [int(m.group(1))]) for m in _BARE_DOC.finditer(inside)]
    found: list[_Item] = []
    if not anchors:
        if bare and _PAGE_ONLY.match(inside):
            pages, ranges = _split_pages(_PAGES.search(inside).group(1))
            found = [(None, pages, r) for r in ranges or [None]]
        return found, True
    for i, (m, docs) in enumerate(anchors):
        tail = inside[m.end(): anchors[i + 1][0].start() if i + 1 < len(anchors) else len(inside)]
        tail = tail.strip(" ,;:")
        pages: list[str] = []
        ranges: list[tuple[str, str]] = []
        if (pm := _PAGES.search(tail)) is not None:
            pages, ranges = _split_pages(pm.group(1).strip(" ,;"))
        elif (um := _UNITS.search(tail)) is not None:
            pages, ranges = _unit_pages(um)
        if paren and not pages and not ranges:
            continue
        for doc in docs:
            found.extend((doc, pages if k == 0 else [], r) for k, r in enumerate(ranges or [None]))
    return found, bare


def _claim_before(text: str, lo: int, hi: int) -> str:
    """The sentence (or table cell) that ends at `hi` (not reaching back before `lo`), its clauses
    before a ":" or ";" included: they are part of what the marker cites."""
    seg = text[lo:hi].rstrip()
    seg = seg.rstrip(".!?;:,| ")
    quoted = [(a, b) for a, b, _ in _quotations(seg)]
    row = text[text.rfind("\n", 0, hi) + 1:hi].lstrip().startswith("|")
    cut = 0
    for m in (_CELL_END if row else _CLAIM_END).finditer(seg):
        inside = any(a < m.start() < b for a, b in quoted)
        if m.end() < len(seg) and not inside and not _mid_sentence(seg, m):
            cut = m.end()
    claim = seg[cut:].strip()
    claim = re.sub(r"^(?:[-*•]|\d{1,3}[.)])\s+", "", claim)      # list bullets
    return claim.strip(" \t,;:")


MIN_QUOTE_WORDS = 3     # a shorter quotation in a claim is a term ('a clone of "S-PLUS"'), not the quote


_AFTER_END = re.compile(r"[.!?](?=\s|$)|\n|[\[\u3010]")


def _claim_after(text: str, end: int) -> str:
    """The rest of the sentence a marker stands in ("According to [doc 2, p. 9], vectors can ..."):
    "" when the marker ends its sentence or fewer than MIN_QUOTE_WORDS words follow."""
    rest = text[end:]
    if not rest.strip() or rest.lstrip(" \t")[:1] in (".", "!", "?", "\n"):
        return ""
    cut = next((m for m in _AFTER_END.finditer(rest) if not _mid_sentence(rest, m)), None)
    claim = rest[:cut.start() if cut else len(rest)].strip(" \t,;:")
    return claim if len(_WORD.findall(claim)) >= MIN_QUOTE_WORDS else ""


TERM_RATIO = 2          # a quotation in a claim more than this many times its words long is a term in it


def _quotation(claim: str) -> str:
    """The longest explicit quotation in a claim, of MIN_QUOTE_WORDS words or more, unless the claim
    around it has more than TERM_RATIO times its words: then it is a name or title the claim mentions
    ('using the ESS (“Emacs Speaks Statistics”) package'), and the claim is checked ("" if none)."""
    a, b, best = max(_quotations(claim), key=lambda q: len(q[2]), default=(0, 0, ""))
    n = len(_WORD.findall(best))
    around = len(_WORD.findall(claim[:a] + " " + claim[b:]))
    return best.strip() if n >= MIN_QUOTE_WORDS and around <= TERM_RATIO * n else ""


def quote_of(claim: str) -> str:
    """The longest explicit quotation in a claim (of MIN_QUOTE_WORDS words or more), else the claim."""
    return _quotation(claim) or claim.strip(" \t\"'\u201c\u201d\u00ab\u00bb")


MAX_LEAD_WORDS = 4      # "According to the manual," / "In R," before a claim's own words


def _without_lead(claim: str) -> str:
    """A claim of the answer's own without a short opening clause ("According to the manual, vectors
    can ..." -> "vectors can ..."): at most MAX_LEAD_WORDS words, no figure, no "not" (those carry the
    claim: "The rent is 1,350 euros, due ..."), MIN_QUOTE_WORDS or more after it; else ""."""
    m = re.search(r"[,\u060c]\s", claim)
    if m is None or not _is_lead(claim[:m.start()]):
        return ""
    rest = claim[m.end():].strip()
    return rest if len(_WORD.findall(rest)) >= MIN_QUOTE_WORDS else ""


def _is_lead(text: str) -> bool:
    """Whether text may be an opening clause of the answer's own: MAX_LEAD_WORDS words at most, no
    figure, no "not", none of MEANING_WORDS ("Except in R") or CONTRAST_WORDS ("Contrary to the manual")."""
    lead = normalize(text)[0]
    words = _WORD.findall(lead)
    return (len(words) <= MAX_LEAD_WORDS and not _numbers(lead) and not _negations(lead)
            and not set(words) & (MEANING_WORDS | CONTRAST_WORDS))


# Markdown code: a fenced block (``` or ~~~, to its closing fence or the end) or an inline `span`
_CODE = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*\n.*?(?:^[ \t]*\1[ \t]*$|\Z)|(`+)[^`\n](?:[^\n]*?[^`\n])?\2(?!`)",
                   re.S | re.M)


def _inline_refs(text: str) -> list[CitationRef]:
    """Bare forms ("[1, p. 3]", "[p. 5]") inside a quotation are the quoted text's own references, not
    citations; "[p. 5]" right after "[doc 2]" completes it, and alone cites the last document named
    (else doc 1). Nothing inside Markdown code (a fenced block, an inline `span`) is a citation."""
    refs: list[CitationRef] = []
    quoted = [(a, b) for a, b, _ in _quotations(text)]
    code = [(c.start(), c.end()) for c in _CODE.finditer(text)]
    prev_end = 0
    prev_claim = ""
    for m in _BRACKET.finditer(text):
        inside, paren = _inside(m)
        if any(a <= m.start() < b for a, b in code):
            continue
        items, bare = _refs_in(inside, paren)
        if not items or bare and any(a < m.start() < b for a, b in quoted):
            continue
        if items[0][0] is None:                            # a page marker alone
            last = [r for r in refs if r.end == prev_end] if refs else []
            if last and not text[prev_end:m.start()].strip() and not any(r.pages or r.page_range for r in last):
                for r in last:                             # "[doc 2][p. 5]" / "[doc 2] [p. 5]"
                    r.pages, r.page_range, r.end = items[0][1], items[0][2], m.end()
                    refs.extend(CitationRef(r.doc, pages, rng, r.quote, r.start, m.end())
                                for _, pages, rng in items[1:])
                prev_end = m.end()
                continue
            doc = refs[-1].doc if refs else 1
            items = [(doc, pages, rng) for _, pages, rng in items]
        between = text[prev_end:m.start()]
        claim = _claim_before(text, prev_end, m.start()) if between.strip(" .,;:") else prev_claim
        if len(_WORD.findall(claim)) < MIN_QUOTE_WORDS:     # "According to [doc 2, p. 9], vectors can ..."
            claim = _claim_after(text, m.end()) or claim
        quote, own = quote_of(claim), not _quotation(claim)
        for doc, pages, rng in items:
            refs.append(CitationRef(doc, pages, rng, quote, m.start(), m.end(), own))
        prev_end, prev_claim = m.end(), claim
    return refs


def _block_refs(block: str) -> list[CitationRef]:
    block = block.strip()
    try:
        data = json.loads(block)
    except ValueError:
        data = None
    if isinstance(data, dict):
        data = data.get("citations", [data])
    refs: list[CitationRef] = []
    if isinstance(data, list):
        for item in data:
            if not isinstance(item, dict):
                continue
            doc = item.get("doc", item.get("document", item.get("doc_index", item.get("source"))))
            page = item.get("page", item.get("pages", item.get("page_label")))
            quote = item.get("quote", item.get("text", item.get("snippet", ""))) or ""
            m = _DOC.search(str(doc)) if not str(doc).strip().isdigit() else None
            try:
                doc_n = int(re.findall(r"\d+", m.group(0))[0]) if m else int(str(doc).strip())
            except (TypeError, ValueError):
                continue
            pages, ranges = _split_pages(str(page)) if page is not None else ([], [])
            refs.extend(CitationRef(doc_n, pages if k == 0 else [], rng, str(quote).strip())
                        for k, rng in enumerate(ranges or [None]))
        return refs
    for line in block.splitlines():
        line = line.strip().lstrip("-*• ")
        if not line:
            continue
        bracket = _BRACKET.search(line)
        if bracket:
            inside, rest = _inside(bracket)[0], line[bracket.end():]
        else:
            inside, _, rest = line.partition(":")
        items = [it for it in _refs_in(inside)[0] if it[0] is not None]
        if not items:
            continue
        quote = quote_of(rest.strip(" :-\u2013"))
        for doc, pages, rng in items:
            refs.append(CitationRef(doc, pages, rng, quote.strip(" \"'\u201c\u201d")))
    return refs


# ---------------------------------------------------------------------------------------------
# Verification

@dataclass
class Match:
    verified: bool
    score: float
    passage: str
    start: int | None
    end: int | None


def match_quote(quote: str, page_text: str, own: bool = False) -> Match:
    """Fuzzy-find `quote` in `page_text`; the passage is the match widened to whole sentences. `own`:
    the quote is a claim in the answer's own words, which may add a word or two (see _in_order)."""
    verified, score, span = _align(quote, page_text, own)
    if span is None:
        return Match(False, score, "", None, None)
    start, end = _widen_to_sentences(page_text, *span)
    return Match(verified, score, page_text[start:end], start, end)


_ELLIPSIS = re.compile(r"\[\s*(?:\.\.\.|\u2026)\s*\]|\(\s*(?:\.\.\.|\u2026)\s*\)|\.\.\.|\u2026")


def _align(quote: str, text: str, own: bool = False) -> tuple[bool, float, tuple[int, int] | None]:
    """(verified, score, the matched window's offsets in `text` or None) of `quote` in `text`. A quote
    that marks a cut ("...", "…", "[…]") is verified when each part, MIN_FUZZY_CHARS or longer, is,
    in order, each within PASSAGE_CONTEXT characters of the one before; else it is matched whole."""
    parts = [p for p in _ELLIPSIS.split(quote) if p.strip(" .,;:")]
    if len(parts) > 1 and all(len(p.strip()) >= MIN_FUZZY_CHARS for p in parts):
        start, score, window = 0, 100.0, None
        for part in parts:
            end = len(text) if window is None else start + PASSAGE_CONTEXT + 2 * len(part)
            ok, s, span = _align_one(part, text[start:end], own)
            if not ok or span is None:
                break
            score, window = min(score, s), (start + span[0] if window is None else window[0], start + span[1])
            start = window[1]
        else:
            return True, score, window
    return _align_one(" ".join(parts) if parts else quote, text, own)


def _align_one(quote: str, text: str, own: bool = False) -> tuple[bool, float, tuple[int, int] | None]:
    nq, _ = normalize(quote)
    ntext, index = normalize(text)
    if not nq or not ntext:
        return False, 0.0, None
    if len(nq) < MIN_FUZZY_CHARS or len(nq) > len(ntext):
        found = _whole_words(nq).search(ntext)
        if found is None:
            return False, 0.0, None
        score, lo, hi = 100.0, found.start(), found.end()
    else:
        al = fuzz.partial_ratio_alignment(nq, ntext)
        score, lo, hi = float(al.score), al.dest_start, al.dest_end
        if hi <= lo:
            return False, score, None
    around = ntext[max(0, lo - NUMBER_SLACK): hi + NUMBER_SLACK]
    verified = (score >= VERIFY_THRESHOLD and _negations(ntext[_clause_start(nq, ntext, lo):hi]) <= _negations(nq)
                <= _negations(around)
                and _numbers(nq) <= _numbers(around) and _same_symbols(nq, around, ntext[lo:hi])
                and _in_order(nq, ntext, lo, hi, own))
    return verified, round(score, 1), (index[lo], index[hi - 1] + 1)


def _clause_start(nq: str, ntext: str, lo: int) -> int:
    """Where the page's clause holding the match at `lo` begins (a "not" earlier in it counts against
    the quote: "It is not assumed that | X has full column rank"); `lo` when the match starts it or
    no clause mark comes within PASSAGE_CONTEXT before its first word."""
    first = ntext.find(_WORD.findall(nq)[0], lo, lo + 40) if _WORD.search(nq) else -1
    anchor = first if first >= 0 else lo
    cut = max(ntext.rfind(ch, max(0, anchor - PASSAGE_CONTEXT), anchor) for ch in ".!?;:,\n")
    start = cut + 1 if cut >= 0 else 0 if anchor <= PASSAGE_CONTEXT else anchor
    return min(start, lo)


def _whole_words(nq: str) -> re.Pattern[str]:
    """`nq` as a pattern that starts and ends at a word's edge ("Ian Murdo" is not in "Ian Murdock"),
    where its edge is a word character of a script written with spaces (not Chinese, Japanese, Korean)."""
    head = r"(?<!\w)" if _WORD.match(nq[0]) and not CJK.match(nq[0]) else ""
    tail = r"(?!\w)" if _WORD.match(nq[-1]) and not CJK.match(nq[-1]) else ""
    return re.compile(head + re.escape(nq) + tail)


# a word: a Chinese, Japanese or Korean letter alone (those scripts write no spaces), else a run of
# other word characters
_WORD = re.compile(f"{CJK.pattern}|[^\\W{CJK.pattern[1:-1]}]+")
WORD_SIMILARITY = 0.85  # a stretch of the quote that differs from the page's: its letters' Indel similarity
_NEGATING_PREFIX = {"a", "il", "im", "in", "ir", "dis", "non", "un"}


def _in_order(nq: str, ntext: str, lo: int, hi: int, own: bool = False) -> bool:
    """Whether the quote's words are the page's words around the match [lo, hi), in the page's order
    (a character score lets swapped words, or a word replaced by its opposite, through). Words are
    aligned in order, longest common runs first; the page may have words the quote leaves out (inside
    it one in LEFT_OUT_PER of its words, at least one: more is a word matched further on, as after a
    swap; none of MEANING_WORDS: "but rarely is needed" is not "but is needed"), and every stretch of the quote
    between aligned words must be the page's stretch there letter for letter, give or take a few
    letters and diacritics ("pack ages" for "packages", "aout" for "août"; see _same_letters).
    A claim in the answer's `own` words may also add words between two of the page's words that are
    next to each other ("R is also free"): at most one in ADDED_WORDS_PER of its words, each one of
    FILLER_WORDS ("also", "then", "the"; any other word may change what it says: "only", "two",
    "expensive") and none a word of the page's window (a word moved, as in a swap). (At its ends an
    added word cannot be told from a replaced one.)"""
    slack = len(nq) // 2
    a, b = max(0, lo - slack), min(len(ntext), hi + slack)
    while a > 0 and _WORD.match(ntext[a - 1]):
        a -= 1
    while b < len(ntext) and _WORD.match(ntext[b]):
        b += 1
    q, w = _WORD.findall(nq), _WORD.findall(ntext[a:b])
    # the longest runs of words in common first (an alignment by edit distance alone, Indel, may match
    # a moved word to a later occurrence of it and leave out the page's words between)
    blocks = difflib.SequenceMatcher(None, q, w, autojunk=False).get_matching_blocks()
    added = max(1, len(q) // ADDED_WORDS_PER) if own else 0
    left_out = max(1, len(q) // LEFT_OUT_PER)
    i = j = 0
    for k, blk in enumerate(blocks):
        if 0 < k and blk.size and blk.a == i and blk.b > j:     # the page's words between two aligned ones
            left_out -= blk.b - j
            if left_out < 0 or set(w[j:blk.b]) & MEANING_WORDS:   # "rarely is needed" -> "is needed"
                return False
        if blk.a > i:
            qs, ws = "".join(q[i:blk.a]), "".join(w[j:blk.b])
            inside = 0 < k and blk.size and blk.b == j      # between aligned words, none of the page's there
            if k == 0 and blk.size:             # before the first aligned word: the page's words just before
                ws = _covering(w[j:blk.b][::-1], len(qs), reverse=True)
            elif blk.size == 0 and k:           # after the last: the page's words just after
                ws = _covering(w[j:blk.b], len(qs))
            if not _same_letters(qs, ws):
                extra = q[i:blk.a]
                if inside and len(extra) <= added and set(extra) <= FILLER_WORDS and not set(extra) & set(w):
                    added -= len(extra)         # words the claim adds, where the page has none
                else:
                    return False
        i, j = blk.a + blk.size, blk.b + blk.size
    return True


def _covering(words: list[str], n: int, reverse: bool = False) -> str:
    """The fewest whole words, from the first on, that hold n letters, joined (`reverse`: `words` runs
    backwards from the quote, and the result is put back in the page's order): a quote that starts
    or ends inside a page's word is compared with the whole word ("efficient" with "inefficient")."""
    out: list[str] = []
    for word in words:
        if sum(map(len, out)) >= n:
            break
        out.append(word)
    return "".join(out[::-1] if reverse else out)


ADDED_WORDS_PER = 8     # a claim in its own words may add one word in 8 (at least one) to the page's
LEFT_OUT_PER = 8        # a quote or claim may leave out one of the page's words in 8 (at least one) inside it
# Words a claim may add to the page's without changing what it says: connectives and articles
# (English, French, German, Spanish).
FILLER_WORDS = frozenset(normalize(w)[0] for w in """
also then too thus therefore hence however indeed moreover furthermore additionally so the a an that
aussi également alors donc ainsi ensuite puis cependant toutefois le la les l un une des que
auch dann somit daher jedoch allerdings zudem außerdem der die das den dem ein eine einen dass
también entonces luego así además el los las una que
""".split())
# Words that change what a sentence claims when added to it: quantity, frequency, exclusivity,
# order, number (English, French, German, Spanish); an added "not" is the negation guard's.
MEANING_WORDS = frozenset(normalize(w)[0] for w in """
only just solely merely always never ever often rarely seldom sometimes usually all every each none no not any
both either neither more less most least many few several much first last before after except without but
more fewer larger smaller higher lower zero one two three four five six seven eight nine ten hundred thousand
million billion twice half double triple hardly barely scarcely almost nearly partly partially
seulement toujours jamais souvent rarement tous toutes chaque aucun aucune plus moins premier dernier avant apres sans sauf
presque guere
nur immer nie niemals oft selten alle jeder jede kein keine mehr weniger erst letzte vor nach ohne ausser kaum fast beinahe
solo sólo siempre nunca todos todas cada ningún ninguna más menos primero último antes después sin excepto apenas casi
""".split())
# Words that set an opening clause against what follows ("Contrary to the manual, ...", "Unlike in S,
# ...", "In older versions, ..."): such a clause is no framing the page may leave out.
CONTRAST_WORDS = frozenset(normalize(w)[0] for w in """
contrary unlike despite unless although though whereas instead otherwise older earlier former formerly previously
until contrairement malgré autrefois sinon anciennes anciens trotz anders entgegen früher
contrario diferencia pesar salvo anteriormente
""".split())


def _same_letters(a: str, b: str) -> bool:
    """Two stretches of words read as the same: a few letters apart, the same digits, neither the
    other with a negating prefix."""
    short, long = sorted((a, b), key=len)
    if long.endswith(short) and long[:len(long) - len(short)] in _NEGATING_PREFIX:
        return False
    return re.sub(r"\D", "", a) == re.sub(r"\D", "", b) and Indel.normalized_similarity(a, b) >= WORD_SIMILARITY


# a number, with its minus sign when it has one: "-" (U+2212 is folded to it) right before a digit, not
# right after an operand ("x-3", "2022-11" subtract or join; "gives -1", "(-3" are negative), or "- "
# after "=", "(" or a relation ("= - 3"; "x - 3" subtracts, "- 3 items" is a list's dash)
_NUMBER = re.compile(r"(?:(?<![\w)\]])-(?=\d)|(?:(?<=[=(<>\u2264\u2265\u2260\u2248])|(?<=[=(<>\u2264\u2265\u2260\u2248]\s))-\s)?"
                     r"\d+(?:[.,]\d+)*")
NUMBER_SLACK = 8        # characters around the matched window where the quote's numbers may also be


def _number_key(number: str) -> str:
    """A number as it is compared: its sign, its digits, and a decimal point unless each group after a
    separator has three digits (thousands: "1,000", "1.000" and "1000" alike; "1.5" and "1,5" alike,
    not "15")."""
    sign = "-" if number.startswith("-") else ""
    head, *groups = re.split(r"[.,]", number.lstrip("- "))
    return sign + (head + "".join(groups) if all(len(g) == 3 for g in groups) else ".".join([head, *groups]))


def _numbers(text: str) -> Counter[str]:
    """The numbers a normalized text states, each as many times as it does (_number_key): a quote whose
    figure differs from the page's ("5.0 M€" for "4.0 M€", "1.5" for "15", "3" for "−3") scores high
    on text alone."""
    return Counter(_number_key(m) for m in _NUMBER.findall(text))


# relation and operator symbols, which the word check cannot see ("x ≤ 5" is not "x = 5"); ASCII
# spellings of a symbol count as it ("<=" is "≤", "!=" is "≠", "+/-" is "±")
_SPELLINGS = {"<=": "\u2264", ">=": "\u2265", "!=": "\u2260", "+/-": "\u00b1", "+-": "\u00b1"}
_SPELLING = re.compile(r"<\s?=(?!=)|>\s?=(?!=)|!=|\+\s?/?\s?-(?!\d)")
_SYMBOL = re.compile(r"==|[<>=+%\u2030\u00b1\u2213\u2260\u2264\u2265\u2248\u00d7\u00f7\u226e\u226f\u2270\u2271\u2262]")


def _symbols(text: str) -> list[str]:
    """The relation and operator symbols of a normalized text, in order, ASCII spellings folded."""
    return _SYMBOL.findall(_SPELLING.sub(lambda m: _SPELLINGS[re.sub(r"\s", "", m.group())], text))


def _subsequence(a: list[str], b: list[str]) -> bool:
    """Whether the items of `a` are items of `b`, in b's order."""
    rest = iter(b)
    return all(x in rest for x in a)


def _same_symbols(nq: str, around: str, window: str) -> bool:
    """Whether the quote's symbols are the page's there, in order: each of the quote's is in the window
    with its edges (`around`), and each of the window's is in the quote ("a > b" is not "a < b",
    "a - b" not "a + b")."""
    q = _symbols(nq)
    return _subsequence(q, _symbols(around)) and _subsequence(_symbols(window), q)


_NEGATION = re.compile(r"\b(?:not|no|never|cannot|none|nor|ne|pas|jamais|nicht|kein\w*|nie)\b"
                       r"|n't\b|\bn'(?=\w)")


def _negations(text: str) -> int:
    """How many times a normalized text says 'not' (a fuzzy match must not flip a claim's meaning:
    the quote must say it as often as the matched window, give or take the window's edges; a
    presence test let a second "not" through in a sentence that already had one)."""
    return len(_NEGATION.findall(text))


def _widen_to_sentences(text: str, start: int, end: int) -> tuple[int, int]:
    lo, hi = start, end
    for s in sentence_spans(text):
        if s.end > start and s.start < end:
            lo = min(lo, max(s.start, start - PASSAGE_CONTEXT))
            hi = max(hi, min(s.end, end + PASSAGE_CONTEXT))
    return lo, hi


def _edge_key(line: str) -> str:
    """A header/footer line as it recurs from page to page: digits and punctuation dropped, casefolded."""
    return re.sub(r"[\d\W_]+", " ", line).strip().casefold()


def _running(line: str, near: set[str]) -> bool:
    """Whether an edge line is a running header/footer: a bare page number, or recurring nearby."""
    key = _edge_key(line)
    return not key or re.fullmatch(r"[ivxlcdm]+", key) is not None or key in near


def _body(pages: Sequence[_Page], i: int) -> tuple[int, int]:
    """(start, end) of page i's text less its running header and footer: up to EDGE_LINES lines at
    its top (bottom) that are a page number or recur, numbers aside, at the top (bottom) of a page
    up to two away."""
    text = pages[i].text
    near = [pages[j].text for j in (i - 2, i - 1, i + 1, i + 2) if 0 <= j < len(pages)]
    tops = {_edge_key(ln) for t in near for ln in t.split("\n", EDGE_LINES)[:EDGE_LINES]}
    bottoms = {_edge_key(ln) for t in near for ln in t.rsplit("\n", EDGE_LINES)[-EDGE_LINES:]}
    start, end = 0, len(text)
    for line in text.split("\n", EDGE_LINES)[:EDGE_LINES]:
        if not _running(line, tops):
            break
        start += len(line) + 1
    for line in reversed(text.rsplit("\n", EDGE_LINES)[-EDGE_LINES:]):
        if not _running(line, bottoms):
            break
        end -= len(line) + 1
    return min(start, len(text)), max(start, min(end, len(text)))


def _across(quote: str, pages: Sequence[_Page], i: int, own: bool = False) -> Match | None:
    """The quote verified across the break after page i (running header and footer left out), as a
    Match on page i: its passage is the part on that page. None unless it is found across the break,
    MIN_SIDE_CHARS or more on each side."""
    a, b = pages[i], pages[i + 1]
    (a_start, a_end), (b_start, b_end) = _body(pages, i), _body(pages, i + 1)
    reach = 2 * len(quote) + PASSAGE_CONTEXT
    lo = max(a_start, a_end - reach)
    tail = a.text[lo:a_end]
    verified, score, span = _align(quote, tail + "\n" + b.text[b_start:min(b_end, b_start + reach)], own)
    if not verified or span is None or min(len(tail) - span[0], span[1] - len(tail) - 1) < MIN_SIDE_CHARS:
        return None                       # not found, or not across the break
    start, end = _widen_to_sentences(a.text, lo + span[0], a_end)
    end = min(end, a_end)
    while end > start and a.text[end - 1].isspace():
        end -= 1
    return Match(True, score, a.text[start:end], start, end)


def _breaks(doc: _Doc, candidates: Sequence[_Page], neighbours: bool) -> list[int]:
    """Indices i of the page breaks (i, i+1) in doc.pages a quote may cross: between consecutive
    candidates, and with `neighbours` also before and after each candidate."""
    index = {id(p): i for i, p in enumerate(doc.pages)}
    at = {index[id(p)] for p in candidates if id(p) in index}
    found = {j for i in at for j in (i - 1, i)} if neighbours else {i for i in at if i + 1 in at}
    return sorted(i for i in found if 0 <= i < len(doc.pages) - 1)


def _best_across(quote: str, doc: _Doc, candidates: Sequence[_Page],
                 neighbours: bool, own: bool = False) -> tuple[Match, _Page] | None:
    """The best verified match of a quote that runs from one page onto the next, and the page it starts on."""
    best: tuple[Match, _Page] | None = None
    for i in _breaks(doc, candidates, neighbours):
        m = _across(quote, doc.pages, i, own)
        if m is not None and (best is None or m.score > best[0].score):
            best = (m, doc.pages[i])
    return best


def _resolve_pages(doc: _Doc, token: str) -> list[_Page]:
    """Pages a token may name, most likely first: the page whose prompt marker shows it
    (ingest.prompt.citation_labels), then a page with that printed label, then that physical number."""
    from ingest.prompt import citation_labels

    t = token.strip().lower()
    pages = list(doc.pages)
    if t.startswith("§"):                  # a section by number ("§2", "section 2")
        return [p for p in pages if t[1:].isdigit() and p.number == int(t[1:])] if _unit(doc) == "section" else []
    shown = [p for p, c in zip(pages, citation_labels(pages)) if c.strip().lower() == t]
    by_label = [p for p in pages if p.label is not None and p.label.strip().lower() == t]
    by_number = [p for p in pages if t.isdigit() and p.number == int(t)]
    rows = [p for p in pages if p.label is not None and p.label.strip().lower().startswith(t + " (rows ")]
    out: list[_Page] = []
    for p in shown + by_label + by_number + rows:       # rows: a sheet cut into row ranges, each
        if all(p is not q for q in out):
            out.append(p)
    if not out and " " in t:               # "slide 3" of a PDF, "3 (Figure 2)": a word of it
        return next((found for w in t.split() if (found := _resolve_pages(doc, w.strip("()[]")))), [])
    return out


def _unit(doc: _Doc) -> str:
    return getattr(doc, "unit", None) or "page"          # a document that names no unit is paged


def _range_pages(doc: _Doc, rng: tuple[str, str]) -> list[_Page]:
    first, last = _resolve_pages(doc, rng[0]), _resolve_pages(doc, rng[1])
    if not first or not last:
        return first + last
    lo, hi = first[0].number, last[0].number
    if hi < lo:
        lo, hi = hi, lo
    if hi - lo > 50:     # an absurd range: check its ends only
        return first + last
    return [p for p in doc.pages if lo <= p.number <= hi]


def verify(refs: Sequence[CitationRef], documents: Sequence[_Doc],
           doc_ids: Sequence[int | None] | None = None) -> list[CitationInfo]:
    """One CitationInfo per referenced page (a range gives the page where the quote is verified, else
    where it matched best). A quote that runs from one page onto the next (of a range, or a cited page
    and its neighbour) is verified when it is found across that break; it reports the page where it
    starts, the passage and offsets being the part on that page."""
    out: list[CitationInfo] = []
    for ref in refs:
        doc = documents[ref.doc - 1] if 1 <= ref.doc <= len(documents) else None
        doc_id = doc_ids[ref.doc - 1] if doc is not None and doc_ids is not None else None
        quote = collapse_ws(ref.quote)
        if doc is None:
            out.append(CitationInfo(ref.doc, None, "", None, None, quote, False, "", None, None))
            continue
        unit = _unit(doc)
        groups: list[tuple[str | None, list[_Page]]] = [(t, _resolve_pages(doc, t)) for t in ref.pages
                                                        if unit == "section" or not t.startswith("§")]
        if ref.page_range:
            groups.append((None, _range_pages(doc, ref.page_range)))
        if not groups:      # "[doc 2]" alone: search the whole document
            groups.append((None, list(doc.pages)))
        for token, candidates in groups:
            best = _best_claim(quote, candidates) if ref.own else _best_on(quote, candidates)
            if best is None:
                out.append(CitationInfo(ref.doc, doc_id, doc.filename, None, token, quote,
                                        False, "", None, None, unit=unit))
                continue
            m, page = best
            if quote and not m.verified:      # perhaps across a page break: reported where it starts
                m, page = _best_across(quote, doc, candidates, token is not None, ref.own) or best
            out.append(CitationInfo(ref.doc, doc_id, doc.filename, page.number, page.label, quote,
                                    m.verified, m.passage, m.start, m.end, m.score, unit))
    return out


def _best_claim(claim: str, pages: Sequence[_Page]) -> tuple[Match, _Page] | None:
    """_best_on for a claim in the answer's own words: found whole, or less a short opening clause
    (_without_lead), or clause by clause (_by_clauses)."""
    best = _best_on(claim, pages, True)
    if best is None or best[0].verified:
        return best
    if rest := _without_lead(claim):
        alt = _best_on(rest, pages, True)
        if alt is not None and alt[0].verified and _opens_clause(alt[1].text, rest):
            return alt
    return _by_clauses(claim, pages) or best


_CLAUSE_END = re.compile(r"\s*[;:\u061b]\s+")       # also the Arabic semicolon


def _clauses(claim: str) -> list[tuple[str, str]]:
    """(clause, the separator after it) of a claim cut at each ";" or ":" outside a quotation."""
    quoted = _quotations(claim)
    out, start = [], 0
    for m in _CLAUSE_END.finditer(claim):
        if not any(a < m.start() < b for a, b, _ in quoted):
            out.append((claim[start:m.start()], m.group().strip()))
            start = m.end()
    out.append((claim[start:], ""))
    return [(c, sep) for c, sep in out if c.strip(" ,")]


def _by_clauses(claim: str, pages: Sequence[_Page]) -> tuple[Match, _Page] | None:
    """A claim of several clauses ("A; B", "A: B") that the page states apart: verified on the page
    where each clause is, in the claim's order, each at most PASSAGE_CONTEXT characters after the one
    before, what follows a ":" right after it (COLON_GAP; a short
    heading before a ":", as "Key points:", may be no page text, see _without_lead), reported by its
    longest clause's match. None unless so verified."""
    parts = _clauses(claim)
    if len(parts) < 2:
        return None
    for page in pages:
        found = [_best_claim(c, [page]) for c, _ in parts]
        if (found[0] is None or not found[0][0].verified) and parts[0][1] == ":" and _is_lead(parts[0][0]) \
                and _opens_clause(page.text, parts[1][0], ":"):
            found, kept = found[1:], parts[1:]
        else:
            kept = parts
        if not all(f is not None and f[0].verified for f in found):
            continue
        spans = [_align(c, page.text, True)[2] for c, _ in kept]
        if all(a is not None and b is not None and 0 <= b[0] - a[1] <= (COLON_GAP if sep == ":" else PASSAGE_CONTEXT)
               for (_, sep), a, b in zip(kept, spans, spans[1:])):
            m = max(zip(kept, found), key=lambda x: len(x[0][0]))[1][0]
            return Match(True, min(f[0].score for f in found), m.passage, m.start, m.end), page
    return None


COLON_GAP = 20          # characters on the page between what a claim puts before and after a ":"


def _opens_clause(text: str, quote: str, sep: str = ",") -> bool:
    """Whether `quote` is found in `text` where a sentence or line begins, not after a `sep` (the one
    after the claim's opening clause): that clause then stood in for nothing on the page, not for the
    page's words ("Linus Torvalds, a student, founded Debian" against "Ian Murdock, a student, founded
    Debian"; "New architectures dropped: arm64" against "introduced: arm64")."""
    span = _align(quote, text)[2]
    if span is None:
        return False
    i = span[0]
    while i > 0 and text[i - 1].isalnum():
        i -= 1
    before = text[:i].rstrip()
    return not before or before[-1] in ".!?:;".replace(sep, "") \
        or "\n" in text[len(before):i] and before[-1] not in ",(" + sep


def _best_on(quote: str, pages: Sequence[_Page], own: bool = False) -> tuple[Match, _Page] | None:
    """The page where `quote` is verified (else matches best), and the match (`own`: see match_quote)."""
    best: tuple[Match, _Page] | None = None
    for page in pages:
        m = match_quote(quote, page.text, own) if quote else Match(False, 0.0, "", None, None)
        if best is None or (m.verified, m.score) > (best[0].verified, best[0].score):
            best = (m, page)
        if m.verified and m.score >= 100:
            break
    return best


def parse_and_verify(answer: str, documents: Sequence[_Doc],
                     doc_ids: Sequence[int | None] | None = None) -> tuple[str, list[CitationInfo]]:
    """(answer text without a <citations> block, verified citations)."""
    parsed = parse(answer)
    return parsed.text, verify(parsed.refs, documents, doc_ids)
