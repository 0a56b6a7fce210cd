"""Normalisation for reading and matching: what is folded, what is kept."""
from __future__ import annotations

from ingest.normalize import match_key, normalize_text, resolve_hyphens


def test_ligatures_presentation_forms_and_math_letters_are_folded():
    assert normalize_text("e\ufb03cient \ufb01le") == "efficient file"
    assert normalize_text("\ufef7\ufe8e") == "\u0644\u0623\u0627"          # Arabic lam-alef ligature, final alef
    assert normalize_text("\ufb2a\ufb4b") == "\u05e9\u05c1\u05d5\u05b9"        # Hebrew shin/vav with points
    assert normalize_text("\U0001d70b\U0001d465") == "πx"                       # math italic
    assert normalize_text("\uff21\uff22\uff23") == "ABC"                        # full width


def test_meaningful_compatibility_characters_are_kept():
    assert normalize_text("x² + ½ ≤ 3µm") == "x² + ½ ≤ 3µm"


def test_chinese_and_japanese_punctuation_is_kept_as_printed():
    """Full-width punctuation is how Chinese and Japanese are printed: it was made ASCII ("首都,人口"),
    beside the 。 that stayed, in the page text, the viewer and the prompt."""
    assert normalize_text("北京是首都，人口约两千万（注１）！对吗？") == "北京是首都，人口约两千万（注1）！对吗？"
    assert normalize_text("ｶﾀｶﾅ｡") == "カタカナ。"                                  # half-width forms still fold


def test_bidi_controls_soft_hyphens_and_pdfium_hyphen_markers_are_removed():
    assert normalize_text("\u202bمرحبا\u202c \u200fworld\u200e") == "مرحبا world"
    assert normalize_text("co\u00adoperate co\u00ad\noperate") == "cooperate cooperate"
    assert normalize_text("proceed\ufffeings en\x02viron") == "proceedings environ"
    assert normalize_text("well-\nknown 3-\n540") == "well-\nknown 3-\n540"    # visible hyphens stay


def test_line_end_hyphen_marks_are_resolved_by_the_words_of_the_whole_document():
    marked = normalize_text("Peut\x02être, c’est\ufffeà-dire en\ufffeviron; E\ufffemail\r\n", hyphen_marks=True)
    assert marked == "Peut\ufffeêtre, c’est\ufffeà-dire en\ufffeviron; E\ufffemail"
    others = "peut-être là, c'est-à-dire environ : e-mail, email, email"
    assert resolve_hyphens([marked, others]) == ["Peut-être, c’est-à-dire environ; Email", others]
    assert resolve_hyphens(["x\ufffey \ufffe"]) == ["xy "]       # no evidence: joined; a stray mark dropped
    assert resolve_hyphens(["plain"]) == ["plain"]


def test_whitespace():
    text = "Title\r\n\r\n\r\n\r\n  indented  code   line \t\n\u00a0next\x0cpage  "
    assert normalize_text(text) == "Title\n\n  indented code line\n next page"


def test_match_key_ignores_case_and_spaces():
    assert match_key("الثانو ية") == match_key("الثانوية")
    assert match_key("Shorter  vectors\nare") == match_key("shorter vectors are")


def test_no_character_that_normalisation_drops_or_folds_escapes_its_first_scan():
    """normalize_text drops and folds only when one scan finds a character to drop or fold (most
    pages have none): every character of planes 0 and 1 that either step changes, in either mode,
    is one the scan finds; e.g. a lone math letter is still folded beside a hyphen mark."""
    from ingest import normalize

    missed = []
    for code in [*range(0x80, 0xD800), *range(0xE000, 0x20000)]:
        text = "é" + chr(code)
        for scan, drop in ((normalize._CHANGED, normalize._DROP), (normalize._CHANGED_BUT_MARKS,
                                                                   normalize._DROP_BUT_MARKS)):
            if not scan.search(text) and (drop.sub("", text) != text or normalize._FOLD.sub(normalize._nfkc, text) != text):
                missed.append(hex(code))
    assert not missed
    assert normalize_text("x\ufffey \U0001d465\u00ad", hyphen_marks=True) == "x\ufffey x"


def test_whole_words_are_counted_as_the_word_pattern_counts_them(read):
    """`resolve_hyphens` weighs a line-end hyphen by how often the document writes the joined word:
    the count (found with str.find) is the regex's, `word(?!\\w)` not after a word character, for
    every word of two real manuals and for repeats, underscores, digits and combining marks."""
    import re

    from ingest.normalize import _is_word_char, _word_count

    def reference(text, word):
        return sum(1 for m in re.finditer(re.escape(word) + r"(?!\w)", text)
                   if not m.start() or not _is_word_char(text[m.start() - 1]))

    whole = "\n".join(p.text for name in ("gnuplot.pdf", "r-intro.pdf") for p in read(name).pages).casefold()
    words = sorted(set(re.findall(r"\w+", whole)))[::7] + ["set", "the", "x", "a"]
    counted = {word: _word_count(whole, word) for word in words}
    assert counted == {word: reference(whole, word) for word in words} and sum(counted.values()) > 10_000
    for text, word in [("aaa aa a", "aa"), ("aaaa", "aa"), ("x_y xy _xy xy_", "xy"), ("1x 2 x1 x", "x"),
                       ("i\u0307x i\u0307 i\u0307", "i\u0307"), ("ab-ab ab", "ab"), ("", "a")]:
        assert _word_count(text, word) == reference(text, word)


def test_search_form_translating_only_the_non_ascii_runs_is_the_whole_text_translated(corpus):
    """`search_form` translates only the runs of non-ASCII letters (~2x faster on mostly-ASCII pages):
    it rests on the table mapping no ASCII code point, and gives what translating the whole text gives
    on every page of every corpus document with a text layer (French, German, Arabic, math symbols)."""
    import unicodedata

    from ingest import IngestError, read_document
    from ingest.normalize import _CJK_RUN, _GERSHAYIM, _cjk_words, _search_table, search_form

    def whole_text(text: str) -> str:
        text = unicodedata.normalize("NFKC", text).casefold()
        return _CJK_RUN.sub(_cjk_words, _GERSHAYIM.sub("", text.translate(_search_table())))

    assert not [c for c in _search_table() if c < 0x80]
    pages = 0
    for path in sorted(corpus.glob("*.pdf")):
        try:
            doc = read_document(path, password="secret123" if path.name == "encrypted.pdf" else None, ocr=False)
        except IngestError:
            continue
        for page in doc.pages:
            assert search_form(page.text) == whole_text(page.text), (path.name, page.number)
            pages += 1
    assert pages > 480
