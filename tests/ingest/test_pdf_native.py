"""The C loops of the page checks (ingest/pdf_native.py) give what their Python references give."""
from __future__ import annotations

import ctypes
import functools

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
import pytest

from ingest import pdf_hidden, pdf_native
from ingest.pdf import _EVERYWHERE, _bounded_len
from tests.ingest.pdf_files import write_text_pdf, write_stream_pdf
from tests.ingest.test_pdf_unseen import _FORM, _RESUME, _SCAN, _nested_forms_pdf


@pytest.fixture(autouse=True)
def _needs_the_library():
    if pdf_native.lib() is None:
        pytest.skip("no C compiler: the checks run in Python (tested by the pdf_checks tests)")


def _key(found):
    return [(ctypes.cast(obj, ctypes.c_void_p).value, outer, why, detail) for obj, outer, why, detail in found]


def _python_scan(page):
    return list(pdf_hidden._candidates(page.raw, pdfium_c.FPDFPage_CountObjects, pdfium_c.FPDFPage_GetObject,
                                       pdf_hidden._IDENTITY))


def test_the_c_scan_finds_the_objects_the_python_scan_finds(tmp_path, corpus):
    """Same objects, in the same order, with the same matrices, reasons and sizes or colours: on
    pages made to hold every kind (in forms, nested, many) and on corpus pages (sexam-ar's have
    white text on dark boxes)."""
    made = [write_stream_pdf(tmp_path / "resume.pdf", [_RESUME, _SCAN], form=_FORM),
            _nested_forms_pdf(tmp_path / "nested.pdf"),
            write_stream_pdf(tmp_path / "many.pdf", [b"".join(
                b"BT /F1 %g Tf 72 %d Td (line) Tj ET\n" % (0.1 * (i % 12), 5 * i) for i in range(150))])]
    pages, kinds = 0, set()
    for path, numbers in [(p, None) for p in made] + [(corpus / "sexam-ar.pdf", None),
                                                     (corpus / "gnuplot.pdf", range(0, 311, 31))]:
        pdf = pdfium.PdfDocument(path)
        for index in numbers or range(len(pdf)):
            page = pdf[index]
            expected = _python_scan(page)
            assert _key(pdf_native.unseen_candidates(page.raw, pdf_hidden.PALE, 1.0)) == _key(expected)
            kinds |= {why for _, _, why, _ in expected}
            pages += 1
            page.close()
        pdf.close()
    assert kinds == {"clear", "tiny", "pale"} and pages > 20


def test_chars_inside_holds_only_when_no_character_is_outside(tmp_path, corpus):
    """A page with a line beyond its right edge, and gnuplot.pdf p. 290 (an overfull line), have
    characters outside: False, and the bounded text is shorter. Pages without: True, and the
    bounded text of the page's box and of everywhere is the same."""
    edges = write_text_pdf(tmp_path / "edges.pdf", [([(72, 700, "Kept"), (700, 500, "Right of the edge")], ""),
                                                    ([(72, 700, "Second page")], "")])
    for path, index, inside in [(edges, 0, False), (edges, 1, True), (corpus / "gnuplot.pdf", 289, False),
                                (corpus / "gnuplot.pdf", 288, True), (corpus / "sexam-ar.pdf", 0, True)]:
        pdf = pdfium.PdfDocument(path)
        page = pdf[index]
        textpage = page.get_textpage()
        box = page.get_bbox()
        assert pdf_native.chars_inside(textpage.raw, box, _EVERYWHERE) is inside
        assert (_bounded_len(textpage, box) == _bounded_len(textpage, _EVERYWHERE)) is inside
        textpage.close()
        page.close()
        pdf.close()


def test_without_a_compiler_the_library_is_none(monkeypatch):
    with pytest.raises(RuntimeError, match="no C compiler"):
        pdf_native.build("no-such-cc")
    monkeypatch.setattr(pdf_native, "_lib", None)
    monkeypatch.setattr(pdf_native, "_tried", False)
    monkeypatch.setenv("CC", "no-such-cc")
    monkeypatch.setenv("JAMBADOCS_KERNEL_CACHE", "/nonexistent-cache")
    assert pdf_native.lib() is None and pdf_native.unseen_candidates(None, 230, 1.0) is None


