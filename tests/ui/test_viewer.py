"""The source viewer's handlers, in process over real Services: a chip opens the cited page with its
verdict; turning pages leaves the verdict behind (it is about the cited page) and each page-turn
button is enabled only where there is a page to turn to."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from app.citations import parse_and_verify
from ingest import read_document

CLAIM = "If we convert the estimates of the room width in meters into feet by multiplying each by 3.28"


@pytest.fixture
def ui(services_and_handlers, corpus):
    svc, h = services_and_handlers
    ws = svc.workspaces.create("w").id
    pdf = corpus / "hsaur-inference.pdf"
    doc = svc.documents.add(ws, pdf)
    text, citations = parse_and_verify(f"{CLAIM} [doc 1, p. 3].", [read_document(pdf)], doc_ids=[doc.id])
    chat = svc.chats.create(ws).id
    msg = svc.chats.save_exchange(chat, "How were the widths compared?", text, "extractive", {}, citations)
    return SimpleNamespace(svc=svc, h=h, ws=ws, chat=chat, msg=msg, pages=doc.pages)


def test_turning_pages_from_the_cited_one(ui):
    assert ui.msg.citations[0].verified and ui.msg.citations[0].page == 3
    out = ui.h.open_citation(f"{ui.msg.id}:0|nonce", ui.ws, ui.chat)
    assert "verified" in out["source_head"] and "page 3 of" in out["source_head"]
    assert out["prev_btn"]["interactive"] is True and out["next_btn"]["interactive"] is True
    back = ui.h.turn_page(-1)(out["viewer"], ui.ws)
    assert "jd-verdict" not in back["source_head"] and "showing page 2, cited page 3" in back["source_head"]
    first = ui.h.turn_page(-1)(back["viewer"], ui.ws)
    assert first["viewer"]["page"] == 1 and first["prev_btn"]["interactive"] is False
    assert first["next_btn"]["interactive"] is True
    again = ui.h.turn_page(+2)(first["viewer"], ui.ws)
    assert again["viewer"]["page"] == 3 and "jd-verdict" in again["source_head"]
    last = ui.h.turn_page(ui.pages)(again["viewer"], ui.ws)           # clamped to the last page
    assert last["viewer"]["page"] == ui.pages and last["next_btn"]["interactive"] is False


def test_a_chip_of_a_removed_document_opens_nothing(ui):
    doc_id = ui.msg.citations[0].doc_id
    ui.svc.documents.remove(ui.ws, doc_id)
    with pytest.warns(UserWarning, match="removed"):
        ui.h.open_citation(f"{ui.msg.id}:0|nonce", ui.ws, ui.chat)


def test_a_password_protected_pdf_shows_its_page_images_while_the_server_runs(services_and_handlers, corpus):
    """Its page images need the password, which is not stored: it is kept in memory from the upload
    (the viewer said "Cannot draw the page image: d608fa29...: cannot open as PDF (Failed to load
    document (PDFium: Incorrect password error).)" for every such PDF)."""
    svc, h = services_and_handlers
    ws = svc.workspaces.create("w").id
    pdf = corpus / "encrypted.pdf"
    doc = svc.documents.add(ws, pdf, password="secret123")
    page = svc.documents.page(doc.id, 8).text
    quote = " ".join(page.split()[:12])
    text, citations = parse_and_verify(f'"{quote}" [doc 1, p. 8].', [read_document(pdf, password="secret123")],
                                       doc_ids=[doc.id])
    chat = svc.chats.create(ws).id
    msg = svc.chats.save_exchange(chat, "q", text, "extractive", {}, citations)
    assert msg.citations[0].verified
    out = h.open_citation(f"{msg.id}:0|n", ws, chat)
    assert out["page_image"]["visible"] is True and out["page_image"]["value"] is not None

    svc.documents._passwords.clear()                  # as after a restart
    with pytest.warns(UserWarning) as toasts:
        out = h.open_citation(f"{msg.id}:0|n", ws, chat)
    (toast,) = [str(w.message) for w in toasts]
    assert "encrypted.pdf" in toast and "password-protected" in toast and "PDFium" not in toast
    assert doc.content_hash[:8] not in toast and out["page_image"]["visible"] is False
    assert "jd-passage" in out["page_text"]               # the text view still marks the passage
    assert svc.documents.add(ws, pdf, password="secret123").id == doc.id      # "add the file again with its
    out = h.open_citation(f"{msg.id}:0|n", ws, chat)                          #  password": the same document
    assert out["page_image"]["visible"] is True


