"""Each bad input has its own reason, names the file, and never stops a batch."""
from __future__ import annotations

import pytest

from ingest import Document, IngestError, read_document, read_documents


@pytest.mark.parametrize("name,reason", [
    ("empty.pdf", "empty"),
    ("fake.pdf", "not_pdf"),
    ("truncated.pdf", "corrupt"),
    ("encrypted.pdf", "encrypted"),
    ("image-only.pdf", "no_text"),
])
def test_bad_corpus_file_reason(corpus, name, reason):
    with pytest.raises(IngestError) as info:
        read_document(corpus / name, ocr=False)               # with OCR the scan is read: test_ocr.py
    assert info.value.reason == reason
    assert name in str(info.value)
    assert info.value.path == name


def test_batch_reads_good_files_around_bad_ones(corpus):
    names = ["empty.pdf", "pari-refcard.pdf", "fake.pdf", "truncated.pdf", "sexam-ar.pdf",
             "encrypted.pdf", "image-only.pdf", "latexsheet-de.pdf"]
    progress: list[tuple[int, int, int]] = []
    results = read_documents([corpus / n for n in names], progress=lambda *a: progress.append(a), ocr=False)
    outcome = [r.reason if isinstance(r, IngestError) else len(r.pages) for r in results]
    assert outcome == ["empty", 4, "not_pdf", "corrupt", 8, "encrypted", "no_text", 2]
    assert (1, 4, 4) in progress and (7, 2, 2) in progress


def test_password_opens_and_wrong_password_is_named(corpus):
    doc = read_document(corpus / "encrypted.pdf", password="secret123")
    assert len(doc.pages) == 26 and doc.page(7).label == "1"
    assert "Debian" in doc.title
    with pytest.raises(IngestError, match="password is wrong") as info:
        read_document(corpus / "encrypted.pdf", password="nope")
    assert info.value.reason == "encrypted"
    results = read_documents([corpus / "encrypted.pdf"], passwords={"encrypted.pdf": "secret123"})
    assert isinstance(results[0], Document)


def test_owner_password_only_is_read_and_says_so(corpus, read):
    """Decision: copy restrictions of an owner-password-only PDF are not enforced for private Q&A
    (as pdftotext and most viewers do); the document carries a note saying so."""
    doc = read("encrypted-owner-only.pdf")
    plain = read("pari-refcard.pdf")
    assert [p.text for p in doc.pages] == [p.text for p in plain.pages]
    assert any("restrictions" in note for note in doc.notes)
    assert plain.notes == []


def test_limits(corpus, tmp_path):
    with pytest.raises(IngestError) as info:
        read_document(corpus / "r-intro.pdf", max_pages=100)
    assert info.value.reason == "too_large" and "113 pages" in str(info.value)
    with pytest.raises(IngestError) as info:
        read_document(corpus / "r-intro.pdf", max_bytes=100_000)
    assert info.value.reason == "too_large"


def test_time_bound_stops_long_extraction(corpus):
    with pytest.raises(IngestError) as info:
        read_document(corpus / "gnuplot.pdf", timeout_s=0.0)
    assert info.value.reason == "corrupt" and "stopped after" in str(info.value)


def test_a_pdf_with_no_pages_says_so(tmp_path, corpus):
    """A well-formed PDF of 0 pages was "damaged or truncated PDF: it cannot be opened", and after
    an encrypted PDF (PDFium's last error is kept) "encrypted: needs a password"."""
    from pypdf import PdfWriter
    PdfWriter().write(tmp_path / "zero pages.pdf")
    with pytest.raises(IngestError, match="password"):
        read_document(corpus / "encrypted.pdf")
    with pytest.raises(IngestError) as info:
        read_document(tmp_path / "zero pages.pdf")
    assert info.value.reason == "corrupt"
    assert str(info.value) == "zero pages.pdf: damaged or truncated PDF: it has no pages (or its page tree cannot be read)"