@pytest.mark.parametrize("limit", [128, pdf_native.ALNUM_LIMIT])
def test_the_c_direction_votes_are_the_python_ones(tmp_path, corpus, monkeypatch, limit):
    """The reading direction (pdf._text_angle) is voted by sampled pairs of letters: C votes the pairs
    whose code points are below its isalnum table's limit and leaves the rest to Python; the votes are
    those of the Python loop over every pair, on corpus pages (two-column, Arabic, German, French,
    dense math) and on pages whose text runs down or up, with the table's limit and with only ASCII
    in C (Arabic, umlauts and accents then left to Python)."""
    from ingest import pdf
    from tests.ingest.test_pdf_pages import _TURNED_LINES

    monkeypatch.setattr(pdf_native, "ALNUM_LIMIT", limit)
    pdf_native._alnum_bits.cache_clear()
    monkeypatch.setattr(pdf_native, "_alnum_bits", functools.lru_cache(maxsize=1)(pdf_native._alnum_bits.__wrapped__))

    turned = write_stream_pdf(tmp_path / "turned.pdf", [b"".join(
        b"BT /F1 12 Tf %d %d %d 0 %d 720 Tm (%s) Tj ET\n" % (0, sign, -sign, 100 + 20 * k, line)
        for k, line in enumerate(_TURNED_LINES)) for sign in (-1, 1)])
    compared, directions = 0, set()
    for path in [turned] + [corpus / name for name in ("acm-sigconf.pdf", "sexam-ar.pdf", "pari-refcard.pdf",
                                                       "latexsheet-de.pdf", "debian-history-fr.pdf")]:
        pdf_doc = pdfium.PdfDocument(str(path))
        for page in pdf_doc:
            textpage = page.get_textpage()
            with monkeypatch.context() as python:
                python.setattr(pdf_native, "_lib", None)
                python.setattr(pdf_native, "_tried", True)
                expected = pdf._angle_votes(textpage)
            assert pdf._angle_votes(textpage) == expected
            compared += sum(expected)
            directions.add(pdf._text_angle(textpage))
            textpage.close()
            page.close()
        pdf_doc.close()
    assert compared > 500 and {0, 90, 270} <= directions


def test_the_c_cover_counts_agree_with_the_python_walk(tmp_path, corpus):
    """pdf_covered walks a page in Python only when the C count finds text and a box: the counts are
    the walk's, on made pages (boxes in the page, in a form, under text, thin rules) and corpus pages."""
    from ingest import pdf_covered
    from tests.ingest.test_pdf_covered import _CONTRACT, _FORM, _SCAN, _line

    made = [write_stream_pdf(tmp_path / "contract.pdf", [_CONTRACT, _SCAN, _line(700, b"Plain") + b"q /Fm0 Do Q\n",
                                                         _line(700, b"Plain")], form=_FORM)]
    with_boxes = 0
    for path in made + [corpus / name for name in ("hsaur-inference.pdf", "acm-sigconf.pdf", "sexam-ar.pdf")]:
        pdf = pdfium.PdfDocument(str(path))
        for page in pdf:
            texts, boxes = [], []
            pdf_covered._collect(page.raw, pdfium_c.FPDFPage_CountObjects, pdf_covered._PAGE_OBJECT, None, texts, boxes)
            assert pdf_native.cover_counts(page.raw, pdf_covered.MIN_BOX_PT - 1e-3) == (len(texts), len(boxes))
            with_boxes += bool(boxes)
            page.close()
        pdf.close()
    assert with_boxes >= 3


def test_the_c_annotation_pass_finds_what_the_python_pass_finds(tmp_path, corpus):
    """One pass over a page's annotations serves the added text and the covering boxes: the C pass
    gives the Python one's (index, subtype) list on a made page (typed text, notes, shapes, a stamp,
    some flagged Hidden or NoView, and more links than the first buffer holds) and on corpus pages
    full of links (gnuplot.pdf), where both find nothing to read."""
    from pypdf import PdfWriter
    from pypdf.annotations import FreeText, Link, Rectangle, Text
    from pypdf.generic import NameObject, NumberObject

    from ingest import pdf_annotations, pdf_covered

    assert pdf_covered._COVERING <= pdf_annotations._READ         # the boxes come from the same list
    writer = PdfWriter(clone_from=write_text_pdf(tmp_path / "plain.pdf", [([(72, 700, "Plain line")], "")]))
    made = [(FreeText(text="Shown", rect=(50, 50, 400, 70)), 4), (Text(text="Retracted", rect=(5, 5, 20, 20)), 2),
            (Rectangle(rect=(70, 676, 300, 694), interior_color="000000"), 0),
            (FreeText(text="Print only", rect=(50, 80, 400, 100)), 32 | 4)]
    made += [(Link(rect=(10, y, 60, y + 2), url=f"https://example.org/{y}"), 4) for y in range(300)]
    made += [(Text(text="Last note", rect=(500, 700, 520, 720)), 0)]
    for annotation, flags in made:
        writer.add_annotation(page_number=0, annotation=annotation)
        writer.pages[0]["/Annots"][-1].get_object()[NameObject("/F")] = NumberObject(flags)
    writer.write(tmp_path / "annotated.pdf")
    found = 0
    for path, numbers in [(tmp_path / "annotated.pdf", [0]), (corpus / "gnuplot.pdf", range(0, 311, 10)),
                          (corpus / "acm-sigconf.pdf", range(6))]:
        pdf = pdfium.PdfDocument(str(path))
        for index in numbers:
            page = pdf[index]
            expected = pdf_annotations._shown_annotations(page)
            assert pdf_annotations.shown_annotations(page) == expected
            found += len(expected)
            page.close()
        pdf.close()
    assert found == 3                             # Shown, the rectangle, Last note: links and flagged ones are not
