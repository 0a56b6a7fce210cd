"""Text helpers shared by retrieval and citation checking: normalisation with an offset map,
sentence and passage splitting (all offsets refer to the original text)."""
from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

from ingest.normalize import CJK, strip_marks

# Characters folded to a plain form before comparing texts.
_FOLD = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
    "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u2007": " ",
    "\ufb01": "fi", "\ufb02": "fl", "\ufb00": "ff", "\ufb03": "ffi", "\ufb04": "ffl",
    # negated relations kept whole (their stroke is a combining mark: "≠" would read as "=")
    **{ch: ch for ch in "\u2260\u226e\u226f\u2270\u2271\u2262\u2209\u2284\u2285\u2288\u2289\u2224\u2226"},
}
# Dropped entirely: soft hyphen, zero-width and bidi control characters, and the Arabic tatweel
# (a letter stretched to justify a line: "الامتحـــان" is "الامتحان").
_DROP = set("\u00ad\u200b\u200c\u200d\u2060\ufeff\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
            "\u2066\u2067\u2068\u2069\u0640")


def normalize(text: str) -> tuple[str, list[int]]:
    """Casefolded, NFKC, quote/dash-folded text with ASCII digits ("٢٠١٨" is "2018"), without combining
    marks (accents, harakat), with whitespace runs collapsed to one space (none next to a Chinese,
    Japanese or Korean letter), and words hyphenated across a line break joined. Returns (normalized, index) where
    index[i] is the offset in `text` of normalized character i (len(index) == len(normalized))."""
    out: list[str] = []
    index: list[int] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        # "exam-\nple" -> "example"
        if ch in "-\u00ad" and i + 1 < n and text[i + 1] == "\n" and out and out[-1].isalpha():
            j = i + 1
            while j < n and text[j].isspace():
                j += 1
            if j < n and text[j].isalpha():
                i = j
                continue
        if ch in _DROP:
            i += 1
            continue
        if ch.isspace():
            j = i + 1
            while j < n and text[j].isspace():
                j += 1
            # text without spaces (Chinese, Japanese) broken at a line end: no word ends there
            cjk = out and CJK.match(out[-1]) or j < n and CJK.match(text[j])
            if out and out[-1] != " " and not cjk:
                out.append(" ")
                index.append(i)
            i = j
            continue
        for c in _fold(ch):
            if c.isspace():
                if out and out[-1] != " ":
                    out.append(" ")
                    index.append(i)
            else:
                out.append(c)
                index.append(i)
        i += 1
    while out and out[-1] == " ":
        out.pop()
        index.pop()
    return "".join(out), index


@functools.lru_cache(maxsize=8192)
def _fold(ch: str) -> str:
    """One character as `normalize` compares it (once per distinct character: pages repeat theirs)."""
    folded = _FOLD.get(ch) or (str(unicodedata.decimal(ch)) if ch.isdecimal() else None)   # ٢٠١٨: 2018
    return folded if folded is not None else strip_marks(unicodedata.normalize("NFKC", ch).casefold())


def norm(text: str) -> str:
    """`normalize` without the offset map."""
    return normalize(text)[0]


# A sentence ends at . ! ? (Arabic ؟, Devanagari ।, Urdu ۔) and its closing quotes or brackets before
# a space; Chinese and Japanese write no space after a sentence: there it ends at 。 ！ ？ ．, or at
# . ! ? right before a Chinese or Japanese letter.
_CLOSERS = "[\"'\u201d\u2019)\\]\u300d\u300f\uff09]*"
_SENTENCE_END = re.compile(rf"(?<=[.!?。؟।۔]){_CLOSERS}\s+|(?<=[。！？．]){_CLOSERS}|(?<=[.!?]){_CLOSERS}(?={CJK.pattern})"
                           r"|\n\s*\n")


@dataclass(frozen=True)
class Span:
    start: int
    end: int


def sentence_spans(text: str) -> list[Span]:
    """Sentence-ish spans of `text` (ends at . ! ? followed by space, or a blank line)."""
    spans: list[Span] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        _add_trimmed(spans, text, start, m.end())
        start = m.end()
    _add_trimmed(spans, text, start, len(text))
    return spans


def _add_trimmed(spans: list[Span], text: str, start: int, end: int) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        spans.append(Span(start, end))


def passage_spans(text: str, target: int = 500, limit: int = 900) -> list[Span]:
    """Consecutive passages of about `target` characters made of whole sentences; a sentence
    longer than `limit` is cut at whitespace."""
    pieces: list[Span] = []
    for s in sentence_spans(text):
        start = s.start
        while s.end - start > limit:
            cut = text.rfind(" ", start + target // 2, start + limit)
            cut = cut if cut > start else start + limit
            pieces.append(Span(start, cut))
            start = cut
            while start < s.end and text[start].isspace():
                start += 1
        if s.end > start:
            pieces.append(Span(start, s.end))
    passages: list[Span] = []
    cur: Span | None = None
    for p in pieces:
        if cur is None:
            cur = p
        elif p.end - cur.start <= target or (cur.end - cur.start) < target // 3:
            cur = Span(cur.start, p.end)
        else:
            passages.append(cur)
            cur = p
    if cur is not None:
        passages.append(cur)
    return passages


def collapse_ws(text: str) -> str:
    """Whitespace runs to one space (for quoting a passage on one line)."""
    return re.sub(r"\s+", " ", text).strip()