def test_time_bound_counts_work_not_waiting(corpus):
    """A sound PDF read while PDFium is busy elsewhere (a page drawn for the UI holds its lock), or
    on a loaded machine, is not refused as malformed: the bound is on the reading's own CPU time."""
    import threading
    import time

    from ingest.pdf import PDFIUM_LOCK
    held, release = threading.Event(), threading.Event()

    def busy() -> None:
        with PDFIUM_LOCK:
            held.set()
            release.wait(10)
    other = threading.Thread(target=busy)
    other.start()
    held.wait(10)
    threading.Timer(1.5, release.set).start()
    try:
        t0 = time.monotonic()
        doc = read_document(corpus / "pari-refcard.pdf", timeout_s=1.0, ocr=False)
    finally:
        release.set()
        other.join()
    assert time.monotonic() - t0 >= 1.5 and len(doc.pages) == 4


def test_damaged_bytes_never_hang(corpus, tmp_path):
    data = (corpus / "hsaur-inference.pdf").read_bytes()
    cases = {
        "cut95.pdf": data[: int(len(data) * 0.95)],
        "garbage-tail.pdf": data[:-2000] + b"x" * 2000,
        "header-only.pdf": b"%PDF-1.7\n",
    }
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
    results = read_documents([tmp_path / n for n in cases])
    assert [r.reason for r in results] == ["corrupt"] * len(cases)


def test_unsupported_and_misnamed_files(corpus, tmp_path):
    (tmp_path / "slides.key").write_bytes(b"PK\x03\x04 not really")
    (tmp_path / "notes.docx").write_bytes(b"plain text named docx")
    (tmp_path / "real.txt").write_bytes((corpus / "pari-refcard.pdf").read_bytes())   # PDF named .txt
    (tmp_path / "blank.md").write_text("  \n\n \n")
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "about.md").write_text("# PDF files\n\nEvery PDF starts with `%PDF-1.7`.\n")
    results = read_documents([tmp_path / n for n in
                              ("slides.key", "notes.docx", "real.txt", "blank.md", "binary.txt", "about.md")])
    assert results[0].reason == "unsupported" and "Keynote file: export it as PDF" in str(results[0])
    assert results[1].reason == "corrupt" and "notes.docx" in str(results[1])
    assert isinstance(results[2], Document) and results[2].kind == "pdf" and len(results[2].pages) == 4
    assert results[3].reason == "no_text"
    assert results[4].reason == "unsupported"
    assert results[5].kind == "md" and "%PDF-1.7" in results[5].pages[0].text
    with pytest.raises(IngestError) as info:
        read_document(tmp_path / "missing.pdf")
    assert "missing.pdf" in str(info.value)


def test_isolated_reading_matches_and_is_killed_at_the_deadline(corpus, read):
    calls: list[tuple[int, int]] = []
    doc = read_document(corpus / "encrypted.pdf", password="secret123", isolate=True,
                        progress=lambda d, t: calls.append((d, t)))
    plain = read("debian-history-fr.pdf")
    assert [p.text for p in doc.pages] == [p.text for p in plain.pages]
    assert [p.label for p in doc.pages] == [p.label for p in plain.pages]
    assert doc.outline == plain.outline and doc.title == plain.title
    assert calls[-1] == (26, 26)
    results = read_documents([corpus / "truncated.pdf", corpus / "encrypted.pdf", corpus / "gnuplot.pdf"],
                             isolate=True, timeout_s=0.0)
    assert [r.reason for r in results] == ["corrupt", "corrupt", "corrupt"]   # killed before any answer
    results = read_documents([corpus / "truncated.pdf", corpus / "encrypted.pdf"], isolate=True)
    assert [r.reason for r in results] == ["corrupt", "encrypted"]


def test_a_progress_callback_can_cancel_and_is_not_blamed_on_the_file(corpus, tmp_path):
    class Cancelled(Exception):
        pass

    def cancel_at_ten(done: int, total: int) -> None:
        if done == 10:
            raise Cancelled()

    with pytest.raises(Cancelled):
        read_document(corpus / "r-intro.pdf", progress=cancel_at_ten)
    # a damaged .docx whose styles.xml is not XML: a parser error becomes `corrupt`, naming the file
    import zipfile

    bad = tmp_path / "styles.docx"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("word/document.xml", '<w:document xmlns:w="http://schemas.openxmlformats.org/'
                   'wordprocessingml/2006/main"><w:body/></w:document>')
        z.writestr("word/styles.xml", "<not xml")
    with pytest.raises(IngestError) as info:
        read_document(bad)
    assert info.value.reason == "corrupt" and "styles.docx" in str(info.value)


