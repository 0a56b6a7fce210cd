"""Real PDFs: page counts, phrases on the right physical pages, labels, titles, outline, identity."""
from __future__ import annotations

import hashlib

import pytest

from ingest.normalize import match_key

# (file, pages) from the corpus MANIFEST (pdfinfo).
PAGE_COUNTS = [
    ("pari-refcard.pdf", 4), ("latexsheet-de.pdf", 2), ("acm-sigconf.pdf", 6),
    ("hsaur-inference.pdf", 15), ("debian-history-fr.pdf", 26), ("sexam-ar.pdf", 8),
    ("r-intro.pdf", 113), ("gnuplot.pdf", 311),
]

# Phrases picked by reading the files, with the one physical page each is on.
PHRASES = [
    ("r-intro.pdf", "Shorter vectors in the expression are recycled", 15),
    ("gnuplot.pdf", "The domterm terminal device runs on the DomTerm terminal emulator", 250),
    ("acm-sigconf.pdf", "1907 Franklin Model D roadster", 4),
    ("hsaur-inference.pdf", "Estimated width (feet)", 5),
    ("debian-history-fr.pdf", "Debian 0.93R6 (novembre 1995) : apparition de dselect", 9),
    ("debian-history-fr.pdf", "Bruce Perens a été remplacé par Ian Jackson", 14),
    ("latexsheet-de.pdf", "Zusätzliche Mathesymbole", 1),
    ("latexsheet-de.pdf", "Mathematikmodus Symbole", 2),
    ("sexam-ar.pdf", "يكون بشكل آلي اظهار رقم الصفحة", 6),
    ("sexam-ar.pdf", "إذا أردنا عدم ارفاق السؤال", 4),
]


@pytest.mark.parametrize("name,pages", PAGE_COUNTS)
def test_page_count_and_numbering(read, name, pages):
    doc = read(name)
    assert doc.kind == "pdf" and doc.unit == "page"
    assert len(doc.pages) == pages
    assert [p.number for p in doc.pages] == list(range(1, pages + 1))


@pytest.mark.parametrize("name,phrase,page", PHRASES)
def test_phrase_lands_on_its_page(read, name, phrase, page):
    doc = read(name)
    found = [p.number for p in doc.pages if match_key(phrase) in match_key(p.text)]
    assert found == [page]


def test_hyphenated_words_rejoined_and_text_clean(read):
    fr = read("debian-history-fr.pdf")
    assert "Il y avait environ 60 développeurs" in fr.page(9).text     # "en-/viron" across a line
    acm = read("acm-sigconf.pdf")
    assert "in a conference proceedings or journal" in acm.page(1).text
    for name in ("sexam-ar.pdf", "debian-history-fr.pdf", "acm-sigconf.pdf", "gnuplot.pdf"):
        text = "".join(p.text for p in read(name).pages)
        assert not set(text) & set("\ufffe\x02\u00a0\r\u202a\u202b\u202c\u200f")


def test_blank_page_is_kept_empty(read):
    doc = read("hsaur-inference.pdf")
    assert doc.page(2).text == ""
    assert "Simple Inference" in doc.page(3).text


def test_page_labels(read):
    fr = read("debian-history-fr.pdf")
    assert fr.page(7).label == "1"
    assert [p.label for p in fr.pages[:6]] == ["i", "ii", "iii", "iv", "v", "vi"]
    r = read("r-intro.pdf")
    for page in r.pages[6:]:
        assert page.label == str(page.number - 6)
    assert r.page(15).label == "9"
    assert read("gnuplot.pdf").page(200).label is None     # no /PageLabels: printed = physical


def test_titles(read):
    assert read("acm-sigconf.pdf").title == "The Name of the Title Is Hope"       # metadata
    assert read("r-intro.pdf").title == "An Introduction to R"                   # first heading
    assert read("sexam-ar.pdf").title.startswith("استعمال حزمة exam")              # skips border glyphs "M L"
    assert read("latexsheet-de.pdf").title.endswith("Befehlsübersicht")


def test_outline_points_at_pages(read):
    r = read("r-intro.pdf")
    assert r.outline[0] == ("Preface", 0, 7)
    assert ("1 Introduction and preliminaries", 0, 8) in r.outline
    assert "Preface" in r.page(7).text
    assert all(1 <= page <= 113 for _, _, page in r.outline)
    assert any(level == 1 for _, level, _ in r.outline)


def test_content_and_text_hashes(corpus, read):
    doc = read("r-intro.pdf")
    assert doc.content_hash == hashlib.sha256((corpus / "r-intro.pdf").read_bytes()).hexdigest()
    assert doc.content_hash.startswith("337ccd0b490b1e66")      # MANIFEST prefix: same on every machine
    # the same text inside different bytes: the encrypted copy has another content hash, same text hash
    plain = read("debian-history-fr.pdf")
    locked = read("encrypted.pdf", password="secret123")
    assert locked.content_hash != plain.content_hash
    assert locked.text_hash == plain.text_hash
    assert [p.label for p in locked.pages] == [p.label for p in plain.pages]


def test_progress_is_steady_on_a_long_pdf(corpus):
    from ingest import read_document

    calls: list[tuple[int, int]] = []
    doc = read_document(corpus / "gnuplot.pdf", progress=lambda done, total: calls.append((done, total)))
    assert len(doc.pages) == 311
    assert calls[0] == (0, 311) and calls[-1] == (311, 311)
    assert [done for done, _ in calls] == list(range(0, 312))
    assert {total for _, total in calls} == {311}


def test_reading_from_several_threads_gives_the_same_documents(corpus, read):
    """PDFium is not thread-safe; PDFIUM_LOCK must make concurrent reads safe and exact."""
    from concurrent.futures import ThreadPoolExecutor

    from ingest import read_document

    names = ["debian-history-fr.pdf", "r-intro.pdf", "sexam-ar.pdf", "acm-sigconf.pdf"] * 2
    with ThreadPoolExecutor(max_workers=4) as pool:
        docs = list(pool.map(lambda n: read_document(corpus / n), names))
    for name, doc in zip(names, docs):
        assert doc.text_hash == read(name).text_hash
        assert [p.label for p in doc.pages] == [p.label for p in read(name).pages]


def test_title_drops_control_characters_and_skips_toc_lines(corpus, tmp_path):
    """A metadata title's NUL/control characters are not kept; a dot-leader contents line
    (r-intro's physical page 4 read alone, without metadata) is not taken as the title."""
    from pypdf import PdfReader, PdfWriter

    from ingest import read_document

    src = PdfReader(corpus / "r-intro.pdf")
    titled = PdfWriter()
    titled.add_page(src.pages[0])
    titled.add_metadata({"/Title": "An Introduction\x00to R\x07\x1f"})
    titled.write(tmp_path / "titled.pdf")
    assert read_document(tmp_path / "titled.pdf").title == "An Introduction to R"

    toc = PdfWriter()
    toc.add_page(src.pages[3])          # "ii", then "5.4.1 Mixed vector ... . . . . . 22"
    toc.write(tmp_path / "contents.pdf")
    title = read_document(tmp_path / "contents.pdf").title
    assert ". . ." not in title and not title[-1].isdigit()
