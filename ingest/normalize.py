"""Text normalisation for reading and matching.

Deliberately narrower than NFKC: NFKC would also turn "x²" into "x2" and "½" into "1⁄2", which
changes meaning in technical text. We fold only the compatibility characters that hurt reading
and matching (ligatures, Arabic/Hebrew presentation forms, math-alphanumeric letters, full-width
letters and digits, half-width forms, odd spaces), then compose everything to NFC.
"""
from __future__ import annotations

import functools
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable

# PDFium replaces every hyphen between two letters at a line end with a marker ("proceed\ufffeings",
# "well\ufffeknown") and drops the line break, so dropping the marker rejoins a word hyphenated to
# break the line but also a compound broken at its own hyphen; `resolve_hyphens` decides per
# document. A hyphen PDFium leaves visible at a line end ("3-\n540", "1-\nJan-1970") is kept.
_PDFIUM_SOFT_HYPHEN = "\ufffe\x02"     # get_text_range() gives U+FFFE, get_text_bounded() U+0002
HYPHEN_MARK = "\ufffe"
# Bidi embedding / override / isolate / mark controls (pdftotext and some producers add these);
# logical order is already in the text, the controls only break matching.
_BIDI_CONTROLS = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u061c"
_INVISIBLE = "\u00ad\u200b\u2060\ufeff" + _PDFIUM_SOFT_HYPHEN + _BIDI_CONTROLS
_BIDI = re.compile("[" + _BIDI_CONTROLS + "]")
_DROP = re.compile("\u00ad\n|[" + _INVISIBLE + "]")
_DROP_BUT_MARKS = re.compile("\u00ad\n|[" + _INVISIBLE.replace(_PDFIUM_SOFT_HYPHEN, "") + "]")

# Compatibility characters folded with NFKC, one by one.
_FOLD = re.compile(
    "[\ufb00-\ufb06"        # Latin ligatures ﬀ ﬁ ﬂ ﬃ ﬄ ﬅ ﬆ
    "\ufb13-\ufb17"         # Armenian ligatures
    "\ufb1d-\ufdff"         # Hebrew and Arabic presentation forms A
    "\ufe70-\ufefe"         # Arabic presentation forms B
    "\uff10-\uff19\uff21-\uff3a\uff41-\uff5a"   # full-width digits and Latin letters (Ａ１ -> A1)
    "\uff61-\uffdc\uffe8-\uffee"    # half-width forms (ｶﾅ -> カナ); not full-width punctuation (，（）！),
                                    # how Chinese and Japanese text is printed
    "\U0001d400-\U0001d7ff" # mathematical alphanumeric symbols (𝑥 -> x, 𝜋 -> π)
    "]+"
)
# Any character that _DROP(_BUT_MARKS) or _FOLD would change: one scan finds none on most non-ASCII
# pages (accents, quotes, Arabic), and both substitutions, each a scan, are then skipped.
_FOLDED = _FOLD.pattern[1:-2]                           # the class's ranges, without "[", "]+"
_CHANGED = re.compile("[" + _INVISIBLE + _FOLDED + "]")
_CHANGED_BUT_MARKS = re.compile("[" + _INVISIBLE.replace(_PDFIUM_SOFT_HYPHEN, "") + _FOLDED + "]")
# Odd spaces and control characters (but not \n) become one space. Written "[...][...]*", not
# "[...]+": a pattern that starts with a character class lets re skip ahead to a candidate
# character; one that starts with a repeat is tried at every position (2.6x slower on the corpus).
_ODD_SPACE = r"[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000\t\f\v\x00-\x08\x0e-\x1f\x7f-\x9f]"
_ODD_SPACES = re.compile(_ODD_SPACE + _ODD_SPACE + "*")
_SPACES = re.compile(r"(?<=\S) {2,}")        # runs inside a line; indentation stays
_TRAILING = re.compile(r" +(?=\n)")
_BLANK_LINES = re.compile(r"\n{3,}")