def test_an_unknown_type_lists_what_is_read(tmp_path):
    (tmp_path / "plan.dwg").write_bytes(b"AC1032" + bytes(100))                # a CAD drawing
    with pytest.raises(IngestError) as err:
        read_document(tmp_path / "plan.dwg")
    assert err.value.reason == "unsupported" and "plan.dwg" in str(err.value)
    assert "unsupported file type .dwg" in str(err.value) and ".pptx" in str(err.value) and ".png" in str(err.value)


def test_a_password_given_for_several_files_does_not_lock_out_one_that_needs_none(corpus):
    """One password typed for a drop of several PDFs: a PDF with no user password opens anyway (it
    was refused as "the password is wrong"); a wrong password for an encrypted one is still refused."""
    owner_only = read_document(corpus / "encrypted-owner-only.pdf", password="secret123")
    assert len(owner_only.pages) == 4 and owner_only.pages[0].text.strip()
    with pytest.raises(IngestError, match="the password is wrong"):
        read_document(corpus / "encrypted.pdf", password="owner-only-has-none")
    assert len(read_document(corpus / "encrypted.pdf", password="secret123").pages) == 26


@pytest.mark.parametrize("name,head,hint", [
    ("novel.azw3", b"BOOKMOBI" + bytes(60), "a Kindle e-book: convert it to EPUB"),
    ("scan.djvu", b"AT&TFORM\x00\x00\x10\x00DJVU", "a DjVu scan: export it as PDF"),
    ("analysis.ipynb", b'{"cells": [], "nbformat": 4}', "a Jupyter notebook: export it as Markdown, HTML or PDF"),
])
def test_formats_people_have_that_are_not_read_say_how_to_convert_them(tmp_path, name, head, hint):
    """A Kindle book, a DjVu scan, a notebook: refused with the list of supported types, and the
    browser's upload box refused them with no word of what to do; now the reason says it."""
    (tmp_path / name).write_bytes(head)
    with pytest.raises(IngestError) as info:
        read_document(tmp_path / name)
    assert info.value.reason == "unsupported" and str(info.value).startswith(f"{name}: {hint}"), info.value


def _nested_eml(depth: int) -> str:
    """An e-mail forwarded as an attachment (message/rfc822) inside another, `depth` times."""
    msg = "Subject: the original\nContent-Type: text/plain\n\nThe text of the original message.\n"
    for level in range(depth):
        msg = f"Subject: forward {level}\nContent-Type: message/rfc822\n\n{msg}"
    return "From: a@example.org\nTo: b@example.org\n" + msg


def _nested_mhtml(depth: int) -> str:
    """A saved web page whose multipart parts are nested `depth` deep."""
    body = "Content-Type: text/html\n\n<p>The text of the page.</p>\n"
    for level in range(depth):
        body = f'Content-Type: multipart/related; boundary="b{level}"\n\n--b{level}\n{body}\n--b{level}--\n'
    return "From: <Saved by Blink>\nSubject: a page\nMIME-Version: 1.0\n" + body


def _nested_odt(depth: int) -> bytes:
    """An OpenDocument text whose paragraph lies `depth` sections deep."""
    import io
    import zipfile

    ns = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
          'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"')
    sections = "<text:section>" * depth + "<text:p>The text of the document.</text:p>" + "</text:section>" * depth
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        z.writestr("content.xml", f'<?xml version="1.0"?><office:document-content {ns}><office:body>'
                                  f"<office:text>{sections}</office:text></office:body></office:document-content>")
    return out.getvalue()


@pytest.mark.parametrize("name,make", [("forwarded.eml", _nested_eml), ("page.mhtml", _nested_mhtml),
                                       ("report.odt", _nested_odt)])
def test_a_file_nested_thousands_of_levels_deep_says_so(tmp_path, name, make):
    """A 3000-deep nested file failed as "corrupt: could not be read (RecursionError: maximum
    recursion depth exceeded ...)": it is refused as nested too deeply, naming the file; the same
    file a few levels deep is read."""
    def write(depth: int):
        content = make(depth)
        path = tmp_path / name
        (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
        return path

    assert read_document(write(3)).pages
    with pytest.raises(IngestError) as info:
        read_document(write(3000))
    assert info.value.reason == "unsupported" and info.value.path == name
    assert str(info.value).startswith(f"{name}: nested too deeply to be read")
    assert "RecursionError" not in str(info.value)