def test_a_chip_on_a_scanned_page_marks_the_passage_on_the_lines_ocr_kept(services_and_handlers, corpus,
                                                                           tmp_path, monkeypatch):
    """A page read by OCR keeps its lines; the viewer OCR'd the page again at its own scale to mark a
    passage (seconds a click). It marks the kept lines, scaled to its image, on the cited words (the
    text layer of the page the scan was made from is the truth), and OCRs only a page stored
    without them where they can be placed."""
    import numpy as np
    import pypdfium2 as pdfium
    from sqlalchemy import select, update

    from app import db
    from app.page_images import render_page
    from ingest import ocr
    if not ocr.ocr_available():
        pytest.skip("rapidocr / onnxruntime not installed")
    scan = tmp_path / "scan.pdf"                       # image-only.pdf page 1: r-intro.pdf page 7 at 150 dpi
    pdf = pdfium.PdfDocument.new()
    pdf.import_pages(pdfium.PdfDocument(str(corpus / "image-only.pdf")), [0])
    pdf.save(scan)
    svc, h = services_and_handlers
    ws = svc.workspaces.create("w").id
    doc = svc.documents.add(ws, scan)
    passage = "written in 1990–2 by Bill Venables and David M. Smith when at the University of Adelaide"
    text, citations = parse_and_verify(f'"{passage}" [doc 1, p. 1].', svc.documents.load(ws)[1], doc_ids=[doc.id])
    chat = svc.chats.create(ws).id
    msg = svc.chats.save_exchange(chat, "q", text, "extractive", {}, citations)
    assert msg.citations[0].verified
    truth = render_page(corpus / "r-intro.pdf", 7, highlight=passage, scale=1.5)
    assert truth.highlighted and len(truth.boxes) == 2

    calls, real = [], ocr.recognise
    monkeypatch.setattr(ocr, "recognise", lambda image: calls.append(image.shape) or real(image))

    def marked_words() -> list[float]:
        image = h.open_citation(f"{msg.id}:0|n", ws, chat)["page_image"]["value"]
        assert image.size == truth.image.size
        px = np.asarray(image.convert("RGB")).astype(int)
        tinted = (px[..., 0] > 200) & (px[..., 2] < px[..., 0] - 60)
        assert tinted.mean() < 0.05                     # the passage's lines, not the page
        return [float(tinted[top + 4:bottom - 4, left + 4:right - 4].mean())
                for left, top, right, bottom in truth.boxes]

    assert min(marked_words()) > 0.6 and calls == []   # each cited line marked (but its ink), nothing OCR'd
    with db.transaction(svc.sessions) as s:            # as kept before the lines' turn was
        kept = s.scalar(select(db.Page.ocr).where(db.Page.document_id == doc.id))
        s.execute(update(db.Page).where(db.Page.document_id == doc.id).values(
            ocr={k: v for k, v in kept.items() if k != "turns"}))
    assert min(marked_words()) > 0.6 and calls != []   # read again from the image shown


def test_a_chip_on_a_stamped_scan_marks_the_passage_on_the_lines_ocr_kept(services_and_handlers, corpus, tmp_path):
    """A scan carrying a few words of text (a Bates number) reads as what OCR read on it; the viewer
    looked for the passage in the page's text layer (the stamp alone), found nothing and marked
    nothing. It marks it on the lines OCR kept with the page."""
    from pypdf import PdfReader, PdfWriter

    from app.page_images import render_page
    from ingest import ocr
    from tests.ingest.pdf_files import write_text_pdf
    if not ocr.ocr_available():
        pytest.skip("rapidocr / onnxruntime not installed")
    stamps = write_text_pdf(tmp_path / "stamps.pdf", [([(400, 20, "ACME-0001234")], "")])
    writer = PdfWriter()
    writer.append(corpus / "image-only.pdf", pages=[0])
    writer.pages[0].merge_page(PdfReader(stamps).pages[0])
    writer.write(tmp_path / "stamped.pdf")
    svc, h = services_and_handlers
    ws = svc.workspaces.create("w").id
    doc = svc.documents.add(ws, tmp_path / "stamped.pdf")
    passage = "written in 1990–2 by Bill Venables and David M. Smith when at the University of Adelaide"
    assert passage in " ".join(svc.documents.page(doc.id, 1).text.split())
    page = svc.documents.page_image(doc.id, 1, passage)
    truth = render_page(corpus / "r-intro.pdf", 7, highlight=passage, scale=1.5)       # the scan's source
    assert page.highlighted and len(page.boxes) == len(truth.boxes) == 2
    for left, top, right, bottom in truth.boxes:
        cx, cy = (left + right) / 2, (top + bottom) / 2
        assert any(b[0] <= cx <= b[2] and b[1] <= cy <= b[3] for b in page.boxes), page.boxes
    assert not svc.documents.page_image(doc.id, 1, "Gnuplot draws surfaces with splot").highlighted