def _nfkc(match: re.Match[str]) -> str:
    return unicodedata.normalize("NFKC", match.group())


def normalize_text(text: str, *, hyphen_marks: bool = False) -> str:
    """Readable, matchable text: folded compatibility forms, NFC, no invisible or control characters,
    words joined across PDFium-marked line-end hyphens (U+FFFE), single spaces, at most one blank line in a row.
    With `hyphen_marks` PDFium's markers stay, as HYPHEN_MARK, for `resolve_hyphens`."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if hyphen_marks and "\x02" in text:
        text = text.replace("\x02", HYPHEN_MARK)
    if not text.isascii():                      # the cheap checks first: most pages need few steps
        if (_CHANGED_BUT_MARKS if hyphen_marks else _CHANGED).search(text):
            text = (_DROP_BUT_MARKS if hyphen_marks else _DROP).sub("", text)
            text = _FOLD.sub(_nfkc, text)
        if not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
    elif "\x02" in text:
        text = text.replace("\x02", "")
    text = _ODD_SPACES.sub(" ", text)
    if "  " in text:
        text = _SPACES.sub(" ", text)
    if " \n" in text:
        text = _TRAILING.sub("", text)
    if "\n\n\n" in text:
        text = _BLANK_LINES.sub("\n\n", text)
    return text.strip("\n ").rstrip()


def drop_bidi_controls(text: str) -> str:
    """`text` (a question, a chat turn) without the bidi controls `normalize_text` drops from documents:
    text copied from a right-to-left page often carries them (RLM, RLE...), and to a model they are
    only noise between the words."""
    return text if text.isascii() else _BIDI.sub("", text)


_WORD = re.compile(r"\w+")


def _first_word(text: str) -> str:
    match = _WORD.match(text)
    return match.group() if match else ""


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"                # what \w matches


def _last_word(text: str) -> str:
    start = len(text)
    while start and _is_word_char(text[start - 1]):
        start -= 1
    return text[start:]


def _word_count(text: str, word: str) -> int:
    """Occurrences of `word` as a whole word: the matches of `word(?!\\w)` that re.finditer would find
    (one search resumes after a match) not preceded by a word character, found with str.find, which
    scans a long document ~10x faster than the pattern. `word` is not empty (two joined words)."""
    if not word:
        return 0
    count, end, start = 0, len(word), text.find(word)
    while start >= 0:
        after = start + end
        if after < len(text) and _is_word_char(text[after]):
            start = text.find(word, start + 1)
            continue
        if not start or not _is_word_char(text[start - 1]):
            count += 1
        start = text.find(word, after)
    return count


def resolve_hyphens(texts: list[str]) -> list[str]:
    """A document's pages with each HYPHEN_MARK ("well\ufffeknown") made a hyphen where the document
    writes that pair with one ("well-known", "peut-être", "state-of") more often than joined, else
    dropped ("docu\ufffement" -> "document", the usual case). Counts ignore case and line-end pairs."""
    if not any(HYPHEN_MARK in text for text in texts):
        return texts
    whole = "\n".join(texts).casefold()
    chunks = whole.split("-")
    pairs = Counter(f"{_last_word(a)}-{_first_word(b)}" for a, b in zip(chunks, chunks[1:]))

    def hyphen(left: str, right: str) -> str:
        pair = f"{left}-{right}".casefold()
        hyphenated = pairs[pair] if left and right else 0
        return "-" if hyphenated and hyphenated > _word_count(whole, pair.replace("-", "")) else ""

    return [_resolve_marks(text, hyphen) if HYPHEN_MARK in text else text for text in texts]


def _resolve_marks(text: str, hyphen: Callable[[str, str], str]) -> str:
    parts = text.split(HYPHEN_MARK)
    out = [parts[0]]
    for before, after in zip(parts, parts[1:]):
        out += [hyphen(_last_word(before), _first_word(after)), after]
    return "".join(out)


_NOISE = re.compile("[\ue000-\uf8ff\ufffd\U000f0000-\U0010ffff]")   # private use, replacement char


def unreadable(text: str) -> bool:
    """A PDF text layer nobody can read: at least 20 visible characters, 30% or more of them
    private-use or U+FFFD. A font whose ToUnicode map is missing or wrong gives that while its
    glyphs print fine, so such a page is read by OCR instead. (A few symbol-font bullets, which map
    to private use, are far below the threshold.) Runs on every PDF page: ASCII text returns at once,
    the rest is counted by regex (and a page with no such character is done)."""
    if text.isascii():
        return False
    noise = len(_NOISE.findall(text))
    if not noise:
        return False
    visible = len("".join(text.split()))
    return visible >= 20 and noise >= 0.3 * visible


def match_key(text: str) -> str:
    """A looser form for finding a phrase in a page: normalised, case-folded, whitespace removed.
    Whitespace is dropped entirely because PDF extraction sometimes splits a word with a stray
    space (Arabic "الثانو ية") or joins two words at a line break."""
    return re.sub(r"\s+", "", normalize_text(text).casefold())


# What search_form drops or replaces. Combining marks, except the Japanese voicing marks (が is not
# か): accents, the dot of Turkish İ, Arabic harakat and Hebrew niqqud (Python's \w does not match
# them, so a word that has one was cut in pieces there), and a letter that has one becomes its base
# letter, except the Cyrillic letters whose mark makes another letter of them (й is not и: "новый"
# must stem as "новая" does); the Arabic tatweel, a stretching stroke ("كتـــاب" is "كتاب"); alef
# wasla to plain alef (the other alef forms, أ إ آ, are alef and a mark); alef maqsura to yeh, as
# many writers type it ("على", "علي"; the Arabic stemmer strips a final yeh but not a final alef
# maqsura); other scripts' decimal digits to ASCII ("١٩٢٨").
_VOICING = frozenset("\u3099\u309a")
_NOT_ACCENTED = frozenset("йЙўЎ")


@functools.cache
def _search_table() -> dict[int, str | int | None]:
    """That table, for str.translate (made on first use, not at import: ~60 ms)."""
    table: dict[int, str | int | None] = {0x640: None, 0x671: 0x627, 0x649: 0x64A}
    for c in range(0xC0, 0x1FBFA):         # (no mark lies beyond U+1E94A, no digit beyond U+1FBF9)
        char = chr(c)
        if unicodedata.combining(char):
            if char not in _VOICING:
                table[c] = None
        elif (digit := unicodedata.decimal(char, None)) is not None:
            table[c] = 0x30 + digit
        elif char not in _NOT_ACCENTED and unicodedata.decomposition(char)[:1] not in ("", "<"):
            base = unicodedata.normalize("NFC", "".join(
                m for m in unicodedata.normalize("NFD", char) if not unicodedata.combining(m) or m in _VOICING))
            if base != char:
                table[c] = base
    return table


# Chinese, Japanese and Korean letters (Han, kana, Hangul): text in these scripts has no spaces
# between words (Korean: none between a word and its particles).
CJK = re.compile("[\u3005\u3040-\u30fa\u30fc-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
                 "\uf900-\ufaff\U00020000-\U0002fa1f]")
_CJK_RUN = re.compile(CJK.pattern + "+")


def _cjk_words(match: re.Match[str]) -> str:
    run = match.group()
    return " " + " ".join(run[i:i + 2] for i in range(max(1, len(run) - 1))) + " "


# A Hebrew acronym's geresh or gershayim (or the quote typed for it) between its letters: "ת״א" (Tel
# Aviv) is one word, not two letters each too short to be a word.
_GERSHAYIM = re.compile("(?<=[\u05d0-\u05ea])[\"'\u05f3\u05f4\u2019\u201d](?=[\u05d0-\u05ea])")


def search_form(text: str) -> str:
    """The form word search (BM25: the extractive engine, the page budget) reads: NFKC, case-folded,
    without diacritics, so "resume" finds "résumé", "İstanbul" finds "Istanbul" and a vocalised
    Arabic or Hebrew question finds the usual unvocalised text; without Arabic tatweel, with one
    alef, yeh for alef maqsura and ASCII digits (`_search_table`); a Hebrew acronym as one word
    ("ת״א", 'ת"א' -> "תא"). A run of Chinese, Japanese or
    Korean letters is written as its overlapping two-letter words (a letter alone stays one), the
    way Lucene's CJK analyzer reads it: "東京は日本" -> "東京 京は は日 日本"; as one word the whole run
    only ever matched the same whole run."""
    text = unicodedata.normalize("NFKC", text).casefold()
    if text.isascii():
        return text
    # the table maps no ASCII code point: only the runs of other ones are translated (the same text,
    # 1.4-3x faster on Latin-script pages, a little slower on all-Arabic ones: bench/multilingual_retrieval.py)
    text = _GERSHAYIM.sub("", _NON_ASCII_RUN.sub(_translated, text))
    return _CJK_RUN.sub(_cjk_words, text)


_NON_ASCII_RUN = re.compile("[^\x00-\x7f]+")


def _translated(match: re.Match[str]) -> str:
    """A run of non-ASCII letters through `_search_table`."""
    return match.group().translate(_search_table())


@functools.cache
def _marks() -> dict[int, None]:
    """Combining marks but the Japanese voicing marks, for str.translate (made on first use)."""
    return dict.fromkeys(c for c in range(0x300, 0x1E950)        # (none lies beyond U+1E94A)
                         if unicodedata.combining(chr(c)) and c not in (0x3099, 0x309A))


_KEPT_LETTERS = re.compile("([" + "".join(sorted(_NOT_ACCENTED)) + "])")


def strip_marks(text: str) -> str:
    """`text` without its combining marks (accents, harakat, niqqud; not the Japanese voicing marks),
    letters whose mark makes another letter (й, ў) kept whole, as `search_form` keeps them."""
    if text.isascii():
        return text
    parts = _KEPT_LETTERS.split(unicodedata.normalize("NFC", text))     # odd items: a kept letter
    return "".join(part if i % 2 else unicodedata.normalize("NFC", unicodedata.normalize("NFD", part).translate(_marks()))
                   for i, part in enumerate(parts))


# Snowball stemmers for the scripts whose words a question inflects otherwise than a page ("книги" /
# "книга", Arabic "المدرسة" / "مدرسة"); a word in any other script takes the English one (a Latin
# word's language is not known from its letters).
_SCRIPT_STEMMERS = {"arabic": re.compile("[\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff]"),
                    "russian": re.compile("[\u0400-\u052f]"), "greek": re.compile("[\u0370-\u03ff]")}


class ScriptStemmer:
    """PyStemmer's `stemWords` (what bm25s calls) with the stemmer of each word's script: Arabic,
    Cyrillic (Russian), Greek, else English. Words are those of `search_form`. One set of stemmers
    per thread (a Snowball stemmer is not thread-safe)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _stemmers(self) -> dict:
        stemmers = getattr(self._local, "stemmers", None)
        if stemmers is None:
            import Stemmer
            stemmers = self._local.stemmers = {name: Stemmer.Stemmer(name)
                                               for name in ("english", *_SCRIPT_STEMMERS)}
        return stemmers

    def stemWords(self, words: list[str]) -> list[str]:  # noqa: N802 (PyStemmer's name)
        stemmers = self._stemmers()
        if all(w.isascii() for w in words):
            return stemmers["english"].stemWords(words)
        return [stemmers[_script(w)].stemWord(w) for w in words]


def _script(word: str) -> str:
    if word.isascii():
        return "english"
    return next((name for name, script in _SCRIPT_STEMMERS.items() if script.match(word)), "english")
